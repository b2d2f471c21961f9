//! What every `sft-data` command reads: the input flags (files, folders, standard input,
//! Hub datasets), the chat-template flags, a tokenizer by path or Hub id, and the guard that
//! no output replaces an input. Shared by the commands of `data` and `curate`.

use std::path::PathBuf;

use clap::Args;
use sft_dataset::check::TokenCheck;
use sft_io::paths::Output;
use sft_io::{discover_noting, DataFile, TextSplit};
use sft_template::{ChatTemplate, RenderOptions};
use sft_tokenize::{SftTokenizer, TemplateFlags};

use crate::EXIT_USAGE;

#[derive(Args)]
pub(crate) struct TemplateArgs {
    /// Chat template: a bundled name (smollm2, smollm3, chatml, llama3, llama3.2, qwen2.5,
    /// qwen3, mistral, gemma3, phi3.5, zephyr, deepseek-r1), a model folder, a .gguf file
    /// or a template file.
    #[arg(long, value_name = "NAME|PATH|MODEL_DIR")]
    chat_template: Option<String>,
    /// Which of several named templates in tokenizer_config.json (such as tool_use).
    #[arg(long, value_name = "NAME")]
    chat_template_name: Option<String>,
    /// Special tokens (bos_token, eos_token, ...) as a JSON object; they override the
    /// template source's own.
    #[arg(long, value_name = "FILE.json")]
    special_tokens: Option<PathBuf>,
    /// Template variables for every row, as a JSON object, e.g. '{"enable_thinking": false}'.
    /// A row's own chat_template_kwargs win.
    #[arg(long, value_name = "JSON")]
    template_kwargs: Option<String>,
    /// The time strftime_now() returns, as YYYY-MM-DDTHH:MM:SS, for reproducible renders
    /// (default: now, UTC).
    #[arg(long, value_name = "DATETIME")]
    now: Option<String>,
}

impl TemplateArgs {
    pub(crate) fn flags(&self) -> TemplateFlags {
        TemplateFlags {
            chat_template: self.chat_template.clone(),
            chat_template_name: self.chat_template_name.clone(),
            special_tokens: self.special_tokens.clone(),
            template_kwargs: self.template_kwargs.clone(),
            now: self.now.clone(),
        }
    }

    pub(crate) fn load(
        &self,
        tokenizer: Option<&SftTokenizer>,
    ) -> Result<Option<(ChatTemplate, RenderOptions)>, String> {
        self.flags().load(tokenizer)
    }
}

#[derive(Args)]
pub(crate) struct InputArgs {
    /// How raw text files (.txt) become documents: whole, line, paragraph, or a separator
    /// string such as '<|endoftext|>'.
    #[arg(long, value_name = "HOW", default_value = "whole")]
    pub(crate) text_split: TextSplit,
    /// No progress bar and no summary; errors still go to stderr.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    /// Of an input that is a Hub dataset (OWNER/NAME where no local path of that name
    /// exists): the split read (its files come from the shared cache, or are downloaded
    /// into it; HF_HUB_OFFLINE=1 for the cache only).
    #[arg(long, value_name = "NAME", default_value = "train")]
    pub(crate) split: String,
    /// Of an input that is a Hub dataset: the config (a `configs:` name of its card).
    #[arg(long, value_name = "NAME")]
    pub(crate) dataset_config: Option<String>,
}

pub(crate) fn usage_error(message: impl std::fmt::Display) -> i32 {
    eprintln!("sft-data: error: {message}");
    EXIT_USAGE
}

/// The data files of `paths`: files, folders of them, standard input (`-`), and Hub
/// datasets (`OWNER/NAME`, `hf://datasets/...`: the files of `input`'s split, from the shared
/// cache or downloaded into it).
pub(crate) fn find_files(paths: &[PathBuf], input: &InputArgs) -> Result<Vec<DataFile>, i32> {
    let mut local = Vec::new();
    for path in paths {
        let name = path.to_string_lossy();
        let hub =
            sft_hub::dataset_split_files(&name, input.dataset_config.as_deref(), &input.split)
                .map_err(|e| usage_error(format_args!("{name}: {e}")))?;
        match hub {
            Some(files) => local.extend(files),
            None => local.push(path.clone()),
        }
    }
    let found = discover_noting(&local).map_err(|e| {
        usage_error(format_args!(
            "{e}\n  hint: pass data files (.jsonl, .json, .parquet, .arrow, .txt) or folders holding them"
        ))
    })?;
    for note in &found.notes {
        eprintln!("sft-data: warning: {note}");
    }
    Ok(found.files)
}

/// The input files of a job that writes `outputs`, none of which may be an input (or a
/// file of `extra_inputs`: tokenizer, template) or land in a folder it cannot write.
pub(crate) fn find_inputs_for(
    paths: &[PathBuf],
    input: &InputArgs,
    outputs: &[Output],
    extra_inputs: &[PathBuf],
) -> Result<Vec<DataFile>, i32> {
    let inputs = find_files(paths, input)?;
    refuse_unsafe_outputs(&inputs, outputs, extra_inputs)?;
    Ok(inputs)
}

/// Exit 2 before anything runs when an output would overwrite an input (through any name
/// or link), two outputs are one file, or an output's folder is missing or read-only.
pub(crate) fn refuse_unsafe_outputs(
    inputs: &[DataFile],
    outputs: &[Output],
    extra_inputs: &[PathBuf],
) -> Result<(), i32> {
    let mut all: Vec<PathBuf> = inputs.iter().map(|f| f.path.clone()).collect();
    for extra in extra_inputs {
        all.extend(sft_io::paths::files_of(extra));
    }
    sft_io::paths::check_outputs(&all, outputs).map_err(usage_error)
}

/// The files behind --chat-template and --special-tokens, when they name files.
pub(crate) fn template_inputs(template: &TemplateArgs) -> Vec<PathBuf> {
    template.flags().files()
}

/// A `--tokenizer` path, or the Hub model id it names resolved to its snapshot folder.
pub(crate) fn tokenizer_at(path: &std::path::Path) -> Result<PathBuf, String> {
    sft_model::locate::local_or_hub(path, None)
        .map_err(|e| format!("--tokenizer {}: {e}", path.display()))
}

/// The tokenizer and the template to tokenize conversational rows with: --chat-template
/// when given, else the tokenizer folder's own.
pub(crate) fn load_token_check(
    path: &std::path::Path,
    template: &TemplateArgs,
    max_length: usize,
) -> Result<TokenCheck, String> {
    TokenCheck::load(&tokenizer_at(path)?, &template.flags(), max_length)
}

//! Token rows for training and scoring: a prepared table (checked against the model's
//! tokenizer) or any dataset prepared on the fly exactly as `sft-data prepare` does.

use std::path::Path;

use sft_dataset::prepare::{manifest_path, prepare, PrepareJob};
use sft_io::{discover, ByteCounter, ReadOptions};
use sft_model::BatchRow;
use sft_tokenize::{PackingStrategy, SftTokenizer, TokenizeOptions};

pub(crate) struct DataPlan {
    /// Packing of the training set.
    pub packing: Option<PackingStrategy>,
    /// Packing of every other set (TRL's `eval_packing`, which defaults to `packing`).
    pub eval_packing: Option<PackingStrategy>,
    pub options: TokenizeOptions,
    pub chat_template: Option<String>,
}

/// The template to render with: `spec` (a bundled name, a model folder, a file) with the
/// tokenizer's special tokens under its own, or else the tokenizer folder's template.
pub(crate) fn chat_template(
    spec: Option<&str>,
    tokenizer: &SftTokenizer,
) -> Result<Option<sft_template::ChatTemplate>, String> {
    let Some(spec) = spec else {
        return crate::data::tokenizer_template(tokenizer);
    };
    let source = sft_template::TemplateSource::resolve(spec, None).map_err(|e| e.to_string())?;
    let mut tokens = tokenizer.special.clone();
    tokens.merge(&source.special_tokens);
    sft_template::ChatTemplate::new(&source.name, &source.source, tokens)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Training rows from `path`: a prepared table as it is, anything else prepared into
/// `work/NAME.parquet` (with its manifest and rejects beside it).
pub(crate) fn load_rows(
    path: &Path,
    name: &str,
    model_dir: &Path,
    plan: &DataPlan,
    work: &Path,
    quiet: bool,
) -> Result<Vec<BatchRow>, String> {
    let tokenizer = SftTokenizer::from_path(model_dir).map_err(|e| format!("{e}\n  hint: the model folder needs tokenizer.json (and tokenizer_config.json with the chat template)"))?;
    // The model's vocabulary bounds the token ids (its config is beside the tokenizer).
    let vocab = sft_model::LlamaConfig::from_file(&model_dir.join("config.json"))
        .ok()
        .map(|c| c.vocab_size);
    let is_prepared =
        path.extension().is_some_and(|e| e == "parquet") && manifest_path(path).is_file();
    if is_prepared {
        let manifest_file = manifest_path(path);
        let manifest: serde_json::Value = std::fs::read_to_string(&manifest_file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| format!("{}: unreadable manifest", manifest_file.display()))?;
        let fp = manifest["tokenizer"]["fingerprint"].as_str().unwrap_or("");
        if fp != tokenizer.fingerprint {
            return Err(format!(
                "{}: prepared with another tokenizer ({}; fingerprint {fp}) than the model's ({}; {})\n  hint: prepare it again with --tokenizer {}",
                path.display(),
                manifest["tokenizer"]["path"].as_str().unwrap_or("?"),
                model_dir.display(),
                tokenizer.fingerprint,
                model_dir.display()
            ));
        }
        let rows = sft_train::data::load_prepared(path, vocab)?;
        if !quiet {
            eprintln!(
                "{name}: {} prepared rows from {}",
                rows.len(),
                path.display()
            );
        }
        return Ok(rows);
    }
    let inputs = discover(&[path.to_path_buf()]).map_err(|e| format!("{e}\n  hint: pass data files (.jsonl, .json, .parquet, .arrow, .txt), a folder of them, or a prepared .parquet"))?;
    let template = chat_template(plan.chat_template.as_deref(), &tokenizer)?;
    std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
    let output = work.join(format!("{name}.parquet"));
    let job = PrepareJob {
        inputs,
        read: ReadOptions::default(),
        tokenizer,
        template,
        options: plan.options.clone(),
        packing: if name == "train" {
            plan.packing
        } else {
            plan.eval_packing
        },
        output: output.clone(),
        rejects: None,
        progress: ByteCounter::default(),
    };
    let s = prepare(&job).map_err(|e| e.to_string())?;
    if !quiet {
        eprintln!(
            "{name}: {} rows read, {} examples, {} rejected{}, {} rows of {} tokens ({} trained) -> {}",
            s.rows_in,
            s.examples,
            s.rejected,
            s.rejects_file.as_ref().map(|p| format!(" (see {})", p.display())).unwrap_or_default(),
            s.rows_out,
            s.tokens,
            s.trained_tokens,
            output.display()
        );
        for (location, code, reason) in &s.first_rejects {
            eprintln!("{name}: rejected {location}: {code}: {reason}");
        }
        for (file, reason) in &s.unreadable_files {
            eprintln!("{name}: unreadable {file}: {reason}");
        }
        for w in &s.warnings {
            eprintln!("{name}: warning [{}]: {}", w.code, w.message);
        }
    }
    if s.rows_out == 0 {
        return Err(format!(
            "{}: no usable rows ({} rejected; see the rejects file)",
            path.display(),
            s.rejected
        ));
    }
    sft_train::data::load_prepared(&output, vocab)
}

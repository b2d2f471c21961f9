//! The export: read and check the model folder once, then write each requested type's
//! GGUF file tensor by tensor through a temporary file, then the Modelfile.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sft_model::config::LlamaConfig;

use crate::arch::{self, Arch, Mapped};
use crate::format::{self, MetaValue, TensorRecord};
use crate::source::{self, SourceTensor};
use crate::tokenizer::{self, GgufTokenizer};
use crate::types::{GgufType, TensorType};
use crate::{modelfile, quant, GgufError};

/// How to export.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// The model's name: file names (`NAME-Q4_K_M.gguf`) and `general.name`. Default: the
    /// source folder's name.
    pub name: Option<String>,
    /// llama.cpp's name of the pre-tokenizer (`tokenizer.ggml.pre`), for a tokenizer whose
    /// fingerprint is not among those known. Default: detected.
    pub tokenizer_pre: Option<String>,
    /// The Hub id of the model this one was fine-tuned from (`general.base_model.*`).
    /// Default: the `base_model` of the source folder's README.md, if any.
    pub base_model: Option<String>,
    /// Do not write the Ollama Modelfile.
    pub no_modelfile: bool,
    /// The source folder is the caller's own output (a training run's `--output_dir`), so
    /// the GGUF files and the Modelfile may go into it; they never replace a file there.
    /// Otherwise nothing is written into the model folder.
    pub into_source: bool,
}

/// One file written.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub path: PathBuf,
    pub gguf_type: GgufType,
    pub bytes: u64,
    pub seconds: f64,
}

/// What an export is doing, for progress displays.
#[derive(Debug, Clone)]
pub enum ExportEvent {
    /// A file is begun.
    FileStarted {
        gguf_type: GgufType,
        path: PathBuf,
        tensors: usize,
    },
    /// One tensor of the current file is written.
    TensorWritten {
        gguf_type: GgufType,
        name: String,
        tensor_type: TensorType,
        index: usize,
        tensors: usize,
    },
    /// A file is complete and in place.
    FileDone(Exported),
    /// The Modelfile is written.
    ModelfileWritten(PathBuf),
}

/// The model folder, read and checked.
struct Model {
    dir: PathBuf,
    config: LlamaConfig,
    arch: Arch,
    /// GGUF tensors in file order, with their source.
    tensors: Vec<(Mapped, String, SourceTensor)>,
    /// Llama 3 rope factors, written as `rope_freqs.weight`.
    rope_factors: Option<Vec<f32>>,
    tokenizer: GgufTokenizer,
    name: String,
    base_models: Vec<String>,
    context_length: usize,
}

/// Exports the model folder `source` to `out_dir/NAME-TYPE.gguf` for each type (and an
/// Ollama `Modelfile` beside them), returning what was written in the order asked.
pub fn export(
    source: &Path,
    out_dir: &Path,
    types: &[GgufType],
    options: &ExportOptions,
) -> Result<Vec<Exported>, GgufError> {
    export_with_progress(source, out_dir, types, options, &mut |_| {})
}

/// [`export`], telling `on_event` what it does.
pub fn export_with_progress(
    source: &Path,
    out_dir: &Path,
    types: &[GgufType],
    options: &ExportOptions,
    on_event: &mut dyn FnMut(&ExportEvent),
) -> Result<Vec<Exported>, GgufError> {
    if types.is_empty() {
        return Err(GgufError::Output {
            message: "no GGUF type to export".into(),
            hint: "name one or more of F32, F16, BF16, Q8_0, Q6_K, Q5_K_M, Q4_K_M".into(),
        });
    }
    let model = read_model(source, options)?;
    let paths: Vec<PathBuf> = types
        .iter()
        .map(|t| out_dir.join(format!("{}-{}.gguf", model.name, t.name())))
        .collect();
    let modelfile_path = out_dir.join("Modelfile");
    check_outputs(
        source,
        out_dir,
        &paths,
        (!options.no_modelfile).then_some(&modelfile_path),
        options.into_source,
    )?;
    std::fs::create_dir_all(out_dir).map_err(|e| GgufError::Write {
        path: out_dir.to_path_buf(),
        message: format!("cannot create the folder: {e}"),
    })?;
    let mut done = Vec::new();
    for (t, path) in types.iter().zip(&paths) {
        let exported = write_file(&model, *t, path, on_event)?;
        on_event(&ExportEvent::FileDone(exported.clone()));
        done.push(exported);
    }
    if !options.no_modelfile {
        let smallest = done
            .iter()
            .min_by_key(|e| e.bytes)
            .expect("at least one type");
        let file_name = smallest
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let eos = model
            .tokenizer
            .eos_id
            .and_then(|id| model.tokenizer.tokens.get(id as usize))
            .map(String::as_str);
        let stops = modelfile::stop_words(model.tokenizer.chat_template.as_deref(), eos);
        let text = modelfile::modelfile(&file_name, &stops, model.context_length);
        sft_io::write::write_atomic(&modelfile_path, text.as_bytes())?;
        on_event(&ExportEvent::ModelfileWritten(modelfile_path));
    }
    Ok(done)
}

fn check_outputs(
    source: &Path,
    out_dir: &Path,
    paths: &[PathBuf],
    modelfile: Option<&PathBuf>,
    into_source: bool,
) -> Result<(), GgufError> {
    use sft_io::paths::{refuse_writing_into_reads, Output, Read};
    if into_source {
        // The caller's own output folder: only a file of the model may not be replaced.
        let reads = sft_io::paths::files_of(source);
        let outputs: Vec<Output> = paths
            .iter()
            .chain(modelfile)
            .map(|p| Output::new(p, "the export", "write the GGUF files to another folder"))
            .collect();
        return sft_io::paths::refuse_overwriting_inputs(&reads, &outputs).map_err(|e| {
            GgufError::Output {
                message: e.message,
                hint: e.hint,
            }
        });
    }
    let reads = [Read::new(source, "the model folder being exported")];
    let outputs: Vec<Output> = paths
        .iter()
        .chain(modelfile)
        .map(|p| {
            Output::new(
                p,
                "the export",
                "write the GGUF files to another folder; the model folder is never written",
            )
        })
        .collect();
    refuse_writing_into_reads(&reads, &outputs, &[], &[]).map_err(|e| GgufError::Output {
        message: e.message,
        hint: e.hint,
    })?;
    if out_dir.exists() && !out_dir.is_dir() {
        return Err(GgufError::Output {
            message: format!("{} exists and is not a folder", out_dir.display()),
            hint: "name a folder for the GGUF files".into(),
        });
    }
    Ok(())
}

fn read_model(dir: &Path, options: &ExportOptions) -> Result<Model, GgufError> {
    if !dir.is_dir() {
        return Err(GgufError::model(
            dir,
            "not a folder",
            "pass a Hugging Face model folder (config.json, model.safetensors, tokenizer.json)",
        ));
    }
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(GgufError::model(
            &config_path,
            "missing",
            "a Hugging Face model folder has config.json",
        ));
    }
    let config = LlamaConfig::from_file(&config_path).map_err(|e| match e {
        sft_model::ModelError::Config {
            path,
            message,
            hint,
        } => GgufError::Model {
            path,
            message,
            hint,
        },
        other => GgufError::model(&config_path, other.to_string(), ""),
    })?;
    let arch = Arch::of(&config, &config_path)?;

    let index = source::index_folder(dir)?;
    let mut tensors = Vec::new();
    for (hf, src) in &index {
        let Some(mapped) = arch::map_tensor(hf, arch, &config, &src.file)? else {
            continue;
        };
        if let Some(want) = arch::expected_shape(hf, &config) {
            if src.shape != want {
                return Err(GgufError::tensor(
                    &src.file,
                    hf,
                    format!("has shape {:?}; config.json implies {want:?}", src.shape),
                    "the weights and config.json are of different models",
                ));
            }
        }
        tensors.push((mapped, hf.clone(), src.clone()));
    }
    for hf in arch::required_tensors(arch, &config) {
        if !index.contains_key(&hf) {
            return Err(GgufError::tensor(
                dir,
                &hf,
                "is missing from the model's safetensors files",
                if hf == "lm_head.weight" {
                    "config.json says tie_word_embeddings is false, so the output projection must be stored"
                } else {
                    "the weights are incomplete; save the model again"
                },
            ));
        }
    }
    // llama.cpp's loader (and so `llama-quantize`) orders tensors by layer, the
    // non-block tensors first, then by name; the `_M` mixtures count layers in this order.
    tensors.sort_by(|(a, _, _), (b, _, _)| {
        let layer = |m: &Mapped| m.layer.map(|l| l as i64).unwrap_or(-1);
        (layer(a), &a.name).cmp(&(layer(b), &b.name))
    });
    let rope_factors = arch::llama3_rope_factors(&config);

    let tokenizer = tokenizer::read_tokenizer(
        dir,
        &config.raw,
        config.vocab_size,
        options.tokenizer_pre.as_deref(),
        matches!(arch, Arch::Llama | Arch::Smollm3),
    )?;

    let folder_name = std::fs::canonicalize(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into());
    let name = options
        .name
        .clone()
        .unwrap_or(folder_name)
        .trim()
        .replace(['/', '\\', ' '], "-");
    let base_models = match &options.base_model {
        Some(b) => vec![b.clone()],
        None => readme_base_models(&dir.join("README.md")),
    };
    // llama.cpp's llama graph attends to every earlier position; a model trained with a
    // sliding window is only the same model within the window.
    let context_length = match config.sliding_window {
        Some(w) if w < config.max_position_embeddings => w,
        _ => config.max_position_embeddings,
    };
    Ok(Model {
        dir: dir.to_path_buf(),
        config,
        arch,
        tensors,
        rope_factors,
        tokenizer,
        name,
        base_models,
        context_length,
    })
}

/// The `base_model` of a model card's front matter (`base_model: ID` or a list).
fn readme_base_models(readme: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(readme) else {
        return Vec::new();
    };
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("---") {
        return Vec::new();
    }
    let front: Vec<&str> = lines.take_while(|l| l.trim() != "---").collect();
    let unquote = |s: &str| s.trim().trim_matches(['"', '\'']).to_string();
    let mut out = Vec::new();
    for (i, line) in front.iter().enumerate() {
        let Some(value) = line.strip_prefix("base_model:") else {
            continue;
        };
        if !value.trim().is_empty() {
            out.push(unquote(value));
        } else {
            for item in &front[i + 1..] {
                match item.trim_start().strip_prefix("- ") {
                    Some(v) if item.starts_with([' ', '-']) => out.push(unquote(v)),
                    _ => break,
                }
            }
        }
    }
    out.retain(|b| !b.is_empty());
    out
}

/// `general.size_label` as the converter writes it: 3 significant digits at most, in K, M,
/// B or T (`3.2M`, `135M`, `1.7B`).
fn size_label(params: u64) -> String {
    let p = params as f64;
    let (scaled, suffix) = if p > 1e12 {
        (p * 1e-12, "T")
    } else if p > 1e9 {
        (p * 1e-9, "B")
    } else if p > 1e6 {
        (p * 1e-6, "M")
    } else {
        (p * 1e-3, "K")
    };
    let whole = scaled.round_ties_even() as u64;
    let digits = if whole == 0 {
        0
    } else {
        whole.to_string().len()
    };
    let decimals = 2usize.saturating_sub(digits);
    format!("{scaled:.decimals$}{suffix}")
}

/// `general.name` from a folder name as the converter makes it: words split at `-`; a word
/// all in lowercase (and not a version like `v2` or a size like `135m`) is title-cased as
/// Python's `str.title` does (a letter after a non-letter is capitalised: `smollm3` ->
/// `Smollm3`, `a3b` -> `A3B`).
fn display_name(slug: &str) -> String {
    slug.replace('-', " ")
        .split_whitespace()
        .map(|w| {
            let version = w.starts_with(|c: char| c.is_ascii_digit())
                || (w.len() > 1
                    && w.starts_with('v')
                    && w[1..].chars().next().is_some_and(|c| c.is_ascii_digit())
                    && w[1..].chars().all(|c| c.is_ascii_digit() || c == '.'));
            let lowercase =
                w.chars().any(|c| c.is_lowercase()) && !w.chars().any(|c| c.is_uppercase());
            if !lowercase || version {
                return w.to_string();
            }
            let mut out = String::new();
            let mut after_letter = false;
            for c in w.chars() {
                if c.is_alphabetic() {
                    if after_letter {
                        out.push(c);
                    } else {
                        out.extend(c.to_uppercase());
                    }
                    after_letter = true;
                } else {
                    out.push(c);
                    after_letter = false;
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn general_metadata(model: &Model, t: GgufType, params: u64) -> Vec<(String, MetaValue)> {
    let s = |v: &str| MetaValue::Str(v.to_string());
    let mut out = vec![
        ("general.architecture".to_string(), s(model.arch.name())),
        ("general.type".to_string(), s("model")),
        ("general.name".to_string(), s(&display_name(&model.name))),
        ("general.basename".to_string(), s(&model.name)),
        ("general.size_label".to_string(), s(&size_label(params))),
    ];
    if !model.base_models.is_empty() {
        out.push((
            "general.base_model.count".into(),
            MetaValue::U32(model.base_models.len() as u32),
        ));
        for (i, id) in model.base_models.iter().enumerate() {
            let (org, name) = match id.split_once('/') {
                Some((o, n)) if !o.is_empty() && !n.contains('/') => (Some(o), n),
                _ => (None, id.as_str()),
            };
            out.push((
                format!("general.base_model.{i}.name"),
                s(&display_name(name)),
            ));
            if let Some(org) = org {
                out.push((
                    format!("general.base_model.{i}.organization"),
                    s(&display_name(org)),
                ));
                out.push((
                    format!("general.base_model.{i}.repo_url"),
                    s(&format!("https://huggingface.co/{id}")),
                ));
            }
        }
    }
    out.push((
        "general.quantized_by".into(),
        s(&format!("sft-rs (sft-gguf {})", env!("CARGO_PKG_VERSION"))),
    ));
    out.extend(arch::hyperparameters(
        model.arch,
        &model.config,
        model.context_length,
    ));
    out.push(("general.file_type".into(), MetaValue::U32(t.file_type())));
    out.push(("general.quantization_version".into(), MetaValue::U32(2)));
    out
}

/// The tensors of one file: (record, where the values come from).
enum Values<'a> {
    Source(&'a Mapped, &'a str, &'a SourceTensor),
    RopeFactors(&'a [f32]),
}

fn plan(model: &Model, t: GgufType) -> (Vec<TensorRecord>, Vec<Values<'_>>) {
    let layers = model.config.num_hidden_layers;
    let tied = model.config.tie_word_embeddings;
    let mut entries = Vec::new();
    let mut values = Vec::new();
    if let Some(f) = &model.rope_factors {
        entries.push((
            "rope_freqs.weight".to_string(),
            vec![f.len() as u64],
            TensorType::F32,
        ));
        values.push(Values::RopeFactors(f));
    }
    for (mapped, hf, src) in &model.tensors {
        let row_len = *src.shape.last().unwrap_or(&1);
        let is_matrix = src.shape.len() >= 2;
        let ttype = quant::tensor_type(
            t,
            mapped.role,
            is_matrix,
            mapped.layer,
            layers,
            row_len,
            tied,
        );
        let dims: Vec<u64> = src.shape.iter().rev().map(|&d| d as u64).collect();
        entries.push((mapped.name.clone(), dims, ttype));
        values.push(Values::Source(mapped, hf, src));
    }
    // Sorted as llama.cpp's loader sorts (rope_freqs among the non-block tensors).
    let mut order: Vec<usize> = (0..entries.len()).collect();
    let key = |name: &str| {
        let layer = name
            .strip_prefix("blk.")
            .and_then(|r| r.split('.').next())
            .and_then(|l| l.parse::<i64>().ok())
            .unwrap_or(-1);
        (layer, name.to_string())
    };
    order.sort_by_key(|&i| key(&entries[i].0));
    let mut sorted_entries = Vec::new();
    let mut sorted_values = Vec::new();
    let mut values: Vec<Option<Values>> = values.into_iter().map(Some).collect();
    for i in order {
        sorted_entries.push(entries[i].clone());
        sorted_values.push(values[i].take().expect("each once"));
    }
    (format::lay_out(sorted_entries), sorted_values)
}

fn write_file(
    model: &Model,
    t: GgufType,
    path: &Path,
    on_event: &mut dyn FnMut(&ExportEvent),
) -> Result<Exported, GgufError> {
    let started = Instant::now();
    let (records, values) = plan(model, t);
    let params: u64 = records.iter().map(|r| r.elements()).sum();
    let mut metadata = general_metadata(model, t, params);
    metadata.extend(model.tokenizer.metadata.iter().cloned());
    on_event(&ExportEvent::FileStarted {
        gguf_type: t,
        path: path.to_path_buf(),
        tensors: records.len(),
    });
    let mut file = sft_io::write::AtomicFile::create(path)?;
    let write_err = |e: std::io::Error| GgufError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut bytes = format::write_header(&mut file, &metadata, &records).map_err(write_err)?;
    for (i, (record, value)) in records.iter().zip(&values).enumerate() {
        let data = match value {
            Values::RopeFactors(f) => quant::encode(f, 1, f.len(), TensorType::F32),
            Values::Source(mapped, hf, src) => {
                let mut v = source::read_f32(hf, src)?;
                let (rows, row_len) = match src.shape.as_slice() {
                    [n] => (1, *n),
                    [r, c] => (*r, *c),
                    _ => {
                        return Err(GgufError::tensor(
                            &src.file,
                            hf,
                            format!("has {} dimensions", src.shape.len()),
                            "",
                        ))
                    }
                };
                if let Some(heads) = mapped.permute_heads {
                    v = arch::permute_qk(&v, rows, row_len, heads);
                }
                if let Some((at, bad)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
                    return Err(GgufError::tensor(
                        &src.file,
                        hf,
                        format!("holds {bad} at index {at}"),
                        "the weights are damaged (a diverged training run?); export an earlier checkpoint",
                    ));
                }
                quant::encode(&v, rows, row_len, record.ttype)
            }
        }
        .map_err(|e| GgufError::tensor(&model.dir, &record.name, format!("cannot encode as {}: {e}", record.ttype), ""))?;
        debug_assert_eq!(data.len() as u64, record.bytes());
        bytes += format::write_tensor_data(&mut file, &data).map_err(write_err)?;
        on_event(&ExportEvent::TensorWritten {
            gguf_type: t,
            name: record.name.clone(),
            tensor_type: record.ttype,
            index: i,
            tensors: records.len(),
        });
    }
    file.finish()?;
    Ok(Exported {
        path: path.to_path_buf(),
        gguf_type: t,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_labels_as_the_converter_writes_them() {
        assert_eq!(size_label(3_244_352), "3.2M");
        assert_eq!(size_label(134_515_008), "135M");
        assert_eq!(size_label(1_711_376_384), "1.7B");
        assert_eq!(size_label(7_241_732_096), "7.2B");
        assert_eq!(size_label(70_553_706_496), "71B");
        assert_eq!(size_label(360_000), "360K");
    }

    #[test]
    fn display_names() {
        assert_eq!(display_name("tiny-llama"), "Tiny Llama");
        assert_eq!(
            display_name("SmolLM2-135M-Instruct"),
            "SmolLM2 135M Instruct"
        );
        assert_eq!(display_name("my-model-v2"), "My Model v2");
        assert_eq!(display_name("smollm3"), "Smollm3");
        assert_eq!(display_name("qwen3-a3b"), "Qwen3 A3B");
    }

    #[test]
    fn base_models_from_the_card() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("README.md");
        std::fs::write(
            &p,
            "---\nbase_model: HuggingFaceTB/SmolLM2-135M\ntags:\n- sft\n---\n# x\n",
        )
        .unwrap();
        assert_eq!(readme_base_models(&p), vec!["HuggingFaceTB/SmolLM2-135M"]);
        std::fs::write(
            &p,
            "---\nbase_model:\n- a/b\n- \"c/d\"\nlicense: mit\n---\n",
        )
        .unwrap();
        assert_eq!(readme_base_models(&p), vec!["a/b", "c/d"]);
        std::fs::write(&p, "# no front matter\nbase_model: x\n").unwrap();
        assert!(readme_base_models(&p).is_empty());
    }
}

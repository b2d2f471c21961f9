//! Checkpoints as Hugging Face folders: the model (transformers loads it unchanged), the
//! tokenizer files, `trainer_state.json` as transformers writes it, and what resuming needs
//! (optimizer moments, the trainer's counters). A checkpoint is written into a temporary
//! folder and renamed into place, so a crash never leaves half of one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sft_model::weights::{
    file_of_tensor, non_finite, safetensors_damage, save_safetensors, weight_files,
};
use sft_model::{CausalLm, ModelError};

use crate::optim::{AdamW, Moments};
pub use crate::window::Window;

/// Files copied from the source model folder into every checkpoint when present.
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
];

/// The trainer's counters at a step boundary: enough to continue exactly.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TrainingState {
    pub global_step: usize,
    pub total_steps: usize,
    pub seed: u64,
    pub num_tokens: u64,
    /// Floating-point operations of the steps so far, as transformers counts them: 6 x
    /// non-embedding parameters x input tokens (padding included) per step; the recompute
    /// of gradient checkpointing is not counted, as there.
    #[serde(default)]
    pub total_flos: f64,
    pub best_metric: Option<f64>,
    pub best_global_step: Option<usize>,
    pub best_model_checkpoint: Option<String>,
    pub evals_without_improvement: usize,
    /// The logging window in progress (losses and per-micro-batch ratios since the last log).
    pub window: Window,
    pub log_history: Vec<Value>,
}

/// `trainer_state.json` as transformers writes it.
pub fn trainer_state_json(state: &TrainingState, cfg: &crate::TrainConfig, epoch: f64) -> Value {
    serde_json::json!({
        "best_global_step": state.best_global_step,
        "best_metric": state.best_metric,
        "best_model_checkpoint": state.best_model_checkpoint,
        "epoch": epoch,
        "eval_steps": cfg.eval_steps,
        "global_step": state.global_step,
        "is_hyper_param_search": false,
        "is_local_process_zero": true,
        "is_world_process_zero": true,
        "log_history": state.log_history,
        "logging_steps": cfg.logging_steps,
        "max_steps": state.total_steps,
        "num_input_tokens_seen": state.num_tokens,
        "num_train_epochs": cfg.num_train_epochs.ceil() as u64,
        "save_steps": cfg.save_steps,
        "stateful_callbacks": {},
        "total_flos": state.total_flos,
        "train_batch_size": cfg.per_device_train_batch_size,
        "trial_name": null,
        "trial_params": null,
    })
}

/// Writes the model folder part: weights and config (or, with LoRA adapters, the adapter as
/// PEFT writes it, naming `source` as its base), and the tokenizer files.
pub fn save_model(model: &dyn CausalLm, source: &Path, dir: &Path) -> Result<(), String> {
    if model.lora().is_some() {
        // A base from the Hub cache is named by its id (the adapter may be pushed and read
        // on another machine); a local folder by its absolute path, so that PEFT finds it
        // from any working directory.
        let base = std::fs::canonicalize(source).unwrap_or_else(|_| source.to_path_buf());
        let base = sft_hub::cache::model_id_of_snapshot(&base)
            .unwrap_or_else(|| base.to_string_lossy().into_owned());
        model.save_adapter(dir, &base).map_err(|e| e.to_string())?;
    } else {
        model.save(dir).map_err(|e| e.to_string())?;
    }
    for name in TOKENIZER_FILES {
        let from = source.join(name);
        if from.is_file() {
            let bytes = std::fs::read(&from).map_err(|e| format!("{}: {e}", from.display()))?;
            write_file(&dir.join(name), &bytes)?;
        }
    }
    if !dir.join("generation_config.json").is_file() {
        let c = model.config();
        let g = serde_json::json!({
            "bos_token_id": c.bos_token_id(),
            "eos_token_id": match c.eos_token_ids() { [one] => Value::from(*one), many => Value::from(many.to_vec()) },
            "pad_token_id": c.pad_token_id(),
        });
        write_json(&dir.join("generation_config.json"), &g)?;
    }
    Ok(())
}

pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    sft_io::write::write_atomic(path, bytes).map_err(|e| e.to_string())
}

pub fn write_json(path: &Path, value: &Value) -> Result<(), String> {
    let mut text = serde_json::to_string_pretty(value).expect("JSON");
    text.push('\n');
    write_file(path, text.as_bytes())
}

/// Writes `output_dir/checkpoint-N` whole.
pub fn save_checkpoint(
    model: &dyn CausalLm,
    optimizer: &AdamW,
    state: &TrainingState,
    cfg: &crate::TrainConfig,
    epoch: f64,
) -> Result<PathBuf, String> {
    let name = format!("checkpoint-{}", state.global_step);
    let dir = cfg.output_dir.join(&name);
    let tmp = cfg.output_dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    save_model(model, &cfg.model_dir, &tmp)?;
    let mut moments = BTreeMap::new();
    for (p, m) in model.params().iter().zip(&optimizer.moments) {
        let shape = p.var.shape().clone();
        let t = |v: &Vec<f32>| {
            Tensor::from_slice(v, shape.clone(), &Device::Cpu).map_err(|e| e.to_string())
        };
        moments.insert(format!("exp_avg.{}", p.name), t(&m.exp_avg)?);
        moments.insert(format!("exp_avg_sq.{}", p.name), t(&m.exp_avg_sq)?);
    }
    save_safetensors(&moments, &tmp.join("optimizer.safetensors")).map_err(|e| e.to_string())?;
    write_json(
        &tmp.join("optimizer.json"),
        &serde_json::json!({"step": optimizer.step, "config": optimizer.config}),
    )?;
    write_json(
        &tmp.join("training_state.json"),
        &serde_json::to_value(state).expect("JSON"),
    )?;
    write_json(
        &tmp.join("trainer_state.json"),
        &trainer_state_json(state, cfg, epoch),
    )?;
    write_json(
        &tmp.join("training_args.json"),
        &serde_json::to_value(cfg).expect("JSON"),
    )?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Loads the model of a checkpoint to resume from, checked whole before any work: every
/// tensor present with the sizes of its `config.json` (and of `base`, the model the run
/// trains, when given), finite weights, and the optimizer state [`load_resume_state`]
/// reads. An error names the file (and tensor) and the run's other checkpoints.
pub fn load_model(
    dir: &Path,
    base: Option<&Path>,
    device: &Device,
) -> Result<Box<dyn CausalLm>, String> {
    let loaded = match base {
        Some(base) if sft_model::lora::is_adapter_dir(dir) => load_weights(dir, base, device),
        _ => sft_model::load(dir, DType::F32, device),
    };
    let model = loaded.map_err(|e| match e {
        ModelError::Weights { path, message, .. } | ModelError::Config { path, message, .. } => {
            // A missing or misshapen tensor is reported against the folder: name the file.
            let path = match weight_files(&path) {
                Ok(files) if path.is_dir() && files.len() == 1 => files[0].clone(),
                _ => path,
            };
            damaged(dir, &path, message)
        }
        ModelError::Io { path, source } => damaged(dir, &path, source.to_string()),
        other => damaged(dir, dir, other.to_string()),
    })?;
    if let Some(base) = base {
        if let Ok(b) = sft_model::read_config(&base.join("config.json")) {
            let ours = model.config().sizes();
            for ((key, ours), (_, theirs)) in ours.into_iter().zip(b.sizes()) {
                if ours != theirs {
                    return Err(format!(
                        "{}: {key} is {ours}, but the model being trained ({}) has {theirs}: \
                         this checkpoint is of another model\n  hint: resume with the \
                         --model_name_or_path the checkpoint was trained from, or from a \
                         checkpoint of this model ({})",
                        dir.join("config.json").display(),
                        base.display(),
                        others(dir)
                    ));
                }
            }
        }
    }
    for p in model.params() {
        let found = non_finite(p.var.as_tensor()).map_err(|e| e.to_string())?;
        if let Some((count, at, value)) = found {
            let file = if model.lora().is_some() {
                dir.join(sft_model::lora::ADAPTER_WEIGHTS)
            } else {
                file_of_tensor(dir, &p.name)
            };
            return Err(damaged(
                dir,
                &file,
                format!(
                    "tensor {}: {count} of its {} values are not finite (the first, at index \
                     {at}, is {value})",
                    p.name,
                    p.var.elem_count()
                ),
            ));
        }
    }
    load_resume_state(dir, model.as_ref())?;
    Ok(model)
}

/// The weights a run trains, as saved in `dir`: a full model folder (f32), or a LoRA adapter
/// folder on the frozen base `model_dir` (kept in its stored dtype), adapters attached.
pub fn load_weights(
    dir: &Path,
    model_dir: &Path,
    device: &Device,
) -> Result<Box<dyn CausalLm>, ModelError> {
    if !sft_model::lora::is_adapter_dir(dir) {
        return sft_model::load(dir, DType::F32, device);
    }
    let adapter = sft_model::lora::read_adapter(dir)?;
    let mut model = sft_model::load_frozen(model_dir, device)?;
    model.load_adapter(&adapter)?;
    Ok(model)
}

/// The model a run starts from: `model_dir`'s weights in f32 for full fine-tuning, or with
/// `lora` the frozen base in its stored dtype with new adapters (seeded by `seed`).
pub fn load_base(
    model_dir: &Path,
    lora: Option<&sft_model::LoraConfig>,
    seed: u64,
    device: &Device,
) -> Result<Box<dyn CausalLm>, ModelError> {
    match lora {
        None => sft_model::load(model_dir, DType::F32, device),
        Some(cfg) => {
            let mut model = sft_model::load_frozen(model_dir, device)?;
            model.add_lora(cfg, seed)?;
            Ok(model)
        }
    }
}

/// `sft-train --merge_adapter`: `adapter` (read from `adapter_dir`) merged into the base
/// in `base_dir`, written to `out` as a full model folder in the base's stored dtype with the
/// tokenizer files (the adapter folder's, else the base's). The caller has checked that
/// `out` is a new or empty folder outside the adapter and its base
/// ([`crate::job::merge_adapter`]).
pub fn merge_adapter(
    adapter_dir: &Path,
    adapter: &sft_model::lora::AdapterFile,
    base_dir: &Path,
    out: &Path,
    device: &Device,
) -> Result<(), String> {
    let mut model = sft_model::load_frozen(base_dir, device).map_err(|e| e.to_string())?;
    model.load_adapter(adapter).map_err(|e| e.to_string())?;
    model.merge_adapters().map_err(|e| e.to_string())?;
    let tmp = out.with_file_name(format!(
        ".{}.tmp",
        out.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let source = if adapter_dir.join("tokenizer.json").is_file() {
        adapter_dir
    } else {
        base_dir
    };
    save_model(model.as_ref(), source, &tmp)?;
    if !tmp.join("generation_config.json").is_file() || source != base_dir {
        if let Ok(bytes) = std::fs::read(base_dir.join("generation_config.json")) {
            write_file(&tmp.join("generation_config.json"), &bytes)?;
        }
    }
    if out.is_dir() {
        // The empty folder checked above.
        std::fs::remove_dir(out).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    std::fs::rename(&tmp, out).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(())
}

/// The message for a damaged checkpoint: the file, what is wrong, and where to go instead.
fn damaged(dir: &Path, file: &Path, what: String) -> String {
    format!(
        "{}: {what}\n  the checkpoint {} is damaged and cannot be resumed from\n  hint: {}",
        file.display(),
        dir.display(),
        others(dir)
    )
}

/// The run's other checkpoints, as a suggestion of where to resume instead.
fn others(dir: &Path) -> String {
    let out = dir.parent().unwrap_or(Path::new("."));
    let step = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("checkpoint-"))
        .and_then(|n| n.parse::<usize>().ok());
    let all: Vec<(usize, PathBuf)> = list_checkpoints(out)
        .into_iter()
        .filter(|(_, p)| p.file_name() != dir.file_name())
        .collect();
    let names = |v: &[(usize, PathBuf)]| {
        v.iter()
            .map(|(s, _)| format!("checkpoint-{s}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let earlier: Vec<(usize, PathBuf)> = all
        .iter()
        .filter(|(s, _)| step.is_none_or(|n| *s < n))
        .cloned()
        .collect();
    match earlier.last() {
        Some((_, newest)) => format!(
            "resume from an earlier checkpoint: --resume_from_checkpoint {} ({} has {}); \
             --resume_from_checkpoint alone takes the newest, so delete the damaged one first",
            newest.display(),
            out.display(),
            names(&all)
        ),
        None if all.is_empty() => format!(
            "{} has no other checkpoint-N: train from the start without --resume_from_checkpoint",
            out.display()
        ),
        None => format!(
            "{} has no earlier checkpoint-N (only {}): train from the start without \
             --resume_from_checkpoint",
            out.display(),
            names(&all)
        ),
    }
}

/// Reads what [`save_checkpoint`] wrote (the model is loaded separately, by [`load_model`]),
/// checking it: every moment present with its parameter's shape and finite (second moments
/// not negative), each file readable. An error names the file and tensor, with a hint.
pub fn load_resume_state(
    dir: &Path,
    model: &dyn CausalLm,
) -> Result<(TrainingState, AdamW), String> {
    let read_json = |name: &str| -> Result<Value, String> {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{}: {e}; not a checkpoint written by sft-train",
                path.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| damaged(dir, &path, format!("not valid JSON: {e}")))
    };
    let state: TrainingState = serde_json::from_value(read_json("training_state.json")?)
        .map_err(|e| damaged(dir, &dir.join("training_state.json"), e.to_string()))?;
    let opt = read_json("optimizer.json")?;
    let config = serde_json::from_value(opt["config"].clone())
        .map_err(|e| damaged(dir, &dir.join("optimizer.json"), format!("config: {e}")))?;
    let path = dir.join("optimizer.safetensors");
    if !path.is_file() {
        return Err(damaged(
            dir,
            &path,
            "missing (it holds the optimizer's moments)".into(),
        ));
    }
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu).map_err(|e| {
        let why = safetensors_damage(&path).unwrap_or_else(|| e.to_string());
        damaged(dir, &path, format!("cannot read safetensors: {why}"))
    })?;
    let mut moments = Vec::new();
    for p in model.params() {
        let get = |k: String, second: bool| -> Result<Vec<f32>, String> {
            let bad = |what: String| damaged(dir, &path, format!("tensor {k}: {what}"));
            let t = tensors.get(&k).ok_or_else(|| {
                bad(format!(
                    "missing (the optimizer's moment of parameter {})",
                    p.name
                ))
            })?;
            if t.dims() != p.var.dims() {
                return Err(bad(format!(
                    "shape {:?}, but the model's {} is {:?}",
                    t.dims(),
                    p.name,
                    p.var.dims()
                )));
            }
            let values: Vec<f32> = t
                .to_dtype(DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1())
                .map_err(|e| bad(e.to_string()))?;
            let wrong = |v: &f32| !v.is_finite() || (second && *v < 0.0);
            if let Some(at) = values.iter().position(wrong) {
                let count = values.iter().filter(|v| wrong(v)).count();
                let kind = if second {
                    "not finite or negative"
                } else {
                    "not finite"
                };
                return Err(bad(format!(
                    "{count} of its {} values are {kind} (the first, at index {at}, is {})",
                    values.len(),
                    values[at]
                )));
            }
            Ok(values)
        };
        moments.push(Moments {
            exp_avg: get(format!("exp_avg.{}", p.name), false)?,
            exp_avg_sq: get(format!("exp_avg_sq.{}", p.name), true)?,
        });
    }
    let step = opt["step"].as_u64().unwrap_or(0);
    Ok((
        state,
        AdamW {
            config,
            step,
            moments,
        },
    ))
}

/// The checkpoint `--resume_from_checkpoint` names: none (absent or `false`), the latest
/// `checkpoint-N` of `output_dir` (`latest`, `true` or the flag alone), or a folder, which
/// must be a checkpoint written by sft-train.
pub fn resume_from(output_dir: &Path, arg: Option<&str>) -> Result<Option<PathBuf>, String> {
    match arg {
        None | Some("false") => Ok(None),
        Some("latest") | Some("true") => match list_checkpoints(output_dir).pop() {
            Some((_, p)) => Ok(Some(p)),
            None => Err(format!(
                "--resume_from_checkpoint: no checkpoint-N folder in {}",
                output_dir.display()
            )),
        },
        Some(p) => {
            let p = PathBuf::from(p);
            if !p.join("training_state.json").is_file() {
                return Err(format!("--resume_from_checkpoint {}: not a checkpoint written by sft-train (no training_state.json)", p.display()));
            }
            Ok(Some(p))
        }
    }
}

/// The checkpoint folders of a run, oldest first.
pub fn list_checkpoints(output_dir: &Path) -> Vec<(usize, PathBuf)> {
    let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(output_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step = name.strip_prefix("checkpoint-")?.parse().ok()?;
            e.path().is_dir().then(|| (step, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Deletes the oldest checkpoints beyond `limit`, never the best one.
pub fn prune(output_dir: &Path, limit: usize, keep: Option<&str>) -> Vec<PathBuf> {
    let all = list_checkpoints(output_dir);
    let mut removed = Vec::new();
    let mut excess = all.len().saturating_sub(limit);
    for (_, path) in all {
        if excess == 0 {
            break;
        }
        if keep.is_some_and(|k| path.ends_with(k)) {
            continue;
        }
        if std::fs::remove_dir_all(&path).is_ok() {
            removed.push(path);
            excess -= 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_takes_the_latest_checkpoint_or_a_named_one() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        assert_eq!(resume_from(out, None), Ok(None));
        assert_eq!(resume_from(out, Some("false")), Ok(None));
        assert!(resume_from(out, Some("latest"))
            .unwrap_err()
            .contains("no checkpoint-N"));
        for step in [5, 40, 10] {
            std::fs::create_dir(out.join(format!("checkpoint-{step}"))).unwrap();
        }
        std::fs::create_dir(out.join("checkpoint-x")).unwrap();
        assert_eq!(
            resume_from(out, Some("true")),
            Ok(Some(out.join("checkpoint-40")))
        );
        let named = out.join("checkpoint-10");
        let err = resume_from(out, named.to_str()).unwrap_err();
        assert!(err.contains("no training_state.json"), "{err}");
        std::fs::write(named.join("training_state.json"), "{}").unwrap();
        assert_eq!(resume_from(out, named.to_str()), Ok(Some(named)));
    }
}

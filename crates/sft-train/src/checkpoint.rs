//! Checkpoints as Hugging Face folders: the model (transformers loads it unchanged), the
//! tokenizer files, `trainer_state.json` as transformers writes it, and what resuming needs
//! (optimizer moments, the trainer's counters). A checkpoint is written into a temporary
//! folder and renamed into place, so a crash never leaves half of one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sft_model::weights::save_safetensors;
use sft_model::Llama;

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
        "total_flos": 0.0,
        "train_batch_size": cfg.per_device_train_batch_size,
        "trial_name": null,
        "trial_params": null,
    })
}

/// Writes the model folder part: weights, config, tokenizer files.
pub fn save_model(model: &Llama, source: &Path, dir: &Path) -> Result<(), String> {
    model.save(dir).map_err(|e| e.to_string())?;
    for name in TOKENIZER_FILES {
        let from = source.join(name);
        if from.is_file() {
            let bytes = std::fs::read(&from).map_err(|e| format!("{}: {e}", from.display()))?;
            write_file(&dir.join(name), &bytes)?;
        }
    }
    if !dir.join("generation_config.json").is_file() {
        let c = &model.config;
        let g = serde_json::json!({
            "bos_token_id": c.bos_token_id,
            "eos_token_id": match c.eos_token_ids.as_slice() { [one] => Value::from(*one), many => Value::from(many.to_vec()) },
            "pad_token_id": c.pad_token_id,
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
    model: &Llama,
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

/// Reads what [`save_checkpoint`] wrote (the model is loaded separately).
pub fn load_resume_state(dir: &Path, model: &Llama) -> Result<(TrainingState, AdamW), String> {
    let read_json = |name: &str| -> Result<Value, String> {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{}: {e}; not a checkpoint written by sft-train",
                path.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    };
    let state: TrainingState = serde_json::from_value(read_json("training_state.json")?)
        .map_err(|e| format!("{}: {e}", dir.join("training_state.json").display()))?;
    let opt = read_json("optimizer.json")?;
    let config = serde_json::from_value(opt["config"].clone()).map_err(|e| e.to_string())?;
    let path = dir.join("optimizer.safetensors");
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut moments = Vec::new();
    for p in model.params() {
        let get = |k: String| -> Result<Vec<f32>, String> {
            let t = tensors
                .get(&k)
                .ok_or_else(|| format!("{}: no {k}", path.display()))?;
            t.flatten_all()
                .and_then(|t| t.to_vec1())
                .map_err(|e| e.to_string())
        };
        moments.push(Moments {
            exp_avg: get(format!("exp_avg.{}", p.name))?,
            exp_avg_sq: get(format!("exp_avg_sq.{}", p.name))?,
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

//! Trackio (`--report_to trackio`): metrics as inbox fragments that `trackio show` imports.

use std::path::PathBuf;

use serde_json::{json, Value};

/// Writes Trackio inbox fragments: `TRACKIO_DIR/inbox/<writer>/<seq:08d>.jsonl`, each
/// written as `.tmp` and renamed, which `trackio show` imports.
pub struct Trackio {
    dir: PathBuf,
    project: String,
    run: String,
    run_id: String,
    seq: u64,
    config: Option<Value>,
}

impl Trackio {
    pub fn new(project: &str, run: &str, config: Value) -> Result<Self, String> {
        let base = std::env::var_os("TRACKIO_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("trackio")))
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|h| PathBuf::from(h).join(".cache/huggingface/trackio"))
            })
            .ok_or("cannot find Trackio's folder: set TRACKIO_DIR")?;
        let run_id = hex_id(run);
        let dir =
            base.join("inbox")
                .join(format!("sft-train-{}-{}", std::process::id(), &run_id[..8]));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Self {
            dir,
            project: project.into(),
            run: run.into(),
            run_id,
            seq: 0,
            config: Some(config),
        })
    }

    /// Logs one entry of the run's history at `step`, named as transformers'
    /// `TrackioCallback` names it (see [`metric_names`]); the end-of-training summary,
    /// which leaves nothing but the epoch, is not logged.
    pub fn log(&mut self, step: usize, metrics: &Value) -> Result<(), String> {
        let Some(clean) = metric_names(metrics, step) else {
            return Ok(());
        };
        let record = json!({
            "v": 1, "kind": "metric", "project": self.project, "run": self.run,
            "run_id": self.run_id, "step": step, "timestamp": timestamp(),
            "metrics": clean, "config": self.config.take(),
            "log_id": hex_id(&format!("{}-{}-{}", self.run_id, self.seq, step)),
        });
        let path = self.dir.join(format!("{:08}.jsonl", self.seq));
        self.seq += 1;
        sft_io::write::write_atomic(&path, format!("{record}\n").as_bytes())
            .map_err(|e| e.to_string())
    }
}

/// The summary scalars transformers' `TrackioCallback` leaves out.
const SUMMARY_SCALARS: [&str; 5] = [
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "train_loss",
    "total_flos",
];

/// A log entry's metrics as transformers' `TrackioCallback` logs them, so that runs of
/// this project and of TRL line up in one dashboard: `eval_loss` as `eval/loss`, `test_x`
/// as `test/x`, the rest as `train/x`, plus `train/global_step`; non-finite numbers as
/// Python writes them. `None` for an entry with nothing but its epoch left once the
/// summary scalars are out (the end-of-training entry, whose epoch was already logged).
pub fn metric_names(entry: &Value, step: usize) -> Option<serde_json::Map<String, Value>> {
    let mut out = serde_json::Map::new();
    let Value::Object(m) = entry else {
        return None;
    };
    for (k, v) in m {
        if k == "step" || SUMMARY_SCALARS.contains(&k.as_str()) {
            continue;
        }
        let v = match v.as_f64() {
            Some(x) if x.is_nan() => Value::from("NaN"),
            Some(x) if x == f64::INFINITY => Value::from("Infinity"),
            Some(x) if x == f64::NEG_INFINITY => Value::from("-Infinity"),
            _ => v.clone(),
        };
        let name = if let Some(rest) = k.strip_prefix("eval_") {
            format!("eval/{rest}")
        } else if let Some(rest) = k.strip_prefix("test_") {
            format!("test/{rest}")
        } else {
            format!("train/{k}")
        };
        out.insert(name, v);
    }
    if out.keys().all(|k| k == "train/epoch") {
        return None;
    }
    out.insert("train/global_step".into(), Value::from(step));
    Some(out)
}

fn hex_id(seed: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut rng = crate::rng::SplitMix64::new(
        seed.bytes()
            .fold(nanos as u64 ^ std::process::id() as u64, |h, b| {
                h.rotate_left(5) ^ b as u64
            }),
    );
    format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

/// UTC now as `2026-01-01T00:00:00.000000+00:00`.
pub fn timestamp() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let t = sft_template::NaiveDateTime::from_unix(d.as_secs() as i64);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        d.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn metrics_are_named_as_transformers_trackio_callback_names_them() {
        let m = super::metric_names(
            &json!({"loss": 2.5, "grad_norm": f64::NAN, "learning_rate": 1e-5, "epoch": 0.5, "step": 10}),
            10,
        )
        .unwrap();
        assert_eq!(
            serde_json::Value::Object(m),
            json!({"train/loss": 2.5, "train/grad_norm": null, "train/learning_rate": 1e-5, "train/epoch": 0.5, "train/global_step": 10})
        );
        let m = super::metric_names(
            &json!({"eval_loss": 2.0, "eval_runtime": 1.5, "epoch": 1.0, "step": 20}),
            20,
        )
        .unwrap();
        assert_eq!(m["eval/loss"], 2.0);
        assert_eq!(m["eval/runtime"], 1.5);
        assert_eq!(m["train/epoch"], 1.0);
        // The summary at the end leaves only the epoch: not logged a second time.
        assert!(super::metric_names(
            &json!({"train_runtime": 3.0, "train_loss": 2.2, "train_samples_per_second": 9.0, "epoch": 1.0, "step": 20}),
            20
        )
        .is_none());
    }

    #[test]
    fn timestamp_has_trackio_shape() {
        let t = super::timestamp();
        assert_eq!(t.len(), "2026-01-01T00:00:00.000000+00:00".len(), "{t}");
        assert!(t.ends_with("+00:00") && t.as_bytes()[10] == b'T', "{t}");
    }
}

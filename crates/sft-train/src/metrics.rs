//! `metrics.jsonl` in the output folder: every log entry of a run, one JSON object a line
//! (always written, whatever `--report_to` says), and the process's peak memory.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Appends one JSON object per line to `output_dir/metrics.jsonl`.
pub struct MetricsFile {
    path: PathBuf,
}

impl MetricsFile {
    /// Starts the file from `history` (a resumed run rewrites what the checkpoint knew).
    pub fn start(output_dir: &Path, history: &[Value]) -> Result<Self, String> {
        let path = output_dir.join("metrics.jsonl");
        let mut text = String::new();
        for entry in history {
            text.push_str(&entry.to_string());
            text.push('\n');
        }
        sft_io::write::write_atomic(&path, text.as_bytes()).map_err(|e| e.to_string())?;
        Ok(Self { path })
    }

    pub fn append(&self, entry: &Value) -> Result<(), String> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        writeln!(f, "{entry}").map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

/// Peak resident memory of this process in MB (Linux), if known.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// A log entry as one line: `step 10/100 | loss 2.3456 | ...`.
pub fn log_line(entry: &serde_json::Value) -> String {
    let Some(map) = entry.as_object() else {
        return entry.to_string();
    };
    let step = map.get("step").and_then(|s| s.as_u64()).unwrap_or(0);
    let mut parts = vec![format!("step {step}")];
    for (k, v) in map {
        if k == "step" {
            continue;
        }
        let text = match v.as_f64() {
            Some(x) if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e6) => format!("{x:.3e}"),
            Some(x) if v.is_u64() || v.is_i64() || (x.fract() == 0.0 && x.abs() >= 10.0) => {
                format!("{x}")
            }
            Some(x) => format!("{x:.4}"),
            None => v.to_string(),
        };
        parts.push(format!("{k} {text}"));
    }
    parts.join(" | ")
}

/// Rounded as transformers rounds logged values (4 decimals).
pub(crate) fn round(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_log_entry_reads_as_one_line() {
        let e = serde_json::json!({"loss": 2.34567, "learning_rate": 2e-5, "num_tokens": 1234, "epoch": 0.5, "step": 10});
        assert_eq!(
            super::log_line(&e),
            "step 10 | loss 2.3457 | learning_rate 2.000e-5 | num_tokens 1234 | epoch 0.5000"
        );
    }
}

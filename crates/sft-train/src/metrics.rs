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
        crate::checkpoint::write_file(&path, text.as_bytes())?;
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

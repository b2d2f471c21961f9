//! Shared helpers for the end-to-end tests: run the built binary, read its outputs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The repository root (tests run from the crate folder).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn sample(rel: &str) -> PathBuf {
    root().join(rel)
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn sft_data(args: &[&str]) -> Run {
    run_binary(env!("CARGO_BIN_EXE_sft-data"), args)
}

pub fn sft_train(args: &[&str]) -> Run {
    run_binary(env!("CARGO_BIN_EXE_sft-train"), args)
}

pub fn sft_eval(args: &[&str]) -> Run {
    run_binary(env!("CARGO_BIN_EXE_sft-eval"), args)
}

fn run_binary(exe: &str, args: &[&str]) -> Run {
    let out: Output = Command::new(exe)
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        // A test never reaches the network: a Hub id is looked up in the cache only
        // (tests/hub.rs runs its own Hub stand-in on 127.0.0.1).
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("the binary runs");
    Run {
        code: out.status.code().expect("exited normally, not by a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Reads every row of a data file with the project's own reader.
pub fn read_rows(path: &Path) -> Vec<Value> {
    let files = sft_io::discover(&[path.to_path_buf()]).unwrap();
    let mut rows = Vec::new();
    for file in &files {
        let mut reader = sft_io::open(file, &sft_io::ReadOptions::default()).unwrap();
        while let Some(batch) = reader.next_batch().unwrap() {
            for raw in &batch.rows {
                rows.push(match &raw.content {
                    sft_io::RowContent::Json(r) => {
                        serde_json::from_slice(&batch.buf[r.clone()]).unwrap()
                    }
                    sft_io::RowContent::Value(v) => v.clone(),
                });
            }
        }
    }
    rows
}

/// Removes object keys whose value is null, at every depth.
pub fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// Copies a folder and everything under it (a checkpoint, for resume and damage tests).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Files in `dir` whose name starts with `.` and ends with `.tmp`: our temporaries.
pub fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
        .collect()
}

/// Waits (up to two minutes) until `path` has at least `lines` lines: a child process's
/// log has reached that point.
pub fn wait_for_lines(path: &Path, lines: usize) {
    let started = std::time::Instant::now();
    while std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
        < lines
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "{} never reached {lines} lines",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Sends `signal` (`INT`, `TERM`, `USR1`) to process `pid`.
pub fn kill(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

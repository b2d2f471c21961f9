//! What the commands print, as reviewed snapshots (`tests/snapshots/*.snap`): the check
//! summary, the prepare summary, the memory plan, the training log and the evaluation
//! summary. A wording change fails here until its new snapshot is accepted
//! (`cargo insta review`, or `INSTA_UPDATE=always cargo test -p sft-cli --test snapshots`
//! and a look at the diff). Timings, rates, paths of temporary folders and the machine's
//! memory are masked; so are the trained numbers (their values are held to PyTorch by the
//! parity tests, not here), so that a snapshot records wording and shape.

mod common;

use common::{sft_data, sft_eval, sft_train};

/// The masks every snapshot gets, plus the temporary folder's path.
fn settings(tmp: &std::path::Path) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("snapshots");
    s.set_prepend_module_to_snapshot(false);
    s.add_filter(&regex_escape(&tmp.display().to_string()), "[TMP]");
    s.add_filter(r"in \d+(\.\d+)? s\b", "in [TIME] s");
    s.add_filter(r"\(\d+(\.\d+)? s\)", "([TIME] s)");
    s.add_filter(r"\d+(\.\d+)? MB/s", "[RATE] MB/s");
    s.add_filter(
        r"available \d+(\.\d+)? [KMG]iB \(MemAvailable\)",
        "available [MEMORY] (MemAvailable)",
    );
    s
}

/// `s` with the characters a regular expression treats specially escaped.
fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[test]
fn check_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let run = sft_data(&["check", "data-samples/formats/messages.jsonl"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    settings(tmp.path()).bind(|| insta::assert_snapshot!("check_summary", run.stdout));
}

#[test]
fn check_summary_of_broken_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let run = sft_data(&["check", "data-samples/broken/broken.jsonl"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    settings(tmp.path()).bind(|| insta::assert_snapshot!("check_summary_broken", run.stdout));
}

#[test]
fn prepare_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("prepared.parquet");
    let run = sft_data(&[
        "prepare",
        "data-samples/formats/messages.jsonl",
        "--tokenizer",
        "data-samples/models/tiny-llama",
        "--packing",
        "--max-length",
        "256",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    settings(tmp.path()).bind(|| insta::assert_snapshot!("prepare_summary", run.stdout));
}

#[test]
fn memory_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let run = sft_train(&[
        "--dry_run",
        "--model_name_or_path",
        "data-samples/models/tiny-llama",
        "--per_device_train_batch_size",
        "4",
        "--max_length",
        "512",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    settings(tmp.path()).bind(|| insta::assert_snapshot!("memory_plan", run.stderr));
    let lora = sft_train(&[
        "--dry_run",
        "--model_name_or_path",
        "data-samples/models/tiny-llama",
        "--use_peft",
    ]);
    assert_eq!(lora.code, 0, "{}", lora.stderr);
    settings(tmp.path()).bind(|| insta::assert_snapshot!("memory_plan_lora", lora.stderr));
}

#[test]
fn training_log() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let run = sft_train(&[
        "--model_name_or_path",
        "data-samples/models/tiny-llama",
        "--dataset_name",
        "data-samples/formats/messages.jsonl",
        "--output_dir",
        out.to_str().unwrap(),
        "--max_steps",
        "2",
        "--logging_steps",
        "1",
        "--save_steps",
        "2",
        "--per_device_train_batch_size",
        "4",
        "--max_length",
        "128",
        "--memory_check",
        "false",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut s = settings(tmp.path());
    // Trained and measured numbers: their values are not what this snapshot holds.
    s.add_filter(
        r"\| (loss|grad_norm|learning_rate|mean_token_accuracy|entropy|peak_memory_mb|train_loss|train_runtime|train_samples_per_second|train_steps_per_second|train_tokens_per_second|total_flos|tokens_per_second|epoch) [-0-9.e+]+",
        "| $1 [NUM]",
    );
    s.add_filter(r"train loss \d+\.\d+", "train loss [NUM]");
    s.add_filter(r"\d+(\.\d+)? M parameters", "[NUM] M parameters");
    s.bind(|| insta::assert_snapshot!("training_log", run.stderr));
}

#[test]
fn eval_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let run = sft_eval(&[
        "--checkpoint",
        "data-samples/models/tiny-llama",
        "--dataset",
        "data-samples/formats/messages.jsonl",
        "--max-samples",
        "2",
        "--max-new-tokens",
        "8",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut s = settings(tmp.path());
    // Scores of a random model: their values are held to transformers elsewhere.
    s.add_filter(r"\| [0-9]+\.[0-9]+ ", "| [NUM] ");
    s.add_filter(r"\b[0-9]+\.[0-9]+%", "[NUM]%");
    s.bind(|| insta::assert_snapshot!("eval_summary", run.stdout));
}

//! `sft-train` end to end on the tiny model: outputs, logs, resume, config files, errors.

mod common;

use std::path::Path;

use common::{copy_dir, read_jsonl, root, sft_train, Run};
use serde_json::Value;

const MODEL: &str = "data-samples/models/tiny-llama";
const DATA: &str = "data-samples/formats/messages.jsonl";

fn train(out: &Path, extra: &[&str]) -> Run {
    let out = out.to_str().unwrap();
    let mut args = vec![
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        DATA,
        "--output_dir",
        out,
        "--per_device_train_batch_size",
        "2",
        "--learning_rate",
        "1e-3",
        "--logging_steps",
        "1",
        "--max_length",
        "128",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    sft_train(&args)
}

fn history(dir: &Path) -> Vec<Value> {
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("trainer_state.json")).unwrap())
            .unwrap();
    state["log_history"].as_array().unwrap().clone()
}

fn losses(h: &[Value]) -> Vec<(u64, f64)> {
    h.iter()
        .filter_map(|e| Some((e["step"].as_u64()?, e.get("loss")?.as_f64()?)))
        .collect()
}

#[test]
fn a_run_writes_checkpoints_the_model_and_its_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let r = train(
        &out,
        &[
            "--max_steps",
            "4",
            "--save_steps",
            "2",
            "--save_total_limit",
            "1",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // save_total_limit 1 kept only the newest checkpoint.
    assert!(!out.join("checkpoint-2").exists());
    let ckpt = out.join("checkpoint-4");
    for f in [
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "chat_template.jinja",
        "trainer_state.json",
        "optimizer.safetensors",
        "training_state.json",
    ] {
        assert!(ckpt.join(f).is_file(), "checkpoint lacks {f}");
    }
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "trainer_state.json",
        "metrics.jsonl",
        "loss.svg",
    ] {
        assert!(out.join(f).is_file(), "output lacks {f}");
    }
    let h = history(&out);
    let l = losses(&h);
    assert_eq!(l.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    let first = &h[0];
    for key in [
        "loss",
        "grad_norm",
        "learning_rate",
        "epoch",
        "num_tokens",
        "mean_token_accuracy",
        "entropy",
        "tokens_per_second",
    ] {
        assert!(first.get(key).is_some(), "log entry lacks {key}: {first}");
    }
    assert!(h.last().unwrap().get("train_loss").is_some());
    // metrics.jsonl holds the same entries.
    assert_eq!(read_jsonl(&out.join("metrics.jsonl")).len(), h.len());
    let svg = std::fs::read_to_string(out.join("loss.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
}

#[test]
fn resuming_gives_the_losses_of_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    let r = train(
        &full,
        &[
            "--max_steps",
            "6",
            "--save_steps",
            "3",
            "--gradient_accumulation_steps",
            "2",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // A second run that only has the checkpoint of step 3, as if it had stopped there.
    let part = tmp.path().join("part");
    std::fs::create_dir_all(&part).unwrap();
    copy_dir(&full.join("checkpoint-3"), &part.join("checkpoint-3"));
    let r = train(
        &part,
        &[
            "--max_steps",
            "6",
            "--save_steps",
            "3",
            "--gradient_accumulation_steps",
            "2",
            "--resume_from_checkpoint",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(losses(&history(&part)), losses(&history(&full)));
    let a = std::fs::read(full.join("model.safetensors")).unwrap();
    let b = std::fs::read(part.join("model.safetensors")).unwrap();
    assert!(a == b, "the resumed run ended with other weights");
}

#[test]
fn evaluation_early_stopping_and_the_best_model() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    // A learning rate this high makes eval loss rise after the first steps.
    let r = train(
        &out,
        &[
            "--eval_dataset",
            "data-samples/formats/prompt_completion.jsonl",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "2",
            "--save_steps",
            "2",
            "--max_steps",
            "40",
            "--learning_rate",
            "5e-2",
            "--early_stopping_patience",
            "2",
            "--load_best_model_at_end",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let h = history(&out);
    let evals: Vec<f64> = h
        .iter()
        .filter_map(|e| e.get("eval_loss")?.as_f64())
        .collect();
    assert!(evals.len() >= 3, "{evals:?}");
    assert!(
        h.iter().all(|e| e["step"].as_u64().unwrap() < 40),
        "early stopping did not stop the run"
    );
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("trainer_state.json")).unwrap())
            .unwrap();
    let best = state["best_metric"].as_f64().unwrap();
    assert_eq!(best, evals.iter().cloned().fold(f64::INFINITY, f64::min));
    let best_dir = state["best_model_checkpoint"].as_str().unwrap();
    assert!(Path::new(best_dir).is_dir(), "{best_dir}");
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        std::fs::read(Path::new(best_dir).join("model.safetensors")).unwrap()
    );
}

#[test]
fn a_diverging_run_stops_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let r = train(
        &out,
        &[
            "--max_steps",
            "30",
            "--learning_rate",
            "1e30",
            "--max_grad_norm",
            "0",
            "--save_steps",
            "1",
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("training stopped") && r.stderr.contains("last good checkpoint"),
        "{}",
        r.stderr
    );
}

#[test]
fn flags_come_from_yaml_and_the_command_line_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let yaml = tmp.path().join("sft.yaml");
    std::fs::write(&yaml, "# a TRL-style config\nmax_steps: 5\nlearning_rate: 1.0e-3\nlogging-steps: 1\nreport_to: [none]\n").unwrap();
    let out = tmp.path().join("run");
    let r = train(
        &out,
        &["--config", yaml.to_str().unwrap(), "--max-steps", "2"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(losses(&history(&out)).len(), 2);
}

#[test]
fn command_line_mistakes_are_explained() {
    let r = sft_train(&["--model_name_or_path", MODEL, "--learning_rat", "1e-4"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--learning_rate"), "{}", r.stderr);
    let r = sft_train(&[
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        DATA,
        "--output_dir",
        "/tmp/x",
        "--push_to_hub",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--hub_model_id"), "{}", r.stderr);
    let r = sft_train(&[
        "--model_name_or_path",
        "nobody/nothing",
        "--dataset_name",
        DATA,
        "--output_dir",
        "/tmp/x",
    ]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("nobody/nothing") && r.stderr.contains("HF_HUB_OFFLINE"),
        "{}",
        r.stderr
    );
    let _ = root();
}

/// Ctrl-C (SIGINT) finishes the step, saves a checkpoint, exits with 130, and the run
/// resumes from it.
#[cfg(unix)]
#[test]
fn ctrl_c_saves_a_checkpoint_and_exits_cleanly() {
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let child = Command::new(env!("CARGO_BIN_EXE_sft-train"))
        .args([
            "--model_name_or_path",
            MODEL,
            "--dataset_name",
            DATA,
            "--output_dir",
            out.to_str().unwrap(),
            "--per_device_train_batch_size",
            "2",
            "--max_length",
            "128",
            "--logging_steps",
            "1",
            "--max_steps",
            "100000",
            "--quiet",
        ])
        .current_dir(root())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_for_lines(&out.join("metrics.jsonl"), 2);
    common::kill("INT", child.id());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("--resume_from_checkpoint"), "{stderr}");
    let checkpoints: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("checkpoint-"))
        .collect();
    assert_eq!(checkpoints.len(), 1);
    let ckpt = checkpoints[0].path();
    assert!(
        ckpt.join("model.safetensors").is_file() && ckpt.join("optimizer.safetensors").is_file()
    );
    // And the run continues from there.
    let step: usize = ckpt.file_name().unwrap().to_string_lossy()["checkpoint-".len()..]
        .parse()
        .unwrap();
    let target = (step + 2).to_string();
    let r = train(
        &out,
        &[
            "--max_steps",
            &target,
            "--resume_from_checkpoint",
            "--save_steps",
            "100000",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(losses(&history(&out)).last().unwrap().0 as usize, step + 2);
}

/// `--packing` packs the eval set too (TRL's `eval_packing` default) and `--eval_packing
/// false` keeps it unpacked; documents packed with bfd do not attend to each other, so the
/// eval loss of the same model is the same either way.
#[test]
fn eval_packing_follows_packing_and_keeps_the_eval_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, eval_packing: &str| {
        let out = tmp.path().join(name);
        let r = train(
            &out,
            &[
                "--packing",
                "--eval_packing",
                eval_packing,
                "--eval_dataset",
                "data-samples/formats/messages.jsonl",
                "--eval_strategy",
                "steps",
                "--eval_steps",
                "2",
                "--max_steps",
                "2",
                "--save_strategy",
                "no",
            ],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        let manifest: Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("data/eval.manifest.json")).unwrap(),
        )
        .unwrap();
        let h = history(&out);
        let eval = h
            .iter()
            .find(|e| e.get("eval_loss").is_some())
            .unwrap()
            .clone();
        (manifest["summary"].clone(), eval)
    };
    let (packed, packed_eval) = run("packed", "true");
    let (plain, plain_eval) = run("plain", "false");
    assert_eq!(packed["examples"], plain["examples"]);
    assert_eq!(plain["rows_out"], plain["examples"]);
    assert!(
        packed["rows_out"].as_u64().unwrap() < plain["rows_out"].as_u64().unwrap(),
        "{packed} against {plain}"
    );
    assert_eq!(
        packed_eval["eval_num_tokens"],
        plain_eval["eval_num_tokens"]
    );
    let (a, b) = (
        packed_eval["eval_loss"].as_f64().unwrap(),
        plain_eval["eval_loss"].as_f64().unwrap(),
    );
    assert!(
        ((a - b) / b).abs() < 1e-5,
        "packed {a} against unpacked {b}"
    );
}

/// Gradient checkpointing (the default, as TRL) trains to the same weights, bit for bit, as
/// keeping every activation.
#[test]
fn gradient_checkpointing_changes_no_weight() {
    let tmp = tempfile::tempdir().unwrap();
    let on = tmp.path().join("on");
    let off = tmp.path().join("off");
    let steps = ["--max_steps", "3", "--gradient_accumulation_steps", "2"];
    let r = train(&on, &steps);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = train(
        &off,
        &[&steps[..], &["--gradient_checkpointing", "false"]].concat(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(losses(&history(&on)), losses(&history(&off)));
    let a = std::fs::read(on.join("model.safetensors")).unwrap();
    let b = std::fs::read(off.join("model.safetensors")).unwrap();
    assert!(a == b, "checkpointing changed the weights");
}

/// --dry_run prints the memory plan and exits before loading anything; a packed run whose
/// plan exceeds the machine's memory stops before loading the data and names flags that
/// fit; an unpacked one is planned again at its data's largest micro-batch (the plan at
/// max_length is an upper bound for it) and runs when that fits.
#[test]
fn the_memory_plan_is_printed_and_an_oversized_run_stops_early() {
    let r = sft_train(&["--model_name_or_path", MODEL, "--dry_run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for item in [
        "weights",
        "gradients",
        "AdamW moments",
        "activations, gradient checkpointing",
        "activations, all layers kept",
        "loss chunks",
        "predicted peak",
        "8 x 1024 tokens",
    ] {
        assert!(r.stderr.contains(item), "{item}: {}", r.stderr);
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("big");
    let r = train(
        &out,
        &[
            "--per_device_train_batch_size",
            "100000",
            "--max_length",
            "2048",
            "--gradient_checkpointing",
            "false",
            "--packing",
            "true",
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("predicted to need"), "{}", r.stderr);
    assert!(
        r.stderr.contains("--per_device_train_batch_size")
            && r.stderr.contains("--gradient_accumulation_steps"),
        "{}",
        r.stderr
    );
    assert!(!out.join("data").exists(), "the data was loaded");

    // Unpacked, the same flags ask for micro-batches the data cannot fill: 100,000 rows of
    // 2,048 tokens planned, the few rows there are (each far shorter) trained.
    let out = tmp.path().join("unpacked");
    let r = sft_train(&[
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        DATA,
        "--output_dir",
        out.to_str().unwrap(),
        "--per_device_train_batch_size",
        "100000",
        "--max_length",
        "2048",
        "--gradient_checkpointing",
        "false",
        "--max_steps",
        "1",
        "--save_strategy",
        "no",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("100000 x 2048 tokens per micro-batch (padded to the longest row"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("this data's largest micro-batch"),
        "{}",
        r.stderr
    );
    assert!(out.join("trainer_state.json").exists() || out.join("model.safetensors").exists());
}

//! Batch jobs as a scheduler meets them: nothing a job reads is ever written (a base model
//! given as the output folder, through links too), another run's folder is not mixed into,
//! SIGTERM and SIGUSR1 stop every binary cleanly (a checkpoint, the report so far, no
//! temporary left), a run that cannot learn stops, flags out of range are usage errors,
//! `-` reads standard input, and `total_flos` is counted as transformers counts it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    copy_dir, kill, root, sft_data, sft_eval, sft_train, temporaries, wait_for_lines, Run,
};
use serde_json::Value;

const MODEL: &str = "data-samples/models/tiny-llama";
const DATA: &str = "data-samples/formats/messages.jsonl";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every file under `dir` with its bytes, to compare before and after a job.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn train_args<'a>(model: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--model_name_or_path",
        model,
        "--dataset_name",
        DATA,
        "--output_dir",
        out,
        "--per_device_train_batch_size",
        "2",
        "--max_length",
        "128",
        "--logging_steps",
        "1",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    args
}

fn train(model: &str, out: &Path, extra: &[&str]) -> Run {
    sft_train(&train_args(model, s(out), extra))
}

#[test]
fn the_base_model_is_never_an_output() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    copy_dir(&root().join(MODEL), &model);
    let before = snapshot(&model);
    let mut refused = vec![
        (model.clone(), "is the model"),
        (model.join("run"), "is inside the model"),
        (tmp.path().join("x/../model"), "is the model"),
        (tmp.path().to_path_buf(), "holds the model"),
    ];
    #[cfg(unix)]
    {
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&model, &link).unwrap();
        refused.push((link.clone(), "is the model"));
        refused.push((link.join("sub"), "is inside the model"));
    }
    for (out, says) in &refused {
        let r = train(s(&model), out, &["--max_steps", "1"]);
        assert_eq!(r.code, 2, "{}: {}", out.display(), r.stderr);
        assert!(r.stderr.contains(says), "{}: {}", out.display(), r.stderr);
        assert!(r.stderr.contains("hint:"), "{}", r.stderr);
    }
    assert!(snapshot(&model) == before, "the base model was written");
    assert!(!model.join("run").exists());

    // The data is read too: an output folder that holds it is refused.
    let data_dir = tmp.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    std::fs::copy(root().join(DATA), data_dir.join("train.jsonl")).unwrap();
    let r = sft_train(&[
        "--model_name_or_path",
        s(&model),
        "--dataset_name",
        s(&data_dir.join("train.jsonl")),
        "--output_dir",
        s(&data_dir),
        "--max_steps",
        "1",
        "--quiet",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("holds the training data"), "{}", r.stderr);

    // A merged model may not go into the adapter's or the base's folder either.
    let lora = tmp.path().join("lora");
    let r = train(
        s(&model),
        &lora,
        &["--max_steps", "1", "--use_peft", "--save_strategy", "no"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    for out in [model.join("merged"), lora.join("merged")] {
        let r = sft_train(&[
            "--merge_adapter",
            s(&lora),
            "--model_name_or_path",
            s(&model),
            "--output_dir",
            s(&out),
            "--quiet",
        ]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains("is inside the"), "{}", r.stderr);
        assert!(!out.exists());
    }
    assert!(snapshot(&model) == before, "the base model was written");

    // Nor an evaluation report or its data inside a checkpoint.
    let r = sft_eval(&[
        "--checkpoint",
        s(&model),
        "--dataset",
        DATA,
        "--max-samples",
        "0",
        "--report",
        s(&model.join("eval.json")),
        "-q",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("inside the checkpoint"), "{}", r.stderr);
    assert!(snapshot(&model) == before, "the checkpoint was written");
}

#[test]
fn another_runs_folder_is_resumed_or_replaced_never_mixed() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let r = train(MODEL, &out, &["--max_steps", "2", "--save_steps", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(out.join("checkpoint-2").is_dir());
    let r = train(MODEL, &out, &["--max_steps", "1"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("holds another run"), "{}", r.stderr);
    assert!(r.stderr.contains("--overwrite_output_dir"), "{}", r.stderr);
    assert!(out.join("checkpoint-2").is_dir(), "nothing was removed");
    // Resuming it is allowed...
    let r = train(
        MODEL,
        &out,
        &[
            "--max_steps",
            "3",
            "--resume_from_checkpoint",
            "--save_steps",
            "100",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // ...and so is replacing it when asked: the old run's checkpoints and logs are gone.
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let r = sft_train(&train_args(
        MODEL,
        s(&out),
        &[
            "--max_steps",
            "1",
            "--overwrite_output_dir",
            "--save_steps",
            "100",
        ],
    ));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!out.join("checkpoint-2").exists());
    assert!(out.join("notes.txt").is_file(), "other files stay");
    let metrics = common::read_jsonl(&out.join("metrics.jsonl"));
    let steps: Vec<u64> = metrics.iter().filter_map(|e| e["step"].as_u64()).collect();
    assert!(steps.iter().all(|&s| s == 1), "{steps:?}");
}

/// A scheduler's SIGTERM (and Slurm's SIGUSR1) save a checkpoint, say how long it took,
/// exit with 128 + the signal, and the run resumes from it.
#[cfg(unix)]
#[test]
fn sigterm_and_sigusr1_save_a_checkpoint_that_resumes() {
    for (signal, code) in [("TERM", 143), ("USR1", 138)] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let args = train_args(MODEL, s(&out), &["--max_steps", "100000"]);
        let child = Command::new(env!("CARGO_BIN_EXE_sft-train"))
            .args(&args)
            .current_dir(root())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_lines(&out.join("metrics.jsonl"), 2);
        kill(signal, child.id());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "SIG{signal}: {stderr}");
        assert!(
            stderr.contains(&format!("stopped by SIG{signal}")),
            "{stderr}"
        );
        assert!(
            stderr.contains("to write"),
            "the save time is said: {stderr}"
        );
        let checkpoints = sft_train::checkpoint::list_checkpoints(&out);
        assert_eq!(checkpoints.len(), 1, "SIG{signal}");
        let (step, _) = checkpoints[0];
        let target = (step + 1).to_string();
        let r = train(
            MODEL,
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
    }
}

/// SIGTERM while checkpoints are scored: the report of those already scored is written,
/// marked interrupted.
#[cfg(unix)]
#[test]
fn sigterm_keeps_the_evaluation_report_so_far() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("eval.json");
    let md = tmp.path().join("eval.md");
    let model = root().join(MODEL);
    let mut args: Vec<String> = vec!["--checkpoint".into()];
    // The same model under many names: each is scored in turn.
    for i in 0..40 {
        let link = tmp.path().join(format!("m{i}"));
        std::os::unix::fs::symlink(&model, &link).unwrap();
        args.push(s(&link).into());
    }
    for a in [
        "--dataset",
        DATA,
        "--max-new-tokens",
        "64",
        "--max-samples",
        "8",
        "--report",
        s(&report),
        "--markdown",
        s(&md),
    ] {
        args.push(a.into());
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_sft-eval"))
        .args(&args)
        .current_dir(root())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The progress line of the first scored checkpoint, then the signal.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("/m0:") {
            break;
        }
    }
    kill("TERM", child.id());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    let stderr = format!("{seen}{}", rest.join("\n"));
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("stopped by SIGTERM after"), "{stderr}");
    let value: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let scored = value["checkpoints"].as_array().unwrap().len();
    assert!(
        (1..40).contains(&scored),
        "{scored} checkpoints in the report"
    );
    assert_eq!(value["interrupted"], "stopped by SIGTERM");
    assert_eq!(value["passed"], false);
    assert!(std::fs::read_to_string(&md)
        .unwrap()
        .contains("Interrupted"));
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// SIGTERM stops a data job with nothing half-written.
#[cfg(unix)]
#[test]
fn sigterm_leaves_no_temporary_file_of_a_data_job() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("big.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        for i in 0..400_000 {
            writeln!(
                f,
                r#"{{"messages":[{{"role":"user","content":"What is {i} plus {i}?"}},{{"role":"assistant","content":"{}"}}]}}"#,
                2 * i
            )
            .unwrap();
        }
    }
    let out = d.join("out.parquet");
    let child = Command::new(env!("CARGO_BIN_EXE_sft-data"))
        .args([
            "convert",
            s(&input),
            "--to",
            "messages",
            "-o",
            s(&out),
            "-q",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while temporaries(d).is_empty() {
        assert!(
            started.elapsed().as_secs() < 60,
            "no temporary file appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    kill("TERM", child.id());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() != Some(0) {
        assert_eq!(output.status.code(), Some(143), "{stderr}");
        assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
        assert!(!out.exists());
    }
    assert!(
        temporaries(d).is_empty(),
        "left behind: {:?}",
        temporaries(d)
    );
}

/// `--learning_rate 1e4` (a typo for 1e-4) sends the tiny model to a dead state at once:
/// the run stops with exit 1 naming what happened, the step and the rate, and saves no
/// model; `--health_checks warn` trains on with a warning.
#[test]
fn a_run_that_cannot_learn_stops_and_names_the_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let r = train(
        MODEL,
        &out,
        &[
            "--learning_rate",
            "1e4",
            "--max_steps",
            "40",
            "--save_steps",
            "100",
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("zero gradients") || r.stderr.contains("collapsed"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--learning_rate 10000"), "{}", r.stderr);
    assert!(r.stderr.contains("step "), "{}", r.stderr);
    assert!(!out.join("model.safetensors").exists(), "no model is saved");
    // sft-eval's diagnosis reads the same signals in the run's metrics.jsonl.
    let r = sft_eval(&[
        "--run",
        s(&out),
        "--checkpoint",
        MODEL,
        "--dataset",
        DATA,
        "--max-samples",
        "0",
        "--report",
        s(&tmp.path().join("eval.json")),
        "-q",
    ]);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("eval.json")).unwrap())
            .unwrap();
    let kinds: Vec<&str> = report["diagnosis"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"cannot_learn"), "{kinds:?} ({})", r.stderr);

    let out = tmp.path().join("warned");
    let r = sft_train(&train_args(
        MODEL,
        s(&out),
        &[
            "--learning_rate",
            "1e4",
            "--max_steps",
            "6",
            "--save_steps",
            "100",
            "--health_checks",
            "warn",
        ],
    ));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("warning"), "{}", r.stderr);
}

#[test]
fn numeric_flags_out_of_range_are_usage_errors_naming_the_range() {
    let cases: &[(&[&str], &str)] = &[
        (&["--max_length", "0"], "must be at least 1"),
        (&["--warmup_ratio", "1.5"], "must be within [0, 1]"),
        (&["--learning_rate", "-1e-4"], "must be at least 0"),
        (&["--adam_beta2", "1"], "must be within [0, 1)"),
        (
            &["--per_device_train_batch_size", "0"],
            "must be at least 1",
        ),
        (&["--max_steps", "0"], "must be at least 1 (or -1"),
        (
            &["--use_peft", "--lora_dropout", "1.0"],
            "must be within [0, 1)",
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    for (extra, says) in cases {
        let r = train(MODEL, &out, extra);
        assert_eq!(r.code, 2, "{extra:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(extra[extra.len() - 2]),
            "{extra:?}: {}",
            r.stderr
        );
        assert!(r.stderr.contains(says), "{extra:?}: {}", r.stderr);
    }
    assert!(!out.exists());
    let r = sft_eval(&["--checkpoint", MODEL, "--dataset", DATA, "--top-p", "0"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("--top-p") && r.stderr.contains("(0, 1]"),
        "{}",
        r.stderr
    );
    let r = sft_data(&[
        "prepare",
        DATA,
        "--tokenizer",
        MODEL,
        "--max-length",
        "0",
        "-o",
        s(&tmp.path().join("p.parquet")),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--max-length"), "{}", r.stderr);
}

/// `-` reads standard input: the same report as from the file, and no copy left behind.
#[test]
fn a_dash_reads_rows_from_standard_input() {
    let piped = |args: &[&str], input: &[u8]| -> (i32, String, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sft-data"))
            .args(args)
            .current_dir(root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let bytes = std::fs::read(root().join(DATA)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let from_file = tmp.path().join("file.json");
    let from_stdin = tmp.path().join("stdin.json");
    let r = sft_data(&["check", DATA, "--report", s(&from_file), "-q"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (code, _, stderr) = piped(&["check", "-", "--report", s(&from_stdin), "-q"], &bytes);
    assert_eq!(code, 0, "{stderr}");
    let read =
        |p: &Path| -> Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    let (a, b) = (read(&from_file), read(&from_stdin));
    assert_eq!(a["rows"], b["rows"]);
    assert_eq!(a["format"], b["format"]);
    // Converted from a pipe, and bad rows are named as rows of <stdin>.
    let out = tmp.path().join("out.jsonl");
    let (code, stdout, stderr) = piped(
        &["convert", "-", "--to", "messages", "-o", s(&out)],
        b"{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}\n{\"messages\": 3}\n",
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(common::read_jsonl(&out).len(), 1);
    assert!(stdout.contains("<stdin>:2:"), "{stdout}");
    let spools: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".sft-stdin."))
        .filter(|e| {
            // Only copies of finished processes count: a parallel test may hold one.
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(600))
        })
        .collect();
    assert!(spools.is_empty(), "{spools:?}");
}

/// `total_flos` as transformers counts it: 6 x non-embedding parameters x input tokens
/// (with one row a micro-batch there is no padding, so input tokens are the tokens seen).
#[test]
fn total_flos_is_counted_as_transformers_counts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let r = sft_train(&[
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        DATA,
        "--output_dir",
        s(&out),
        "--per_device_train_batch_size",
        "1",
        "--max_steps",
        "3",
        "--max_length",
        "128",
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("trainer_state.json")).unwrap())
            .unwrap();
    // Parameters from the weight file itself: every tensor but the embedding (tied here).
    let bytes = std::fs::read(root().join(MODEL).join("model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let params: u64 = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__" && !k.contains("embed_tokens"))
        .map(|(_, v)| {
            v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .product::<u64>()
        })
        .sum();
    let tokens = state["num_input_tokens_seen"].as_u64().unwrap();
    let expected = 6.0 * params as f64 * tokens as f64;
    assert!(expected > 0.0);
    assert_eq!(state["total_flos"].as_f64().unwrap(), expected);
    let last = state["log_history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["total_flos"].as_f64().unwrap(), expected);
}

//! The evaluation engine as a library, without the binary: a report equal to transformers'
//! held-out loss (tests/fixtures/eval/heldout.json), samples checked, gates as a method of
//! the report, a prepared table scored without prompts, option errors told apart.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sft_eval::evaluate::{evaluate, EvalEvent, EvalOptions, Gates, Sampling};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model() -> PathBuf {
    root().join("data-samples/models/tiny-llama")
}

/// The first `n` rows of the messages sample, as a file of their own.
fn messages(n: usize, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("data-samples/formats/messages.jsonl")).unwrap();
    let out = dir.join("messages.jsonl");
    let lines: Vec<&str> = text.lines().take(n).collect();
    std::fs::write(&out, lines.join("\n") + "\n").unwrap();
    out
}

fn options(dataset: PathBuf, work: &Path) -> EvalOptions {
    let mut o = EvalOptions::new(dataset, work.join("work"));
    o.checkpoints = vec![model()];
    o
}

#[test]
fn the_report_holds_transformers_heldout_loss_and_checked_samples() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(messages(16, dir.path()), dir.path());
    o.sampling = Sampling {
        max_samples: 3,
        max_new_tokens: 6,
        ..Sampling::default()
    };
    let mut events = Vec::new();
    let report = evaluate(&o, &mut |e| {
        events.push(match e {
            EvalEvent::Rows(r) => format!("rows {}", r.rows.len()),
            EvalEvent::Note(n) => format!("note {n}"),
            EvalEvent::Checkpoint { report, .. } => format!("checkpoint {}", report.path),
        })
    })
    .unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events[0].starts_with("rows ") && events[1].starts_with("checkpoint "));

    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/eval/heldout.json")).unwrap(),
    )
    .unwrap();
    let c = &report.checkpoints[0];
    assert!(c.best);
    let h = c.heldout.as_ref().unwrap();
    assert_eq!(
        h.tokens as u64,
        expected["messages"]["tokens"].as_u64().unwrap()
    );
    let theirs = expected["messages"]["loss"].as_f64().unwrap();
    assert!(
        (h.loss - theirs).abs() / theirs <= 1e-4,
        "{} vs {theirs}",
        h.loss
    );
    assert!((h.perplexity - h.loss.exp()).abs() < 1e-9);
    // 16 short rows fit: the asked batch size ran.
    assert_eq!(h.batch_size, 8);
    let g = c.generation.as_ref().unwrap();
    assert_eq!((g.samples, c.samples.len()), (3, 3));
    for s in &c.samples {
        assert!(s.new_tokens <= 6);
        assert!(
            s.prompt.ends_with("<|im_start|>assistant\n"),
            "{}",
            s.prompt
        );
        assert_eq!(s.passed, s.checks.iter().all(|c| c.passed));
    }
    // The held-out rows were prepared into the work folder, with a manifest.
    assert!(o.work_dir.join("heldout.parquet").is_file());
    assert!(o.work_dir.join("heldout.manifest.json").is_file());
}

#[test]
fn gates_are_a_method_of_the_report_and_judge_the_best_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(messages(8, dir.path()), dir.path());
    o.sampling.max_samples = 0;
    let mut report = evaluate(&o, &mut |_| {}).unwrap();
    let loss = report.checkpoints[0].heldout.as_ref().unwrap().loss;
    assert!(report.passed && report.gates.is_empty());
    report.apply_gates(&Gates {
        max_loss: Some(loss + 0.01),
        ..Gates::default()
    });
    assert!(report.passed);
    assert_eq!(report.gates.len(), 1);
    assert_eq!(report.gates[0].value, Some(loss));
    report.apply_gates(&Gates {
        max_loss: Some(loss - 0.01),
        // No samples: a compliance gate has no value and fails.
        min_compliance: Some(0.5),
        max_repetition: None,
    });
    assert!(!report.passed);
    assert_eq!(report.gates.len(), 2);
    assert!(report.gates.iter().all(|g| !g.passed));
    assert_eq!(report.gates[1].value, None);
}

#[test]
fn a_prepared_table_is_scored_as_it_is_and_gives_no_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let data = messages(8, dir.path());
    let first = evaluate(&options(data, dir.path()), &mut |_| {}).unwrap();
    // The table the first run prepared is a prepared table: scored the same, no samples.
    let table = dir.path().join("work/heldout.parquet");
    let mut o = options(table.clone(), dir.path());
    o.work_dir = dir.path().join("other");
    let mut prepared_now = None;
    let second = evaluate(&o, &mut |e| {
        if let EvalEvent::Rows(r) = e {
            prepared_now = Some(r.prepared.is_some());
        }
    })
    .unwrap();
    assert_eq!(prepared_now, Some(false));
    let (a, b) = (
        first.checkpoints[0].heldout.as_ref().unwrap(),
        second.checkpoints[0].heldout.as_ref().unwrap(),
    );
    assert_eq!((a.loss, a.tokens), (b.loss, b.tokens));
    assert!(second.checkpoints[0].generation.is_none());
    assert!(!o.work_dir.exists());
}

#[test]
fn wrong_options_are_usage_errors_and_broken_checkpoints_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let data = messages(4, dir.path());
    let mut o = options(data.clone(), dir.path());
    o.checkpoints.clear();
    let e = evaluate(&o, &mut |_| {}).unwrap_err();
    assert!(
        e.is_usage() && e.to_string().contains("--checkpoint"),
        "{e}"
    );

    let mut o = options(dir.path().join("missing.jsonl"), dir.path());
    o.sampling.max_samples = 0;
    let e = evaluate(&o, &mut |_| {}).unwrap_err();
    assert!(
        e.is_usage() && e.to_string().contains("missing.jsonl"),
        "{e}"
    );

    let mut o = options(data.clone(), dir.path());
    o.chat_template = Some("no-such-template".into());
    assert!(evaluate(&o, &mut |_| {}).unwrap_err().is_usage());

    // A --checkpoint folder without a tokenizer is a wrong command (issue 12: as one
    // without config.json)...
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::copy(model().join("config.json"), broken.join("config.json")).unwrap();
    let mut o = options(data.clone(), dir.path());
    o.checkpoints = vec![broken.clone()];
    let e = evaluate(&o, &mut |_| {}).unwrap_err();
    assert!(
        e.is_usage() && e.to_string().contains("tokenizer.json"),
        "{e}"
    );
    // ...but one whose tokenizer is damaged is the checkpoint's fault, not the command's.
    std::fs::write(broken.join("tokenizer.json"), "{ not a tokenizer").unwrap();
    let mut o = options(data, dir.path());
    o.checkpoints = vec![broken];
    let e = evaluate(&o, &mut |_| {}).unwrap_err();
    assert!(!e.is_usage(), "{e}");
    assert!(e.to_string().contains("hint"), "{e}");
}

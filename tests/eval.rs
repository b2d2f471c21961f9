//! `sft-eval` against transformers/TRL (fixtures by tests/fixtures/eval/make_eval_fixtures.py)
//! and end to end: held-out loss, greedy generation, checks on real outputs, diagnosis of a
//! deliberately overfit run, gates and exit codes.

mod common;

use std::path::Path;

use candle_core::{DType, Device};
use common::{root, sft_eval, sft_train};
use serde_json::Value;
use sft_model::{Batch, BatchRow, CausalLm, Generate, GenerateOptions, Llama};

const MODEL: &str = "data-samples/models/tiny-llama";

fn fixture(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/eval").join(name)).unwrap(),
    )
    .unwrap()
}

/// The first `n` lines of a JSON lines sample, as a file of their own.
fn head(rel: &str, n: usize, dir: &Path) -> String {
    let text = std::fs::read_to_string(root().join(rel)).unwrap();
    let out = dir.join(Path::new(rel).file_name().unwrap());
    let lines: Vec<&str> = text.lines().take(n).collect();
    std::fs::write(&out, lines.join("\n") + "\n").unwrap();
    out.to_str().unwrap().to_string()
}

fn report(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn heldout_loss_equals_transformers() {
    let f = fixture("heldout.json");
    let tmp = tempfile::tempdir().unwrap();
    for (key, sample) in [
        ("messages", "data-samples/formats/messages.jsonl"),
        (
            "prompt_completion",
            "data-samples/formats/prompt_completion.jsonl",
        ),
    ] {
        let data = head(sample, 16, tmp.path());
        let out = tmp.path().join(format!("{key}.json"));
        let r = sft_eval(&[
            "--checkpoint",
            MODEL,
            "--dataset",
            &data,
            "--max-samples",
            "0",
            "--report",
            out.to_str().unwrap(),
            "-q",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let h = &report(&out)["checkpoints"][0]["heldout"];
        let expected = &f[key];
        assert_eq!(h["tokens"], expected["tokens"], "{key}: scored tokens");
        let (ours, theirs) = (
            h["loss"].as_f64().unwrap(),
            expected["loss"].as_f64().unwrap(),
        );
        assert!(
            (ours - theirs).abs() / theirs <= 1e-4,
            "{key}: loss {ours} vs {theirs}"
        );
        let (a, b) = (
            h["mean_token_accuracy"].as_f64().unwrap(),
            expected["mean_token_accuracy"].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-9, "{key}: accuracy {a} vs {b}");
    }
}

#[test]
fn greedy_generation_equals_transformers() {
    let f = fixture("generate.json");
    let model = Llama::load(&root().join(MODEL), DType::F32, &Device::Cpu).unwrap();
    let tokenizer = sft_tokenize::SftTokenizer::from_path(&root().join(MODEL)).unwrap();
    let source = tokenizer.template.clone().unwrap();
    let template =
        sft_template::ChatTemplate::new(&source.name, &source.source, tokenizer.special.clone())
            .unwrap();
    let rows: Vec<Value> =
        std::fs::read_to_string(root().join("data-samples/formats/messages.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let ids = |v: &Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let cases = f["cases"].as_array().unwrap();
    let mut prompts = Vec::new();
    for case in cases {
        // The prompt as sft-eval renders it (add_generation_prompt=True) and tokenizes it.
        let row = &rows[case["row"].as_u64().unwrap() as usize];
        let p = sft_eval::prompts::prompt_of(row, Some(&template), &Default::default())
            .unwrap()
            .unwrap();
        assert_eq!(p.text, case["prompt_text"].as_str().unwrap());
        let prompt_ids = tokenizer.encode(&p.text, false).unwrap();
        assert_eq!(prompt_ids, ids(&case["prompt_ids"]));
        prompts.push(prompt_ids);
    }
    let opts = GenerateOptions {
        max_new_tokens: 24,
        stop_ids: vec![2],
        pad_id: 2,
        ..Default::default()
    };
    let outs = model.generate(&prompts, &opts).unwrap();
    for ((case, out), prompt) in cases.iter().zip(&outs).zip(&prompts) {
        assert_eq!(out.ids, ids(&case["new_ids"]), "row {}", case["row"]);
        // The runner-up tokens and logits of every step, not only the winner.
        let mut seq = prompt.clone();
        seq.extend_from_slice(&out.ids[..out.ids.len() - 1]);
        let n = seq.len();
        let batch = Batch::new(
            &[BatchRow::single(seq, vec![-100; n])],
            2,
            model.config.vocab_size,
            &Device::Cpu,
        )
        .unwrap();
        let logits = model.logits(&batch).unwrap().to_vec3::<f32>().unwrap();
        for (k, (top_ids, top_logits)) in case["top5_ids"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["top5_logits"].as_array().unwrap())
            .enumerate()
        {
            let row = &logits[0][prompt.len() - 1 + k];
            for (id, logit) in ids(top_ids).iter().zip(top_logits.as_array().unwrap()) {
                let d = (row[*id as usize] - logit.as_f64().unwrap() as f32).abs();
                assert!(
                    d <= 1e-4,
                    "row {} step {k}: logit of {id} differs by {d}",
                    case["row"]
                );
            }
        }
    }
}

#[test]
fn an_overfit_run_is_diagnosed_and_gates_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let train = head("data-samples/formats/messages.jsonl", 8, tmp.path());
    // Eight training rows, many epochs at a high rate, evaluated on other rows.
    let r = sft_train(&[
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        &train,
        "--output_dir",
        run.to_str().unwrap(),
        "--eval_dataset",
        "data-samples/formats/prompt_completion.jsonl",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "3",
        "--save_steps",
        "6",
        "--logging_steps",
        "1",
        "--max_steps",
        "24",
        "--per_device_train_batch_size",
        "4",
        "--learning_rate",
        "2e-2",
        "--lr_scheduler_type",
        "constant",
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = tmp.path().join("eval.json");
    let md = tmp.path().join("eval.md");
    let plots = tmp.path().join("plots");
    let r = sft_eval(&[
        "--run",
        run.to_str().unwrap(),
        "--dataset",
        "data-samples/formats/messages.jsonl",
        "--max-samples",
        "4",
        "--max-new-tokens",
        "16",
        "--report",
        out.to_str().unwrap(),
        "--markdown",
        md.to_str().unwrap(),
        "--plots",
        plots.to_str().unwrap(),
        "--max-loss",
        "0.5",
        "-q",
    ]);
    assert_eq!(r.code, 1, "the max-loss gate must fail: {}", r.stderr);
    let rep = report(&out);
    let kinds: Vec<&str> = rep["diagnosis"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"overfitting"),
        "{kinds:?}: {}",
        rep["diagnosis"]
    );
    // Every checkpoint and the final model were scored; exactly one is best.
    let cps = rep["checkpoints"].as_array().unwrap();
    assert_eq!(cps.len(), 5);
    assert_eq!(cps.iter().filter(|c| c["best"] == true).count(), 1);
    assert_eq!(rep["gates"][0]["passed"], false);
    // Real outputs of the tiny model: checks ran and are reported per sample.
    let sample = &cps[0]["samples"][0];
    assert!(sample["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "stopped"));
    assert!(sample["repetition"]["distinct"].is_array());
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.contains("**best**") && text.contains("Overfitting") && text.contains("FAIL"));
    for f in ["loss.svg", "heldout_loss.svg", "samples.svg"] {
        assert!(plots.join(f).is_file(), "{f}");
    }
}

#[test]
fn untrained_model_outputs_are_flagged() {
    // The untrained tiny model answers with a run of newlines: not stopped, looping.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("eval.json");
    let r = sft_eval(&[
        "--checkpoint",
        MODEL,
        "--dataset",
        "data-samples/formats/messages.jsonl",
        "--max-samples",
        "2",
        "--max-new-tokens",
        "12",
        "--report",
        out.to_str().unwrap(),
        "--min-compliance",
        "0.5",
        "--max-repetition",
        "0.5",
        "-q",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let rep = report(&out);
    let s = &rep["checkpoints"][0]["samples"][0];
    assert_eq!(s["stopped_by"], "max_new_tokens");
    assert_eq!(s["repetitive"], true);
    assert!(
        s["repetition"]["looping"].is_object(),
        "{}",
        s["repetition"]
    );
    let gates = rep["gates"].as_array().unwrap();
    assert!(gates.iter().all(|g| g["passed"] == false), "{gates:?}");
}

#[test]
fn usage_errors() {
    let r = sft_eval(&["--dataset", "data-samples/formats/messages.jsonl"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--checkpoint"), "{}", r.stderr);
    let r = sft_eval(&[
        "--checkpoint",
        MODEL,
        "--dataset",
        "data-samples/formats/messages.jsonl",
        "--expect-regex",
        "(unclosed",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--expect-regex"), "{}", r.stderr);
}

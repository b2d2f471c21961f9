//! LoRA end to end on the tiny model: `sft-train --use_peft` writes PEFT adapter folders,
//! resumes exactly, keeps the base frozen; `--merge_adapter` writes a full model in the
//! base's dtype; `sft-eval` scores adapter folders (ours and PEFT's) on their base.

mod common;

use std::path::Path;

use common::{copy_dir, root, sft_eval, sft_train, Run};
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
        "--use_peft",
        "--per_device_train_batch_size",
        "2",
        "--learning_rate",
        "5e-3",
        "--logging_steps",
        "1",
        "--max_length",
        "128",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    sft_train(&args)
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn losses(dir: &Path) -> Vec<(u64, f64)> {
    json(&dir.join("trainer_state.json"))["log_history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["step"].as_u64()?, e.get("loss")?.as_f64()?)))
        .collect()
}

#[test]
fn a_lora_run_writes_peft_adapters_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    let steps = [
        "--max_steps",
        "6",
        "--save_steps",
        "3",
        "--gradient_accumulation_steps",
        "2",
    ];
    let r = train(&full, &steps);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The final output and each checkpoint hold the adapter as PEFT writes it, the
    // tokenizer, trainer_state.json, and the optimizer state of the adapters only.
    for dir in [
        full.clone(),
        full.join("checkpoint-3"),
        full.join("checkpoint-6"),
    ] {
        for f in [
            "adapter_config.json",
            "adapter_model.safetensors",
            "tokenizer.json",
            "trainer_state.json",
        ] {
            assert!(dir.join(f).is_file(), "{} has no {f}", dir.display());
        }
        assert!(
            !dir.join("model.safetensors").exists(),
            "{}: full weights written",
            dir.display()
        );
    }
    let config = json(&full.join("adapter_config.json"));
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 16);
    assert_eq!(config["lora_alpha"], 32);
    assert_eq!(config["lora_dropout"], 0.05);
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["q_proj", "v_proj"])
    );
    let base = Path::new(config["base_model_name_or_path"].as_str().unwrap());
    assert_eq!(base, root().join(MODEL).canonicalize().unwrap());
    let adapter = candle_core::safetensors::load(
        full.join("adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let mut keys: Vec<&String> = adapter.keys().collect();
    keys.sort();
    assert_eq!(keys.len(), 8, "{keys:?}");
    assert_eq!(
        keys[0],
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    );
    let moments = candle_core::safetensors::load(
        full.join("checkpoint-3/optimizer.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert_eq!(
        moments.len(),
        16,
        "two moments per adapter matrix, none for the base"
    );
    // Resume from step 3 equals the uninterrupted run (dropout included).
    let part = tmp.path().join("part");
    copy_dir(&full.join("checkpoint-3"), &part.join("checkpoint-3"));
    let mut resume = steps.to_vec();
    resume.push("--resume_from_checkpoint");
    let r = train(&part, &resume);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(losses(&part), losses(&full));
    let a = std::fs::read(full.join("adapter_model.safetensors")).unwrap();
    let b = std::fs::read(part.join("adapter_model.safetensors")).unwrap();
    assert!(a == b, "the resumed run ended with other adapters");
    // The loss went down: the adapters learn.
    let l = losses(&full);
    assert!(l.last().unwrap().1 < l[0].1, "{l:?}");
    // Resuming a LoRA checkpoint as a full fine-tune is refused with the reason.
    let r = sft_train(&[
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        DATA,
        "--output_dir",
        part.to_str().unwrap(),
        "--max_steps",
        "6",
        "--resume_from_checkpoint",
        "--quiet",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("holds a LoRA adapter"), "{}", r.stderr);
}

#[test]
fn merge_writes_the_full_model_in_the_base_dtype_and_eval_scores_adapters() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let r = train(
        &out,
        &[
            "--max_steps",
            "3",
            "--save_steps",
            "3",
            "--lora_target_modules",
            "all-linear",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let merged = tmp.path().join("merged");
    let r = sft_train(&[
        "--merge_adapter",
        out.to_str().unwrap(),
        "--output_dir",
        merged.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let config = json(&merged.join("config.json"));
    assert_eq!(config["dtype"], "bfloat16");
    assert!(merged.join("tokenizer.json").is_file());
    let weights =
        candle_core::safetensors::load(merged.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    assert!(weights
        .values()
        .all(|t| t.dtype() == candle_core::DType::BF16));
    // Merging again into the same folder is refused: nothing is overwritten.
    let r = sft_train(&[
        "--merge_adapter",
        out.to_str().unwrap(),
        "--output_dir",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("not an empty folder"), "{}", r.stderr);
    // sft-eval scores the adapter on its base and the merged model alike (bf16 rounding of
    // the merge apart).
    let score = |dir: &Path| -> f64 {
        let report = tmp.path().join(format!(
            "{}.json",
            dir.file_name().unwrap().to_string_lossy()
        ));
        let r = sft_eval(&[
            "--checkpoint",
            dir.to_str().unwrap(),
            "--dataset",
            DATA,
            "--max-length",
            "128",
            "--max-samples",
            "0",
            "--report",
            report.to_str().unwrap(),
            "--quiet",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        json(&report)["checkpoints"][0]["heldout"]["loss"]
            .as_f64()
            .unwrap()
    };
    let adapter_loss = score(&out);
    let merged_loss = score(&merged);
    assert!(
        (adapter_loss - merged_loss).abs() < 2e-2,
        "{adapter_loss} vs {merged_loss}"
    );
    let base_loss = score(&root().join(MODEL));
    assert!(
        adapter_loss < base_loss,
        "{adapter_loss} vs base {base_loss}"
    );
    // --run scores every checkpoint of a LoRA run and its final adapter.
    let report = tmp.path().join("run-report.json");
    let r = sft_eval(&[
        "--run",
        out.to_str().unwrap(),
        "--dataset",
        DATA,
        "--max-length",
        "128",
        "--max-samples",
        "0",
        "--report",
        report.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&report)["checkpoints"].as_array().unwrap().len(), 2);
}

#[test]
fn eval_reads_a_python_peft_adapter_and_finds_its_base() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("r.json");
    // The fixture's base_model_name_or_path is relative to the repository root.
    let adapter = root().join("tests/fixtures/lora/peft_adapter");
    let args = |base: Option<&str>| {
        let mut a = vec![
            "--checkpoint".to_string(),
            adapter.to_str().unwrap().to_string(),
            "--dataset".into(),
            root().join(DATA).to_str().unwrap().to_string(),
            "--max-length".into(),
            "128".into(),
            "--max-samples".into(),
            "0".into(),
            "--report".into(),
            report.to_str().unwrap().to_string(),
            "--quiet".into(),
        ];
        if let Some(b) = base {
            a.push("--base-model".into());
            a.push(b.into());
        }
        a
    };
    let run = |a: Vec<String>, cwd: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sft-eval"))
            .args(&a)
            .current_dir(cwd)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run(args(None), &root());
    assert_eq!(code, 0, "{err}");
    assert!(
        json(&report)["checkpoints"][0]["heldout"]["loss"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    // From elsewhere the relative base is not found: the error says how to give it.
    let (code, err) = run(args(None), tmp.path());
    assert_ne!(code, 0);
    assert!(
        err.contains("--base_model") || err.contains("--base-model"),
        "{err}"
    );
    let (code, err) = run(args(Some(root().join(MODEL).to_str().unwrap())), tmp.path());
    assert_eq!(code, 0, "{err}");
}

#[test]
fn lora_flags_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x");
    let cases: &[(&[&str], &str)] = &[
        (&["--lora_target_modules", "lm_head"], "output head"),
        (&["--lora_target_modules", "qproj"], "no such module"),
        (&["--lora_r", "0"], "'--lora_r <N>': must be at least 1"),
        (&["--lora_dropout", "1"], "--lora_dropout"),
        (&["--lora_task_type", "SEQ_CLS"], "only CAUSAL_LM"),
        (&["--use_dora"], "DoRA"),
    ];
    for (extra, expected) in cases {
        let r = train(&out, extra);
        assert_eq!(r.code, 2, "{extra:?}: {}", r.stderr);
        assert!(r.stderr.contains(expected), "{extra:?}: {}", r.stderr);
    }
    // A LoRA flag without --use_peft would be ignored: refused instead.
    let r = sft_train(&[
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        DATA,
        "--output_dir",
        out.to_str().unwrap(),
        "--lora_r",
        "8",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("add --use_peft"), "{}", r.stderr);
    // The memory plan of a LoRA run counts the frozen base as stored and no base gradients.
    let r = train(&out, &["--dry_run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("memory plan (LoRA)"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("frozen base weights (as stored, 2 bytes each)"),
        "{}",
        r.stderr
    );
    assert!(!out.exists(), "a dry run writes nothing");
}

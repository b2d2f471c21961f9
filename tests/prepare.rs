//! `sft-data prepare` against TRL: every case of tests/fixtures/trl (made by
//! make_trl_fixtures.py there with TRL 1.16 and the SmolLM2 tokenizer) gives the same
//! input_ids and labels, row for row, and the same packed rows.

mod common;

use std::path::Path;

use common::{read_jsonl, root, sft_data};
use serde_json::Value;

const TOKENIZER: &str = "data-samples/models/smollm2-135m-instruct-tokenizer";

fn cases() -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(root().join("tests/fixtures/trl/cases.json")).unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    all["cases"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn ints(v: &Value) -> Vec<i32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap() as i32)
        .collect()
}

/// Runs prepare as the case's TRL config says; returns the columns of our table.
fn prepare_like(name: &str, case: &Value, dir: &Path) -> Vec<sft_io::tokens::TokenColumn> {
    let config = &case["config"];
    let mut input = root().join(case["input"].as_str().unwrap());
    if let Some(kept) = case.get("filter_kept_file_rows").and_then(Value::as_array) {
        let rows = read_jsonl(&input);
        let text: String = kept
            .iter()
            .map(|i| rows[i.as_u64().unwrap() as usize].to_string() + "\n")
            .collect();
        input = dir.join(format!("{name}.input.jsonl"));
        std::fs::write(&input, text).unwrap();
    }
    let out = dir.join(format!("{name}.parquet"));
    let max_length = config["max_length"].to_string();
    let mut args = vec![
        "prepare".to_string(),
        input.to_str().unwrap().to_string(),
        "--tokenizer".into(),
        TOKENIZER.into(),
        "--max-length".into(),
        max_length,
        "-o".into(),
        out.to_str().unwrap().to_string(),
    ];
    if config["packing"] == true {
        args.extend([
            "--packing".into(),
            config["packing_strategy"].as_str().unwrap().to_string(),
        ]);
    }
    if let Some(b) = config["completion_only_loss"].as_bool() {
        args.extend(["--completion-only-loss".into(), b.to_string()]);
    }
    if config["assistant_only_loss"] == true {
        args.push("--assistant-only-loss".into());
        let template = case["chat_template"].as_str().unwrap();
        args.extend(["--chat-template".into(), template.to_string()]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = sft_data(&refs);
    assert!(out.exists(), "{name}: {}{}", run.stdout, run.stderr);
    sft_io::tokens::read_token_table(&out).unwrap()
}

fn column<'a>(table: &'a [sft_io::tokens::TokenColumn], name: &str) -> Option<&'a Vec<Vec<i32>>> {
    table.iter().find(|(n, _)| n == name).map(|(_, rows)| rows)
}

#[test]
fn every_trl_case_matches() {
    let dir = tempfile::tempdir().unwrap();
    let mut compared = 0;
    for (name, case) in cases() {
        let Some(output) = case.get("output").and_then(Value::as_str) else {
            continue; // TRL raised on this case; its error is recorded in cases.json.
        };
        let expected = read_jsonl(&root().join(output));
        let table = prepare_like(&name, &case, dir.path());
        let ids = column(&table, "input_ids").unwrap();
        let labels = column(&table, "labels").unwrap();
        assert_eq!(ids.len(), expected.len(), "{name}: rows");
        assert_eq!(expected.len() as u64, case["rows_out"].as_u64().unwrap());
        for (i, row) in expected.iter().enumerate() {
            assert_eq!(
                ids[i],
                ints(&row["columns"]["input_ids"]),
                "{name} row {i}: input_ids"
            );
            // Labels as TRL's collator gives them to the model (for packed rows: -100 where
            // a document starts).
            assert_eq!(
                labels[i],
                ints(&row["collated"]["labels"]),
                "{name} row {i}: labels"
            );
            if let Some(lengths) = row["columns"].get("seq_lengths") {
                assert_eq!(
                    column(&table, "seq_lengths").unwrap()[i],
                    ints(lengths),
                    "{name} row {i}: seq_lengths"
                );
            }
        }
        compared += 1;
    }
    assert_eq!(compared, 16, "every case with a TRL output was compared");
}

fn run_prepare(
    input: &str,
    extra: &[&str],
    dir: &Path,
) -> (
    common::Run,
    Vec<sft_io::tokens::TokenColumn>,
    std::path::PathBuf,
) {
    let out = dir.join("out.parquet");
    let mut args = vec![
        "prepare",
        input,
        "--tokenizer",
        TOKENIZER,
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let run = sft_data(&args);
    let table = if out.exists() {
        sft_io::tokens::read_token_table(&out).unwrap()
    } else {
        Vec::new()
    };
    (run, table, out)
}

#[test]
fn assistant_only_loss_works_with_templates_that_have_no_generation_blocks() {
    // TRL refuses SmolLM2's stock template for assistant-only loss; the prefix method needs
    // no markers and gives exactly the labels TRL gives with a marked-up copy of it.
    let dir = tempfile::tempdir().unwrap();
    let (run, table, _) = run_prepare(
        "data-samples/formats/messages.jsonl",
        &["--assistant-only-loss"],
        dir.path(),
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let expected = read_jsonl(&root().join("tests/fixtures/trl/messages_assistant_only.jsonl"));
    let labels = column(&table, "labels").unwrap();
    assert_eq!(labels.len(), expected.len());
    for (i, row) in expected.iter().enumerate() {
        assert_eq!(labels[i], ints(&row["collated"]["labels"]), "row {i}");
    }
}

#[test]
fn packing_reports_efficiency_and_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let (run, table, out) = run_prepare(
        "data-samples/formats/messages.jsonl",
        &["--packing", "bfd", "--max-length", "256"],
        dir.path(),
    );
    assert_eq!(run.code, 0);
    assert!(
        run.stdout.contains("packing bfd: 14 rows (lower bound 13)"),
        "{}",
        run.stdout
    );
    let lengths = column(&table, "seq_lengths").unwrap();
    assert_eq!(
        lengths.iter().map(|l| l.len()).sum::<usize>(),
        40,
        "every example is in one row"
    );
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(out.with_file_name("out.manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["packing"], "bfd");
    assert_eq!(manifest["max_length"], 256);
    assert_eq!(manifest["tokenizer"]["vocab_size"], 49152);
    assert!(manifest["tokenizer"]["fingerprint"].as_str().unwrap().len() == 16);
    assert_eq!(
        manifest["chat_template"]["name"]
            .as_str()
            .map(|n| n.ends_with("chat_template.jinja")),
        Some(true)
    );
    assert_eq!(manifest["summary"]["examples"], 40);
    assert_eq!(manifest["summary"]["packing"]["rows"], 14);
}

#[test]
fn checks_that_protect_training() {
    let dir = tempfile::tempdir().unwrap();
    // SmolLM2 pads with its EOS.
    let (run, _, _) = run_prepare("data-samples/formats/text.jsonl", &[], dir.path());
    assert!(run.stdout.contains("warning pad_is_eos"), "{}", run.stdout);
    // Cut every example before its end: EOS is never trained, and most rows are truncated.
    let (run, _, _) = run_prepare(
        "data-samples/formats/text.jsonl",
        &["--max-length", "16"],
        dir.path(),
    );
    assert!(
        run.stdout
            .contains("warning stop_token_never_trained: no example trains on <|im_end|>"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("warning many_truncated: 5 of 5 examples"),
        "{}",
        run.stdout
    );
    let strict = sft_data(&[
        "prepare",
        "data-samples/formats/text.jsonl",
        "--tokenizer",
        TOKENIZER,
        "--strict",
        "-o",
        dir.path().join("s.parquet").to_str().unwrap(),
    ]);
    assert_eq!(strict.code, 1, "--strict fails on warnings");
}

#[test]
fn a_doubled_bos_is_found() {
    // A word-level tokenizer whose post-processor adds <s>, and text that starts with <s>.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    std::fs::create_dir(&model).unwrap();
    let tokenizer = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [
            {"id": 0, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 1, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
        ],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}}},
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"<s>": 0, "</s>": 1, "hello": 2, "world": 3, "[UNK]": 4}, "unk_token": "[UNK]"}
    });
    std::fs::write(model.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    std::fs::write(
        model.join("tokenizer_config.json"),
        r#"{"bos_token": "<s>", "eos_token": "</s>"}"#,
    )
    .unwrap();
    let input = dir.path().join("text.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"<s> hello world\"}\n{\"text\": \"hello\"}\n",
    )
    .unwrap();
    let out = dir.path().join("out.parquet");
    let run = sft_data(&[
        "prepare",
        input.to_str().unwrap(),
        "--tokenizer",
        model.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("warning double_bos: 1 examples start with <s> twice"),
        "{}",
        run.stdout
    );
    let ids = sft_io::tokens::read_token_table(&out).unwrap();
    assert_eq!(column(&ids, "input_ids").unwrap()[0], vec![0, 0, 2, 3, 1]);
    // check --tokenizer says the same, with the row.
    let check = sft_data(&[
        "check",
        input.to_str().unwrap(),
        "--tokenizer",
        model.to_str().unwrap(),
        "--color",
        "never",
    ]);
    assert!(check.stdout.contains("double_bos  1"), "{}", check.stdout);
    assert!(
        check
            .stdout
            .contains("text.jsonl:1: the example starts with <s> twice"),
        "{}",
        check.stdout
    );
    assert_eq!(
        column(&ids, "input_ids").unwrap()[1],
        vec![0, 2, 1],
        "EOS appended, BOS from the tokenizer"
    );
}

#[test]
fn nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    // Broken rows and shapes that need conversion are rejected with their reason; a
    // conversation with no chat template is rejected too.
    let (run, table, _) = run_prepare("data-samples/broken/broken.jsonl", &[], dir.path());
    let written = column(&table, "input_ids").unwrap().len();
    let rejects = read_jsonl(&dir.path().join("out.rejects.jsonl"));
    assert_eq!(written + rejects.len(), 35, "{}", run.stdout);
    let codes: Vec<&str> = rejects
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"invalid_json"));
    assert!(codes.contains(&"needs_conversion"));
    assert!(codes.contains(&"unrecognized_row"));
    let tokenizer_json = dir.path().join("tokenizer.json");
    std::fs::copy(
        root().join(TOKENIZER).join("tokenizer.json"),
        &tokenizer_json,
    )
    .unwrap();
    let out = dir.path().join("m.parquet");
    let run = sft_data(&[
        "prepare",
        "data-samples/formats/messages.jsonl",
        "--tokenizer",
        tokenizer_json.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "no example: {}", run.stdout);
    let rejects = read_jsonl(&dir.path().join("m.rejects.jsonl"));
    assert_eq!(rejects.len(), 40);
    assert_eq!(rejects[0]["code"], "no_chat_template");
    let written = dir.path().join("out.parquet");
    let same = sft_data(&[
        "prepare",
        written.to_str().unwrap(),
        "--tokenizer",
        TOKENIZER,
        "-o",
        written.to_str().unwrap(),
    ]);
    assert_eq!(same.code, 2, "the output is also an input: {}", same.stderr);
    assert!(same.stderr.contains("is also an input"), "{}", same.stderr);
    let bad = sft_data(&[
        "prepare",
        "data-samples/formats/messages.jsonl",
        "--tokenizer",
        "no/such/model",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("no tokenizer.json"), "{}", bad.stderr);
}

#[test]
fn check_with_a_tokenizer_reports_token_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let run = sft_data(&[
        "check",
        "data-samples/formats/messages.jsonl",
        "--tokenizer",
        TOKENIZER,
        "--max-length",
        "64",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("max length 64: 26 rows would be truncated"),
        "{}",
        run.stdout
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let t = &r["tokens"];
    assert_eq!(t["rows"], 40);
    // The same totals prepare finds (and TRL: messages_default has 3,125 tokens).
    let expected = read_jsonl(&root().join("tests/fixtures/trl/messages_default.jsonl"));
    let trl_tokens: usize = expected
        .iter()
        .map(|r| r["columns"]["input_ids"].as_array().unwrap().len())
        .sum();
    assert_eq!(t["tokens"].as_u64().unwrap() as usize, trl_tokens);
    let trl_trained_at_64: usize =
        read_jsonl(&root().join("tests/fixtures/trl/messages_trunc64.jsonl"))
            .iter()
            .map(|r| {
                r["collated"]["labels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|l| l.as_i64() != Some(-100))
                    .count()
            })
            .sum();
    assert_eq!(
        t["trained_tokens"].as_u64().unwrap() as usize,
        trl_trained_at_64
    );
    assert_eq!(t["truncated_rows"], 26);
    assert!(t["packing_efficiency"].as_f64().unwrap() > 0.9);
    // Conversations with a bare tokenizer.json and no template: one clear error.
    let run = sft_data(&[
        "check",
        "data-samples/formats/messages.jsonl",
        "--tokenizer",
        &format!("{TOKENIZER}/tokenizer.json"),
    ]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("no_chat_template  1"), "{}", run.stdout);
    let orphan = sft_data(&[
        "check",
        "data-samples/formats/messages.jsonl",
        "--max-length",
        "64",
    ]);
    assert_eq!(orphan.code, 2, "--max-length needs --tokenizer");
}

#[test]
fn show_marks_the_trained_tokens() {
    let run = sft_data(&[
        "show",
        "data-samples/formats/conversational_prompt_completion.jsonl",
        "--tokenizer",
        TOKENIZER,
        "--rows",
        "0",
        "--color",
        "never",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("conversational_prompt_completion.jsonl:1 · conversational-prompt-completion · 50 tokens · 16 trained"), "{}", run.stdout);
    assert!(run.stdout.contains("<|im_start|>assistant\n⟦Researchers from Large Model Systems Organization (LMSYS) created me.<|im_end|>\n⟧"), "{}", run.stdout);
    let boundaries = sft_data(&[
        "show",
        "data-samples/formats/prompt_completion.jsonl",
        "--tokenizer",
        TOKENIZER,
        "--rows",
        "3",
        "--color",
        "never",
        "--boundaries",
    ]);
    assert!(
        boundaries.stdout.contains("|⟦.\"|Ch|ill|ax|"),
        "the merged boundary token is trained, as in TRL: {}",
        boundaries.stdout
    );

    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("show.html");
    let run = sft_data(&[
        "show",
        "data-samples/formats/messages_tools.jsonl",
        "--tokenizer",
        TOKENIZER,
        "--html",
        page.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert_eq!(
        html.matches("<div class=\"row\">").count(),
        20,
        "every row of the file, up to 200"
    );
    assert!(
        html.contains("<span class=\"t s y\">&lt;|im_end|&gt;</span>"),
        "special tokens escaped and marked"
    );
    assert!(
        html.contains("class=\"err\""),
        "rows the template rejects are shown with the reason"
    );
    assert_eq!(run.code, 1, "some rows cannot be shown");
    let bad = sft_data(&[
        "show",
        "data-samples/formats/text.jsonl",
        "--tokenizer",
        TOKENIZER,
        "--rows",
        "5..2",
    ]);
    assert_eq!(bad.code, 2);
}

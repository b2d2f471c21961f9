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

//! `sft-data convert` end to end on the real published files: every converter, nothing
//! lost, round trips that check clean, Parquet that reads back identically.

mod common;

use common::{read_jsonl, read_rows, sample, sft_data};
use serde_json::{json, Value};

struct Converted {
    dir: tempfile::TempDir,
    out: std::path::PathBuf,
    stdout: String,
    code: i32,
}

fn convert(input: &str, args: &[&str], out_name: &str) -> Converted {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(out_name);
    let out_str = out.to_str().unwrap().to_string();
    let mut all = vec!["convert", input];
    all.extend_from_slice(args);
    all.extend(["-o", &out_str]);
    let run = sft_data(&all);
    Converted {
        dir,
        out,
        stdout: run.stdout + &run.stderr,
        code: run.code,
    }
}

fn rejects_of(c: &Converted) -> Vec<Value> {
    let stem = c.out.file_stem().unwrap().to_str().unwrap();
    let path = c.dir.path().join(format!("{stem}.rejects.jsonl"));
    if path.exists() {
        read_jsonl(&path)
    } else {
        Vec::new()
    }
}

/// The converted file checks without errors.
fn assert_checks_clean(path: &std::path::Path) {
    let run = sft_data(&["check", path.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}:\n{}", path.display(), run.stdout);
}

#[test]
fn alpaca_to_each_format() {
    let input = "data-samples/real/alpaca_en_demo.json";
    let m = convert(input, &["--to", "messages"], "m.jsonl");
    assert_eq!(m.code, 0, "{}", m.stdout);
    let rows = read_jsonl(&m.out);
    assert_eq!(rows.len(), 999);
    assert_eq!(rows[0]["messages"][0]["role"], "user");
    assert_eq!(rows[0]["messages"][1]["role"], "assistant");
    assert!(m.stdout.contains("converted 999 rows"), "{}", m.stdout);
    assert!(m.stdout.contains("999 written as messages"), "{}", m.stdout);
    assert!(m.stdout.contains("0 rejected"));
    assert_checks_clean(&m.out);

    let pc = convert(
        input,
        &["--from", "alpaca", "--to", "prompt-completion"],
        "pc.jsonl",
    );
    let rows = read_jsonl(&pc.out);
    assert_eq!(rows.len(), 999);
    let source: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(sample(input)).unwrap()).unwrap();
    // An Alpaca row whose question is in `input` keeps both parts in the prompt.
    let (i, with_input) = source
        .iter()
        .enumerate()
        .find(|(_, r)| !r["input"].as_str().unwrap().is_empty())
        .unwrap();
    let want = format!(
        "{}\n\n{}",
        with_input["instruction"].as_str().unwrap().trim_end(),
        with_input["input"].as_str().unwrap().trim()
    );
    assert_eq!(rows[i]["prompt"], want.as_str());
    assert_eq!(rows[i]["completion"], with_input["output"]);
    assert_checks_clean(&pc.out);

    let text = convert(input, &["--to", "text"], "t.jsonl");
    assert_eq!(
        text.code, 1,
        "nothing converts: a conversation needs a template to become text"
    );
    assert_eq!(rejects_of(&text).len(), 999);
}

#[test]
fn sharegpt_to_messages_and_conversational_prompt_completion() {
    let input = "data-samples/real/sharegpt_fastchat_dummy_conversation.json";
    let m = convert(input, &["--to", "messages"], "m.jsonl");
    let rows = read_jsonl(&m.out);
    assert_eq!(rows.len(), 500);
    assert_eq!(rows[0]["id"], "identity_0", "unused fields are kept");
    assert_eq!(
        rows[0]["messages"][0],
        json!({"role": "user", "content": "Who are you?"})
    );
    assert_checks_clean(&m.out);
    let cpc = convert(
        input,
        &["--to", "conversational-prompt-completion"],
        "c.jsonl",
    );
    let rows = read_jsonl(&cpc.out);
    assert_eq!(rows.len(), 500);
    // Split after the last user turn: the completion is the final reply.
    assert_eq!(rows[0]["prompt"].as_array().unwrap().len(), 3);
    assert_eq!(
        rows[0]["completion"],
        json!([{"role": "assistant", "content": "You too!"}])
    );
    assert_checks_clean(&cpc.out);
}

#[test]
fn glaive_tool_calls_become_openai_tool_calls() {
    let input = "data-samples/real/glaive_toolcall_en_demo.json";
    let m = convert(
        input,
        &["--from", "sharegpt", "--to", "messages"],
        "m.jsonl",
    );
    assert_eq!(m.code, 0, "{}", m.stdout);
    let rows = read_jsonl(&m.out);
    assert_eq!(rows.len(), 300);
    let first = &rows[0];
    let call = &first["messages"][3];
    assert_eq!(call["role"], "assistant");
    assert_eq!(call["tool_calls"][0]["function"]["name"], "search_recipes");
    assert_eq!(
        call["tool_calls"][0]["function"]["arguments"],
        json!({"ingredients": ["chicken", "bell peppers", "rice"]})
    );
    assert_eq!(first["messages"][4]["role"], "tool");
    assert!(
        first["tools"].is_array(),
        "the tools JSON string becomes the list"
    );
    assert_checks_clean(&m.out);
}

#[test]
fn openai_chat_nothing_lost() {
    let input = "data-samples/real/openai_toy_chat_fine_tuning.jsonl";
    let pc = convert(input, &["--to", "prompt-completion"], "pc.jsonl");
    assert_eq!(pc.code, 0);
    let written = read_jsonl(&pc.out);
    let rejects = rejects_of(&pc);
    assert_eq!(
        written.len() + rejects.len(),
        5,
        "rows in = written + rejected"
    );
    assert_eq!(rejects.len(), 2);
    for r in &rejects {
        assert_eq!(r["file"], input);
        assert!(r["line"].as_u64().unwrap() >= 1);
        assert_eq!(r["code"], "cannot_flatten");
        assert!(
            r["record"]["messages"].is_array(),
            "the original row is kept: {r}"
        );
    }
    assert!(pc.stdout.contains("2 rejected"), "{}", pc.stdout);
    assert!(pc.stdout.contains("rejects: "), "{}", pc.stdout);
    // The system prompt has no place in prompt-completion: it is kept as a column.
    assert_eq!(
        written[0]["system"].as_str().map(|s| !s.is_empty()),
        Some(true)
    );

    let cpc = convert(
        input,
        &["--to", "conversational-prompt-completion"],
        "c.jsonl",
    );
    let rejects = rejects_of(&cpc);
    assert_eq!(read_jsonl(&cpc.out).len() + rejects.len(), 5);
    assert_eq!(
        rejects[0]["code"], "no_user_turn",
        "the record with no user turn"
    );
    assert_checks_clean(&cpc.out);
}

#[test]
fn prompt_completion_and_raw_text() {
    let ag = convert(
        "data-samples/real/ag_news_classify.jsonl",
        &["--to", "messages", "--system", "Classify news articles."],
        "m.jsonl",
    );
    let rows = read_jsonl(&ag.out);
    assert_eq!(rows.len(), 200);
    assert_eq!(
        rows[0]["messages"][0],
        json!({"role": "system", "content": "Classify news articles."})
    );
    assert_eq!(rows[0]["messages"].as_array().unwrap().len(), 3);

    let text = convert(
        "data-samples/real/rawtext_tinystories_sample.txt",
        &["--text-split", "<|endoftext|>", "--to", "text"],
        "t.jsonl",
    );
    let docs = read_jsonl(&text.out);
    assert_eq!(docs.len(), 5);
    assert!(docs
        .iter()
        .all(|d| !d["text"].as_str().unwrap().contains("<|endoftext|>")));
    let lines = convert(
        "data-samples/real/rawtext_tinystories_sample.txt",
        &["--text-split", "line", "--to", "text"],
        "l.jsonl",
    );
    assert!(read_jsonl(&lines.out).len() > 5);
}

#[test]
fn column_map_for_any_table() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("qa.jsonl");
    std::fs::write(
        &table,
        "{\"question\": \"2+2?\", \"answer\": \"4\", \"source\": \"math\"}\n{\"question\": \"Capital of Peru?\", \"answer\": \"Lima\", \"source\": \"geo\"}\n{\"q\": \"no question column\"}\n",
    )
    .unwrap();
    let c = convert(
        table.to_str().unwrap(),
        &[
            "--map",
            "prompt=question",
            "--map",
            "completion=answer",
            "--to",
            "conversational-prompt-completion",
        ],
        "out.jsonl",
    );
    let rows = read_jsonl(&c.out);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0],
        json!({"prompt": [{"role": "user", "content": "2+2?"}], "completion": [{"role": "assistant", "content": "4"}], "source": "math"})
    );
    let rejects = rejects_of(&c);
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0]["line"], 3);
    assert!(rejects[0]["reason"]
        .as_str()
        .unwrap()
        .contains("`question`"));
    let bad = sft_data(&[
        "convert",
        table.to_str().unwrap(),
        "--map",
        "prompt",
        "--to",
        "messages",
        "-o",
        "x.jsonl",
    ]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("KEY=COLUMN"));
}

#[test]
fn parquet_output_reads_back_identically() {
    let input = "data-samples/real/sharegpt_fastchat_dummy_conversation.json";
    let jsonl = convert(input, &["--to", "messages"], "m.jsonl");
    let parquet = convert(input, &["--to", "messages"], "m.parquet");
    assert_eq!(parquet.code, 0, "{}", parquet.stdout);
    assert_eq!(read_rows(&parquet.out), read_jsonl(&jsonl.out));
    assert_checks_clean(&parquet.out);
    // The committed sample Parquet (messages with the nested schema) reads back too.
    assert_eq!(
        read_rows(&sample("data-samples/formats/messages.parquet")).len(),
        40
    );
}

#[test]
fn broken_input_rows_are_rejected_with_their_reason() {
    // Files that cannot be read (to their end) among the inputs: nothing is written, as an
    // output without their rows would look complete; every row read is accounted for.
    let c = convert("data-samples/broken", &["--to", "messages"], "m.jsonl");
    assert_eq!(c.code, 1, "unreadable files fail the run: {}", c.stdout);
    assert!(!c.out.exists(), "no output: {}", c.stdout);
    let rejects = rejects_of(&c);
    let held_back = rejects.iter().filter(|r| r.get("record").is_some()).count();
    assert!(
        c.stdout.contains(&format!(
            "nothing written to {}: an input could not be read to its end ({} converted and held back, {held_back} rejected",
            c.out.display(),
            35 - held_back
        )),
        "{}",
        c.stdout
    );
    let file_rejects: Vec<&Value> = rejects
        .iter()
        .filter(|r| r.get("record").is_none())
        .collect();
    assert_eq!(
        file_rejects.len(),
        4,
        "the four unreadable files are listed"
    );
    assert!(c.stdout.contains("unreadable"), "{}", c.stdout);

    // The broken rows alone.
    let c = convert(
        "data-samples/broken/broken.jsonl",
        &["--to", "messages"],
        "m.jsonl",
    );
    assert_eq!(c.code, 0, "{}", c.stdout);
    let written = read_jsonl(&c.out);
    let rejects = rejects_of(&c);
    let row_rejects: Vec<&Value> = rejects
        .iter()
        .filter(|r| r.get("record").is_some())
        .collect();
    assert_eq!(
        written.len() + row_rejects.len(),
        35,
        "every row of broken.jsonl is accounted for"
    );
    let bad_json = rejects
        .iter()
        .find(|r| r["code"] == "invalid_json")
        .unwrap();
    assert_eq!(bad_json["line"], 4);
    assert!(bad_json["record"]
        .as_str()
        .unwrap()
        .starts_with("{\"messages\""));
    assert_checks_clean_but_small(&c.out);
}

fn assert_checks_clean_but_small(path: &std::path::Path) {
    let run = sft_data(&["check", path.to_str().unwrap()]);
    assert!(!run.stdout.contains("\nerrors"), "{}", run.stdout);
}

#[test]
fn outputs_are_atomic() {
    let dir = tempfile::tempdir().unwrap();
    // Unwritable destination: a wrong command (exit 2) naming the file, checked before
    // anything runs, and nothing left behind.
    let out = dir.path().join("missing-folder/out.jsonl");
    let run = sft_data(&[
        "convert",
        "data-samples/formats/messages.jsonl",
        "--to",
        "messages",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("missing-folder/out.jsonl"),
        "{}",
        run.stderr
    );
    // A Parquet that cannot be written leaves no partial file and no temporary file (an
    // empty object is a struct without fields, which Parquet cannot hold; fields of mixed
    // JSON types are written, as arrow.json: tests/interop.rs).
    let table = dir.path().join("mixed.jsonl");
    std::fs::write(
        &table,
        "{\"text\": \"a\", \"meta\": {}}\n{\"text\": \"b\", \"meta\": {}}\n",
    )
    .unwrap();
    let out = dir.path().join("out.parquet");
    let run = sft_data(&[
        "convert",
        table.to_str().unwrap(),
        "--to",
        "text",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("write .jsonl instead"),
        "{}",
        run.stderr
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("mixed.jsonl")],
        "no output, no temporary file"
    );
    // The output is not one of the inputs.
    let same = sft_data(&[
        "convert",
        table.to_str().unwrap(),
        "--to",
        "text",
        "-o",
        table.to_str().unwrap(),
    ]);
    assert_eq!(same.code, 2);
}

#[test]
fn stale_rejects_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let stale = dir.path().join("out.rejects.jsonl");
    std::fs::write(&stale, "{\"old\": true}\n").unwrap();
    let run = sft_data(&[
        "convert",
        "data-samples/formats/messages.jsonl",
        "--to",
        "messages",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0);
    assert!(
        !stale.exists(),
        "a rejects file from an earlier run would describe other data"
    );
}

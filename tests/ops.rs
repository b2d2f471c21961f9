//! The dataset operations end to end: `mix`, `split`, `filter`, `dedupe`, `stats`.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use common::{read_jsonl, read_rows, sample, sft_data};
use serde_json::{json, Value};

fn write_jsonl(path: &Path, rows: &[Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A deterministic word generator, so the tests build their data without fixtures.
struct Words(u64);

impl Words {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn text(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| format!("w{}", self.next() % 5000))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

// ---------------------------------------------------------------- split

fn split_input() -> Vec<Value> {
    read_jsonl(&sample("tests/fixtures/ops/split_input.jsonl"))
}

#[test]
fn split_is_what_python_datasets_reads_as_a_dataset_dict() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("split");
    let input = sample("tests/fixtures/ops/split_input.jsonl");
    let r = sft_data(&[
        "split",
        p(&input),
        "--test-size",
        "0.1",
        "--seed",
        "7",
        "-o",
        p(&out),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(sample("tests/fixtures/ops/split_datasets.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(expected["type"], "DatasetDict");
    let splits = expected["splits"].as_object().unwrap();
    assert_eq!(splits.keys().collect::<Vec<_>>(), vec!["test", "train"]);
    // One schema for both files: the splits have the same features in datasets.
    assert_eq!(splits["test"]["columns"], splits["train"]["columns"]);
    for (name, want) in splits {
        let path = out.join(format!("data/{name}-00000-of-00001.parquet"));
        let rows = read_rows(&path);
        let ids: Vec<Value> = rows.iter().map(|r| r["id"].clone()).collect();
        assert_eq!(json!(ids), want["ids"], "{name}: the rows datasets read");
        assert_eq!(rows.len() as u64, want["num_rows"].as_u64().unwrap());
        // Every key of the rows is a column datasets sees (rows read back leave nulls out).
        let columns: BTreeSet<&str> = rows
            .iter()
            .flat_map(|r| r.as_object().unwrap().keys().map(String::as_str))
            .collect();
        let want_columns: BTreeSet<&str> = want["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert!(columns.is_subset(&want_columns), "{columns:?}");
        assert_eq!(rows[0]["messages"], want["first_messages"]);
    }
}

#[test]
fn split_has_no_row_on_both_sides_and_keeps_related_rows_together() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("split");
    let report = dir.path().join("split.json");
    let input = sample("tests/fixtures/ops/split_input.jsonl");
    let r = sft_data(&[
        "split",
        p(&input),
        "--test-size",
        "0.2",
        "--seed",
        "3",
        "-o",
        p(&out),
        "--report",
        p(&report),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let train = read_rows(&out.join("data/train-00000-of-00001.parquet"));
    let test = read_rows(&out.join("data/test-00000-of-00001.parquet"));
    let ids = |rows: &[Value]| -> BTreeSet<u64> {
        rows.iter().map(|r| r["id"].as_u64().unwrap()).collect()
    };
    let (train_ids, test_ids) = (ids(&train), ids(&test));
    assert!(train_ids.is_disjoint(&test_ids), "a row on both sides");
    // The union is the input, row for row.
    let input_rows = split_input();
    let mut by_id: HashMap<u64, Value> = HashMap::new();
    for r in train.iter().chain(&test) {
        by_id.insert(r["id"].as_u64().unwrap(), r.clone());
    }
    assert_eq!(train.len() + test.len(), input_rows.len());
    for r in &input_rows {
        assert_eq!(&by_id[&r["id"].as_u64().unwrap()], r);
    }
    // Every planted group (exact copies, shared prompts, near-duplicates) is on one side.
    let mut side_of_group: HashMap<u64, bool> = HashMap::new();
    let mut planted = 0;
    for r in &input_rows {
        let id = r["id"].as_u64().unwrap();
        let group = r["group"].as_u64().unwrap();
        let in_test = test_ids.contains(&id);
        if id != group {
            planted += 1;
        }
        let side = *side_of_group.entry(group).or_insert(in_test);
        assert_eq!(
            side, in_test,
            "row {id} of group {group} ({:?}) is not on its group's side",
            r["kind"]
        );
    }
    assert_eq!(planted, 60);
    // Moves were needed and are reported; the test side stays near 20%.
    let rep: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let moved = rep["moved_to_train"].as_u64().unwrap() + rep["moved_to_test"].as_u64().unwrap();
    assert!(moved > 0, "{rep}");
    assert!(r.stdout.contains("moved"), "{}", r.stdout);
    assert_eq!(rep["test_drawn"], 72);
    let share = test.len() as f64 / input_rows.len() as f64;
    assert!((share - 0.2).abs() < 0.05, "{share}");
    // Deterministic: the same seed gives the same files.
    let again = dir.path().join("again");
    let r = sft_data(&[
        "split",
        p(&input),
        "--test-size",
        "0.2",
        "--seed",
        "3",
        "-o",
        p(&again),
        "-q",
    ]);
    assert_eq!(r.code, 0);
    assert_eq!(
        read_rows(&again.join("data/test-00000-of-00001.parquet")),
        test
    );
    // Without grouping, related rows do land on both sides: the test can fail.
    let loose = dir.path().join("loose");
    let r = sft_data(&[
        "split",
        p(&input),
        "--test-size",
        "0.2",
        "--seed",
        "3",
        "-o",
        p(&loose),
        "--exact-only",
        "-q",
    ]);
    assert_eq!(r.code, 0);
    let loose_test = ids(&read_rows(&loose.join("data/test-00000-of-00001.parquet")));
    let near_split = input_rows.iter().filter(|r| r["kind"] == "near").any(|r| {
        let group = r["group"].as_u64().unwrap();
        loose_test.contains(&r["id"].as_u64().unwrap()) != loose_test.contains(&group)
    });
    assert!(
        near_split,
        "with --exact-only some near-duplicate should cross sides"
    );
}

#[test]
fn split_stratified_by_source() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Words(5);
    let rows: Vec<Value> = (0..1000)
        .map(|i| json!({"id": i, "source": if i % 4 == 0 { "small" } else { "big" }, "text": w.text(20)}))
        .collect();
    let input = dir.path().join("in.jsonl");
    write_jsonl(&input, &rows);
    let out = dir.path().join("s");
    let r = sft_data(&[
        "split",
        p(&input),
        "--test-size",
        "0.1",
        "-o",
        p(&out),
        "--stratify-by-source",
        "--file-format",
        "jsonl",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let test = read_jsonl(&out.join("data/test-00000-of-00001.jsonl"));
    let small = test.iter().filter(|r| r["source"] == "small").count();
    assert_eq!((test.len(), small), (100, 25));
}

// ---------------------------------------------------------------- mix

fn mix_sources(dir: &Path) -> Vec<std::path::PathBuf> {
    [("a", 40_000), ("b", 20_000), ("c", 10_000)]
        .iter()
        .map(|(name, n)| {
            let path = dir.join(format!("{name}.jsonl"));
            let rows: Vec<Value> = (0..*n)
                .map(|i| json!({"text": format!("{name} {i}")}))
                .collect();
            write_jsonl(&path, &rows);
            path
        })
        .collect()
}

#[test]
fn mix_proportions_are_within_one_percent_and_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let s = mix_sources(dir.path());
    let args = |seed: &str, out: &Path| -> Vec<String> {
        vec![
            "mix".into(),
            format!("{}:0.5", p(&s[0])),
            format!("{}:0.3", p(&s[1])),
            format!("{}:0.2", p(&s[2])),
            "--rows".into(),
            "100000".into(),
            "--seed".into(),
            seed.into(),
            "-o".into(),
            p(out).into(),
        ]
    };
    let run = |seed: &str, name: &str| {
        let out = dir.path().join(name);
        let a = args(seed, &out);
        let r = sft_data(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        (out, r.stdout)
    };
    let (first, stdout) = run("1", "m1.jsonl");
    assert!(stdout.contains("realised"), "{stdout}");
    let rows = read_jsonl(&first);
    assert_eq!(rows.len(), 100_000);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rows {
        let source = r["source"].as_str().unwrap();
        // Each row is tagged with the source it came from.
        assert!(r["text"].as_str().unwrap().starts_with(source));
        *counts.entry(source.to_string()).or_default() += 1;
    }
    for (name, weight) in [("a", 0.5), ("b", 0.3), ("c", 0.2)] {
        let share = counts[name] as f64 / rows.len() as f64;
        assert!((share - weight).abs() < 0.01, "{name}: {share}");
    }
    // The first tenth of the mix has the proportions too: the sources are interleaved.
    let head_a = rows[..10_000].iter().filter(|r| r["source"] == "a").count();
    assert!((head_a as f64 / 10_000.0 - 0.5).abs() < 0.03, "{head_a}");
    // Upsampled c (10,000 rows for 20,000 places): every row twice, none three times.
    let mut c_rows: HashMap<&str, usize> = HashMap::new();
    for r in rows.iter().filter(|r| r["source"] == "c") {
        *c_rows.entry(r["text"].as_str().unwrap()).or_default() += 1;
    }
    assert_eq!(c_rows.len(), 10_000);
    assert!(c_rows.values().all(|&n| n == 2));
    let (second, _) = run("1", "m2.jsonl");
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap()
    );
    let (third, _) = run("2", "m3.jsonl");
    assert_ne!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&third).unwrap()
    );
}

#[test]
fn mix_with_replacement_and_epochs_of() {
    let dir = tempfile::tempdir().unwrap();
    let s = mix_sources(dir.path());
    let out = dir.path().join("m.parquet");
    let r = sft_data(&[
        "mix",
        &format!("main={}:3", p(&s[2])),
        &format!("{}:1", p(&s[1])),
        "--epochs-of",
        "main",
        "--replacement",
        "-o",
        p(&out),
        "-q",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let rows = read_rows(&out);
    let main = rows.iter().filter(|r| r["source"] == "main").count();
    assert_eq!((rows.len(), main), (13_333, 10_000));
}

/// A mix's `source` column is kept by `prepare` (a string per row, or one per document of
/// a packed row), counted per source in its manifest, and shown per source by `check`.
#[test]
fn sources_of_a_mix_flow_through_prepare_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Words(5);
    let mut inputs = Vec::new();
    for (name, n, words) in [("short", 60, 5), ("long", 30, 60)] {
        let rows: Vec<Value> = (0..n)
            .map(|_| json!({"messages": [{"role": "user", "content": w.text(4)}, {"role": "assistant", "content": w.text(words)}]}))
            .collect();
        let path = dir.path().join(format!("{name}.jsonl"));
        write_jsonl(&path, &rows);
        inputs.push(path);
    }
    let mixed = dir.path().join("mixed.jsonl");
    let r = sft_data(&[
        "mix",
        &format!("{}:2", p(&inputs[0])),
        &format!("{}:1", p(&inputs[1])),
        "--rows",
        "90",
        "--seed",
        "3",
        "-o",
        p(&mixed),
        "-q",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let rows = read_jsonl(&mixed);
    let want: Vec<&str> = rows.iter().map(|r| r["source"].as_str().unwrap()).collect();
    let per_source = |name: &str| want.iter().filter(|&&s| s == name).count() as u64;
    assert!(per_source("short") > 0 && per_source("long") > 0);
    let tokenizer = sample("data-samples/models/smollm2-135m-instruct-tokenizer");

    // Unpacked: the column holds each row's source, in the order of the rows.
    let table = dir.path().join("p.parquet");
    let r = sft_data(&[
        "prepare",
        p(&mixed),
        "--tokenizer",
        p(&tokenizer),
        "-o",
        p(&table),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("sources: 2"), "{}", r.stdout);
    let got = sft_io::tokens::read_text_column(&table, "source")
        .unwrap()
        .unwrap();
    assert_eq!(got.iter().map(|s| s[0].as_str()).collect::<Vec<_>>(), want);
    let tokens = sft_io::tokens::read_token_table(&table).unwrap();
    assert_eq!(
        tokens.len(),
        3,
        "the source is not one of the token columns"
    );
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("p.manifest.json")).unwrap())
            .unwrap();
    assert!(manifest["columns"]
        .as_array()
        .unwrap()
        .contains(&json!("source")));
    let counts = |manifest: &Value, name: &str| -> Value {
        manifest["summary"]["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["source"] == name)
            .cloned()
            .unwrap()
    };
    for name in ["short", "long"] {
        let c = counts(&manifest, name);
        assert_eq!(c["examples"], per_source(name), "{name}");
        let their_tokens: usize = tokens[0]
            .1
            .iter()
            .zip(&got)
            .filter(|(_, s)| s[0] == name)
            .map(|(ids, _)| ids.len())
            .sum();
        assert_eq!(c["tokens"], their_tokens as u64, "{name}");
    }

    // Packed: one name per document, in the order of seq_lengths.
    let packed = dir.path().join("packed.parquet");
    let r = sft_data(&[
        "prepare",
        p(&mixed),
        "--tokenizer",
        p(&tokenizer),
        "--max-length",
        "256",
        "--packing",
        "true",
        "-o",
        p(&packed),
        "-q",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let names = sft_io::tokens::read_text_column(&packed, "source")
        .unwrap()
        .unwrap();
    let table = sft_io::tokens::read_token_table(&packed).unwrap();
    let seq = &table.iter().find(|(n, _)| n == "seq_lengths").unwrap().1;
    assert!(names.len() < rows.len(), "rows were packed");
    let mut documents: BTreeMap<String, u64> = BTreeMap::new();
    for (row_names, lengths) in names.iter().zip(seq) {
        assert_eq!(row_names.len(), lengths.len());
        for n in row_names {
            *documents.entry(n.clone()).or_default() += 1;
        }
    }
    assert_eq!(documents["short"], per_source("short"));
    assert_eq!(documents["long"], per_source("long"));
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("packed.manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(counts(&manifest, "long")["examples"], per_source("long"));
    let total: u64 = ["short", "long"]
        .iter()
        .map(|n| counts(&manifest, n)["tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(json!(total), manifest["summary"]["tokens"]);

    // check: rows, lengths and tokens per source.
    let report = dir.path().join("check.json");
    let r = sft_data(&[
        "check",
        p(&mixed),
        "--tokenizer",
        p(&tokenizer),
        "--report",
        p(&report),
    ]);
    assert!(r.stdout.contains("sources: 2"), "{}", r.stdout);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let sources = report["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2);
    for s in sources {
        let name = s["source"].as_str().unwrap();
        assert_eq!(s["rows"], per_source(name), "{name}");
        assert_eq!(s["tokens"]["count"], per_source(name), "{name}");
    }
    let median = |name: &str| {
        sources.iter().find(|s| s["source"] == name).unwrap()["tokens"]["p50"]
            .as_u64()
            .unwrap()
    };
    assert!(median("long") > median("short") + 30);
}

// ---------------------------------------------------------------- dedupe

#[test]
fn dedupe_finds_planted_near_duplicates_and_keeps_every_distinct_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Words(11);
    let mut rows: Vec<Value> = (0..600)
        .map(|i| json!({"id": i, "prompt": w.text(20), "completion": w.text(300)}))
        .collect();
    let mut planted = BTreeMap::new();
    for k in 0..40u64 {
        let base = rows[(k * 13 % 600) as usize].clone();
        let mut copy = base.clone();
        copy["id"] = json!(600 + k);
        let kind = if k % 2 == 0 {
            "duplicate_row"
        } else {
            // One word changed in the completion: Jaccard about 0.97, found with
            // probability 1 - 4e-5 by the banding for 0.8 (at 0.9 it would be 93%).
            let mut words: Vec<String> = base["completion"]
                .as_str()
                .unwrap()
                .split(' ')
                .map(String::from)
                .collect();
            words[(k as usize * 7) % 300] = "changed".into();
            copy["completion"] = json!(words.join(" "));
            "near_duplicate"
        };
        planted.insert(600 + k, (kind, base["id"].as_u64().unwrap()));
        rows.push(copy);
    }
    let input = dir.path().join("in.jsonl");
    write_jsonl(&input, &rows);
    let out = dir.path().join("out.jsonl");
    let report = dir.path().join("clusters.json");
    let r = sft_data(&["dedupe", p(&input), "-o", p(&out), "--report", p(&report)]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let kept: BTreeSet<u64> = read_jsonl(&out)
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        kept,
        (0..600).collect::<BTreeSet<u64>>(),
        "every distinct row, and only those"
    );
    let rejects = read_jsonl(&dir.path().join("out.rejects.jsonl"));
    assert_eq!(rejects.len(), 40);
    for rej in &rejects {
        let id = rej["record"]["id"].as_u64().unwrap();
        let (kind, base) = planted[&id];
        assert_eq!(rej["code"], kind, "{rej}");
        // It names the line of the row it duplicates (ids are line - 1 here).
        let reason = rej["reason"].as_str().unwrap();
        assert!(
            reason.ends_with(&format!("in.jsonl:{}", base + 1)),
            "{reason}"
        );
    }
    let rep: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(rep["exact_duplicates"], 20);
    assert_eq!(rep["near_duplicates"], 20);
    assert_eq!(
        rep["cluster_list"].as_array().unwrap().len() as u64,
        rep["clusters"].as_u64().unwrap()
    );
    // Exact only: the near-duplicates stay.
    let exact = dir.path().join("exact.jsonl");
    let r = sft_data(&["dedupe", p(&input), "-o", p(&exact), "--exact-only", "-q"]);
    assert_eq!(r.code, 0);
    assert_eq!(read_jsonl(&exact).len(), 620);
}

// ---------------------------------------------------------------- filter

#[test]
fn filter_drops_exactly_the_rows_the_conditions_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Words(2);
    let mut rows = Vec::new();
    let mut expected_drop = BTreeMap::new();
    for i in 0..200u64 {
        let turns = 2 + 2 * (i % 3); // 2, 4 or 6 messages
        let looped = i % 7 == 0;
        let lang = if i % 5 == 0 { "fr" } else { "en" };
        let mut messages = Vec::new();
        for t in 0..turns {
            let role = if t % 2 == 0 { "user" } else { "assistant" };
            let content = if looped && t == turns - 1 {
                "Eat a banana! ".repeat(40)
            } else {
                w.text(8)
            };
            messages.push(json!({"role": role, "content": content}));
        }
        rows.push(json!({"id": i, "lang": lang, "messages": messages}));
        let mut why = Vec::new();
        if turns > 4 {
            why.push("max_turns");
        }
        if looped {
            why.push("repetitive_content");
        }
        if lang != "en" {
            why.push("where");
        }
        if !why.is_empty() {
            expected_drop.insert(i, why);
        }
    }
    let input = dir.path().join("in.jsonl");
    write_jsonl(&input, &rows);
    let out = dir.path().join("out.parquet");
    let rejects = dir.path().join("dropped.jsonl");
    let r = sft_data(&[
        "filter",
        p(&input),
        "-o",
        p(&out),
        "--rejects",
        p(&rejects),
        "--max-turns",
        "4",
        "--drop-codes",
        "repetitive_content",
        "--where",
        "lang == 'en'",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let kept: BTreeSet<u64> = read_rows(&out)
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    let want_kept: BTreeSet<u64> = (0..200)
        .filter(|i| !expected_drop.contains_key(i))
        .collect();
    assert_eq!(kept, want_kept);
    let dropped = read_jsonl(&rejects);
    assert_eq!(dropped.len(), expected_drop.len());
    for d in &dropped {
        let id = d["record"]["id"].as_u64().unwrap();
        assert_eq!(d["codes"], json!(expected_drop[&id]), "{d}");
    }
}

#[test]
fn filter_by_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Words(9);
    let rows: Vec<Value> = (0..40u64)
        .map(|i| json!({"id": i, "prompt": w.text(3), "completion": w.text(if i % 4 == 0 { 400 } else { 10 })}))
        .collect();
    let input = dir.path().join("in.jsonl");
    write_jsonl(&input, &rows);
    let out = dir.path().join("out.jsonl");
    let tokenizer = sample("data-samples/models/smollm2-135m-instruct-tokenizer");
    let r = sft_data(&[
        "filter",
        p(&input),
        "-o",
        p(&out),
        "--tokenizer",
        p(&tokenizer),
        "--max-tokens",
        "300",
        "-q",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let kept: Vec<u64> = read_jsonl(&out)
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, (0..40).filter(|i| i % 4 != 0).collect::<Vec<_>>());
}

// ---------------------------------------------------------------- stats

#[test]
fn stats_per_source_with_tokens_and_a_picture() {
    let dir = tempfile::tempdir().unwrap();
    let rows = vec![
        json!({"source": "a", "messages": [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi!"}]}),
        json!({"source": "a", "messages": [{"role": "user", "content": "Привет"}, {"role": "assistant", "content": "Здравствуйте, как дела?"}], "tools": [{"type": "function", "function": {"name": "f"}}]}),
        json!({"source": "b", "prompt": "你好", "completion": "世界你好"}),
    ];
    let input = dir.path().join("in.jsonl");
    write_jsonl(&input, &rows);
    let report = dir.path().join("stats.json");
    let tokenizer = sample("data-samples/models/smollm2-135m-instruct-tokenizer");
    let r = sft_data(&[
        "stats",
        p(&input),
        "--tokenizer",
        p(&tokenizer),
        "--report",
        p(&report),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(s["rows"], 3);
    let a = s["by_source"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["source"] == "a")
        .unwrap();
    assert_eq!(a["rows"], 2);
    assert_eq!(a["roles"], json!({"assistant": 2, "user": 2}));
    assert_eq!(a["scripts"], json!({"cyrillic": 1, "latin": 1}));
    assert_eq!(a["rows_with_tools"], 1);
    assert!(a["tokens"]["max"].as_u64().unwrap() > 5);
    assert_eq!(a["turns"]["max"], 2);
    let b = s["by_source"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["source"] == "b")
        .unwrap();
    assert_eq!(b["scripts"], json!({"han": 1}));
    let svg = std::fs::read_to_string(dir.path().join("stats.svg")).unwrap();
    assert!(
        svg.starts_with("<svg")
            && svg.contains("a: characters per row")
            && svg.contains("b: tokens per row")
    );
}

// ---------------------------------------------------------------- bad input

#[test]
fn bad_commands_are_clear_errors_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    write_jsonl(
        &input,
        &[
            json!({"text": "a"}),
            json!({"text": "b"}),
            json!({"text": "c"}),
        ],
    );
    let out = dir.path().join("out.jsonl");
    let i = p(&input);
    let o = p(&out);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "mix".into(),
                i.into(),
                "--rows".into(),
                "10".into(),
                "-o".into(),
                o.into(),
            ],
            "has no weight",
        ),
        (
            vec![
                "mix".into(),
                format!("{i}:"),
                "--rows".into(),
                "10".into(),
                "-o".into(),
                o.into(),
            ],
            "no weight",
        ),
        (
            vec![
                "mix".into(),
                format!("{i}:0"),
                "--rows".into(),
                "10".into(),
                "-o".into(),
                o.into(),
            ],
            "positive",
        ),
        (
            vec![
                "mix".into(),
                format!("{i}:-1"),
                "--rows".into(),
                "10".into(),
                "-o".into(),
                o.into(),
            ],
            "positive",
        ),
        (
            vec![
                "mix".into(),
                format!("{i}:abc"),
                "--rows".into(),
                "10".into(),
                "-o".into(),
                o.into(),
            ],
            "not a number",
        ),
        (
            vec!["mix".into(), format!("{i}:1"), "-o".into(), o.into()],
            "--rows",
        ),
        (
            vec![
                "mix".into(),
                format!("{i}:1"),
                "--epochs-of".into(),
                "nope".into(),
                "-o".into(),
                o.into(),
            ],
            "no source of that name",
        ),
        (
            vec![
                "split".into(),
                i.into(),
                "--test-size".into(),
                "0".into(),
                "-o".into(),
                p(&dir.path().join("s0")).into(),
            ],
            "test split empty",
        ),
        (
            vec![
                "split".into(),
                i.into(),
                "--test-size".into(),
                "1".into(),
                "-o".into(),
                p(&dir.path().join("s1")).into(),
            ],
            "ambiguous",
        ),
        (
            vec![
                "split".into(),
                i.into(),
                "--test-size".into(),
                "1.5".into(),
                "-o".into(),
                p(&dir.path().join("s2")).into(),
            ],
            "between 0 and 1",
        ),
        (
            vec![
                "split".into(),
                i.into(),
                "--test-size".into(),
                "5".into(),
                "-o".into(),
                p(&dir.path().join("s3")).into(),
            ],
            "usable rows",
        ),
        (
            vec![
                "filter".into(),
                i.into(),
                "-o".into(),
                o.into(),
                "--drop-codes".into(),
                "no_such_code".into(),
            ],
            "unknown code `no_such_code`",
        ),
        (
            vec![
                "filter".into(),
                i.into(),
                "-o".into(),
                o.into(),
                "--drop-codes".into(),
                "duplicate_row".into(),
            ],
            "sft-data dedupe",
        ),
        (
            vec![
                "filter".into(),
                i.into(),
                "-o".into(),
                o.into(),
                "--max-tokens".into(),
                "5".into(),
            ],
            "need --tokenizer",
        ),
        (
            vec![
                "filter".into(),
                i.into(),
                "-o".into(),
                o.into(),
                "--where".into(),
                "turns >".into(),
            ],
            "--where",
        ),
        (
            vec!["filter".into(), i.into(), "-o".into(), o.into()],
            "needs a condition",
        ),
        (
            vec![
                "dedupe".into(),
                i.into(),
                "-o".into(),
                o.into(),
                "--threshold".into(),
                "1.5".into(),
            ],
            "'--threshold <F>': must be within [0, 1]",
        ),
        (
            vec!["dedupe".into(), i.into(), "-o".into(), i.into()],
            "input",
        ),
        (
            vec!["stats".into(), p(&dir.path().join("missing.jsonl")).into()],
            "missing.jsonl",
        ),
    ];
    for (args, needle) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = sft_data(&a);
        assert_eq!(r.code, 2, "{a:?}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("sft-data: error:") || r.stderr.contains("error:"),
            "{a:?}: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains(needle),
            "{a:?}: expected `{needle}` in {}",
            r.stderr
        );
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
    assert!(!out.exists(), "nothing written by a wrong command");
    assert_eq!(
        std::fs::read_to_string(&input).unwrap().lines().count(),
        3,
        "the input is untouched"
    );
}

#[test]
fn unparsable_rows_are_rejected_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"a\"}\n{\"text\": \"b\",}\n{\"text\": \"a\"}\n{\"text\": \"c d e\"}\n",
    )
    .unwrap();
    let out = dir.path().join("out.jsonl");
    let r = sft_data(&["dedupe", p(&input), "-o", p(&out), "-q"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(read_jsonl(&out).len(), 2);
    let rejects = read_jsonl(&dir.path().join("out.rejects.jsonl"));
    let codes: Vec<&str> = rejects
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, vec!["invalid_json", "duplicate_row"]);
    assert_eq!(rejects[0]["line"], 2);
}

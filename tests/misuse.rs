//! The data path under misuse (issue 12): no input is ever overwritten, nothing `check`
//! calls an error is trained, a file that cannot be read to its end leaves no output that
//! looks complete, folder walks read each file once, and interrupted jobs leave nothing.

mod common;

use std::path::{Path, PathBuf};

use common::{copy_dir, kill, read_jsonl, sft_data, temporaries};
use serde_json::{json, Value};

const TOKENIZER: &str = "data-samples/models/smollm2-135m-instruct-tokenizer";

fn misuse(name: &str) -> String {
    format!("tests/fixtures/misuse/{name}")
}

fn write_rows(dir: &Path, name: &str, rows: &[Value]) -> PathBuf {
    let path = dir.join(name);
    let text: String = rows.iter().map(|r| r.to_string() + "\n").collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn chat(i: usize) -> Value {
    json!({"messages": [
        {"role": "user", "content": format!("What is {i} plus {i}?")},
        {"role": "assistant", "content": format!("{i} plus {i} is {}.", 2 * i)}
    ]})
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn no_output_may_be_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = write_rows(d, "train.jsonl", &[chat(1), chat(2)]);
    let original = std::fs::read(&input).unwrap();
    let hard = d.join("hard.jsonl");
    std::fs::hard_link(&input, &hard).unwrap();
    let soft = d.join("soft.jsonl");
    std::os::unix::fs::symlink(&input, &soft).unwrap();
    let out = d.join("fixed.jsonl");
    let parquet = d.join("out.parquet");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        // A side output naming the input, directly or through a link.
        (
            vec![
                "convert",
                s(&input),
                "--to",
                "messages",
                "-o",
                s(&out),
                "--rejects",
                s(&input),
            ],
            "the rejects file (--rejects)",
        ),
        (
            vec![
                "convert",
                s(&input),
                "--to",
                "messages",
                "-o",
                s(&out),
                "--rejects",
                s(&hard),
            ],
            "the same file under another name",
        ),
        (
            vec!["convert", s(&input), "--to", "messages", "-o", s(&soft)],
            "the output (-o)",
        ),
        (
            vec![
                "prepare",
                s(&input),
                "--tokenizer",
                TOKENIZER,
                "-o",
                s(&parquet),
                "--rejects",
                s(&input),
            ],
            "the rejects file (--rejects)",
        ),
        (
            vec!["check", s(&input), "--report", s(&input)],
            "the report (--report)",
        ),
        (
            vec!["check", s(&input), "--report", s(&soft)],
            "the report (--report)",
        ),
        (
            vec![
                "show",
                s(&input),
                "--tokenizer",
                TOKENIZER,
                "--html",
                s(&input),
            ],
            "the HTML page (--html)",
        ),
        (
            vec![
                "render",
                s(&input),
                "--chat-template",
                "chatml",
                "-o",
                s(&hard),
            ],
            "the output (-o)",
        ),
        // Two outputs that are one file.
        (
            vec![
                "convert",
                s(&input),
                "--to",
                "messages",
                "-o",
                s(&out),
                "--rejects",
                s(&out),
            ],
            "are the same file",
        ),
    ];
    for (args, expected) in cases {
        let run = sft_data(&args);
        assert_eq!(run.code, 2, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("hint: "), "{args:?}: {}", run.stderr);
        assert_eq!(
            std::fs::read(&input).unwrap(),
            original,
            "{args:?} changed the input"
        );
        assert!(
            !out.exists() && !parquet.exists(),
            "{args:?} wrote an output"
        );
    }
    assert!(temporaries(d).is_empty(), "{:?}", temporaries(d));

    // The default rejects path of prepare and convert: `data.rejects.jsonl -o data.parquet`.
    let named = write_rows(d, "data.rejects.jsonl", &[chat(3)]);
    let before = std::fs::read(&named).unwrap();
    let run = sft_data(&[
        "prepare",
        s(&named),
        "--tokenizer",
        TOKENIZER,
        "-o",
        s(&d.join("data.parquet")),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("the default rejects file")
            && run.stderr.contains("is also an input")
            && run.stderr.contains("pass --rejects FILE"),
        "{}",
        run.stderr
    );
    let run = sft_data(&[
        "convert",
        s(&named),
        "--to",
        "messages",
        "-o",
        s(&d.join("data.jsonl")),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(std::fs::read(&named).unwrap(), before);
    // The manifest beside prepare's output is an output too.
    let manifest_named = write_rows(d, "t.manifest.json", &[chat(4)]);
    let run = sft_data(&[
        "prepare",
        s(&manifest_named),
        "--tokenizer",
        TOKENIZER,
        "-o",
        s(&d.join("t.parquet")),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("the manifest"), "{}", run.stderr);
}

#[test]
fn an_output_folder_that_is_missing_is_a_wrong_command() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/folder/out.jsonl");
    let run = sft_data(&[
        "convert",
        "data-samples/formats/messages.jsonl",
        "--to",
        "messages",
        "-o",
        s(&missing),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
    assert!(run.stderr.contains("mkdir -p"), "{}", run.stderr);
    let run = sft_data(&[
        "check",
        "data-samples/formats/messages.jsonl",
        "--report",
        s(&dir.path().join("nope/r.json")),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[test]
fn rows_check_calls_errors_are_never_trained_shown_or_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.parquet");
    let input = misuse("check_errors.jsonl");
    let run = sft_data(&["prepare", &input, "--tokenizer", TOKENIZER, "-o", s(&out)]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("prepared 5 rows") && run.stdout.contains("2 examples, 3 rejected"),
        "{}",
        run.stdout
    );
    let table = sft_io::tokens::read_token_table(&out).unwrap();
    assert_eq!(table[0].1.len(), 2, "only the two good rows are trained");
    let rejects = read_jsonl(&dir.path().join("out.rejects.jsonl"));
    let by_line: Vec<(u64, &str, &str)> = rejects
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["code"].as_str().unwrap(),
                r["path"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_line,
        vec![
            (2, "unknown_role", "messages[0].role"),
            (3, "empty_target", "messages[1].content"),
            (4, "no_assistant_turn", "messages"),
        ]
    );
    // Every error of a row is listed, the first one gives the code.
    let issues = rejects[0]["issues"].as_array().unwrap();
    let codes: Vec<&str> = issues.iter().map(|i| i["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["unknown_role", "unknown_role", "no_assistant_turn"]);
    assert!(rejects[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("messages[0].role: unknown role `human` (and 2 more errors)"));
    assert!(rejects[0]["hint"].as_str().unwrap().contains("sharegpt"));
    assert_eq!(rejects[0]["record"]["messages"][0]["role"], "human");

    // show marks the rows as what prepare does with them, never as trained tokens.
    let run = sft_data(&[
        "show",
        &input,
        "--tokenizer",
        TOKENIZER,
        "--rows",
        "0..5",
        "--color",
        "never",
    ]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(!run.stdout.contains("<|im_start|>human"), "{}", run.stdout);
    assert!(
        run.stdout.contains(
            "check_errors.jsonl:2: cannot be shown: unknown_role at messages[0].role: unknown role `human`"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("check_errors.jsonl:3: cannot be shown: empty_target"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("prepare and sft-train reject this row"));

    // render writes the error, with its code, instead of `<|im_start|>human`.
    let rendered = dir.path().join("r.jsonl");
    let run = sft_data(&[
        "render",
        &input,
        "--chat-template",
        "chatml",
        "-o",
        s(&rendered),
    ]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let lines = read_jsonl(&rendered);
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[1]["code"], "unknown_role");
    assert!(lines[1]["error"]
        .as_str()
        .unwrap()
        .contains("unknown role `human`"));
    // A render need not have a reply (prompts to generate from): those rows render.
    assert!(lines[2]["text"].is_string(), "{}", lines[2]);
    assert!(lines[3]["text"].is_string(), "{}", lines[3]);
}

/// A Parquet file of `rows` rows (row groups of 16,384) with 2 KB overwritten in the middle.
fn corrupted_parquet(dir: &Path, rows: usize) -> PathBuf {
    let path = dir.join("big.parquet");
    let mut writer = sft_io::write::DatasetWriter::create(&path).unwrap();
    for i in 0..rows {
        // Varied text, so that pages compress little and the damage lands in row data.
        let text = format!(
            "row {i} {:x} {}",
            (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            "x".repeat(i % 7)
        );
        writer
            .write(
                &json!({"prompt": format!("Q{i}: {text}"), "completion": format!("A{i} {text}")}),
            )
            .unwrap();
    }
    writer.finish().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 2048] {
        *b = 0x5a;
    }
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_file_corrupted_mid_way_leaves_no_output_that_looks_complete() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = corrupted_parquet(d, 40_000);
    let input = s(&input);

    // check: the rows read and the rows not read.
    let run = sft_data(&["check", input, "--report", s(&d.join("r.json"))]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("r.json")).unwrap()).unwrap();
    let file = &report["files"][0];
    let read = file["rows"].as_u64().unwrap();
    let not_read = file["rows_not_read"].as_u64().unwrap();
    assert!(read < 40_000 && not_read > 0, "{file}");
    assert_eq!(read + not_read, 40_000, "{file}");
    assert!(
        run.stdout
            .contains(&format!("{} not read", sft_dataset::thousands(not_read))),
        "{}",
        run.stdout
    );

    // convert: nothing at the output path, the rejects file says what was not read.
    let out = d.join("out.jsonl");
    let run = sft_data(&["convert", input, "--to", "messages", "-o", s(&out)]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(!out.exists(), "a partial output was written");
    assert!(
        run.stdout.contains("nothing written to") && run.stdout.contains("rows not read"),
        "{}",
        run.stdout
    );
    let rejects = read_jsonl(&d.join("out.rejects.jsonl"));
    let unreadable: Vec<&Value> = rejects
        .iter()
        .filter(|r| r["code"] == "unreadable_file")
        .collect();
    assert_eq!(unreadable.len(), 1, "{rejects:?}");
    assert_eq!(unreadable[0]["rows_read"], read);
    assert_eq!(unreadable[0]["rows_not_read"], not_read);

    // prepare: no table and no manifest; render: no output.
    let table = d.join("t.parquet");
    let run = sft_data(&["prepare", input, "--tokenizer", TOKENIZER, "-o", s(&table)]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(!table.exists() && !d.join("t.manifest.json").exists());
    assert!(run.stdout.contains("nothing written to"), "{}", run.stdout);
    assert!(
        run.stderr
            .contains(&format!("{} not read", sft_dataset::thousands(not_read))),
        "{}",
        run.stderr
    );
    let rendered = d.join("r.jsonl");
    let run = sft_data(&[
        "render",
        input,
        "--chat-template",
        "chatml",
        "-o",
        s(&rendered),
    ]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(!rendered.exists(), "a partial render was written");
    assert!(run.stdout.contains("nothing written to"), "{}", run.stdout);
    assert!(temporaries(d).is_empty(), "{:?}", temporaries(d));
}

#[test]
fn folder_walks_read_each_file_once_and_report_loops() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("loop");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    write_rows(&root, "a.jsonl", &(0..5).map(chat).collect::<Vec<_>>());
    std::os::unix::fs::symlink("..", root.join("sub/up")).unwrap();
    std::os::unix::fs::symlink("../a.jsonl", root.join("sub/again.jsonl")).unwrap();
    // prepare's manifest and a text file are not data of the folder.
    std::fs::write(root.join("a.manifest.json"), "{\"version\": 1}").unwrap();
    std::fs::write(root.join("notes.txt"), "not data\n").unwrap();
    let run = sft_data(&["check", s(&root), "--color", "never"]);
    assert!(
        run.stdout.contains("checked 1 file, 5 rows"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("symbolic-link loop"), "{}", run.stderr);
    assert!(run.stderr.contains("the same file as"), "{}", run.stderr);
    assert!(
        run.stderr.contains("a.manifest.json: a manifest"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("1 text file (.txt)"), "{}", run.stderr);
    let out = dir.path().join("out.jsonl");
    let run = sft_data(&["convert", s(&root), "--to", "messages", "-o", s(&out)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(read_jsonl(&out).len(), 5);
}

#[test]
fn bfd_counts_the_tokens_of_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Value> = (0..12)
        .map(|i| json!({"text": format!("Story {i}: ") + &"the river runs to the sea. ".repeat(3 + i * 4)}))
        .collect();
    let input = write_rows(dir.path(), "t.jsonl", &rows);
    let out = dir.path().join("p.parquet");
    let run = sft_data(&[
        "prepare",
        s(&input),
        "--tokenizer",
        TOKENIZER,
        "--packing",
        "bfd",
        "--max-length",
        "64",
        "-o",
        s(&out),
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let table = sft_io::tokens::read_token_table(&out).unwrap();
    let column = |name: &str| &table.iter().find(|(n, _)| n == name).unwrap().1;
    let tokens: usize = column("input_ids").iter().map(Vec::len).sum();
    let trained: usize = column("labels")
        .iter()
        .map(|l| l.iter().filter(|&&x| x != -100).count())
        .sum();
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("p.manifest.json")).unwrap())
            .unwrap();
    assert!(
        manifest["summary"]["truncated"].as_u64().unwrap() > 0,
        "the case cuts examples"
    );
    assert_eq!(manifest["summary"]["tokens"], tokens);
    assert_eq!(manifest["summary"]["trained_tokens"], trained);
    assert!(
        run.stdout.contains(&format!(
            "tokens: {} ({} trained",
            sft_dataset::thousands(tokens as u64),
            sft_dataset::thousands(trained as u64)
        )),
        "{}",
        run.stdout
    );
}

#[test]
fn stale_temporaries_of_killed_runs_are_removed_and_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let age = |path: &Path| {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap()
    };
    // No process has this id (above the kernel's pid_max), and it was last written an hour ago.
    let stale = d.join(".out.jsonl.4194305.Ab12Cd.tmp");
    std::fs::write(&stale, "half a file").unwrap();
    age(&stale);
    // Written a moment ago: perhaps by a job on another machine sharing the folder.
    let fresh = d.join(".out.jsonl.4194306.Ef34Gh.tmp");
    std::fs::write(&fresh, "being written elsewhere").unwrap();
    // A temporary of a process that runs (this test) is left alone, and so is another
    // output's.
    let live = d.join(format!(".out.jsonl.{}.Xy98Zw.tmp", std::process::id()));
    std::fs::write(&live, "being written").unwrap();
    age(&live);
    let other = d.join(".other.jsonl.4194305.Ab12Cd.tmp");
    std::fs::write(&other, "not ours").unwrap();
    age(&other);
    let out = d.join("out.jsonl");
    let run = sft_data(&[
        "convert",
        "data-samples/formats/messages.jsonl",
        "--to",
        "messages",
        "-o",
        s(&out),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!stale.exists(), "the stale temporary is removed");
    assert!(live.exists() && other.exists() && fresh.exists());
}

#[test]
fn ctrl_c_removes_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Enough rows that the job is still writing when it is interrupted.
    let input = d.join("big.jsonl");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        for i in 0..400_000 {
            writeln!(f, "{}", chat(i)).unwrap();
        }
    }
    let out = d.join("out.parquet");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sft-data"))
        .args([
            "convert",
            s(&input),
            "--to",
            "messages",
            "-o",
            s(&out),
            "-q",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for its temporary file to appear, then interrupt it.
    let started = std::time::Instant::now();
    while temporaries(d).is_empty() {
        assert!(
            started.elapsed().as_secs() < 60,
            "no temporary file appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    kill("INT", child.id());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(0) {
        // It finished first: then the output is whole and nothing is left either.
        assert!(out.exists());
    } else {
        assert_eq!(output.status.code(), Some(130), "{stderr}");
        assert!(stderr.contains("interrupted"), "{stderr}");
        assert!(!out.exists());
    }
    assert!(
        temporaries(d).is_empty(),
        "left behind: {:?}",
        temporaries(d)
    );
}

#[test]
fn encodings_and_stray_bytes_are_named() {
    let (code, report) = check_report(&misuse("utf16.jsonl"));
    assert_eq!(code, 1);
    let message = report["issues"][0]["message"].as_str().unwrap();
    assert!(message.contains("UTF-16LE"), "{message}");
    assert!(message.contains("iconv -f UTF-16LE -t UTF-8"), "{message}");

    // One NUL byte on line 2: that line is an error, the others are read.
    let (code, report) = check_report(&misuse("nul_line2.jsonl"));
    assert_eq!(code, 1);
    assert_eq!(report["rows"], 3);
    let bad = &report["issues"][0];
    assert_eq!(bad["code"], "invalid_json", "{bad}");
    assert_eq!(bad["line"], 2, "{bad}");

    // A gzip file of zeros is gzip, holding binary content.
    let (code, report) = check_report(&misuse("zeros.jsonl.gz"));
    assert_eq!(code, 1);
    let bad = &report["issues"][0];
    assert_eq!(bad["code"], "binary_file");
    assert!(
        bad["message"]
            .as_str()
            .unwrap()
            .contains("gzip data that decompresses to binary"),
        "{bad}"
    );

    // Paragraphs of a CRLF text file.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.jsonl");
    let run = sft_data(&[
        "convert",
        &misuse("crlf.txt"),
        "--text-split",
        "paragraph",
        "--to",
        "text",
        "-o",
        s(&out),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows = read_jsonl(&out);
    let texts: Vec<&str> = rows.iter().map(|r| r["text"].as_str().unwrap()).collect();
    assert_eq!(
        texts,
        ["First paragraph,\r\nline two.", "Second one.", "Third."]
    );
}

fn check_report(path: &str) -> (i32, Value) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let run = sft_data(&["check", path, "--report", s(&report)]);
    let value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    (run.code, value)
}

#[test]
fn a_conversion_is_suggested_only_when_it_converts_the_rows() {
    let (_, report) = check_report(&misuse("self_instruct.jsonl"));
    let issue = report["issues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["code"] == "needs_conversion")
        .unwrap();
    let hint = issue["hint"].as_str().unwrap();
    assert!(!hint.contains("convert them:"), "{hint}");
    assert!(hint.contains("would reject all of them"), "{hint}");
    // The Alpaca rows of the broken sample do convert: the command is suggested.
    let (_, report) = check_report("data-samples/broken/broken.jsonl");
    let issue = report["issues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["code"] == "needs_conversion")
        .unwrap();
    assert!(issue["hint"]
        .as_str()
        .unwrap()
        .starts_with("convert them: sft-data convert"));
}

#[test]
fn small_counts_and_prepared_tables() {
    let dir = tempfile::tempdir().unwrap();
    let one = write_rows(dir.path(), "one.jsonl", &[chat(1)]);
    let run = sft_data(&["check", s(&one), "--color", "never"]);
    assert!(
        run.stdout.contains("checked 1 file, 1 row,"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("only 1 example\n"), "{}", run.stdout);
    assert!(!run.stdout.contains("1 rows"), "{}", run.stdout);

    // prepare's own table is recognised as such by check and show.
    let out = dir.path().join("p.parquet");
    let run = sft_data(&[
        "prepare",
        s(&one),
        "--tokenizer",
        TOKENIZER,
        "--assistant-only-loss",
        "-o",
        s(&out),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("prepared 1 row in"), "{}", run.stdout);
    let run = sft_data(&["check", s(&out), "--color", "never"]);
    assert!(run.stdout.contains("already tokenized"), "{}", run.stdout);
    assert!(run.stdout.contains("sft-train"), "{}", run.stdout);
    // show shows its tokens as they will be trained.
    let run = sft_data(&[
        "show",
        s(&out),
        "--tokenizer",
        TOKENIZER,
        "--color",
        "never",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("row 0 · prepared · "), "{}", run.stdout);
    assert!(
        run.stdout.contains("⟦1 plus 1 is 2.<|im_end|>"),
        "{}",
        run.stdout
    );
}

#[test]
fn preference_and_kto_data_are_named_and_convert_to_what_sft_can_learn() {
    // LLaMA-Factory's DPO demo shape is preference data, not ShareGPT.
    let (code, report) = check_report(&misuse("dpo_llamafactory.json"));
    assert_eq!(code, 1);
    assert_eq!(report["formats"]["preference"], 3, "{}", report["formats"]);
    let issue = report["issues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["code"] == "needs_conversion")
        .unwrap();
    assert!(issue["message"]
        .as_str()
        .unwrap()
        .contains("preference (chosen/rejected replies, for DPO)"));
    let hint = issue["hint"].as_str().unwrap();
    assert!(
        hint.contains("--from preference")
            && hint.contains("the chosen reply becomes the SFT target"),
        "{hint}"
    );

    // convert takes the chosen reply as the last assistant turn; rejected is dropped.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dpo.jsonl");
    let run = sft_data(&[
        "convert",
        &misuse("dpo_llamafactory.json"),
        "--to",
        "messages",
        "-o",
        s(&out),
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let rows = read_jsonl(&out);
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0]["messages"][1],
        json!({"role": "assistant", "content": "2 is one."})
    );
    assert!(rows
        .iter()
        .all(|r| r.get("rejected").is_none() && r.get("chosen").is_none()));
    let run = sft_data(&["check", s(&out)]);
    assert!(!run.stdout.contains("\nerrors"), "{}", run.stdout);

    // TRL's explicit preference rows, strings and conversational.
    let out = dir.path().join("trl.jsonl");
    let run = sft_data(&[
        "convert",
        &misuse("trl_preference.jsonl"),
        "--from",
        "preference",
        "--to",
        "messages",
        "-o",
        s(&out),
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let rows = read_jsonl(&out);
    assert_eq!(rows[0]["messages"][1]["content"], " blue.");
    assert_eq!(rows[1]["messages"][1]["content"], "It is blue.");

    // KTO: desirable rows are kept, the others rejected with their reason.
    let (_, report) = check_report(&misuse("kto.jsonl"));
    assert_eq!(report["formats"]["kto"], 2, "{}", report["formats"]);
    let out = dir.path().join("kto.jsonl");
    let run = sft_data(&[
        "convert",
        &misuse("kto.jsonl"),
        "--to",
        "prompt-completion",
        "-o",
        s(&out),
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        read_jsonl(&out),
        vec![json!({"prompt": "The sky is", "completion": " blue."})]
    );
    let rejects = read_jsonl(&dir.path().join("kto.rejects.jsonl"));
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0]["code"], "undesirable_example");

    // prepare does not train preference rows as anything else: it says to convert them.
    let table = dir.path().join("p.parquet");
    let run = sft_data(&[
        "prepare",
        &misuse("dpo_llamafactory.json"),
        "--tokenizer",
        TOKENIZER,
        "-o",
        s(&table),
    ]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let rejects = read_jsonl(&dir.path().join("p.rejects.jsonl"));
    assert!(
        rejects.iter().all(|r| r["code"] == "needs_conversion"),
        "{rejects:?}"
    );
    assert!(rejects[0]["reason"]
        .as_str()
        .unwrap()
        .contains("--from preference"));
}

#[test]
fn a_template_without_tool_support_does_not_lose_tool_calls() {
    let dir = tempfile::tempdir().unwrap();
    let input = "data-samples/formats/messages_tools.jsonl";
    // SmolLM2's template has no tool support: the 8 rows with tool calls (content null
    // beside them) are rejected with their own code, naming the message.
    let out = dir.path().join("smol.parquet");
    let run = sft_data(&["prepare", input, "--tokenizer", TOKENIZER, "-o", s(&out)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rejects = read_jsonl(&dir.path().join("smol.rejects.jsonl"));
    assert_eq!(rejects.len(), 8);
    for r in &rejects {
        assert_eq!(r["code"], "template_drops_tool_calls", "{r}");
        let path = r["path"].as_str().unwrap();
        assert!(
            path.starts_with("messages[") && path.ends_with("].tool_calls"),
            "{r}"
        );
        assert!(r["hint"].as_str().unwrap().contains("qwen2.5"), "{r}");
    }
    // A template with tool support renders them: nothing rejected.
    let out = dir.path().join("qwen.parquet");
    let run = sft_data(&[
        "prepare",
        input,
        "--tokenizer",
        TOKENIZER,
        "--chat-template",
        "qwen2.5",
        "-o",
        s(&out),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("20 examples, 0 rejected"),
        "{}",
        run.stdout
    );
    // check --chat-template reports the same code.
    let run = sft_data(&[
        "check",
        input,
        "--chat-template",
        "smollm2",
        "--color",
        "never",
    ]);
    assert!(
        run.stdout.contains("template_drops_tool_calls  8"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("template_error"), "{}", run.stdout);
}

#[test]
fn a_huge_rejected_row_is_kept_as_a_bounded_excerpt() {
    let dir = tempfile::tempdir().unwrap();
    let big = "é".repeat(1_500_000); // 3 MB of two-byte characters
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        format!(
            "{}\n{{\"question\": \"{big}\"}}\n{{\"messages\": \"{big}\n{}\n",
            chat(1),
            chat(2)
        ),
    )
    .unwrap();
    let out = dir.path().join("out.jsonl");
    let run = sft_data(&["convert", s(&input), "--to", "messages", "-o", s(&out)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let table = dir.path().join("t.parquet");
    let prepared = sft_data(&[
        "prepare",
        s(&input),
        "--tokenizer",
        TOKENIZER,
        "-o",
        s(&table),
    ]);
    assert_eq!(prepared.code, 0, "{}", prepared.stderr);
    for rejects in ["out.rejects.jsonl", "t.rejects.jsonl"] {
        let path = dir.path().join(rejects);
        assert!(
            std::fs::metadata(&path).unwrap().len() < 3 << 20,
            "{rejects} is bounded"
        );
        let rows = read_jsonl(&path);
        assert_eq!(rows.len(), 2, "{rejects}");
        for r in &rows {
            assert!(r.get("record").is_none(), "{rejects}: {}", r["code"]);
            let excerpt = r["record_excerpt"].as_str().unwrap();
            assert!(
                excerpt.len() <= 1 << 20 && excerpt.len() > 1 << 19,
                "{rejects}"
            );
            assert!(!excerpt.contains('\u{FFFD}'), "cut at a character");
            assert!(r["record_bytes"].as_u64().unwrap() > 3_000_000);
            assert!(r["line"].is_u64() && r["reason"].is_string());
        }
    }
    // (Small rejected rows are kept whole: see rows_check_calls_errors_are_never_trained...)
    let rejects = read_jsonl(&dir.path().join("t.rejects.jsonl"));
    assert_eq!(rejects[0]["line"], 2);
    assert_eq!(rejects[1]["line"], 3);
}

#[test]
fn deep_nesting_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.jsonl");
    let deep = format!(
        "{{\"text\": {}1{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    std::fs::write(&path, format!("{}\n{deep}\n", chat(1))).unwrap();
    let (code, report) = check_report(s(&path));
    assert_eq!(code, 1);
    let issue = &report["issues"][0];
    assert_eq!(issue["line"], 2, "{issue}");
    assert!(
        issue["message"]
            .as_str()
            .unwrap()
            .contains("more than 128 levels deep"),
        "{issue}"
    );
    assert!(
        !issue["hint"].as_str().unwrap().contains("fix the JSON"),
        "{issue}"
    );
}

#[test]
fn sft_train_does_not_train_rows_check_calls_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let run = common::sft_train(&[
        "--model_name_or_path",
        "data-samples/models/tiny-llama",
        "--dataset_name",
        &misuse("check_errors.jsonl"),
        "--output_dir",
        s(&out),
        "--max_steps",
        "1",
        "--per_device_train_batch_size",
        "2",
        "--save_steps",
        "100",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("train: 5 rows read, 2 examples, 3 rejected"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("training: 2 rows"), "{}", run.stderr);
    let rejects = read_jsonl(&out.join("data/train.rejects.jsonl"));
    let codes: Vec<&str> = rejects
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["unknown_role", "empty_target", "no_assistant_turn"]);
}

#[test]
fn sft_train_and_sft_eval_refuse_wrong_outputs_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_rows(
        dir.path(),
        "train.jsonl",
        &(0..4).map(chat).collect::<Vec<_>>(),
    );
    let model = "data-samples/models/tiny-llama";
    // An --output_dir that is a file.
    let file = dir.path().join("out.txt");
    std::fs::write(&file, "x").unwrap();
    let r = common::sft_train(&[
        "--model_name_or_path",
        model,
        "--dataset_name",
        s(&data),
        "--output_dir",
        s(&file),
        "-q",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("a file, not a folder"), "{}", r.stderr);
    // --bf16 would be ignored on the CPU: refused with the reason, not accepted.
    let r = common::sft_train(&[
        "--model_name_or_path",
        model,
        "--dataset_name",
        s(&data),
        "--output_dir",
        s(&file),
        "--bf16",
        "-q",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--bf16 is not supported"), "{}", r.stderr);
    // A batch size of 0 is refused before the data is prepared.
    let out = dir.path().join("run");
    let r = common::sft_train(&[
        "--model_name_or_path",
        model,
        "--dataset_name",
        s(&data),
        "--output_dir",
        s(&out),
        "--per_device_train_batch_size",
        "0",
        "-q",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("'--per_device_train_batch_size <N>': must be at least 1"),
        "{}",
        r.stderr
    );
    assert!(
        !out.join("data").exists(),
        "the data was prepared before the flag was checked"
    );
    // sft-eval's report may not be its dataset; the data is untouched.
    let before = std::fs::read(&data).unwrap();
    let r = common::sft_eval(&[
        "--checkpoint",
        model,
        "--dataset",
        s(&data),
        "--report",
        s(&data),
        "-q",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("report"), "{}", r.stderr);
    assert_eq!(std::fs::read(&data).unwrap(), before);
}

/// Runs sft-train on the tiny model for `steps` steps, saving every 2.
fn train_tiny(data: &Path, out: &Path, steps: &str, extra: &[&str]) -> common::Run {
    let mut args = vec![
        "--model_name_or_path",
        "data-samples/models/tiny-llama",
        "--dataset_name",
        s(data),
        "--output_dir",
        s(out),
        "--per_device_train_batch_size",
        "2",
        "--max_length",
        "64",
        "--max_steps",
        steps,
        "--save_steps",
        "2",
        "-q",
    ];
    args.extend_from_slice(extra);
    common::sft_train(&args)
}

/// Rewrites one safetensors file of a checkpoint through `edit`.
fn edit_safetensors(
    path: &Path,
    edit: impl FnOnce(&mut std::collections::HashMap<String, candle_core::Tensor>),
) {
    let mut tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, path).unwrap();
}

fn filled(like: &candle_core::Tensor, value: f32) -> candle_core::Tensor {
    candle_core::Tensor::full(value, like.shape(), like.device()).unwrap()
}

#[test]
fn resuming_from_a_damaged_checkpoint_names_the_file_and_an_earlier_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_rows(
        dir.path(),
        "train.jsonl",
        &(0..8).map(chat).collect::<Vec<_>>(),
    );
    let good = dir.path().join("good");
    let r = train_tiny(&data, &good, "4", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let layer = "model.layers.0.mlp.up_proj.weight";
    type Damage = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Damage, Vec<String>)> = vec![
        (
            "NaN moments",
            Box::new(|c: &Path| {
                edit_safetensors(&c.join("optimizer.safetensors"), |t| {
                    for v in t.values_mut() {
                        *v = filled(v, f32::NAN);
                    }
                })
            }),
            vec![
                "optimizer.safetensors: tensor exp_avg".into(),
                "values are not finite".into(),
            ],
        ),
        (
            "a NaN weight",
            Box::new(move |c: &Path| {
                edit_safetensors(&c.join("model.safetensors"), |t| {
                    let v = t.get_mut(layer).unwrap();
                    *v = filled(v, f32::INFINITY);
                })
            }),
            vec![
                format!("model.safetensors: tensor {layer}"),
                "not finite".into(),
            ],
        ),
        (
            "a truncated model file",
            Box::new(|c: &Path| {
                let p = c.join("model.safetensors");
                let len = std::fs::metadata(&p).unwrap().len();
                let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
                f.set_len(len / 2).unwrap();
            }),
            vec!["model.safetensors: cannot read safetensors: cut short".into()],
        ),
        (
            "a truncated optimizer file",
            Box::new(|c: &Path| {
                let p = c.join("optimizer.safetensors");
                let len = std::fs::metadata(&p).unwrap().len();
                let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
                f.set_len(len - 100).unwrap();
            }),
            vec!["optimizer.safetensors: cannot read safetensors: cut short".into()],
        ),
        (
            "a missing tensor",
            Box::new(move |c: &Path| {
                edit_safetensors(&c.join("model.safetensors"), |t| {
                    t.remove(layer);
                })
            }),
            vec![format!("model.safetensors: tensor {layer} is missing")],
        ),
        (
            "a missing moment",
            Box::new(move |c: &Path| {
                edit_safetensors(&c.join("optimizer.safetensors"), |t| {
                    t.remove(&format!("exp_avg_sq.{layer}"));
                })
            }),
            vec![format!(
                "optimizer.safetensors: tensor exp_avg_sq.{layer}: missing"
            )],
        ),
        (
            "a moment of the wrong size",
            Box::new(move |c: &Path| {
                edit_safetensors(&c.join("optimizer.safetensors"), |t| {
                    let k = format!("exp_avg.{layer}");
                    let n = t[&k].elem_count();
                    t.insert(
                        k,
                        candle_core::Tensor::zeros(
                            n / 2,
                            candle_core::DType::F32,
                            &candle_core::Device::Cpu,
                        )
                        .unwrap(),
                    );
                })
            }),
            vec![format!(
                "optimizer.safetensors: tensor exp_avg.{layer}: shape"
            )],
        ),
        (
            "a weight of the wrong size",
            Box::new(move |c: &Path| {
                edit_safetensors(&c.join("model.safetensors"), |t| {
                    let v = t.get_mut(layer).unwrap();
                    *v = v.narrow(0, 0, 1).unwrap();
                })
            }),
            vec![format!("model.safetensors: tensor {layer} has shape")],
        ),
    ];
    for (what, damage, expected) in cases {
        let out = dir.path().join(what.replace(' ', "-"));
        copy_dir(&good, &out);
        let _ = std::fs::remove_dir_all(out.join("data"));
        damage(&out.join("checkpoint-4"));
        let r = train_tiny(&data, &out, "6", &["--resume_from_checkpoint"]);
        assert_eq!(r.code, 1, "{what}: {}", r.stderr);
        let e = &r.stderr;
        for text in &expected {
            assert!(e.contains(text.as_str()), "{what}: no {text:?} in {e}");
        }
        assert!(e.contains("checkpoint-4 is damaged"), "{what}: {e}");
        assert!(
            e.contains(&format!(
                "--resume_from_checkpoint {}",
                out.join("checkpoint-2").display()
            )) && e.contains("has checkpoint-2"),
            "{what}: the earlier checkpoint is not offered: {e}"
        );
        assert!(
            !e.contains("learning_rate"),
            "{what}: blamed on the rate: {e}"
        );
        assert!(!e.contains("last good"), "{what}: {e}");
        assert!(
            !out.join("data").exists(),
            "{what}: the data was prepared before the checkpoint was checked"
        );
        // The earlier checkpoint it offers resumes.
        let r = train_tiny(
            &data,
            &out,
            "6",
            &["--resume_from_checkpoint", s(&out.join("checkpoint-2"))],
        );
        assert_eq!(r.code, 0, "{what}: {}", r.stderr);
    }
    // With no earlier checkpoint the hint says to start over.
    let only = dir.path().join("only");
    std::fs::create_dir_all(&only).unwrap();
    copy_dir(&good.join("checkpoint-2"), &only.join("checkpoint-2"));
    edit_safetensors(&only.join("checkpoint-2/optimizer.safetensors"), |t| {
        for v in t.values_mut() {
            *v = filled(v, f32::NAN);
        }
    });
    let r = train_tiny(&data, &only, "4", &["--resume_from_checkpoint"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("no other checkpoint-N: train from the start"),
        "{}",
        r.stderr
    );
}

#[test]
fn check_report_caps_the_issues_listed_per_code_and_keeps_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_rows(dir.path(), "dup.jsonl", &vec![chat(1); 40]);
    let report = dir.path().join("r.json");
    let read =
        || -> Value { serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap() };
    let listed = |r: &Value, code: &str| {
        r["issues"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["code"] == code)
            .count()
    };
    let r = sft_data(&[
        "check",
        s(&data),
        "--report",
        s(&report),
        "--report-limit",
        "5",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("first 5 issues of each code; 34 more are counted but not listed (--report-limit 0 lists every issue)"),
        "{}",
        r.stdout
    );
    let v = read();
    assert_eq!(v["codes"]["duplicate_row"]["count"], 39);
    assert_eq!(listed(&v, "duplicate_row"), 5);
    assert_eq!(v["issues_left_out"]["duplicate_row"], 34);
    assert_eq!(v["issues_per_code_limit"], 5);
    assert_eq!(v["issues_complete"], false);
    // 0 lists every issue; the default cap (10,000) is not reached here.
    for extra in [&["--report-limit", "0"][..], &[]] {
        let mut args = vec!["check", s(&data), "--report", s(&report)];
        args.extend_from_slice(extra);
        let r = sft_data(&args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let v = read();
        assert_eq!(listed(&v, "duplicate_row"), 39, "{extra:?}");
        assert_eq!(v["issues_complete"], true, "{extra:?}");
        assert!(!r.stdout.contains("not listed"), "{}", r.stdout);
    }
}

#[test]
fn sft_eval_run_that_is_a_file_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.txt");
    std::fs::write(&file, "x").unwrap();
    let data = write_rows(dir.path(), "d.jsonl", &[chat(1)]);
    let r = common::sft_eval(&["--run", s(&file), "--dataset", s(&data), "-q"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("a file, not a run folder"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("no such folder"), "{}", r.stderr);
}

#[test]
fn sft_eval_checkpoint_without_config_or_tokenizer_is_a_wrong_command() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_rows(dir.path(), "d.jsonl", &[chat(1)]);
    let model = common::root().join("data-samples/models/tiny-llama");
    for missing in ["config.json", "tokenizer.json"] {
        let ckpt = dir.path().join(format!("no-{missing}"));
        std::fs::create_dir_all(&ckpt).unwrap();
        for e in std::fs::read_dir(&model).unwrap().flatten() {
            if e.file_name() != missing {
                std::fs::copy(e.path(), ckpt.join(e.file_name())).unwrap();
            }
        }
        let r = common::sft_eval(&["--checkpoint", s(&ckpt), "--dataset", s(&data), "-q"]);
        assert_eq!(r.code, 2, "{missing}: {}", r.stderr);
        assert!(r.stderr.contains(missing), "{missing}: {}", r.stderr);
    }
}

#[test]
fn check_throughput_is_of_the_data_not_the_compressed_file() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.jsonl.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::default(),
    );
    let mut data = 0u64;
    for i in 0..20_000 {
        let line = chat(i).to_string() + "\n";
        data += line.len() as u64;
        gz.write_all(line.as_bytes()).unwrap();
    }
    gz.finish().unwrap();
    let file = std::fs::metadata(&path).unwrap().len();
    let r = sft_data(&["check", s(&path)]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let expected = format!(
        "{:.1} MB of data ({:.1} MB of files) in",
        data as f64 / 1e6,
        file as f64 / 1e6
    );
    assert!(
        r.stdout.contains(&expected),
        "no {expected:?} in {}",
        r.stdout
    );
}

/// One huge reply: only what `--max-length` keeps is tokenized (a prefix), and the tokens
/// kept are those of a short row that starts the same way, tokenized whole.
#[test]
fn a_huge_reply_is_cut_before_tokenizing_and_keeps_the_same_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let reply = |n: usize| -> Value {
        let words: String = (0..n).map(|i| format!("word{} ", i % 97)).collect();
        json!({"messages": [
            {"role": "user", "content": "Say many words."},
            {"role": "assistant", "content": words}
        ]})
    };
    let mut ids = Vec::new();
    for (name, n) in [("huge", 400_000), ("short", 300)] {
        let input = write_rows(dir.path(), &format!("{name}.jsonl"), &[reply(n)]);
        let out = dir.path().join(format!("{name}.parquet"));
        let started = std::time::Instant::now();
        let run = sft_data(&[
            "prepare",
            s(&input),
            "--tokenizer",
            TOKENIZER,
            "--max-length",
            "64",
            "-o",
            s(&out),
        ]);
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        assert!(
            started.elapsed().as_secs() < 20,
            "{name}: {:?}",
            started.elapsed()
        );
        assert!(
            run.stdout.contains("1 example truncated"),
            "{name}: {}",
            run.stdout
        );
        let table = sft_io::tokens::read_token_table(&out).unwrap();
        let column = &table.iter().find(|(n, _)| n == "input_ids").unwrap().1;
        assert_eq!(column.len(), 1);
        assert_eq!(column[0].len(), 64);
        ids.push(column[0].clone());
    }
    assert_eq!(ids[0], ids[1]);
}

/// A reader that stops early (`sft-data show ... | head -c 100`) ends the command quietly
/// with 141 (as a shell reports SIGPIPE), not with a panic.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let rows = dir.path().join("a.jsonl");
    let text: String = (0..400)
        .map(|i| json!({"messages": [{"role": "user", "content": format!("question {i} ").repeat(20)}, {"role": "assistant", "content": "answer ".repeat(40)}]}).to_string() + "\n")
        .collect();
    std::fs::write(&rows, text).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sft-data"))
        .args([
            "show",
            rows.to_str().unwrap(),
            "--tokenizer",
            common::sample("data-samples/models/smollm2-135m-instruct-tokenizer")
                .to_str()
                .unwrap(),
            "--rows",
            "0..400",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 100];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

//! `sft-data check` end to end: every error code on realistic broken data, locations,
//! the JSON report, exit codes, and every input kind.

mod common;

use std::collections::BTreeSet;
use std::io::Write;

use common::{sample, sft_data};
use serde_json::{json, Value};
use sft_formats::IssueCode;

fn report_of(args: &[&str]) -> (i32, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let mut all: Vec<&str> = args.to_vec();
    let report_str = report.to_str().unwrap().to_string();
    all.extend(["--report", &report_str]);
    let run = sft_data(&all);
    let text = std::fs::read_to_string(&report)
        .unwrap_or_else(|e| panic!("no report ({e}); stderr: {}", run.stderr));
    let value: Value = serde_json::from_str(&text).expect("the report is valid JSON");
    (run.code, value, run.stdout)
}

fn issues<'a>(report: &'a Value, code: &str) -> Vec<&'a Value> {
    report["issues"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["code"] == code)
        .collect()
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn broken_samples_trip_every_data_error_code() {
    let (code, report, stdout) = report_of(&["check", "data-samples/broken"]);
    assert_eq!(code, 1, "{stdout}");
    let found: BTreeSet<&str> = report["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    // These need another flag or more data; each has its own test (template ones in render.rs,
    // template_drops_tool_calls in misuse.rs).
    let elsewhere = [
        "format_mismatch",
        "eval_overlap",
        "below_recommended_size",
        "template_error",
        "template_drops_tool_calls",
        "render_awaits_assistant",
        "prompt_not_prefix",
        "no_chat_template",
        "double_bos",
    ];
    for code in IssueCode::ALL {
        if !elsewhere.contains(&code.as_str()) {
            assert!(
                found.contains(code.as_str()),
                "no {code} in the broken samples"
            );
        }
    }
    assert_eq!(report["passed"], false);
    assert_eq!(report["issues_complete"], true);
    let errors: u64 = report["codes"]
        .as_object()
        .unwrap()
        .values()
        .filter(|c| c["severity"] == "error")
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert_eq!(report["errors"].as_u64().unwrap(), errors);
    assert_eq!(
        report["issues"].as_array().unwrap().len() as u64,
        errors + report["warnings"].as_u64().unwrap(),
        "the report lists every issue"
    );
}

#[test]
fn issues_name_file_line_and_field() {
    let (_, report, stdout) = report_of(&["check", "data-samples/broken/broken.jsonl"]);
    let file = "data-samples/broken/broken.jsonl";
    let invalid_json = issues(&report, "invalid_json");
    assert_eq!(invalid_json[0]["file"], file);
    assert_eq!(invalid_json[0]["line"], 4);
    assert!(invalid_json[0]["message"]
        .as_str()
        .unwrap()
        .contains("column"));
    let utf8 = issues(&report, "invalid_utf8");
    assert_eq!(utf8[0]["line"], 5);
    assert!(utf8[0]["message"].as_str().unwrap().contains("0xe9"));
    let roles = issues(&report, "unknown_role");
    assert_eq!(roles[0]["line"], 11);
    assert_eq!(roles[0]["path"], "messages[0].role");
    assert!(roles[0]["hint"]
        .as_str()
        .unwrap()
        .contains("--from sharegpt"));
    assert_eq!(roles[1]["path"], "messages[1].role");
    let calls = issues(&report, "malformed_tool_calls");
    assert_eq!(
        calls[0]["path"],
        "messages[1].tool_calls[0].function.arguments"
    );
    let dup = issues(&report, "duplicate_row");
    assert_eq!(dup[0]["line"], 27);
    assert!(dup[0]["message"]
        .as_str()
        .unwrap()
        .ends_with("broken.jsonl:2"));
    let mixed = issues(&report, "mixed_formats");
    assert_eq!(mixed.len(), 2, "prompt-completion and text among messages");
    assert_eq!(mixed[0]["count"], 3);
    for issue in report["issues"].as_array().unwrap() {
        for key in ["code", "severity", "message", "hint"] {
            assert!(issue[key].is_string(), "{key} in {issue}");
        }
    }
    // The summary shows each code with its first locations and a hint.
    assert!(stdout.contains("invalid_json  1"), "{stdout}");
    assert!(
        stdout.contains("broken.jsonl:11  messages[0].role: unknown role `human`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("hint: `human` is ShareGPT's name for `user`"),
        "{stdout}"
    );
    assert!(stdout.contains("\nfailed: 20 errors\nreport: "), "{stdout}");
}

#[test]
fn file_level_problems_are_located_and_do_not_stop_the_check() {
    let (code, report, _) = report_of(&["check", "data-samples/broken"]);
    assert_eq!(code, 1);
    let files = report["files"].as_array().unwrap();
    assert_eq!(files.len(), 5);
    for (name, code) in [
        ("empty.jsonl", "empty_file"),
        ("lfs_pointer.parquet", "lfs_pointer"),
        ("binary.jsonl", "binary_file"),
        ("truncated.jsonl.gz", "unreadable_file"),
    ] {
        let found = issues(&report, code);
        assert_eq!(found.len(), 1, "{code}");
        assert!(found[0]["file"].as_str().unwrap().ends_with(name), "{code}");
    }
    let broken = files
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("broken.jsonl"))
        .unwrap();
    assert_eq!(broken["rows"], 35);
}

#[test]
fn clean_samples_pass() {
    for file in [
        "data-samples/formats/messages.jsonl",
        "data-samples/formats/messages_tools.jsonl",
        "data-samples/formats/prompt_completion.jsonl",
        "data-samples/formats/conversational_prompt_completion.jsonl",
        "data-samples/formats/text.jsonl",
        "data-samples/formats/messages.parquet",
    ] {
        let (code, report, stdout) = report_of(&["check", file]);
        assert_eq!(code, 0, "{file}: {stdout}");
        assert_eq!(report["errors"], 0, "{file}");
        assert_eq!(report["passed"], true);
        assert!(report["format"].is_string(), "{file} has one format");
        // Only dataset-size advice (and a duplicate in glaive) among the warnings.
        for issue in report["issues"].as_array().unwrap() {
            assert_eq!(issue["severity"], "warning", "{file}: {issue}");
        }
        let (strict, _, _) = report_of(&["check", file, "--strict"]);
        assert_eq!(strict, 1, "{file}: --strict fails on warnings");
    }
}

#[test]
fn forced_format_reports_every_mismatching_row() {
    let (code, report, _) = report_of(&[
        "check",
        "data-samples/formats/messages.jsonl",
        "--format",
        "prompt-completion",
    ]);
    assert_eq!(code, 1);
    let mismatches = issues(&report, "format_mismatch");
    assert_eq!(mismatches.len(), 40);
    assert_eq!(mismatches[0]["line"], 1);
    assert!(issues(&report, "mixed_formats").is_empty());
}

#[test]
fn rows_shared_with_the_evaluation_data_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = std::fs::read_to_string(sample("data-samples/formats/messages.jsonl"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    // The evaluation file holds rows 5 and 9 of the training file, with an extra id column.
    let eval_rows: Vec<String> = [4, 8]
        .iter()
        .map(|&i| {
            let mut v: Value = serde_json::from_str(&lines[i]).unwrap();
            v["id"] = json!(format!("eval-{i}"));
            v.to_string()
        })
        .collect();
    let eval = write(dir.path(), "eval.jsonl", &(eval_rows.join("\n") + "\n"));
    let (_, report, stdout) = report_of(&[
        "check",
        "data-samples/formats/messages.jsonl",
        "--eval",
        &eval,
    ]);
    let overlap = issues(&report, "eval_overlap");
    assert_eq!(overlap.len(), 2, "{stdout}");
    assert_eq!(overlap[0]["line"], 5);
    assert!(overlap[0]["message"]
        .as_str()
        .unwrap()
        .contains("eval.jsonl:1"));
    assert_eq!(report["eval"]["rows"], 2);
    assert_eq!(report["eval"]["overlapping_rows"], 2);
}

#[test]
fn dataset_size_advice() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..1500 {
        let row =
            json!({"prompt": format!("What is {i} plus {i}?"), "completion": format!("{}", 2 * i)});
        text.push_str(&row.to_string());
        text.push('\n');
    }
    let path = write(dir.path(), "sums.jsonl", &text);
    let (code, report, _) = report_of(&["check", &path]);
    assert_eq!(code, 0);
    assert_eq!(issues(&report, "below_recommended_size").len(), 1);
    assert!(issues(&report, "too_few_examples").is_empty());
    let (strict, _, _) = report_of(&["check", &path, "--strict"]);
    assert_eq!(strict, 1);
}

#[test]
fn json_arrays_keep_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"[
  {"prompt": "a", "completion": "b"},
  {
    "prompt": "c",
    "completion": 3
  },
  {"prompt": "e", "completion": "f"}
]
"#;
    let path = write(dir.path(), "rows.json", text);
    let (code, report, _) = report_of(&["check", &path]);
    assert_eq!(code, 1);
    assert_eq!(report["rows"], 3);
    let wrong = issues(&report, "wrong_type");
    assert_eq!(wrong[0]["line"], 3, "the line where the row starts");
    assert_eq!(wrong[0]["row"], 1);
    assert_eq!(wrong[0]["path"], "completion");

    // A cut-off array: the rows before the cut are checked, the cut row is located.
    let cut = write(
        dir.path(),
        "cut.json",
        "[\n{\"text\": \"a\"},\n{\"text\": \"b\"",
    );
    let (code, report, _) = report_of(&["check", &cut]);
    assert_eq!(code, 1);
    assert_eq!(report["rows"], 2);
    assert_eq!(issues(&report, "invalid_json")[0]["line"], 3);

    // Content after the closing `]` is reported, not dropped; the rows before it are checked.
    let two = write(
        dir.path(),
        "two.json",
        "[{\"text\": \"a\"}]\n[{\"text\": \"b\"}]\n",
    );
    let (code, report, _) = report_of(&["check", &two]);
    assert_eq!(code, 1);
    assert_eq!(report["rows"], 1);
    let after = issues(&report, "unreadable_file");
    assert_eq!(after[0]["line"], 2);
    assert!(after[0]["message"]
        .as_str()
        .unwrap()
        .contains("after the closing `]`"));

    // One object holding the list, and JSON lines misnamed .json.
    let wrapped = write(
        dir.path(),
        "wrapped.json",
        r#"{"version": 2, "data": [{"text": "a"}, {"text": "b"}]}"#,
    );
    let (_, report, _) = report_of(&["check", &wrapped]);
    assert_eq!(report["rows"], 2);
    let misnamed = write(
        dir.path(),
        "lines.json",
        "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \"c\"}\n",
    );
    let (_, report, _) = report_of(&["check", &misnamed]);
    assert_eq!(report["rows"], 3);
    assert_eq!(report["files"][0]["kind"], "jsonl");
}

#[test]
fn compressed_files_read_like_plain_ones() {
    let dir = tempfile::tempdir().unwrap();
    let plain = std::fs::read(sample("data-samples/formats/messages.jsonl")).unwrap();
    let gz_path = dir.path().join("messages.jsonl.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz_path).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(&plain).unwrap();
    gz.finish().unwrap();
    let zst_path = dir.path().join("messages.jsonl.zst");
    std::fs::write(&zst_path, zstd::encode_all(&plain[..], 3).unwrap()).unwrap();
    // A gzip file named .jsonl is still read: content decides, not the name.
    let hidden = dir.path().join("hidden.jsonl");
    std::fs::copy(&gz_path, &hidden).unwrap();
    for path in [&gz_path, &zst_path, &hidden] {
        let (code, report, _) = report_of(&["check", path.to_str().unwrap()]);
        assert_eq!(code, 0, "{}", path.display());
        assert_eq!(report["rows"], 40, "{}", path.display());
        assert_eq!(report["formats"]["messages"], 40);
    }
}

#[test]
fn folders_of_shards_and_hf_folders() {
    let (code, report, _) = report_of(&["check", "tests/fixtures/interop/dataset_dict"]);
    assert_eq!(code, 0);
    assert_eq!(report["rows"], 6);
    assert_eq!(report["files"].as_array().unwrap().len(), 2);
    assert_eq!(report["files"][0]["kind"], "arrow");
    let (_, report, _) = report_of(&["check", "data-samples/formats"]);
    assert_eq!(report["files"].as_array().unwrap().len(), 6);
    assert_eq!(issues(&report, "mixed_formats").len(), 3);
}

#[test]
fn usage_errors_exit_2() {
    let missing = sft_data(&["check", "no/such/file.jsonl"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing
            .stderr
            .contains("no/such/file.jsonl: no such file or folder"),
        "{}",
        missing.stderr
    );
    assert!(missing.stderr.contains("hint:"));
    let flag = sft_data(&[
        "check",
        "data-samples/formats/text.jsonl",
        "--formt",
        "text",
    ]);
    assert_eq!(flag.code, 2);
    assert!(
        flag.stderr.contains("--format"),
        "clap suggests the closest flag: {}",
        flag.stderr
    );
    let format = sft_data(&[
        "check",
        "data-samples/formats/text.jsonl",
        "--format",
        "chat",
    ]);
    assert_eq!(format.code, 2);
    let none = sft_data(&["check"]);
    assert_eq!(none.code, 2);
    let empty_dir = tempfile::tempdir().unwrap();
    let folder = sft_data(&["check", empty_dir.path().to_str().unwrap()]);
    assert_eq!(folder.code, 2);
    assert!(
        folder.stderr.contains("holds no data files"),
        "{}",
        folder.stderr
    );
}

#[test]
fn text_files_are_documents() {
    let (code, report, _) = report_of(&[
        "check",
        "data-samples/real/rawtext_tinystories_sample.txt",
        "--text-split",
        "<|endoftext|>",
    ]);
    assert_eq!(code, 0);
    assert_eq!(report["rows"], 5);
    assert_eq!(report["formats"]["text"], 5);
}

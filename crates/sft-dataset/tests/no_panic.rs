//! Bad input never panics: thousands of damaged files (bytes flipped, cut, duplicated,
//! spliced) in every format go through `check` and `convert`, and every row is accounted for.

use std::io::Write;

use sft_dataset::check::{check, CheckOptions};
use sft_dataset::convert::{convert, ConvertJob};
use sft_formats::convert::{ConvertOptions, Source};
use sft_formats::Format;
use sft_io::{discover, ByteCounter, ReadOptions};

/// A small seeded generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SEEDS: &[&str] = &[
    r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]}], "tools": [{"type": "function", "function": {"name": "f"}}]}"#,
    r#"{"prompt": "2+2=", "completion": "4"}"#,
    r#"{"prompt": [{"role": "user", "content": [{"type": "text", "text": "x"}]}], "completion": [{"role": "assistant", "content": "y"}]}"#,
    r#"{"text": "Once upon a time"}"#,
    r#"{"instruction": "Say hi", "input": "", "output": "hi", "history": [["a", "b"]]}"#,
    r#"{"conversations": [{"from": "human", "value": "hi"}, {"from": "function_call", "value": "{\"name\": \"f\", \"arguments\": {}}"}, {"from": "gpt", "value": "ok"}], "tools": "[]"}"#,
    // Shapes of issue 12: preference and KTO rows, self-instruct, a prepared row, rows
    // that check calls errors.
    r#"{"prompt": "Q", "chosen": "good", "rejected": "bad"}"#,
    r#"{"conversations": [{"from": "human", "value": "Q"}], "chosen": {"from": "gpt", "value": "A"}, "rejected": {"from": "gpt", "value": "B"}}"#,
    r#"{"prompt": "Q", "completion": "A", "label": false}"#,
    r#"{"instruction": "Add 1 and 1.", "instances": [{"input": "", "output": "2"}]}"#,
    r#"{"input_ids": [1, 2, 3], "labels": [-100, 2, 3], "completion_mask": [0, 1, 1]}"#,
    r#"{"messages": [{"role": "human", "content": "Hi"}, {"role": "gpt", "content": ""}]}"#,
];

fn damage(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        if bytes.is_empty() {
            bytes.push(b'{');
        }
        let at = rng.below(bytes.len());
        match rng.below(6) {
            0 => bytes[at] = (rng.next() & 0xff) as u8,
            1 => bytes.truncate(at),
            2 => {
                let end = (at + rng.below(40)).min(bytes.len());
                let piece = bytes[at..end].to_vec();
                let to = rng.below(bytes.len());
                bytes.splice(to..to, piece);
            }
            3 => {
                let end = (at + rng.below(20)).min(bytes.len());
                bytes.drain(at..end);
            }
            4 => {
                let specials = b"{}[]\",:\\\n\x00\xff";
                bytes.insert(at, specials[rng.below(specials.len())])
            }
            _ => bytes.insert(at, b'\n'),
        }
    }
}

#[test]
fn damaged_files_are_reported_not_panicked_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for case in 0..600 {
        let rows: Vec<&str> = (0..1 + rng.below(6))
            .map(|_| SEEDS[rng.below(SEEDS.len())])
            .collect();
        let (name, mut bytes) = match case % 7 {
            0 => ("d.jsonl", rows.join("\n").into_bytes()),
            1 => ("d.json", format!("[\n{}\n]", rows.join(",\n")).into_bytes()),
            2 => (
                "d.json",
                format!("{{\"data\": [{}]}}", rows.join(",")).into_bytes(),
            ),
            3 => ("d.txt", rows.join("\n\n").into_bytes()),
            // CRLF text, UTF-16 with its byte order mark, gzip (damaged after compression).
            4 => ("d.txt", rows.join("\r\n\r\n").into_bytes()),
            5 => {
                let mut utf16 = vec![0xFF, 0xFE];
                for unit in rows.join("\n").encode_utf16() {
                    utf16.extend_from_slice(&unit.to_le_bytes());
                }
                ("d.jsonl", utf16)
            }
            _ => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(rows.join("\n").as_bytes()).unwrap();
                ("d.jsonl.gz", gz.finish().unwrap())
            }
        };
        damage(&mut rng, &mut bytes);
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
        let files = discover(std::slice::from_ref(&path)).unwrap();
        let report = check(&files, &CheckOptions::default());
        // Every row is either parsed or reported; a file that fails is reported.
        assert!(
            report.rows > 0
                || report.errors > 0
                || report.warnings > 0
                || bytes.iter().all(u8::is_ascii_whitespace)
                || bytes.is_empty(),
            "case {case}: nothing reported for {:?}",
            String::from_utf8_lossy(&bytes)
        );
        let out = dir.path().join("out.jsonl");
        let job = ConvertJob {
            inputs: files,
            read: ReadOptions::default(),
            options: ConvertOptions {
                from: Source::Auto,
                to: Format::Messages,
                system: None,
                column_map: vec![],
            },
            output: out.clone(),
            rejects: None,
            progress: ByteCounter::default(),
        };
        let _ = std::fs::remove_file(&out);
        let summary = convert(&job).unwrap();
        assert_eq!(
            summary.rows_in,
            summary.written + summary.withheld + summary.rejected,
            "case {case}"
        );
        assert_eq!(
            summary.rows_in, report.rows,
            "case {case}: check and convert see the same rows"
        );
        // A file not read to its end leaves no output; a complete read always writes one.
        assert_eq!(out.exists(), summary.output_written, "case {case}");
        assert_no_temporaries(dir.path(), case);
    }
}

fn assert_no_temporaries(dir: &std::path::Path, case: usize) {
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "case {case}: left behind {left:?}");
}

/// Parquet files damaged anywhere (bytes overwritten, cut): check counts what it could not
/// read, convert and prepare's reader never panic, and no output looks complete.
#[test]
fn damaged_parquet_is_reported_and_withholds_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.parquet");
    let mut writer = sft_io::write::DatasetWriter::create(&clean).unwrap();
    for i in 0..3000 {
        writer
            .write(&serde_json::json!({"prompt": format!("Q{i} {}", i * 7919 % 1000), "completion": format!("A{i}")}))
            .unwrap();
    }
    writer.finish().unwrap();
    let pristine = std::fs::read(&clean).unwrap();
    let mut rng = Rng(0x5eed_1234_abcd_0002);
    let mut withheld = 0;
    for case in 0..60 {
        let mut bytes = pristine.clone();
        let at = 4 + rng.below(bytes.len() - 8);
        if case % 5 == 0 {
            bytes.truncate(at);
        } else {
            let end = (at + 1 + rng.below(512)).min(bytes.len() - 4);
            for b in &mut bytes[at..end] {
                *b = (rng.next() & 0xff) as u8;
            }
        }
        let path = dir.path().join("d.parquet");
        std::fs::write(&path, &bytes).unwrap();
        let files = discover(std::slice::from_ref(&path)).unwrap();
        let report = check(&files, &CheckOptions::default());
        let file = &report.files[0];
        if file.error.is_some() {
            if let Some(not_read) = file.rows_not_read {
                assert_eq!(file.rows + not_read, 3000, "case {case}");
            }
        }
        let out = dir.path().join("out.jsonl");
        let _ = std::fs::remove_file(&out);
        let job = ConvertJob {
            inputs: files,
            read: ReadOptions::default(),
            options: ConvertOptions {
                from: Source::Auto,
                to: Format::Messages,
                system: None,
                column_map: vec![],
            },
            output: out.clone(),
            rejects: None,
            progress: ByteCounter::default(),
        };
        let summary = convert(&job).unwrap();
        assert_eq!(
            summary.rows_in,
            summary.written + summary.withheld + summary.rejected,
            "case {case}"
        );
        assert_eq!(summary.output_written, file.error.is_none(), "case {case}");
        assert_eq!(out.exists(), summary.output_written, "case {case}");
        assert_no_temporaries(dir.path(), case);
        withheld += usize::from(!summary.output_written);
    }
    assert!(
        withheld > 10,
        "the damage makes files unreadable: {withheld} of 60"
    );
}

/// The library refuses to write over an input itself, whoever calls it (sft-train and
/// sft-eval prepare through it without the command line's checks).
#[test]
fn jobs_never_write_over_their_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("data.rejects.jsonl");
    std::fs::write(&input, format!("{}\n", SEEDS[1])).unwrap();
    let files = discover(std::slice::from_ref(&input)).unwrap();
    let job = ConvertJob {
        inputs: files,
        read: ReadOptions::default(),
        options: ConvertOptions {
            from: Source::Auto,
            to: Format::Messages,
            system: None,
            column_map: vec![],
        },
        // The default rejects path of data.jsonl is the input.
        output: dir.path().join("data.jsonl"),
        rejects: None,
        progress: ByteCounter::default(),
    };
    let error = convert(&job).unwrap_err();
    assert!(error.message.contains("is also an input"), "{error}");
    assert_eq!(
        std::fs::read_to_string(&input).unwrap(),
        format!("{}\n", SEEDS[1])
    );
    assert!(!dir.path().join("data.jsonl").exists());
}

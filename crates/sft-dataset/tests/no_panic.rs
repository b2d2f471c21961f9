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
        let (name, mut bytes) = match case % 4 {
            0 => ("d.jsonl", rows.join("\n").into_bytes()),
            1 => ("d.json", format!("[\n{}\n]", rows.join(",\n")).into_bytes()),
            2 => (
                "d.json",
                format!("{{\"data\": [{}]}}", rows.join(",")).into_bytes(),
            ),
            _ => ("d.txt", rows.join("\n\n").into_bytes()),
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
        let summary = convert(&job).unwrap();
        assert_eq!(
            summary.rows_in,
            summary.written + summary.rejected,
            "case {case}"
        );
        assert_eq!(
            summary.rows_in, report.rows,
            "case {case}: check and convert see the same rows"
        );
    }
}

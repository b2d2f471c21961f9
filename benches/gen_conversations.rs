//! Writes a JSON-lines file of realistic conversations for benchmarks, deterministically.
//!
//!     cargo run --release -p sft-benches --bin gen-conversations -- OUT.jsonl SIZE_MB [--no-tools]
//!
//! `--no-tools` leaves out tool calls (whose null content some templates, SmolLM2's among
//! them, cannot render), for benchmarks that must render every row.
//!
//! Rows look like chat SFT data: an optional system prompt, 1 to 4 user/assistant
//! exchanges of varied length, some markdown and code, some non-ASCII text, an occasional
//! tool call with its result, and an `id` column.

use std::io::{BufWriter, Write};

use serde_json::json;

/// A small, fast, seeded generator (splitmix64), so the file is the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const WORDS: &[&str] = &[
    "the",
    "model",
    "learns",
    "from",
    "examples",
    "and",
    "a",
    "dataset",
    "of",
    "instructions",
    "is",
    "used",
    "to",
    "train",
    "it",
    "with",
    "care",
    "when",
    "you",
    "write",
    "code",
    "in",
    "Rust",
    "or",
    "Python",
    "each",
    "function",
    "should",
    "return",
    "value",
    "that",
    "makes",
    "sense",
    "for",
    "user",
    "who",
    "asked",
    "question",
    "about",
    "weather",
    "history",
    "science",
    "river",
    "mountain",
    "city",
    "because",
    "however",
    "therefore",
    "example",
    "result",
    "data",
    "token",
    "sequence",
    "length",
    "batch",
    "gradient",
    "loss",
    "rate",
    "step",
    "café",
    "naïve",
    "Zürich",
    "東京",
    "데이터",
    "模型",
    "données",
    "überall",
    "señor",
    "—",
    "…",
];

const SYSTEMS: &[&str] = &[
    "You are a helpful assistant.",
    "You are a concise assistant. Answer in at most three sentences.",
    "You are an expert programmer who explains code clearly.",
    "Tu es un assistant qui répond en français.",
];

fn sentence(rng: &mut Rng, words: usize) -> String {
    let mut s = String::new();
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(rng.pick(WORDS));
    }
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().collect::<String>() + c.as_str() + ".",
        None => s,
    }
}

fn paragraph(rng: &mut Rng, sentences: usize) -> String {
    (0..sentences)
        .map(|_| {
            let n = 6 + rng.below(18);
            sentence(rng, n)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn reply(rng: &mut Rng) -> String {
    let sentences = 2 + rng.below(8);
    let mut text = paragraph(rng, sentences);
    match rng.below(5) {
        0 => {
            text.push_str("\n\n```rust\nfn main() {\n    let total: u64 = (1..=10).sum();\n    println!(\"{total}\");\n}\n```\n\n");
            text.push_str(&paragraph(rng, 2));
        }
        1 => {
            for i in 1..=3 + rng.below(4) {
                let n = 5 + rng.below(10);
                text.push_str(&format!("\n{i}. {}", sentence(rng, n)));
            }
        }
        _ => {}
    }
    text
}

fn conversation(rng: &mut Rng, id: u64, tools: bool) -> serde_json::Value {
    let mut messages = Vec::new();
    if rng.below(3) == 0 {
        messages.push(json!({"role": "system", "content": rng.pick(SYSTEMS)}));
    }
    let exchanges = 1 + rng.below(4);
    for _ in 0..exchanges {
        let sentences = 1 + rng.below(3);
        let question = paragraph(rng, sentences);
        messages.push(json!({"role": "user", "content": question}));
        if rng.below(12) == 0 && tools {
            let city = rng.pick(&["Paris", "東京", "Lima", "Zürich"]);
            messages.push(json!({"role": "assistant", "content": null, "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": city}}}
            ]}));
            messages.push(json!({"role": "tool", "content": format!("{{\"temp_c\": {}, \"sky\": \"clear\"}}", rng.below(35))}));
        }
        messages.push(json!({"role": "assistant", "content": reply(rng)}));
    }
    json!({"id": format!("conv-{id:08}"), "messages": messages})
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let tools = !args.iter().any(|a| a == "--no-tools");
    let args: Vec<String> = args.into_iter().filter(|a| a != "--no-tools").collect();
    if args.len() != 3 {
        eprintln!("usage: gen-conversations OUT.jsonl SIZE_MB [--no-tools]");
        std::process::exit(2);
    }
    let target: u64 = match args[2].parse::<u64>() {
        Ok(mb) => mb * 1_000_000,
        Err(_) => {
            eprintln!("SIZE_MB must be a whole number of megabytes");
            std::process::exit(2);
        }
    };
    let file = std::fs::File::create(&args[1]).unwrap_or_else(|e| {
        eprintln!("{}: {e}", args[1]);
        std::process::exit(1);
    });
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut rng = Rng(42);
    let (mut written, mut rows) = (0u64, 0u64);
    while written < target {
        let line = conversation(&mut rng, rows, tools).to_string();
        out.write_all(line.as_bytes())
            .and_then(|_| out.write_all(b"\n"))
            .expect("write");
        written += line.len() as u64 + 1;
        rows += 1;
    }
    out.flush().expect("flush");
    eprintln!("{rows} rows, {written} bytes");
}

//! The fast byte-level BPE encoder of `sft-tokenize` against the `tokenizers` crate on the
//! same texts, the same thread, with a check that every text gets the same ids.
//!
//!     cargo run --release -p sft-benches --bin tokenize-bench -- CONVERSATIONS.jsonl TOKENIZER [TEMPLATE] [ROWS] [RUNS]
//!
//! Renders up to ROWS conversations (`{"messages": [...]}` lines; default all) with the
//! bundled TEMPLATE (default `smollm2`) to the texts that `prepare` tokenizes, or reads
//! `{"text": ...}` lines as they are; then, RUNS times (default 3), encodes all of them
//! with each encoder on the current thread (ids only, as `prepare` without assistant-only
//! loss does, then ids and offsets) and prints the times, the tokens per second and the
//! ratio. `TOKENIZER` is a model folder or a `tokenizer.json`.

use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

use serde_json::Value;
use sft_template::{ChatTemplate, RenderOptions};
use sft_tokenize::SftTokenizer;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut() -> usize) -> (f64, Vec<f64>, usize) {
    let mut times = vec![];
    let mut tokens = 0;
    for _ in 0..runs {
        let started = Instant::now();
        tokens = f();
        times.push(started.elapsed().as_secs_f64());
    }
    (median(times.clone()), times, tokens)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: tokenize-bench CONVERSATIONS.jsonl TOKENIZER [TEMPLATE] [ROWS] [RUNS]");
        std::process::exit(2);
    }
    let template_name = args.get(3).map(String::as_str).unwrap_or("smollm2");
    let limit: usize = args
        .get(4)
        .and_then(|s| s.parse().ok())
        .unwrap_or(usize::MAX);
    let runs: usize = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(3);
    let tok = SftTokenizer::from_path(Path::new(&args[2])).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1);
    });
    let template = ChatTemplate::bundled(template_name).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    let file = std::fs::File::open(&args[1]).unwrap_or_else(|e| {
        eprintln!("{}: {e}", args[1]);
        std::process::exit(1);
    });
    let options = RenderOptions::training();
    let texts: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .take(limit)
        .filter_map(|l| {
            let row: Value = serde_json::from_str(&l.expect("read")).expect("JSON");
            if let Some(t) = row.get("text").and_then(Value::as_str) {
                return Some(t.to_string());
            }
            let messages = row["messages"].as_array()?;
            template.render(messages, &options).ok().map(|r| r.text)
        })
        .collect();
    let bytes: usize = texts.iter().map(String::len).sum();
    println!(
        "{} texts, {:.1} MB, tokenizer {} ({}), one thread, {runs} runs each",
        texts.len(),
        bytes as f64 / 1e6,
        args[2],
        tok.encoder_path().name()
    );
    // Exactness on this corpus first.
    let mut differ = 0;
    for t in &texts {
        if tok.encode(t, false).unwrap() != tok.encode_reference(t, false).unwrap() {
            differ += 1;
        }
    }
    println!("texts whose ids differ: {differ}");
    for offsets in [false, true] {
        let (fast, fast_all, tokens) = time(runs, || {
            texts
                .iter()
                .map(|t| {
                    if offsets {
                        tok.encode_with_offsets(t, false).unwrap().0.len()
                    } else {
                        tok.encode(t, false).unwrap().len()
                    }
                })
                .sum()
        });
        let (slow, slow_all, _) = time(runs, || {
            texts
                .iter()
                .map(|t| {
                    if offsets {
                        tok.encode_with_offsets_reference(t, false).unwrap().0.len()
                    } else {
                        tok.encode_reference(t, false).unwrap().len()
                    }
                })
                .sum()
        });
        let what = if offsets { "ids+offsets" } else { "ids" };
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "{what:<12} {tokens} tokens: {} {fast:.3} s ({:.2} M tokens/s) [{}]; tokenizers {slow:.3} s ({:.2} M tokens/s) [{}]; ratio {:.1}x",
            tok.encoder_path().name(),
            tokens as f64 / 1e6 / fast,
            fmt(&fast_all),
            tokens as f64 / 1e6 / slow,
            fmt(&slow_all),
            slow / fast
        );
    }
}

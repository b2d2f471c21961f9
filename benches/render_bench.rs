//! Rendering throughput of the chat-template engine on one core.
//!
//!     cargo run --release -p sft-benches --bin render-bench -- CONVERSATIONS.jsonl TEMPLATE [ROWS]
//!
//! Reads up to ROWS conversations (`{"messages": [...]}` lines), renders each once to warm
//! up, then times rendering all of them (training render, no generation prompt) on the
//! current thread. Prints conversations per second and output MB/s. The peer script
//! `render_transformers.py` measures Python transformers on the same file and template.

use std::io::BufRead;
use std::time::Instant;

use serde_json::Value;
use sft_template::{ChatTemplate, RenderOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: render-bench CONVERSATIONS.jsonl TEMPLATE [ROWS]");
        std::process::exit(2);
    }
    let limit: usize = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(usize::MAX);
    let file = std::fs::File::open(&args[1]).unwrap_or_else(|e| {
        eprintln!("{}: {e}", args[1]);
        std::process::exit(1);
    });
    let conversations: Vec<Vec<Value>> = std::io::BufReader::new(file)
        .lines()
        .take(limit)
        .map(|l| {
            let row: Value = serde_json::from_str(&l.expect("read")).expect("JSON");
            row["messages"].as_array().expect("messages").clone()
        })
        .collect();
    let template = ChatTemplate::bundled(&args[2]).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    let options = RenderOptions::training();
    for c in conversations.iter().take(100) {
        let _ = template.render(c, &options);
    }
    // Rows the template rejects (as transformers does) count, as errors, on both sides.
    let started = Instant::now();
    let (mut bytes, mut errors) = (0usize, 0usize);
    for c in &conversations {
        match template.render(c, &options) {
            Ok(r) => bytes += r.text.len(),
            Err(_) => errors += 1,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "rust minijinja     {:<8} {} conversations ({errors} rejected) in {:.2} s: {:.0} conversations/s, {:.1} MB/s of text",
        args[2],
        conversations.len(),
        secs,
        conversations.len() as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
}

//! The fast byte-level BPE encoder against the `tokenizers` crate (the reference): the
//! character classes and split patterns against Oniguruma on every code point, ids and
//! offsets on every row of the repository's real files, on generated hard cases and on
//! many thousands of random Unicode strings, for the bundled SmolLM2 tokenizer and small
//! tokenizers in the Llama 3, Qwen 2.5, GPT-2 and StarCoder configurations
//! (`tests/fixtures/tokenizers/make_tokenizers.py`).

use std::path::{Path, PathBuf};

use serde_json::Value;
use sft_tokenize::pretokenize::{self, Split};
use sft_tokenize::{EncoderPath, SftTokenizer};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// (name, tokenizer, pre-tokenizer name the fast path must report)
fn tokenizers() -> Vec<(&'static str, SftTokenizer, &'static str)> {
    let fixtures = root().join("tests/fixtures/tokenizers");
    let load = |p: PathBuf| SftTokenizer::from_path(&p).unwrap();
    vec![
        (
            "smollm2",
            load(root().join("data-samples/models/smollm2-135m-instruct-tokenizer")),
            "gpt2",
        ),
        ("llama3", load(fixtures.join("llama3")), "llama3"),
        ("qwen2", load(fixtures.join("qwen2")), "qwen2"),
        ("gpt2-trim", load(fixtures.join("gpt2-trim")), "gpt2"),
        ("digits", load(fixtures.join("digits")), "digits+gpt2"),
    ]
}

/// A seeded generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

const SNIPPETS: &[&str] = &[
    " ",
    "  ",
    "   ",
    "\t",
    "\n",
    "\r\n",
    "\n\n",
    "\r",
    " \n ",
    "\u{a0}",
    "\u{3000}",
    "\u{2009}",
    "\u{85}",
    "\u{2028}",
    "\u{b}",
    "\u{c}",
    "\u{1c}",
    "\u{0}",
    "\u{1b}[0m",
    "\u{7f}",
    "'s",
    "'S",
    "'t",
    "'re",
    "'RE",
    "'ve",
    "'m",
    "'ll",
    "'LL",
    "'d",
    "'D",
    "'\u{17f}",
    "'x",
    "''",
    "'",
    "’s",
    "hello",
    "World",
    "don't",
    "I'M",
    "café",
    "naïve",
    "e\u{301}",
    "a\u{308}\u{301}",
    "\u{301}",
    "Å",
    "A\u{30a}",
    "ﬁ",
    "ß",
    "İ",
    "123",
    "4567",
    "0",
    "3.14",
    "1,000",
    "١٢٣",
    "½",
    "²",
    "Ⅻ",
    "七",
    "...",
    "!!",
    "?!",
    "(",
    ")",
    "[]",
    "{",
    "}",
    "<",
    ">",
    "-",
    "—",
    "_",
    "**",
    "#",
    "$",
    "%",
    "@",
    "\\",
    "/",
    "|",
    "~",
    "`",
    "\"",
    "«",
    "»",
    "数据准备",
    "模型",
    "한국어",
    "안녕하세요",
    "\u{1100}\u{1161}\u{11a8}",
    "مرحبا",
    "العربية",
    "\u{64b}",
    "Привет",
    "Ελληνικά",
    "עברית",
    "हिन्दी",
    "ภาษาไทย",
    "日本語",
    "カタカナ",
    "\u{304b}\u{3099}",
    "👍",
    "👍🏽",
    "👨\u{200d}👩\u{200d}👧\u{200d}👦",
    "🇫🇷",
    "❤\u{fe0f}",
    "\u{200d}",
    "\u{200b}",
    "\u{feff}",
    "\u{fffd}",
    "\u{e000}",
    "\u{10ffff}",
    "\u{1f600}",
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|im_",
    "<|",
    "|>",
    "<|begin_of_text|>",
    "<|eot_id|>",
    "<|start_header_id|>",
    "<tool_call>",
    "</tool_call>",
    "<fim_prefix>",
    "<|reserved_special_token_0|>",
    "def f(x):\n    return x",
    "http://example.com/a?b=c",
];

fn random_char(rng: &mut Rng) -> char {
    loop {
        let c = match rng.below(4) {
            0 => rng.below(0x80) as u32,
            1 => rng.below(0x800) as u32,
            2 => rng.below(0x10000) as u32,
            _ => rng.below(0x110000) as u32,
        };
        if let Some(c) = char::from_u32(c) {
            return c;
        }
    }
}

fn random_text(rng: &mut Rng) -> String {
    let mut s = String::new();
    let parts = 1 + rng.below(12);
    for _ in 0..parts {
        match rng.below(10) {
            0..=4 => s.push_str(rng.pick::<&str>(SNIPPETS)),
            5..=6 => s.push(random_char(rng)),
            7 => {
                // A run of one thing.
                let unit = if rng.below(2) == 0 {
                    rng.pick(SNIPPETS).to_string()
                } else {
                    random_char(rng).to_string()
                };
                let n = 1 + rng.below(40);
                s.push_str(&unit.repeat(n));
            }
            _ => {
                for _ in 0..1 + rng.below(8) {
                    s.push(random_char(rng));
                }
            }
        }
    }
    s
}

/// Long runs and other hard cases.
fn hard_cases() -> Vec<String> {
    let mut out = vec![String::new()];
    for unit in [
        " ",
        "a",
        "-",
        "=",
        "\n",
        "\r\n",
        "\t",
        "0",
        "9",
        "é",
        "数",
        "👍",
        "\u{301}",
        "'s",
        ". ",
        "ab",
        "<|im_end|>",
        "\u{200d}",
        "\u{a0}",
    ] {
        for n in [1, 2, 3, 7, 64, 450, 1000, 5000] {
            out.push(unit.repeat(n));
            out.push(format!("x{}y", unit.repeat(n)));
            out.push(format!("{} z\n", unit.repeat(n)));
        }
    }
    for s in SNIPPETS {
        out.push(s.to_string());
        out.push(format!(" {s}"));
        out.push(format!("{s} {s}{s}\n{s}"));
    }
    out.push("1234567890".repeat(50));
    out.push("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n".repeat(3));
    out.push("<|endoftext|<|endoftext|>|>".into());
    out.push("👨‍👩‍👧‍👦👨‍👩‍👧‍👦 🏳️‍🌈 🧑🏿‍🚀".into());
    out.push("한국어 텍스트와 中文 文本 и русский текст".into());
    out
}

/// Every string in a JSON value.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// Each row of the real and sample files: its strings, joined and one by one, and the
/// row as JSON.
fn real_texts() -> Vec<String> {
    let mut out = vec![];
    for dir in [
        "data-samples/real",
        "data-samples/formats",
        "data-samples/broken",
    ] {
        let mut files: Vec<_> = std::fs::read_dir(root().join(dir))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        files.sort();
        for path in files {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            let rows: Vec<Value> = match ext {
                "json" => match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Array(a)) => a,
                    Ok(v) => vec![v],
                    Err(_) => text
                        .lines()
                        .filter_map(|l| serde_json::from_str(l).ok())
                        .collect(),
                },
                "jsonl" => text
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect(),
                "txt" | "md" => {
                    out.push(text.clone());
                    out.extend(text.split("<|endoftext|>").map(str::to_string));
                    vec![]
                }
                _ => vec![],
            };
            for row in rows {
                let mut parts = vec![];
                strings(&row, &mut parts);
                out.push(parts.join("\n"));
                out.push(row.to_string());
                out.extend(parts);
            }
        }
    }
    out
}

fn check(name: &str, tok: &SftTokenizer, text: &str) {
    for add in [false, true] {
        // `tokenizers` gives the same ids with and without offsets (`encode_fast`).
        let want = tok.encode_with_offsets_reference(text, add).unwrap();
        let got = tok.encode(text, add).unwrap();
        assert_eq!(
            got, want.0,
            "{name}: ids differ (add_special_tokens {add}) on {text:?}"
        );
        let got = tok.encode_with_offsets(text, add).unwrap();
        assert_eq!(
            got, want,
            "{name}: offsets differ (add_special_tokens {add}) on {text:?}"
        );
    }
}

#[test]
fn the_fast_path_covers_the_supported_families_and_falls_back_otherwise() {
    for (name, tok, split) in tokenizers() {
        assert_eq!(
            tok.encoder_path(),
            &EncoderPath::Fast { split },
            "{name} should take the fast path"
        );
    }
    let lstrip = SftTokenizer::from_path(&root().join("tests/fixtures/tokenizers/lstrip")).unwrap();
    match lstrip.encoder_path() {
        EncoderPath::Tokenizers { reason } => assert!(reason.contains("lstrip"), "{reason}"),
        other => panic!("lstrip tokenizer took {other:?}"),
    }
    // The fallback still encodes, through `tokenizers`.
    assert_eq!(
        lstrip.encode("a <mask> b", false).unwrap(),
        lstrip.encode_reference("a <mask> b", false).unwrap()
    );
}

#[test]
fn same_ids_and_offsets_on_every_real_row() {
    let texts = real_texts();
    assert!(texts.len() > 5000, "{} texts", texts.len());
    for (name, tok, _) in tokenizers() {
        for text in &texts {
            check(name, &tok, text);
        }
    }
}

#[test]
fn same_ids_and_offsets_on_hard_cases() {
    let texts = hard_cases();
    for (name, tok, _) in tokenizers() {
        for text in &texts {
            check(name, &tok, text);
        }
    }
}

#[test]
fn same_ids_and_offsets_on_random_unicode() {
    let toks = tokenizers();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for _ in 0..20_000 {
        let text = random_text(&mut rng);
        for (name, tok, _) in &toks {
            check(name, tok, &text);
        }
    }
}

fn onig_pieces(re: &onig::Regex, text: &str) -> Vec<(usize, usize)> {
    let mut out = vec![];
    let mut prev = 0;
    for (a, b) in re.find_iter(text) {
        if a != prev {
            out.push((prev, a));
        }
        out.push((a, b));
        prev = b;
    }
    if prev != text.len() {
        out.push((prev, text.len()));
    }
    out
}

fn patterns() -> Vec<(Split, onig::Regex)> {
    [
        pretokenize::GPT2_PATTERN,
        pretokenize::LLAMA3_PATTERN,
        pretokenize::QWEN2_PATTERN,
    ]
    .iter()
    .map(|p| {
        (
            Split::from_pattern(p).unwrap(),
            onig::Regex::new(p).unwrap(),
        )
    })
    .collect()
}

#[test]
fn character_classes_are_onigurumas_on_every_code_point() {
    let space = onig::Regex::new(r"\A\s\z").unwrap();
    let letter = onig::Regex::new(r"\A\p{L}\z").unwrap();
    let number = onig::Regex::new(r"\A\p{N}\z").unwrap();
    let mut buf = [0u8; 4];
    for c in (0..=0x10ffffu32).filter_map(char::from_u32) {
        let s = c.encode_utf8(&mut buf);
        let want = if space.is_match(s) {
            0
        } else if letter.is_match(s) {
            1
        } else if number.is_match(s) {
            2
        } else {
            3
        };
        assert_eq!(pretokenize::class(c), want, "class of U+{:04X}", c as u32);
        assert_eq!(
            pretokenize::is_space(c),
            want == 0,
            "\\s of U+{:04X}",
            c as u32
        );
    }
}

#[test]
fn split_patterns_are_onigurumas_on_every_code_point() {
    let patterns = patterns();
    let all: Vec<char> = (0..=0x10ffffu32).filter_map(char::from_u32).collect();
    for block in all.chunks(256) {
        // Each character after an apostrophe (the case-insensitive contractions), between
        // letters, digits and spaces, doubled, and before line breaks.
        let mut text = String::new();
        for &c in block {
            text.extend(['\'', c, 'e', ' ', c, c, '1', '\'', 'l', c, '\n', c, ' ']);
        }
        for (split, re) in &patterns {
            assert_eq!(
                pretokenize::pieces(*split, &text),
                onig_pieces(re, &text),
                "{split:?} around U+{:04X}",
                block[0] as u32
            );
        }
    }
}

#[test]
fn split_patterns_are_onigurumas_on_random_unicode() {
    let patterns = patterns();
    let mut rng = Rng(0x0dd_ba11);
    let mut texts: Vec<String> = (0..50_000).map(|_| random_text(&mut rng)).collect();
    texts.extend(hard_cases());
    texts.extend(real_texts());
    for text in &texts {
        for (split, re) in &patterns {
            assert_eq!(
                pretokenize::pieces(*split, text),
                onig_pieces(re, text),
                "{split:?} on {text:?}"
            );
        }
    }
}

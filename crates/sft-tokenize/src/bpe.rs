//! A byte-level BPE encoder of our own for `tokenizer.json` models of the BPE kind, exact
//! against the `tokenizers` crate for the configurations it accepts, and several times
//! faster. [`FastBpe::new`] reads the loaded tokenizer and either accepts it or says what
//! it does not cover; then `tokenizers` does the work (it stays the loader, the reference
//! and the fallback).
//!
//! What runs for a text, in the order `tokenizers` runs it:
//! 1. added tokens with `normalized: false` are cut out of the text (leftmost-longest),
//!    then those with `normalized: true` out of the rest (a normaliser, when there is one,
//!    is NFC, and only texts that are already NFC take this path);
//! 2. each remaining piece is split by the pre-tokenizer's pattern ([`crate::pretokenize`]);
//! 3. each pre-token's bytes are merged by rank (lowest rank first, leftmost first among
//!    equal ranks), with a per-thread cache of pre-tokens already seen;
//! 4. the post-processor's special tokens are put around the ids.
//!
//! Offsets are byte ranges of the text, as `tokenizers` reports them: a token that covers
//! part of a character covers the whole character.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use tokenizers::Tokenizer;
use unicode_normalization_alignments::{is_nfc_quick, IsNormalized};

use crate::pretokenize::{split, Chars, Split};

/// A small multiply-rotate hasher for the merge table and the cache (keys are ours, no
/// untrusted input can choose collisions worth worrying about).
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// GPT-2's map from bytes to the characters that stand for them in the vocabulary.
pub(crate) fn byte_chars() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
        out[b as usize] = if printable {
            b as char
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap()
        };
    }
    out
}

/// Added tokens of one matching set, by first byte, longest first (ties: first given).
#[derive(Debug)]
struct Added {
    first: [bool; 256],
    by_first: Vec<Vec<(Box<[u8]>, u32)>>,
}

impl Added {
    fn new(tokens: Vec<(String, u32)>) -> Added {
        let mut by_first: Vec<Vec<(Box<[u8]>, u32)>> = vec![Vec::new(); 256];
        let mut first = [false; 256];
        for (content, id) in tokens {
            let b = content.as_bytes()[0] as usize;
            first[b] = true;
            by_first[b].push((content.into_bytes().into_boxed_slice(), id));
        }
        for list in &mut by_first {
            // Stable: among equal lengths the first given wins, as in aho-corasick.
            list.sort_by_key(|(p, _)| Reverse(p.len()));
        }
        Added { first, by_first }
    }

    fn is_empty(&self) -> bool {
        !self.first.iter().any(|&f| f)
    }

    /// The leftmost-longest match at or after `from`: (start, end, id).
    #[inline]
    fn find(&self, s: &[u8], from: usize) -> Option<(usize, usize, u32)> {
        for i in from..s.len() {
            if !self.first[s[i] as usize] {
                continue;
            }
            for (p, id) in &self.by_first[s[i] as usize] {
                if s[i..].starts_with(p) {
                    return Some((i, i + p.len(), *id));
                }
            }
        }
        None
    }
}

/// How a post-processor's offsets trimming (`ByteLevel` with `trim_offsets`) works.
#[derive(Debug, Clone, Copy)]
struct Trim {
    add_prefix_space: bool,
}

/// Which encoder a tokenizer uses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncoderPath {
    /// Our byte-level BPE encoder (with the pre-tokenizer's pattern name).
    Fast { split: &'static str },
    /// The `tokenizers` crate, and why the fast path does not cover this tokenizer.
    Tokenizers { reason: String },
}

impl EncoderPath {
    /// `fast-bpe (llama3)` or `tokenizers`.
    pub fn name(&self) -> String {
        match self {
            EncoderPath::Fast { split } => format!("fast-bpe ({split})"),
            EncoderPath::Tokenizers { .. } => "tokenizers".to_string(),
        }
    }
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

/// A byte without a token of its own (dropped, as `tokenizers` drops it).
const MISSING: u32 = u32::MAX;

/// Pre-tokens longer than this (in bytes) are not cached.
const CACHE_MAX_LEN: usize = 64;
/// The cache is emptied when it holds this many pre-tokens.
const CACHE_MAX_ENTRIES: usize = 1 << 17;
/// Pre-tokens with more bytes than this are merged with a heap instead of scans.
const HEAP_FROM: usize = 48;

#[derive(Default)]
struct Scratch {
    owner: usize,
    cache: FxMap<Box<[u8]>, Box<[u32]>>,
    chars: Chars,
    pieces: Vec<(usize, usize)>,
    word: Vec<u32>,
    ranks: Vec<u32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The fast encoder for one tokenizer.
pub struct FastBpe {
    id: usize,
    split: Split,
    nfc: bool,
    byte_ids: [u32; 256],
    /// (left << 32 | right) -> (rank << 32 | merged id).
    merges: FxMap<u64, u64>,
    /// `ignore_merges`: pre-tokens that are whole tokens of the vocabulary, as bytes.
    whole: Option<FxMap<Box<[u8]>, u32>>,
    /// Bytes of text each id stands for (offsets).
    token_len: Vec<u32>,
    /// Bytes of each id's token as the vocabulary writes it (offsets around dropped bytes).
    token_nlen: Vec<u32>,
    /// Whether some byte has no token.
    any_missing: bool,
    /// Leading and trailing spaces of each id's token (offsets trimming).
    spaces: Vec<(u16, u16)>,
    raw: Added,
    normalized: Added,
    prefix: Vec<u32>,
    suffix: Vec<u32>,
    trim: Option<Trim>,
}

impl std::fmt::Debug for FastBpe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastBpe")
            .field("split", &self.split)
            .field("nfc", &self.nfc)
            .field("merges", &self.merges.len())
            .finish()
    }
}

fn is_null(v: &Value) -> bool {
    v.is_null()
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn flag(v: &Value, key: &str) -> Option<bool> {
    v.get(key).and_then(Value::as_bool)
}

/// A `ByteLevel` pre-tokenizer with `add_prefix_space: false`; its `use_regex`.
fn byte_level(v: &Value) -> Result<bool, String> {
    if str_field(v, "type") != Some("ByteLevel") {
        return Err(format!(
            "pre-tokenizer {}",
            str_field(v, "type").unwrap_or("?")
        ));
    }
    if flag(v, "add_prefix_space") != Some(false) {
        return Err("ByteLevel pre-tokenizer with add_prefix_space".into());
    }
    Ok(flag(v, "use_regex").unwrap_or(true))
}

fn pre_tokenizer(v: &Value) -> Result<Split, String> {
    if is_null(v) {
        return Err("no pre-tokenizer".into());
    }
    if str_field(v, "type") == Some("ByteLevel") {
        return if byte_level(v)? {
            Ok(Split::Gpt2)
        } else {
            Err("ByteLevel pre-tokenizer without its regex and no split".into())
        };
    }
    if str_field(v, "type") != Some("Sequence") {
        return Err(format!(
            "pre-tokenizer {}",
            str_field(v, "type").unwrap_or("?")
        ));
    }
    let list = v
        .get("pretokenizers")
        .and_then(Value::as_array)
        .ok_or("pre-tokenizer Sequence without a list")?;
    match list.as_slice() {
        [first, last] if str_field(first, "type") == Some("Split") => {
            if byte_level(last)? {
                return Err("Split followed by ByteLevel with its own regex".into());
            }
            let pattern = first
                .get("pattern")
                .and_then(|p| p.get("Regex"))
                .and_then(Value::as_str)
                .ok_or("Split pre-tokenizer without a regex")?;
            if str_field(first, "behavior") != Some("Isolated")
                || flag(first, "invert") != Some(false)
            {
                return Err("Split pre-tokenizer that does not isolate its matches".into());
            }
            Split::from_pattern(pattern).ok_or_else(|| format!("split pattern {pattern:?}"))
        }
        [first, last] if str_field(first, "type") == Some("Digits") => {
            if flag(first, "individual_digits") != Some(true) {
                return Err("Digits pre-tokenizer without individual_digits".into());
            }
            if !byte_level(last)? {
                return Err("Digits followed by ByteLevel without its regex".into());
            }
            Ok(Split::DigitsThenGpt2)
        }
        _ => Err("pre-tokenizer Sequence of another kind".into()),
    }
}

/// One post-processor: the special tokens it puts before and after, and its trimming.
fn post_processor(
    v: &Value,
    prefix: &mut Vec<u32>,
    suffix: &mut Vec<u32>,
    trim: &mut Option<Trim>,
    template_seen: &mut bool,
) -> Result<(), String> {
    match str_field(v, "type") {
        Some("ByteLevel") => {
            if *template_seen {
                return Err("ByteLevel post-processor after TemplateProcessing".into());
            }
            if flag(v, "trim_offsets").unwrap_or(true) {
                *trim = Some(Trim {
                    add_prefix_space: flag(v, "add_prefix_space").unwrap_or(true),
                });
            }
            Ok(())
        }
        Some("TemplateProcessing") => {
            if *template_seen {
                return Err("two TemplateProcessing post-processors".into());
            }
            *template_seen = true;
            let single = v
                .get("single")
                .and_then(Value::as_array)
                .ok_or("TemplateProcessing without `single`")?;
            let specials = v
                .get("special_tokens")
                .ok_or("TemplateProcessing without special_tokens")?;
            let mut seen_a = false;
            for piece in single {
                if let Some(seq) = piece.get("Sequence") {
                    if str_field(seq, "id") != Some("A") || seen_a {
                        return Err("TemplateProcessing `single` with another sequence".into());
                    }
                    seen_a = true;
                } else if let Some(tok) = piece.get("SpecialToken") {
                    let name = str_field(tok, "id").ok_or("template special token without id")?;
                    let ids = specials
                        .get(name)
                        .and_then(|s| s.get("ids"))
                        .and_then(Value::as_array)
                        .ok_or_else(|| format!("template special token {name} unknown"))?;
                    let target = if seen_a { &mut *suffix } else { &mut *prefix };
                    for id in ids {
                        target.push(id.as_u64().ok_or("template id not a number")? as u32);
                    }
                } else {
                    return Err("TemplateProcessing piece of another kind".into());
                }
            }
            if !seen_a {
                return Err("TemplateProcessing `single` without the sequence".into());
            }
            Ok(())
        }
        Some("Sequence") => {
            for p in v
                .get("processors")
                .and_then(Value::as_array)
                .ok_or("post-processor Sequence without a list")?
            {
                post_processor(p, prefix, suffix, trim, template_seen)?;
            }
            Ok(())
        }
        other => Err(format!("post-processor {}", other.unwrap_or("?"))),
    }
}

/// Leading and trailing characters that `ByteLevel` offsets trimming counts as spaces.
fn trim_counts(token: &str) -> (u16, u16) {
    let is = |c: &char| *c == '\u{120}' || c.is_whitespace();
    let lead = token.chars().take_while(is).count();
    let trail = token.chars().rev().take_while(is).count();
    (
        lead.min(u16::MAX as usize) as u16,
        trail.min(u16::MAX as usize) as u16,
    )
}

impl FastBpe {
    /// The fast encoder for `tokenizer`, or why it does not cover its configuration.
    pub fn new(tokenizer: &Tokenizer) -> Result<FastBpe, String> {
        let v = serde_json::to_value(tokenizer).map_err(|e| format!("not serialisable: {e}"))?;
        if !is_null(&v["truncation"]) || !is_null(&v["padding"]) {
            return Err("truncation or padding set in tokenizer.json".into());
        }
        if tokenizer.get_encode_special_tokens() {
            return Err("encode_special_tokens is set".into());
        }
        let nfc = match &v["normalizer"] {
            Value::Null => false,
            n if str_field(n, "type") == Some("NFC") => true,
            n => {
                return Err(format!(
                    "normalizer {}",
                    str_field(n, "type").unwrap_or("?")
                ))
            }
        };
        let split = pre_tokenizer(&v["pre_tokenizer"])?;
        let model = &v["model"];
        if str_field(model, "type") != Some("BPE") {
            return Err(format!("model {}", str_field(model, "type").unwrap_or("?")));
        }
        if model["dropout"].as_f64().is_some_and(|d| d != 0.0) {
            return Err("BPE dropout".into());
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if str_field(model, key).is_some_and(|s| !s.is_empty()) {
                return Err(format!("BPE {key}"));
            }
        }
        let ignore_merges = flag(model, "ignore_merges").unwrap_or(false);
        let tokenizers::ModelWrapper::BPE(bpe) = tokenizer.get_model() else {
            return Err("model is not BPE".into());
        };
        let vocab = tokenizers::Model::get_vocab(bpe);
        let chars = byte_chars();
        let mut char_byte: HashMap<char, u8> = HashMap::new();
        let mut byte_ids = [MISSING; 256];
        for (b, c) in chars.iter().enumerate() {
            char_byte.insert(*c, b as u8);
            match vocab.get(&c.to_string()) {
                Some(&id) => byte_ids[b] = id,
                // `tokenizers` drops a byte it has no token for when there is neither an
                // unknown token nor byte fallback; with either, it does something else.
                None if str_field(model, "unk_token").is_none()
                    && flag(model, "byte_fallback") != Some(true) => {}
                None => {
                    return Err(format!(
                        "byte {b:#04x} ({c}) is not in the vocabulary, with an unknown token or byte fallback"
                    ))
                }
            }
        }
        let to_bytes = |token: &str| -> Option<Vec<u8>> {
            token.chars().map(|c| char_byte.get(&c).copied()).collect()
        };
        let vocab_size = tokenizer.get_vocab_size(true);
        let max_id = vocab.values().copied().max().unwrap_or(0) as usize;
        let n_ids = vocab_size.max(max_id + 1);
        let mut token_len = vec![0u32; n_ids];
        let mut token_nlen = vec![0u32; n_ids];
        let mut spaces = vec![(0u16, 0u16); n_ids];
        let mut whole = FxMap::default();
        for (token, &id) in &vocab {
            if let Some(bytes) = to_bytes(token) {
                if (id as usize) < n_ids {
                    token_len[id as usize] = bytes.len() as u32;
                    token_nlen[id as usize] = token.len() as u32;
                    spaces[id as usize] = trim_counts(token);
                }
                if ignore_merges {
                    whole.insert(bytes.into_boxed_slice(), id);
                }
            }
        }
        let mut merges = FxMap::default();
        let list = model["merges"].as_array().ok_or("BPE without merges")?;
        for (rank, pair) in list.iter().enumerate() {
            let (a, b) = match pair {
                Value::Array(p) if p.len() == 2 => (p[0].as_str(), p[1].as_str()),
                _ => return Err("merges of another form".into()),
            };
            let (Some(a), Some(b)) = (a, b) else {
                return Err("merges of another form".into());
            };
            let (Some(&ia), Some(&ib), Some(&new)) =
                (vocab.get(a), vocab.get(b), vocab.get(&format!("{a}{b}")))
            else {
                return Err(format!("merge {a} {b} outside the vocabulary"));
            };
            merges.insert(
                ((ia as u64) << 32) | ib as u64,
                ((rank as u64) << 32) | new as u64,
            );
        }
        let mut raw = vec![];
        let mut normalized = vec![];
        for t in v["added_tokens"].as_array().ok_or("no added_tokens list")? {
            let content = str_field(t, "content").ok_or("added token without content")?;
            for key in ["lstrip", "rstrip", "single_word"] {
                if flag(t, key) != Some(false) {
                    return Err(format!("added token {content:?} with {key}"));
                }
            }
            if content.is_empty() {
                return Err("an empty added token".into());
            }
            let id = tokenizer
                .token_to_id(content)
                .ok_or_else(|| format!("added token {content:?} without an id"))?;
            if (id as usize) >= token_len.len() {
                token_len.resize(id as usize + 1, 0);
                token_nlen.resize(id as usize + 1, 0);
                spaces.resize(id as usize + 1, (0, 0));
            }
            token_len[id as usize] = content.len() as u32;
            token_nlen[id as usize] = content.len() as u32;
            spaces[id as usize] = trim_counts(content);
            if flag(t, "normalized") == Some(true) {
                if nfc && is_nfc_quick(content.chars()) != IsNormalized::Yes {
                    return Err(format!("added token {content:?} changes under NFC"));
                }
                normalized.push((content.to_string(), id));
            } else {
                raw.push((content.to_string(), id));
            }
        }
        let (mut prefix, mut suffix, mut trim) = (vec![], vec![], None);
        if !is_null(&v["post_processor"]) {
            post_processor(
                &v["post_processor"],
                &mut prefix,
                &mut suffix,
                &mut trim,
                &mut false,
            )?;
        }
        for &id in prefix.iter().chain(&suffix) {
            if let Some(t) = tokenizer.id_to_token(id) {
                if (id as usize) < spaces.len() {
                    spaces[id as usize] = trim_counts(&t);
                }
            }
        }
        Ok(FastBpe {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            split,
            nfc,
            any_missing: byte_ids.contains(&MISSING),
            byte_ids,
            merges,
            whole: ignore_merges.then_some(whole),
            token_len,
            token_nlen,
            spaces,
            raw: Added::new(raw),
            normalized: Added::new(normalized),
            prefix,
            suffix,
            trim,
        })
    }

    /// The pre-tokenizer's pattern, by name.
    pub fn split_name(&self) -> &'static str {
        self.split.name()
    }

    #[inline]
    fn pair(&self, a: u32, b: u32) -> Option<(u32, u32)> {
        self.merges
            .get(&(((a as u64) << 32) | b as u64))
            .map(|&v| ((v >> 32) as u32, v as u32))
    }

    /// Merges `word` (ids of single bytes) in place: the lowest rank first, the leftmost
    /// of equal ranks first, until no pair merges.
    fn merge(&self, word: &mut Vec<u32>, ranks: &mut Vec<u32>) {
        if word.len() > HEAP_FROM {
            return self.merge_heap(word);
        }
        ranks.clear();
        for w in word.windows(2) {
            ranks.push(self.pair(w[0], w[1]).map_or(u32::MAX, |p| p.0));
        }
        loop {
            let mut best = u32::MAX;
            let mut at = 0;
            for (i, &r) in ranks.iter().enumerate() {
                if r < best {
                    best = r;
                    at = i;
                }
            }
            if best == u32::MAX {
                return;
            }
            let (_, new) = self.pair(word[at], word[at + 1]).unwrap();
            word[at] = new;
            word.remove(at + 1);
            ranks.remove(at);
            if at + 1 < word.len() {
                ranks[at] = self.pair(new, word[at + 1]).map_or(u32::MAX, |p| p.0);
            }
            if at > 0 {
                ranks[at - 1] = self.pair(word[at - 1], new).map_or(u32::MAX, |p| p.0);
            }
        }
    }

    /// [`FastBpe::merge`] for long pre-tokens: a heap of candidate pairs over a linked list
    /// of symbols, O(n log n).
    fn merge_heap(&self, word: &mut Vec<u32>) {
        let n = word.len();
        let mut next: Vec<usize> = (1..=n).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut alive = vec![true; n];
        let mut heap = BinaryHeap::new();
        for i in 0..n - 1 {
            if let Some((rank, _)) = self.pair(word[i], word[i + 1]) {
                heap.push(Reverse((rank, i)));
            }
        }
        while let Some(Reverse((rank, i))) = heap.pop() {
            if !alive[i] || next[i] >= n {
                continue;
            }
            let j = next[i];
            let Some((r, new)) = self.pair(word[i], word[j]) else {
                continue;
            };
            if r != rank {
                continue;
            }
            word[i] = new;
            alive[j] = false;
            next[i] = next[j];
            if next[i] < n {
                prev[next[i]] = i;
                if let Some((r, _)) = self.pair(new, word[next[i]]) {
                    heap.push(Reverse((r, i)));
                }
            }
            let p = prev[i];
            if p < n {
                if let Some((r, _)) = self.pair(word[p], new) {
                    heap.push(Reverse((r, p)));
                }
            }
        }
        let mut out = Vec::with_capacity(n);
        let mut i = 0;
        while i < n {
            out.push(word[i]);
            i = next[i];
        }
        *word = out;
    }

    /// The ids of one pre-token, appended to `out`.
    fn piece(&self, bytes: &[u8], s: &mut Scratch, out: &mut Vec<u32>) {
        if let Some(whole) = &self.whole {
            if let Some(&id) = whole.get(bytes) {
                out.push(id);
                return;
            }
        }
        if bytes.len() == 1 {
            let id = self.byte_ids[bytes[0] as usize];
            if id != MISSING {
                out.push(id);
            }
            return;
        }
        if bytes.len() <= CACHE_MAX_LEN {
            if let Some(ids) = s.cache.get(bytes) {
                out.extend_from_slice(ids);
                return;
            }
        }
        s.word.clear();
        s.word
            .extend(bytes.iter().map(|&b| self.byte_ids[b as usize]));
        if self.any_missing {
            s.word.retain(|&id| id != MISSING);
        }
        let mut word = std::mem::take(&mut s.word);
        self.merge(&mut word, &mut s.ranks);
        out.extend_from_slice(&word);
        if bytes.len() <= CACHE_MAX_LEN {
            if s.cache.len() >= CACHE_MAX_ENTRIES {
                s.cache.clear();
            }
            s.cache.insert(bytes.into(), word.as_slice().into());
        }
        s.word = word;
    }

    /// The ids of `text` (and their byte offsets when `offsets` is given), as `tokenizers`
    /// would give them; `None` when this text needs `tokenizers` (with an NFC normaliser,
    /// a text that is not already NFC).
    pub fn encode(
        &self,
        text: &str,
        add_special_tokens: bool,
        mut offsets: Option<&mut Vec<(usize, usize)>>,
    ) -> Option<Vec<u32>> {
        if self.nfc && !text.is_ascii() && is_nfc_quick(text.chars()) != IsNormalized::Yes {
            return None;
        }
        let mut ids = Vec::with_capacity(text.len() / 3 + 4);
        if let Some(o) = offsets.as_deref_mut() {
            o.clear();
        }
        SCRATCH.with(|cell| {
            let mut s = cell.borrow_mut();
            if s.owner != self.id {
                s.owner = self.id;
                s.cache.clear();
            }
            let bytes = text.as_bytes();
            let mut at = 0;
            while at < bytes.len() {
                let found = if self.raw.is_empty() {
                    None
                } else {
                    self.raw.find(bytes, at)
                };
                let end = found.map_or(bytes.len(), |f| f.0);
                self.segment(text, at, end, &mut s, &mut ids, offsets.as_deref_mut());
                match found {
                    Some((start, stop, id)) => {
                        ids.push(id);
                        if let Some(o) = offsets.as_deref_mut() {
                            o.push((start, stop));
                        }
                        at = stop;
                    }
                    None => break,
                }
            }
        });
        if let (Some(o), Some(trim)) = (offsets.as_deref_mut(), self.trim) {
            for (i, (&id, off)) in ids.iter().zip(o.iter_mut()).enumerate() {
                let (lead, trail) = self.spaces.get(id as usize).copied().unwrap_or((0, 0));
                let (mut lead, trail) = (lead as usize, trail as usize);
                if lead > 0 {
                    let is_first = i == 0 || off.0 == 0;
                    if is_first && trim.add_prefix_space && lead == 1 {
                        lead = 0;
                    }
                    off.0 = (off.0 + lead).min(off.1);
                }
                if trail > 0 && off.1 >= trail {
                    off.1 = (off.1 - trail).max(off.0);
                }
            }
        }
        if add_special_tokens && !(self.prefix.is_empty() && self.suffix.is_empty()) {
            let mut all = Vec::with_capacity(ids.len() + self.prefix.len() + self.suffix.len());
            all.extend_from_slice(&self.prefix);
            all.extend_from_slice(&ids);
            all.extend_from_slice(&self.suffix);
            if let Some(o) = offsets {
                let mut with = vec![(0, 0); self.prefix.len()];
                with.append(o);
                with.resize(with.len() + self.suffix.len(), (0, 0));
                *o = with;
            }
            ids = all;
        }
        Some(ids)
    }

    /// `text[start..end]`, a piece between added tokens of the first kind: the added tokens
    /// of the second kind, then the pre-tokens.
    fn segment(
        &self,
        text: &str,
        start: usize,
        end: usize,
        s: &mut Scratch,
        ids: &mut Vec<u32>,
        mut offsets: Option<&mut Vec<(usize, usize)>>,
    ) {
        let bytes = &text.as_bytes()[..end];
        let mut at = start;
        while at < end {
            let found = if self.normalized.is_empty() {
                None
            } else {
                self.normalized.find(bytes, at)
            };
            let stop = found.map_or(end, |f| f.0);
            self.pre_tokens(text, at, stop, s, ids, offsets.as_deref_mut());
            match found {
                Some((a, b, id)) => {
                    ids.push(id);
                    if let Some(o) = offsets.as_deref_mut() {
                        o.push((a, b));
                    }
                    at = b;
                }
                None => break,
            }
        }
    }

    /// Offsets of the tokens of the pre-token `text[a..b]`, some of whose bytes were
    /// dropped: as `tokenizers` computes them, positions in the vocabulary's writing of
    /// the bytes that were kept, read back through the writing of all the bytes.
    fn offsets_around_dropped(
        &self,
        text: &str,
        a: usize,
        b: usize,
        ids: &[u32],
        o: &mut Vec<(usize, usize)>,
    ) {
        // The raw byte under each byte of the vocabulary's writing of the pre-token.
        let mut under = Vec::with_capacity(2 * (b - a));
        for (r, &x) in text.as_bytes()[a..b].iter().enumerate() {
            let width = if matches!(x, b'!'..=b'~') { 1 } else { 2 };
            under.extend(std::iter::repeat_n(a + r, width));
        }
        let mut at = 0;
        for &id in ids {
            let stop = at + self.token_nlen[id as usize] as usize;
            let mut from = under[at];
            while !text.is_char_boundary(from) {
                from -= 1;
            }
            let mut to = under[stop - 1] + 1;
            while !text.is_char_boundary(to) {
                to += 1;
            }
            o.push((from, to));
            at = stop;
        }
    }

    fn pre_tokens(
        &self,
        text: &str,
        start: usize,
        end: usize,
        s: &mut Scratch,
        ids: &mut Vec<u32>,
        offsets: Option<&mut Vec<(usize, usize)>>,
    ) {
        if start >= end {
            return;
        }
        let mut pieces = std::mem::take(&mut s.pieces);
        pieces.clear();
        split(self.split, &text[start..end], &mut s.chars, |a, b| {
            pieces.push((start + a, start + b))
        });
        let bytes = text.as_bytes();
        match offsets {
            None => {
                for &(a, b) in &pieces {
                    self.piece(&bytes[a..b], s, ids);
                }
            }
            Some(o) => {
                for &(a, b) in &pieces {
                    let first = ids.len();
                    self.piece(&bytes[a..b], s, ids);
                    if self.any_missing
                        && bytes[a..b]
                            .iter()
                            .any(|&x| self.byte_ids[x as usize] == MISSING)
                    {
                        self.offsets_around_dropped(text, a, b, &ids[first..], o);
                        continue;
                    }
                    let mut at = a;
                    for &id in &ids[first..] {
                        let stop = at + self.token_len[id as usize] as usize;
                        let mut from = at;
                        while !text.is_char_boundary(from) {
                            from -= 1;
                        }
                        let mut to = stop;
                        while !text.is_char_boundary(to) {
                            to += 1;
                        }
                        o.push((from, to));
                        at = stop;
                    }
                }
            }
        }
        s.pieces = pieces;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_chars_are_gpt2s() {
        let c = byte_chars();
        assert_eq!(c[b' ' as usize], '\u{120}');
        assert_eq!(c[b'\n' as usize], '\u{10a}');
        assert_eq!(c[b'a' as usize], 'a');
        assert_eq!(c[0xad], '\u{143}');
        let distinct: std::collections::HashSet<_> = c.iter().collect();
        assert_eq!(distinct.len(), 256);
    }

    #[test]
    fn added_is_leftmost_longest() {
        let a = Added::new(vec![
            ("<a>".into(), 1),
            ("<a><b>".into(), 2),
            ("<a>".into(), 3),
        ]);
        assert_eq!(a.find(b"x<a><b>", 0), Some((1, 7, 2)));
        assert_eq!(a.find(b"x<a>", 0), Some((1, 4, 1)));
        assert_eq!(a.find(b"x<a", 0), None);
    }
}

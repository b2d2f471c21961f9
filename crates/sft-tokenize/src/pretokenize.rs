//! The split patterns of byte-level BPE tokenizers, matched by code written for each of them
//! (no regex engine), with the character classes of the Oniguruma engine that the
//! `tokenizers` crate compiles these patterns with.
//!
//! Oniguruma (the `onig` feature of `tokenizers`, Unicode 16.0 tables) reads the classes as:
//! `\s` = U+0009..U+000D, U+0085 and the separators Zs, Zl, Zp; `\p{L}` = Lu Ll Lt Lm Lo;
//! `\p{N}` = Nd Nl No. The general categories come from `unicode-general-category` 1.1
//! (Unicode 16.0, the version of Oniguruma's tables); `tests/bpe_exact.rs` checks all three
//! classes against Oniguruma itself on every code point.
//!
//! A regex that matches at every position splits a text into consecutive pieces; each
//! function below returns where the match that starts at a given character ends, taking
//! the alternatives in the pattern's order and backtracking as the engine does.

use unicode_general_category::{get_general_category, GeneralCategory as G};

/// The GPT-2 pattern (`ByteLevel` with `use_regex`, SmolLM, GPT-2, StarCoder).
pub const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Llama 3's pattern (numbers in groups of up to three digits).
pub const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2, 2.5 and 3's pattern (Llama 3's with one digit per number).
pub const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How a text is cut into pre-tokens before the merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// [`GPT2_PATTERN`].
    Gpt2,
    /// [`LLAMA3_PATTERN`] (`digits` 3) or [`QWEN2_PATTERN`] (`digits` 1).
    Llama3 { digits: usize },
    /// `Digits(individual_digits=true)` and then [`GPT2_PATTERN`]: every character that Rust
    /// calls numeric (what the `Digits` pre-tokenizer tests) is a piece of its own.
    DigitsThenGpt2,
}

impl Split {
    /// The pattern this split implements, for a `Split` pre-tokenizer's regex.
    pub fn from_pattern(pattern: &str) -> Option<Split> {
        match pattern {
            GPT2_PATTERN => Some(Split::Gpt2),
            LLAMA3_PATTERN => Some(Split::Llama3 { digits: 3 }),
            QWEN2_PATTERN => Some(Split::Llama3 { digits: 1 }),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Split::Gpt2 => "gpt2",
            Split::Llama3 { digits: 3 } => "llama3",
            Split::Llama3 { .. } => "qwen2",
            Split::DigitsThenGpt2 => "digits+gpt2",
        }
    }
}

pub(crate) const SPACE: u8 = 0;
pub(crate) const LETTER: u8 = 1;
pub(crate) const NUMBER: u8 = 2;
pub(crate) const OTHER: u8 = 3;

const fn ascii_classes() -> [u8; 128] {
    let mut t = [OTHER; 128];
    let mut i = 0;
    while i < 128 {
        let b = i as u8;
        t[i] = if matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ') {
            SPACE
        } else if b.is_ascii_alphabetic() {
            LETTER
        } else if b.is_ascii_digit() {
            NUMBER
        } else {
            OTHER
        };
        i += 1;
    }
    t
}

static ASCII: [u8; 128] = ascii_classes();

/// Oniguruma's `\s`.
pub fn is_space(c: char) -> bool {
    matches!(
        c as u32,
        0x09..=0x0d | 0x20 | 0x85 | 0xa0 | 0x1680 | 0x2000..=0x200a | 0x2028 | 0x2029 | 0x202f | 0x205f | 0x3000
    )
}

/// The class of a character: [`SPACE`] (`\s`), [`LETTER`] (`\p{L}`), [`NUMBER`]
/// (`\p{N}`) or [`OTHER`].
#[inline]
pub fn class(c: char) -> u8 {
    if (c as u32) < 128 {
        return ASCII[c as usize];
    }
    if is_space(c) {
        return SPACE;
    }
    match get_general_category(c) {
        G::UppercaseLetter
        | G::LowercaseLetter
        | G::TitlecaseLetter
        | G::ModifierLetter
        | G::OtherLetter => LETTER,
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => NUMBER,
        _ => OTHER,
    }
}

/// The characters of a text with their classes and byte positions (`pos` has one more
/// entry: the text's length).
#[derive(Default)]
pub(crate) struct Chars {
    pub ch: Vec<char>,
    pub cls: Vec<u8>,
    pub pos: Vec<u32>,
}

impl Chars {
    pub fn fill(&mut self, text: &str) {
        self.ch.clear();
        self.cls.clear();
        self.pos.clear();
        for (i, c) in text.char_indices() {
            self.ch.push(c);
            self.cls.push(class(c));
            self.pos.push(i as u32);
        }
        self.pos.push(text.len() as u32);
    }
}

#[inline]
fn run(cls: &[u8], mut j: usize, class: u8) -> usize {
    while j < cls.len() && cls[j] == class {
        j += 1;
    }
    j
}

/// `\s+(?!\S)|\s+` at a whitespace character `i`.
#[inline]
fn spaces(cls: &[u8], i: usize) -> usize {
    let k = run(cls, i, SPACE);
    if k == cls.len() || k - i < 2 {
        k
    } else {
        k - 1
    }
}

/// The end (in characters) of the GPT-2 pattern's match at character `i`.
fn gpt2_at(ch: &[char], cls: &[u8], i: usize) -> usize {
    let n = ch.len();
    let c = ch[i];
    if c == '\'' && i + 1 < n {
        let d = ch[i + 1];
        if matches!(d, 's' | 't' | 'm' | 'd') {
            return i + 2;
        }
        if i + 2 < n {
            let e = ch[i + 2];
            if matches!((d, e), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                return i + 3;
            }
        }
    }
    let j = if c == ' ' && i + 1 < n && cls[i + 1] != SPACE {
        i + 1
    } else {
        i
    };
    match cls[j] {
        SPACE => spaces(cls, i),
        class => run(cls, j + 1, class),
    }
}

/// What `(?i:x)` matches for the letters of the contractions (Oniguruma folds U+017F,
/// LATIN SMALL LETTER LONG S, to `s`).
#[inline]
fn fold(c: char) -> char {
    match c {
        '\u{17f}' => 's',
        c => c.to_ascii_lowercase(),
    }
}

/// The end of Llama 3's (or Qwen 2's, `digits` 1) pattern's match at character `i`.
fn llama3_at(ch: &[char], cls: &[u8], i: usize, digits: usize) -> usize {
    let n = ch.len();
    let c = ch[i];
    if c == '\'' && i + 1 < n {
        let d = fold(ch[i + 1]);
        if matches!(d, 's' | 't' | 'm' | 'd') {
            return i + 2;
        }
        if i + 2 < n {
            let e = fold(ch[i + 2]);
            if matches!((d, e), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                return i + 3;
            }
        }
    }
    let k = cls[i];
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if k == LETTER {
        return run(cls, i + 1, LETTER);
    }
    if k != NUMBER && c != '\r' && c != '\n' && i + 1 < n && cls[i + 1] == LETTER {
        return run(cls, i + 2, LETTER);
    }
    // \p{N}{1,digits}
    if k == NUMBER {
        let mut j = i + 1;
        while j < n && j - i < digits && cls[j] == NUMBER {
            j += 1;
        }
        return j;
    }
    //  ?[^\s\p{L}\p{N}]+[\r\n]*
    let j = if c == ' ' && i + 1 < n && cls[i + 1] == OTHER {
        i + 1
    } else {
        i
    };
    if cls[j] == OTHER {
        let mut e = run(cls, j + 1, OTHER);
        while e < n && (ch[e] == '\r' || ch[e] == '\n') {
            e += 1;
        }
        return e;
    }
    // Whitespace from here on. \s*[\r\n]+ : up to the last line break of the run.
    let end = run(cls, i, SPACE);
    if let Some(p) = (i..end).rev().find(|&p| ch[p] == '\r' || ch[p] == '\n') {
        return p + 1;
    }
    spaces(cls, i)
}

/// The pre-tokens of `text` as byte ranges, in order.
pub fn pieces(split_by: Split, text: &str) -> Vec<(usize, usize)> {
    let mut out = vec![];
    split(split_by, text, &mut Chars::default(), |a, b| {
        out.push((a, b))
    });
    out
}

/// Calls `piece(start, end)` (byte offsets) for each pre-token of `text`, in order; the
/// pieces cover the text. `chars` is scratch space.
pub(crate) fn split(
    split: Split,
    text: &str,
    chars: &mut Chars,
    mut piece: impl FnMut(usize, usize),
) {
    match split {
        Split::DigitsThenGpt2 => {
            let mut start = 0;
            for (i, c) in text.char_indices() {
                if c.is_numeric() {
                    if start < i {
                        split_into(Split::Gpt2, &text[start..i], start, chars, &mut piece);
                    }
                    piece(i, i + c.len_utf8());
                    start = i + c.len_utf8();
                }
            }
            if start < text.len() {
                split_into(Split::Gpt2, &text[start..], start, chars, &mut piece);
            }
        }
        _ => split_into(split, text, 0, chars, &mut piece),
    }
}

fn split_into(
    split: Split,
    text: &str,
    base: usize,
    chars: &mut Chars,
    piece: &mut impl FnMut(usize, usize),
) {
    chars.fill(text);
    let (ch, cls, pos) = (&chars.ch[..], &chars.cls[..], &chars.pos[..]);
    let mut i = 0;
    while i < ch.len() {
        let j = match split {
            Split::Gpt2 | Split::DigitsThenGpt2 => gpt2_at(ch, cls, i),
            Split::Llama3 { digits } => llama3_at(ch, cls, i, digits),
        };
        debug_assert!(j > i);
        piece(base + pos[i] as usize, base + pos[j] as usize);
        i = j;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(s: Split, text: &str) -> Vec<&str> {
        let mut out = vec![];
        split(s, text, &mut Chars::default(), |a, b| out.push(&text[a..b]));
        out
    }

    #[test]
    fn gpt2_pieces() {
        assert_eq!(
            pieces(Split::Gpt2, "Hello  world's 123,\n\n  x "),
            vec!["Hello", " ", " world", "'s", " 123", ",", "\n\n ", " x", " "]
        );
        assert_eq!(
            pieces(Split::Gpt2, "'sup 'RE"),
            vec!["'s", "up", " '", "RE"]
        );
    }

    #[test]
    fn llama3_pieces() {
        let s = Split::Llama3 { digits: 3 };
        assert_eq!(
            pieces(s, "I'M 12345 (ok)\r\n\r\n  x\t y"),
            vec![
                "I",
                "'M",
                " ",
                "123",
                "45",
                " (",
                "ok",
                ")\r\n\r\n",
                " ",
                " x",
                "\t",
                " y"
            ]
        );
        assert_eq!(pieces(s, "a  \n b"), vec!["a", "  \n", " b"]);
    }

    #[test]
    fn digits_then_gpt2() {
        assert_eq!(
            pieces(Split::DigitsThenGpt2, "ab 12x"),
            vec!["ab", " ", "1", "2", "x"]
        );
    }
}

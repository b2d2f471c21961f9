//! One row of any of the four formats to token ids and a mask of the tokens the model
//! learns, as TRL (1.x) prepares them:
//!
//! - text: the tokenizer adds its special tokens; EOS is appended to the text if missing;
//! - prompt-completion: EOS appended to the completion; the mask is 0 over `tok(prompt)` and
//!   1 over the rest of `tok(prompt + completion)` (completion-only loss, the default);
//! - conversational: the template rendered without the generation prompt, tokenized without
//!   special tokens (a BOS in the template is not doubled), no EOS appended;
//! - conversational prompt-completion: the prompt rendered with the generation prompt; the
//!   mask is 0 over its tokens and 1 over the rest of the whole conversation's tokens.
//!
//! Assistant-only loss works for any template: the assistant spans of `sft-template`
//! (prefix renders, or `{% generation %}` blocks) are mapped to tokens with the tokenizer's
//! offsets; a token is trained when it starts inside a span.

use serde_json::Value;
use sft_formats::{conversation, detect_row, Format, RowKind};
use sft_template::{ChatTemplate, RenderOptions};

use crate::SftTokenizer;

/// How rows become training examples.
#[derive(Debug, Clone)]
pub struct TokenizeOptions {
    /// Keep the first `max_length` tokens (TRL's default: 1024); `None` keeps all.
    pub max_length: Option<usize>,
    /// Train only on completions of prompt-completion rows; `None` means TRL's default
    /// (on for prompt-completion data).
    pub completion_only_loss: Option<bool>,
    /// Train only on assistant turns of conversations.
    pub assistant_only_loss: bool,
    /// The text column of text rows.
    pub text_field: String,
    /// Template kwargs and tools for every row (rows add their own).
    pub render: RenderOptions,
}

impl Default for TokenizeOptions {
    fn default() -> Self {
        TokenizeOptions {
            max_length: Some(1024),
            completion_only_loss: None,
            assistant_only_loss: false,
            text_field: "text".into(),
            render: RenderOptions::default(),
        }
    }
}

/// A tokenized example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub input_ids: Vec<u32>,
    /// 1 where the token is trained (its label is the token), 0 where it is not (-100).
    pub mask: Vec<u8>,
    /// Tokens before truncation (equal to `input_ids.len()` when nothing was cut); for a
    /// row far longer than `max_length`, estimated from the prefix that was tokenized.
    pub full_length: usize,
    pub format: Format,
}

impl Example {
    pub fn truncated(&self) -> bool {
        self.full_length > self.input_ids.len()
    }

    pub fn trained_tokens(&self) -> usize {
        self.mask.iter().filter(|&&m| m == 1).count()
    }

    /// Labels as a trainer sees them: the token where trained, -100 elsewhere.
    pub fn labels(&self) -> Vec<i32> {
        self.input_ids
            .iter()
            .zip(&self.mask)
            .map(|(&id, &m)| if m == 1 { id as i32 } else { -100 })
            .collect()
    }
}

/// The kind of a row that could not become an example (stable codes, as in rejects files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizeErrorCode {
    /// A field the format needs is missing or not a string.
    MissingField,
    /// The row is in none of the four formats.
    UnrecognizedRow,
    /// The row is in a shape `convert` turns into one of the four formats.
    NeedsConversion,
    /// The tokenizer failed on the text.
    TokenizerError,
    /// A conversational row, and no chat template to render it with.
    NoChatTemplate,
    /// `tools` is not a list of schemas.
    MalformedTools,
    /// The chat template failed on the row.
    TemplateError,
}

impl TokenizeErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingField => "missing_field",
            Self::UnrecognizedRow => "unrecognized_row",
            Self::NeedsConversion => "needs_conversion",
            Self::TokenizerError => "tokenizer_error",
            Self::NoChatTemplate => "no_chat_template",
            Self::MalformedTools => "malformed_tools",
            Self::TemplateError => "template_error",
        }
    }
}

impl std::fmt::Display for TokenizeErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a row could not become an example.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizeError {
    pub code: TokenizeErrorCode,
    pub reason: String,
}

fn fail(code: TokenizeErrorCode, reason: impl Into<String>) -> TokenizeError {
    TokenizeError {
        code,
        reason: reason.into(),
    }
}

fn string_field<'a>(row: &'a Value, key: &str) -> Result<&'a str, TokenizeError> {
    row.get(key).and_then(Value::as_str).ok_or_else(|| {
        fail(
            TokenizeErrorCode::MissingField,
            format!("the row has no string `{key}`"),
        )
    })
}

fn with_eos(text: &str, tok: &SftTokenizer) -> String {
    match &tok.eos {
        Some(eos) if !text.ends_with(&eos.text) => format!("{text}{}", eos.text),
        _ => text.to_string(),
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Marks the tokens that start inside one of `spans` (byte ranges of the text).
fn mask_from_spans(offsets: &[(usize, usize)], spans: &[std::ops::Range<usize>]) -> Vec<u8> {
    offsets
        .iter()
        .map(|&(start, end)| {
            // Zero-width tokens (some added tokens) count where they stand.
            let at = if end > start { start } else { end };
            spans.iter().any(|s| s.start <= at && at < s.end) as u8
        })
        .collect()
}

/// Bytes of text per kept token below which a text is always tokenized whole.
const WHOLE_BELOW_BYTES_PER_TOKEN: usize = 8;
/// Tokens past `max_length` a prefix must give before its first `max_length` are taken as
/// the whole text's: only the tokens at the cut can differ from the whole text's.
const MARGIN_TOKENS: usize = 64;

/// `encode(text)`'s first `max` tokens (all of them, with more, when `max` is `None`), and
/// how many tokens the whole text has. A text far longer than `max` tokens can hold (one
/// 50 MB reply with `max_length` 1024) is tokenized by growing prefixes, from
/// `(max + 64) * 8` bytes, until one gives `max + 64` tokens: its first `max` are the text's
/// (a tokenizer's merges reach back only a few tokens from the cut), and the whole count is
/// estimated from the prefix's tokens per byte. Any text that fits in `max` tokens is
/// tokenized whole, so rows that fit are exactly as before (and as TRL tokenizes them).
fn bounded<T, E>(
    text: &str,
    max: Option<usize>,
    mut encode: impl FnMut(&str) -> Result<Vec<T>, E>,
) -> Result<(Vec<T>, usize), E> {
    if let Some(max) = max {
        let mut len = ((max + MARGIN_TOKENS) * WHOLE_BELOW_BYTES_PER_TOKEN).max(4096);
        while len < text.len() {
            let mut cut = len;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let mut ids = encode(&text[..cut])?;
            if ids.len() >= max + MARGIN_TOKENS {
                let estimate = (ids.len() as f64 * text.len() as f64 / cut as f64) as usize;
                ids.truncate(max);
                return Ok((ids, estimate.max(max + MARGIN_TOKENS)));
            }
            len = len.saturating_mul(4);
        }
    }
    let ids = encode(text)?;
    let n = ids.len();
    Ok((ids, n))
}

/// Tokenizes one row. `template` is needed for conversational rows.
pub fn tokenize_row(
    tok: &SftTokenizer,
    template: Option<&ChatTemplate>,
    row: &Value,
    options: &TokenizeOptions,
) -> Result<Example, TokenizeError> {
    let format = match detect_row(row) {
        RowKind::Format(f) => f,
        RowKind::Convertible(shape) => {
            return Err(fail(
                TokenizeErrorCode::NeedsConversion,
                format!("the row is in the {shape} shape; convert it first with `sft-data convert --from {shape}`"),
            ))
        }
        RowKind::Unrecognized => {
            return Err(fail(TokenizeErrorCode::UnrecognizedRow, "the row is in none of the four formats"))
        }
    };
    let tokenize_error =
        |e: crate::TokenizerError| fail(TokenizeErrorCode::TokenizerError, e.message);
    let max = options.max_length;
    // Tokens of the whole row (estimated when only a prefix had to be tokenized).
    let full;
    let (input_ids, mask) = match format {
        Format::Text => {
            let text = with_eos(string_field(row, &options.text_field)?, tok);
            let (ids, n) = bounded(&text, max, |t| tok.encode(t, true)).map_err(tokenize_error)?;
            full = n;
            let mask = vec![1u8; ids.len()];
            (ids, mask)
        }
        Format::PromptCompletion => {
            let prompt = string_field(row, "prompt")?;
            let completion = with_eos(string_field(row, "completion")?, tok);
            let (prompt_ids, _) =
                bounded(prompt, max, |t| tok.encode(t, true)).map_err(tokenize_error)?;
            let (ids, n) = bounded(&format!("{prompt}{completion}"), max, |t| {
                tok.encode(t, true)
            })
            .map_err(tokenize_error)?;
            full = n;
            let mask = if options.completion_only_loss.unwrap_or(true) {
                // Where prompt and completion merge into one token (a final "." and an
                // opening quote become `."`), the completion starts at that token, as in
                // TRL: the boundary is the common prefix of the two tokenizations.
                let n = common_prefix(&prompt_ids, &ids);
                let mut m = vec![0u8; n];
                m.resize(ids.len(), 1);
                m
            } else {
                vec![1u8; ids.len()]
            };
            (ids, mask)
        }
        Format::Messages | Format::ConversationalPromptCompletion => {
            let template = template.ok_or_else(|| {
                fail(
                    TokenizeErrorCode::NoChatTemplate,
                    "the row is a conversation but no chat template is given and the tokenizer folder has none",
                )
            })?;
            let render = options
                .render
                .with_row(row)
                .map_err(|e| fail(TokenizeErrorCode::MalformedTools, e))?
                .for_training();
            let (all, split) =
                conversation(row, format).map_err(|e| fail(TokenizeErrorCode::MissingField, e))?;
            let template_error =
                |e: sft_template::TemplateError| fail(TokenizeErrorCode::TemplateError, e.message);
            let (text, spans) = if options.assistant_only_loss {
                let found = template
                    .assistant_spans(&all, &render)
                    .map_err(template_error)?;
                let spans: Vec<_> = found.spans.into_iter().map(|s| s.range).collect();
                (found.text, Some(spans))
            } else {
                (
                    template.render(&all, &render).map_err(template_error)?.text,
                    None,
                )
            };
            // Offsets cost time: only assistant-only loss needs them.
            let (ids, mut mask) = match &spans {
                Some(spans) => {
                    let (pairs, n) = bounded(&text, max, |t| {
                        tok.encode_with_offsets(t, false)
                            .map(|(ids, offsets)| ids.into_iter().zip(offsets).collect())
                    })
                    .map_err(tokenize_error)?;
                    full = n;
                    let (ids, offsets): (Vec<u32>, Vec<_>) = pairs.into_iter().unzip();
                    let mask = mask_from_spans(&offsets, spans);
                    (ids, mask)
                }
                None => {
                    let (ids, n) =
                        bounded(&text, max, |t| tok.encode(t, false)).map_err(tokenize_error)?;
                    full = n;
                    let mask = vec![1u8; ids.len()];
                    (ids, mask)
                }
            };
            if let Some(split) = split {
                if options.completion_only_loss.unwrap_or(true) {
                    let prompting = render.for_generation();
                    let prompt_text = template
                        .render(&all[..split], &prompting)
                        .map_err(template_error)?
                        .text;
                    let (prompt_ids, _) = bounded(&prompt_text, max, |t| tok.encode(t, false))
                        .map_err(tokenize_error)?;
                    for m in mask.iter_mut().take(common_prefix(&prompt_ids, &ids)) {
                        *m = 0;
                    }
                }
            }
            (ids, mask)
        }
    };
    let full_length = full;
    let (mut input_ids, mut mask) = (input_ids, mask);
    if let Some(max) = options.max_length {
        input_ids.truncate(max);
        mask.truncate(max);
    }
    Ok(Example {
        input_ids,
        mask,
        full_length,
        format,
    })
}

#[cfg(test)]
mod bounded_tests {
    use super::bounded;

    fn words(t: &str) -> Result<Vec<String>, ()> {
        Ok(t.split(' ').map(str::to_string).collect())
    }

    #[test]
    fn a_huge_text_is_tokenized_by_a_prefix_and_a_text_that_fits_whole() {
        // 5 MB of words: only a prefix is tokenized, its first max tokens are the text's.
        let text = "abcd ".repeat(1_000_000);
        let mut calls = Vec::new();
        let (ids, full) = bounded(&text, Some(1024), |t| {
            calls.push(t.len());
            words(t)
        })
        .unwrap();
        assert_eq!(ids, words(&text).unwrap()[..1024].to_vec());
        assert!(calls.iter().all(|&n| n < 100_000), "{calls:?}");
        assert!((900_000..1_100_000).contains(&full), "{full}");
        // Long bytes per token (that still fit): tokenized whole, exactly.
        let long = "x".repeat(50_000);
        let (ids, full) = bounded(&long, Some(1024), words).unwrap();
        assert_eq!((ids, full), (vec![long.clone()], 1));
        // No limit: whole.
        let (ids, _) = bounded("a b", None, words).unwrap();
        assert_eq!(ids.len(), 2);
    }
}

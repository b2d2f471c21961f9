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
    /// Tokens before truncation (equal to `input_ids.len()` when nothing was cut).
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
    let (input_ids, mask) = match format {
        Format::Text => {
            let text = with_eos(string_field(row, &options.text_field)?, tok);
            let ids = tok.encode(&text, true).map_err(tokenize_error)?;
            let mask = vec![1u8; ids.len()];
            (ids, mask)
        }
        Format::PromptCompletion => {
            let prompt = string_field(row, "prompt")?;
            let completion = with_eos(string_field(row, "completion")?, tok);
            let prompt_ids = tok.encode(prompt, true).map_err(tokenize_error)?;
            let ids = tok
                .encode(&format!("{prompt}{completion}"), true)
                .map_err(tokenize_error)?;
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
                    let (ids, offsets) = tok
                        .encode_with_offsets(&text, false)
                        .map_err(tokenize_error)?;
                    let mask = mask_from_spans(&offsets, spans);
                    (ids, mask)
                }
                None => {
                    let ids = tok.encode(&text, false).map_err(tokenize_error)?;
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
                    let prompt_ids = tok.encode(&prompt_text, false).map_err(tokenize_error)?;
                    for m in mask.iter_mut().take(common_prefix(&prompt_ids, &ids)) {
                        *m = 0;
                    }
                }
            }
            (ids, mask)
        }
    };
    let full_length = input_ids.len();
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

//! Where each assistant turn is in a rendered conversation, for assistant-only loss.
//!
//! Any template, markers or not: render the conversation up to each assistant turn with
//! `add_generation_prompt=True`, then up to and including the turn. Where the template is
//! prefix-preserving (each shorter render is a prefix of the longer ones, and of the whole),
//! the difference is the turn as the model must produce it after the generation prompt:
//! its content and its end-of-turn token. Where a template is not prefix-preserving (Qwen 3
//! drops the reasoning of earlier turns), that is said plainly, and the template's
//! `{% generation %}` blocks are used if it has them.

use std::ops::Range;

use serde_json::Value;

use crate::{ChatTemplate, RenderOptions, TemplateError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanMethod {
    /// Differences between renders of growing prefixes of the conversation.
    Prefix,
    /// The template's `{% generation %}` blocks.
    GenerationTags,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssistantSpan {
    /// Index of the assistant message in the conversation.
    pub message: usize,
    /// Byte range in the rendered text.
    pub range: Range<usize>,
}

#[derive(Debug, Clone)]
pub struct AssistantSpans {
    /// The whole conversation rendered for training.
    pub text: String,
    pub spans: Vec<AssistantSpan>,
    pub method: SpanMethod,
    /// Why the prefix method could not be used, when it could not.
    pub not_prefix_preserving: Option<String>,
    /// The `{% generation %}` blocks of the whole render (empty without markers).
    pub generation_tag_spans: Vec<Range<usize>>,
}

fn role(m: &Value) -> Option<&str> {
    m.get("role").and_then(Value::as_str)
}

fn excerpt(s: &str, at: usize) -> String {
    let mut start = at.saturating_sub(20);
    while !s.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (at + 40).min(s.len());
    while !s.is_char_boundary(end) {
        end += 1;
    }
    format!("{:?}", &s[start..end])
}

fn common_prefix(a: &str, b: &str) -> usize {
    let n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let mut n = n.min(a.len());
    while !a.is_char_boundary(n) {
        n -= 1;
    }
    n
}

impl ChatTemplate {
    /// The span of every assistant turn of `messages` in its training render.
    pub fn assistant_spans(
        &self,
        messages: &[Value],
        options: &RenderOptions,
    ) -> Result<AssistantSpans, TemplateError> {
        let training = options.for_training();
        let prompting = options.for_generation();
        let full = self.render(messages, &training)?;
        let mut spans = Vec::new();
        let mut broken: Option<String> = None;
        for (i, m) in messages.iter().enumerate() {
            if role(m) != Some("assistant") {
                continue;
            }
            let before = if i == 0 {
                String::new()
            } else {
                self.render(&messages[..i], &prompting)?.text
            };
            let upto = self.render(&messages[..=i], &training)?.text;
            if !upto.starts_with(&before) {
                let at = common_prefix(&upto, &before);
                broken = Some(format!(
                    "rendering messages 0..{i} with the generation prompt is not a prefix of rendering them with message {i}: they part at byte {at}, {} against {}",
                    excerpt(&before, at),
                    excerpt(&upto, at)
                ));
                break;
            }
            if !full.text.starts_with(&upto) {
                let at = common_prefix(&full.text, &upto);
                broken = Some(format!(
                    "the template renders the conversation up to message {i} differently once later turns follow (they part at byte {at}: {} against {}), as templates that drop earlier reasoning do",
                    excerpt(&upto, at),
                    excerpt(&full.text, at)
                ));
                break;
            }
            if before.len() < upto.len() {
                spans.push(AssistantSpan {
                    message: i,
                    range: before.len()..upto.len(),
                });
            }
        }
        let Some(reason) = broken else {
            return Ok(AssistantSpans {
                text: full.text,
                spans,
                method: SpanMethod::Prefix,
                not_prefix_preserving: None,
                generation_tag_spans: full.generation_spans,
            });
        };
        if full.generation_spans.is_empty() {
            return Err(TemplateError::new(format!(
                "the chat template {} is not prefix-preserving and has no {{% generation %}} blocks, so its assistant turns cannot be located: {reason}",
                self.name()
            )));
        }
        let assistants: Vec<usize> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| role(m) == Some("assistant"))
            .map(|(i, _)| i)
            .collect();
        let spans = full
            .generation_spans
            .iter()
            .enumerate()
            .map(|(k, r)| AssistantSpan {
                message: assistants.get(k).copied().unwrap_or(usize::MAX),
                range: r.clone(),
            })
            .collect();
        Ok(AssistantSpans {
            text: full.text,
            spans,
            method: SpanMethod::GenerationTags,
            not_prefix_preserving: Some(reason),
            generation_tag_spans: full.generation_spans,
        })
    }
}

impl AssistantSpans {
    /// For templates with `{% generation %}` blocks found by the prefix method too: checks
    /// that each block is the prefix span with the generation prompt before it (the blocks
    /// include the assistant header, which the prompt already supplies at inference).
    pub fn agree_with_generation_tags(&self, generation_prompt: &str) -> Result<(), String> {
        if self.method != SpanMethod::Prefix {
            return Err("spans were not found by the prefix method".into());
        }
        if self.generation_tag_spans.len() != self.spans.len() {
            return Err(format!(
                "{} generation blocks but {} assistant turns",
                self.generation_tag_spans.len(),
                self.spans.len()
            ));
        }
        for (tag, span) in self.generation_tag_spans.iter().zip(&self.spans) {
            let head = &self.text[tag.start..span.range.start.max(tag.start)];
            if tag.end != span.range.end || head != generation_prompt {
                return Err(format!(
                    "message {}: generation block {:?} against prefix span {:?} (head {:?})",
                    span.message, tag, span.range, head
                ));
            }
        }
        Ok(())
    }
}

//! What to generate from: the prompt of a held-out row (rendered with
//! `add_generation_prompt=True`, the one place it is on) and its reference completion.

use serde_json::Value;
use sft_template::{ChatTemplate, RenderOptions};

/// A prompt to continue and the completion the data holds for it.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalPrompt {
    /// The prompt as the model sees it (rendered for conversations).
    pub text: String,
    /// The reference reply, when the row has one.
    pub reference: Option<String>,
    /// Whether the prompt is a rendered conversation (then special tokens are already in
    /// the text and the tokenizer must not add more).
    pub conversational: bool,
}

fn content_text(message: &Value) -> Option<String> {
    match message.get("content")? {
        Value::String(s) => Some(s.clone()),
        // Multimodal-style parts: their text, in order.
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
        ),
        _ => None,
    }
}

/// The prompt and reference of a row in any of the four formats; `Ok(None)` for rows with
/// nothing to prompt with (plain text, or a conversation without a user turn before the
/// last assistant turn).
pub fn prompt_of(
    row: &Value,
    template: Option<&ChatTemplate>,
    options: &RenderOptions,
) -> Result<Option<EvalPrompt>, String> {
    let render = |messages: &[Value],
                  reference: Option<String>|
     -> Result<Option<EvalPrompt>, String> {
        if messages.is_empty() {
            return Ok(None);
        }
        let template = template.ok_or(
            "conversational rows need a chat template: the checkpoint has none; pass --chat-template",
        )?;
        let opts = options.with_row(row)?.for_generation();
        let rendered = template
            .render(messages, &opts)
            .map_err(|e| e.to_string())?;
        Ok(Some(EvalPrompt {
            text: rendered.text,
            reference,
            conversational: true,
        }))
    };
    if let Some(messages) = row.get("messages").and_then(Value::as_array) {
        let last_assistant = messages
            .iter()
            .rposition(|m| m.get("role").and_then(Value::as_str) == Some("assistant"));
        return match last_assistant {
            Some(i) => render(&messages[..i], content_text(&messages[i])),
            None => render(messages, None),
        };
    }
    match (row.get("prompt"), row.get("completion")) {
        (Some(Value::Array(prompt)), completion) => {
            let reference = completion
                .and_then(Value::as_array)
                .and_then(|c| {
                    c.iter()
                        .find(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
                })
                .and_then(content_text);
            render(prompt, reference)
        }
        (Some(Value::String(prompt)), completion) => Ok(Some(EvalPrompt {
            text: prompt.clone(),
            reference: completion.and_then(Value::as_str).map(str::to_string),
            conversational: false,
        })),
        _ => Ok(None),
    }
}

//! The four SFT dataset formats, as TRL defines them, and the shapes people actually have.
//!
//! This crate is the first stage of the flow (read -> **detect -> validate -> convert** ->
//! render -> tokenize -> ...). It works on one row at a time, as a `serde_json::Value`, and
//! knows nothing about files: `sft-io` reads them and `sft-dataset` runs whole datasets.
//!
//! | format | keys |
//! |---|---|
//! | text | `{"text": str}` |
//! | messages (conversational) | `{"messages": [{"role", "content", ...}]}` |
//! | prompt-completion | `{"prompt": str, "completion": str}` |
//! | conversational prompt-completion | `{"prompt": [msgs], "completion": [msgs]}` |
//!
//! ```
//! use sft_formats::{validate_row, Format, RowKind};
//! let row = serde_json::json!({"messages": [
//!     {"role": "user", "content": "Hi"},
//!     {"role": "human", "content": "Hello!"}
//! ]});
//! let checked = validate_row(&row);
//! assert_eq!(checked.kind, RowKind::Format(Format::Messages));
//! assert_eq!(checked.issues[0].path, "messages[1].role");
//! assert_eq!(checked.issues[0].code.as_str(), "unknown_role");
//! ```

pub mod convert;
mod issue;
mod validate;

pub use issue::{IssueCode, RowIssue, Severity};
pub use validate::{detect_row, validate_row, CheckedRow};

use std::fmt;
use std::str::FromStr;

/// One of TRL's four dataset formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    Text,
    Messages,
    PromptCompletion,
    ConversationalPromptCompletion,
}

impl Format {
    pub const ALL: [Format; 4] = [
        Format::Text,
        Format::Messages,
        Format::PromptCompletion,
        Format::ConversationalPromptCompletion,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Messages => "messages",
            Format::PromptCompletion => "prompt-completion",
            Format::ConversationalPromptCompletion => "conversational-prompt-completion",
        }
    }

    /// The keys that make up a row of this format.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Format::Text => &["text"],
            Format::Messages => &["messages"],
            Format::PromptCompletion | Format::ConversationalPromptCompletion => {
                &["prompt", "completion"]
            }
        }
    }

    pub fn is_conversational(self) -> bool {
        matches!(
            self,
            Format::Messages | Format::ConversationalPromptCompletion
        )
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Format::Text),
            "messages" | "conversational" => Ok(Format::Messages),
            "prompt-completion" => Ok(Format::PromptCompletion),
            "conversational-prompt-completion" => Ok(Format::ConversationalPromptCompletion),
            other => Err(format!(
                "unknown format `{other}`: expected text, messages, prompt-completion or conversational-prompt-completion"
            )),
        }
    }
}

/// Shapes that are not one of the four formats but that `sft-data convert` turns into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Shape {
    /// `instruction`, `input`, `output` (optional `system`, `history`).
    Alpaca,
    /// `conversations` of `{"from", "value"}` turns.
    ShareGpt,
    /// OpenAI chat with the legacy `functions` / `function_call` fields.
    OpenAiLegacy,
    /// Preference data for DPO and its kin: `chosen` and `rejected` replies (TRL's
    /// `{prompt, chosen, rejected}` or implicit `{chosen, rejected}`, LLaMA-Factory's
    /// `conversations` + `chosen`/`rejected` turns); SFT can learn the chosen reply.
    Preference,
    /// Unpaired preference data for KTO: a completion with a boolean `label` (TRL) or
    /// `kto_tag` (LLaMA-Factory); SFT can learn the desirable ones.
    Kto,
}

impl Shape {
    pub fn as_str(self) -> &'static str {
        match self {
            Shape::Alpaca => "alpaca",
            Shape::ShareGpt => "sharegpt",
            Shape::OpenAiLegacy => "openai",
            Shape::Preference => "preference",
            Shape::Kto => "kto",
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a row turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RowKind {
    Format(Format),
    Convertible(Shape),
    /// Not an object, or an object with none of the keys of any format or shape.
    Unrecognized,
}

impl RowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::Format(f) => f.as_str(),
            RowKind::Convertible(s) => s.as_str(),
            RowKind::Unrecognized => "unrecognized",
        }
    }
}

impl fmt::Display for RowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The messages of a conversational row, in order, and for conversational
/// prompt-completion the index where the completion starts. The error names the list that
/// is missing (or the format that has no messages).
pub fn conversation(
    row: &serde_json::Value,
    format: Format,
) -> Result<(Vec<serde_json::Value>, Option<usize>), String> {
    let list = |key: &str| -> Result<&Vec<serde_json::Value>, String> {
        row.get(key)
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| format!("the row has no list `{key}`"))
    };
    match format {
        Format::Messages => Ok((list("messages")?.clone(), None)),
        Format::ConversationalPromptCompletion => {
            let mut messages = list("prompt")?.clone();
            let split = messages.len();
            messages.extend(list("completion")?.iter().cloned());
            Ok((messages, Some(split)))
        }
        other => Err(format!("{other} rows are not conversations")),
    }
}

/// Roles a message may have in the four formats.
pub const KNOWN_ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool"];

/// Role names from other conventions, with the role they mean.
pub fn foreign_role(role: &str) -> Option<&'static str> {
    match role {
        "human" | "Human" | "HUMAN" | "User" | "USER" | "prompter" | "question" => Some("user"),
        "gpt" | "GPT" | "bot" | "Assistant" | "ASSISTANT" | "chatgpt" | "bing" | "bard"
        | "model" | "answer" => Some("assistant"),
        "System" | "SYSTEM" => Some("system"),
        "observation" | "function" | "ipython" | "function_response" | "tool_response" => {
            Some("tool")
        }
        _ => None,
    }
}

//! What the operations read from a row: its text and its prompt (its source is
//! [`sft_dataset::source`]).

use serde_json::Value;
use sft_formats::{Format, RowKind};
use xxhash_rust::xxh3::Xxh3;

/// The text a person would read in the row: every string under the format's keys (the
/// content of every message), joined with newlines; for other rows, every string in it.
pub fn row_text(row: &Value, kind: RowKind) -> String {
    let mut out = String::new();
    match kind {
        RowKind::Format(f) => {
            for key in f.keys() {
                if let Some(v) = row.get(*key) {
                    collect_strings(v, &mut out);
                }
            }
        }
        _ => collect_strings(row, &mut out),
    }
    out
}

fn collect_strings(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(s);
        }
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(map) => {
            for (key, item) in map {
                // Roles and part types are structure, not text.
                if key != "role" && key != "type" {
                    collect_strings(item, out);
                }
            }
        }
        _ => {}
    }
}

/// A hash of the row's prompt, for rows that have one: `prompt` in the prompt-completion
/// formats; in conversations, the turns before the first assistant reply. Two rows with
/// the same prompt answer the same question.
pub fn prompt_hash(row: &Value, kind: RowKind) -> Option<u64> {
    let prompt: Vec<&Value> = match kind {
        RowKind::Format(Format::PromptCompletion)
        | RowKind::Format(Format::ConversationalPromptCompletion) => vec![row.get("prompt")?],
        RowKind::Format(Format::Messages) => row
            .get("messages")?
            .as_array()?
            .iter()
            .take_while(|m| m.get("role").and_then(Value::as_str) != Some("assistant"))
            .collect(),
        _ => return None,
    };
    if prompt.is_empty() {
        return None;
    }
    let mut text = String::new();
    for p in prompt {
        collect_strings(p, &mut text);
    }
    if text.trim().is_empty() {
        return None;
    }
    let mut h = Xxh3::new();
    h.update(b"prompt\0");
    h.update(text.trim().as_bytes());
    Some(h.digest())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prompts_and_texts() {
        let a = json!({"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A1"}]});
        let b = json!({"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A2"}]});
        let k = RowKind::Format(Format::Messages);
        assert_eq!(prompt_hash(&a, k), prompt_hash(&b, k));
        assert_eq!(row_text(&a, k), "Q?\nA1");
        let p = json!({"prompt": "Q?", "completion": "x"});
        assert!(prompt_hash(&p, RowKind::Format(Format::PromptCompletion)).is_some());
        assert!(prompt_hash(&json!({"text": "x"}), RowKind::Format(Format::Text)).is_none());
    }
}

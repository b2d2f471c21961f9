//! Content hashes that say when two rows are the same example.

use serde_json::Value;
use sft_formats::{RowKind, Shape};
use xxhash_rust::xxh3::Xxh3;

/// A hash of what the model would learn from the row: for the four formats, the format's
/// keys and `tools` (ids, sources and other bookkeeping columns are ignored); for other
/// rows, the whole row. Key order inside objects does not matter.
pub fn content_hash(row: &Value, kind: RowKind) -> u64 {
    let mut h = Xxh3::new();
    let keys: &[&str] = match kind {
        RowKind::Format(f) => f.keys(),
        RowKind::Convertible(Shape::Alpaca) => {
            &["instruction", "input", "output", "system", "history"]
        }
        RowKind::Convertible(Shape::ShareGpt) => &["conversations", "messages", "system"],
        RowKind::Convertible(Shape::OpenAiLegacy) => &["messages", "functions"],
        RowKind::Convertible(Shape::Preference) => &[
            "prompt",
            "conversations",
            "messages",
            "instruction",
            "input",
            "chosen",
            "rejected",
        ],
        RowKind::Convertible(Shape::Kto) => &[
            "prompt",
            "completion",
            "messages",
            "conversations",
            "label",
            "kto_tag",
        ],
        RowKind::Unrecognized => {
            feed(&mut h, row);
            return h.digest();
        }
    };
    for key in keys.iter().chain(["tools"].iter()) {
        if let Some(v) = row.get(*key) {
            h.update(key.as_bytes());
            h.update(&[0]);
            feed(&mut h, v);
        }
    }
    h.digest()
}

fn feed(h: &mut Xxh3, v: &Value) {
    match v {
        Value::Null => h.update(b"n"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            h.update(b"#");
            h.update(n.to_string().as_bytes());
        }
        Value::String(s) => {
            h.update(b"s");
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        Value::Array(items) => {
            h.update(b"[");
            h.update(&(items.len() as u64).to_le_bytes());
            for item in items {
                feed(h, item);
            }
        }
        Value::Object(map) => {
            h.update(b"{");
            h.update(&(map.len() as u64).to_le_bytes());
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (k, item) in entries {
                h.update(&(k.len() as u64).to_le_bytes());
                h.update(k.as_bytes());
                feed(h, item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sft_formats::{detect_row, Format};

    #[test]
    fn same_example_same_hash_whatever_the_bookkeeping() {
        let a = json!({"id": 1, "messages": [{"role": "user", "content": "hi"}, {"content": "yo", "role": "assistant"}]});
        let b = json!({"messages": [{"content": "hi", "role": "user"}, {"role": "assistant", "content": "yo"}], "id": 2});
        let c = json!({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo!"}]});
        let kind = RowKind::Format(Format::Messages);
        assert_eq!(content_hash(&a, kind), content_hash(&b, kind));
        assert_ne!(content_hash(&a, kind), content_hash(&c, kind));
        assert_eq!(detect_row(&a), kind);
    }
}

//! Where a row came from: its `source` field (as `sft-data mix` writes it), or the file it
//! was read from. `check` counts rows per source, `prepare` keeps the column, and the
//! dataset operations (`split --stratify`, `stats`) group by it.

use serde_json::Value;

/// The row's source: its `source` field when it is a non-empty string, else the name of
/// the file it came from ([`file_source_name`]).
pub fn row_source(row: &Value, file_source: &str) -> String {
    source_field(row).unwrap_or(file_source).to_string()
}

/// The row's `source` field when it is a non-empty string.
pub fn source_field(row: &Value) -> Option<&str> {
    match row.get("source") {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// A file's default source name: its stem (`data/alpaca.jsonl` -> `alpaca`,
/// `chat.jsonl.zst` -> `chat`).
pub fn file_source_name(path: &std::path::Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let stem = stem.trim_end_matches(".jsonl").trim_end_matches(".json");
    stem.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_field_wins_over_the_file() {
        assert_eq!(row_source(&json!({"source": "math"}), "train"), "math");
        assert_eq!(row_source(&json!({"source": ""}), "train"), "train");
        assert_eq!(row_source(&json!({"source": 3}), "train"), "train");
        assert_eq!(row_source(&json!({"text": "x"}), "train"), "train");
        let name = |p: &str| file_source_name(std::path::Path::new(p));
        assert_eq!(name("data/alpaca.jsonl"), "alpaca");
        assert_eq!(name("chat.jsonl.zst"), "chat");
        assert_eq!(name("shard.parquet"), "shard");
    }
}

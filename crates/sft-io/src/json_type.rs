//! The `arrow.json` extension type: a string column whose values are JSON text. Python
//! `datasets` (5.x, `on_mixed_types="use_json"`) stores a field so when its rows hold
//! different JSON types (an object in one row, a string in another), and reads it back as
//! the values. We read such fields as those values and write fields of mixed types so.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema};
use serde_json::Value;

/// The field metadata key naming an extension type, and the name of the JSON one.
pub const EXTENSION_NAME: &str = "ARROW:extension:name";
pub const EXTENSION_METADATA: &str = "ARROW:extension:metadata";
pub const JSON_EXTENSION: &str = "arrow.json";

/// One step into a row: an object's key, or every element of a list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    Key(String),
    Each,
}

pub type JsonPath = Vec<Step>;

fn is_json_field(field: &Field) -> bool {
    field
        .metadata()
        .get(EXTENSION_NAME)
        .is_some_and(|n| n == JSON_EXTENSION)
}

/// The paths of the `arrow.json` fields of a schema, from the row down.
pub fn paths(fields: &Fields) -> Vec<JsonPath> {
    let mut out = Vec::new();
    for f in fields {
        walk(f, vec![Step::Key(f.name().clone())], &mut out);
    }
    out
}

fn walk(field: &Field, path: JsonPath, out: &mut Vec<JsonPath>) {
    if is_json_field(field) {
        out.push(path);
        return;
    }
    match field.data_type() {
        DataType::List(child)
        | DataType::LargeList(child)
        | DataType::ListView(child)
        | DataType::LargeListView(child)
        | DataType::FixedSizeList(child, _) => {
            let mut p = path;
            p.push(Step::Each);
            walk(child, p, out);
        }
        DataType::Struct(fields) => {
            for f in fields {
                let mut p = path.clone();
                p.push(Step::Key(f.name().clone()));
                walk(f, p, out);
            }
        }
        _ => {}
    }
}

/// Applies `f` to the values at `path` in `value` (every element where the path says so).
fn visit(
    value: &mut Value,
    path: &[Step],
    f: &mut dyn FnMut(&mut Value) -> Result<(), String>,
) -> Result<(), String> {
    match path.split_first() {
        None => f(value),
        Some((Step::Key(k), rest)) => match value.get_mut(k.as_str()) {
            Some(v) => visit(v, rest, f),
            None => Ok(()),
        },
        Some((Step::Each, rest)) => match value {
            Value::Array(items) => items.iter_mut().try_for_each(|v| visit(v, rest, f)),
            _ => Ok(()),
        },
    }
}

/// JSON lines (as arrow-json writes a batch) with the strings at `paths` parsed as JSON.
pub fn decode_lines(buf: &[u8], paths: &[JsonPath]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(buf.len());
    for line in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let mut row: Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        for path in paths {
            visit(&mut row, path, &mut |v| {
                if let Value::String(text) = v {
                    *v = serde_json::from_str(text)
                        .map_err(|e| format!("{}: {e}", describe(path)))?;
                }
                Ok(())
            })?;
        }
        // Arrow's null for a JSON field is left out, as every null field is.
        strip_null_keys(&mut row);
        serde_json::to_writer(&mut out, &row).map_err(|e| e.to_string())?;
        out.push(b'\n');
    }
    Ok(out)
}

/// Drops the object keys whose value is null at the top of the row (a JSON field's null).
fn strip_null_keys(row: &mut Value) {
    if let Value::Object(map) = row {
        map.retain(|_, v| !v.is_null());
    }
}

/// A path as text: `messages[].tool_calls[].function.arguments`.
pub fn describe(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Each => s.push_str("[]"),
        }
    }
    s
}

/// The JSON types seen at each path of the rows written so far, to find the fields whose
/// rows hold different types (which one Parquet column type cannot hold).
#[derive(Debug, Default)]
pub struct Kinds {
    seen: HashMap<JsonPath, u8>,
}

const BOOL: u8 = 1;
const NUMBER: u8 = 2;
const STRING: u8 = 4;
const ARRAY: u8 = 8;
const OBJECT: u8 = 16;

impl Kinds {
    pub fn add(&mut self, row: &Value) {
        let mut path = Vec::new();
        self.add_at(row, &mut path);
    }

    fn add_at(&mut self, value: &Value, path: &mut JsonPath) {
        let kind = match value {
            Value::Null => return,
            Value::Bool(_) => BOOL,
            Value::Number(_) => NUMBER,
            Value::String(_) => STRING,
            Value::Array(_) => ARRAY,
            Value::Object(_) => OBJECT,
        };
        if !path.is_empty() {
            let seen = self.seen.entry(path.clone()).or_default();
            *seen |= kind;
            if seen.count_ones() > 1 {
                // Mixed already: stored as JSON text whole, so what is below does not matter.
                return;
            }
        }
        match value {
            Value::Array(items) => {
                path.push(Step::Each);
                for v in items {
                    self.add_at(v, path);
                }
                path.pop();
            }
            Value::Object(map) => {
                for (k, v) in map {
                    path.push(Step::Key(k.clone()));
                    self.add_at(v, path);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    /// Adds what another writer's rows held.
    pub fn merge(&mut self, other: &Kinds) {
        for (path, kind) in &other.seen {
            *self.seen.entry(path.clone()).or_default() |= kind;
        }
    }

    /// The outermost paths whose rows hold more than one JSON type (nulls aside).
    pub fn mixed(&self) -> Vec<JsonPath> {
        let mut mixed: Vec<JsonPath> = self
            .seen
            .iter()
            .filter(|(_, k)| k.count_ones() > 1)
            .map(|(p, _)| p.clone())
            .collect();
        mixed.sort();
        let mut outer: Vec<JsonPath> = Vec::new();
        for p in mixed {
            if !outer.iter().any(|o| p.starts_with(o)) {
                outer.push(p);
            }
        }
        outer
    }
}

/// A row with the values at `paths` replaced by their JSON text.
pub fn encode(row: &mut Value, paths: &[JsonPath]) {
    for path in paths {
        let _ = visit(row, path, &mut |v| {
            if !v.is_null() {
                *v = Value::String(v.to_string());
            }
            Ok(())
        });
    }
}

/// The schema with the fields at `paths` as `arrow.json` (their storage: strings).
pub fn mark(schema: &Schema, paths: &[JsonPath]) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let below: Vec<&[Step]> = paths
                .iter()
                .filter(|p| p.first() == Some(&Step::Key(f.name().clone())))
                .map(|p| &p[1..])
                .collect();
            mark_field(f, &below)
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

fn mark_field(field: &Field, paths: &[&[Step]]) -> Field {
    if paths.is_empty() {
        return field.clone();
    }
    if paths.iter().any(|p| p.is_empty()) {
        let mut metadata: BTreeMap<String, String> = BTreeMap::new();
        metadata.insert(EXTENSION_NAME.into(), JSON_EXTENSION.into());
        metadata.insert(EXTENSION_METADATA.into(), String::new());
        return Field::new(field.name(), DataType::Utf8, true).with_metadata(metadata);
    }
    let data_type = match field.data_type() {
        DataType::List(child) => {
            let below: Vec<&[Step]> = paths
                .iter()
                .filter(|p| p.first() == Some(&Step::Each))
                .map(|p| &p[1..])
                .collect();
            DataType::List(Arc::new(mark_field(child, &below)))
        }
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| {
                    let below: Vec<&[Step]> = paths
                        .iter()
                        .filter(|p| p.first() == Some(&Step::Key(f.name().clone())))
                        .map(|p| &p[1..])
                        .collect();
                    mark_field(f, &below)
                })
                .collect::<Vec<Field>>()
                .into(),
        ),
        other => other.clone(),
    };
    Field::new(field.name(), data_type, field.is_nullable()).with_metadata(field.metadata().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mixed_fields_are_found_outermost_first() {
        let mut k = Kinds::default();
        k.add(&json!({"a": {"x": 1}, "b": [1, 2], "c": "s", "d": [{"e": 1}]}));
        k.add(&json!({"a": "text", "b": [3], "c": null, "d": [{"e": "two"}]}));
        assert_eq!(
            k.mixed(),
            vec![
                vec![Step::Key("a".into())],
                vec![Step::Key("d".into()), Step::Each, Step::Key("e".into())],
            ]
        );
        let mut row = json!({"a": {"x": 1}, "d": [{"e": 1}, {"e": null}]});
        encode(&mut row, &k.mixed());
        assert_eq!(
            row,
            json!({"a": "{\"x\":1}", "d": [{"e": "1"}, {"e": null}]})
        );
    }
}

#[cfg(test)]
mod parquet_tests {
    use super::*;
    use serde_json::json;

    /// A Parquet file written with mixed fields carries the arrow.json extension name on
    /// exactly those fields (as pyarrow writes it: name and empty metadata), and reads back.
    #[test]
    fn parquet_marks_mixed_fields_as_arrow_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.parquet");
        let rows = [
            json!({"m": [{"role": "a", "args": {"x": 1}}], "meta": {"k": 1}, "n": 1}),
            json!({"m": [{"role": "b", "args": "text"}], "meta": [1, 2], "n": 2}),
        ];
        let mut w = crate::write::DatasetWriter::create(&path).unwrap();
        for r in &rows {
            w.write(r).unwrap();
        }
        assert_eq!(w.json_text_fields(), vec!["m[].args", "meta"]);
        w.finish().unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let builder =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let schema = builder.schema().clone();
        let found: Vec<String> = paths(schema.fields()).iter().map(|p| describe(p)).collect();
        assert_eq!(found, vec!["m[].args", "meta"]);
        let meta = schema.field_with_name("meta").unwrap();
        assert_eq!(meta.data_type(), &DataType::Utf8);
        assert_eq!(
            meta.metadata().get(EXTENSION_METADATA).map(String::as_str),
            Some("")
        );
        let file = crate::discover(std::slice::from_ref(&path)).unwrap();
        let mut reader = crate::open(&file[0], &crate::ReadOptions::default()).unwrap();
        let batch = reader.next_batch().unwrap().unwrap();
        let back: Vec<Value> = batch
            .rows
            .iter()
            .map(|r| match &r.content {
                crate::RowContent::Json(range) => {
                    serde_json::from_slice(&batch.buf[range.clone()]).unwrap()
                }
                crate::RowContent::Value(v) => v.clone(),
            })
            .collect();
        assert_eq!(back, rows);
    }
}

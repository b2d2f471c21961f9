//! The Jinja environment `transformers` renders chat templates in, rebuilt on minijinja:
//! trim/lstrip blocks, loop controls, Python string and dict methods, a `tojson` that is
//! Python's `json.dumps(ensure_ascii=False)`, `raise_exception`, `strftime_now`, and the
//! `{% generation %}` block.

use std::sync::Arc;

use minijinja::value::{Kwargs, Value as JValue, ValueKind};
use minijinja::{Environment, Error, ErrorKind};
use serde_json::Value;

use crate::clock::{Clock, NaiveDateTime};

/// Marks the start and end of a `{% generation %}` block in rendered text. Private-use
/// code points, which no tokenizer's vocabulary treats as text a template would emit.
pub(crate) const GENERATION_START: char = '\u{F0000}';
pub(crate) const GENERATION_END: char = '\u{F0001}';

/// minijinja has no `{% generation %}` tag. It becomes a filter block, which keeps the
/// whitespace handling of a block tag (trim_blocks, lstrip_blocks, `-` markers); the filter
/// wraps the block's output in markers that the renderer turns into spans.
pub(crate) fn rewrite_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        let Some(end) = tag.find("%}") else {
            out.push_str(tag);
            return out;
        };
        let inner = &tag[2..end];
        let (open_dash, body) = match inner.strip_prefix('-') {
            Some(b) => ("-", b),
            None => match inner.strip_prefix('+') {
                Some(b) => ("+", b),
                None => ("", inner),
            },
        };
        let (body, close_dash) = match body.strip_suffix('-') {
            Some(b) => (b, "-"),
            None => match body.strip_suffix('+') {
                Some(b) => (b, "+"),
                None => (body, ""),
            },
        };
        match body.trim() {
            "generation" => out.push_str(&format!(
                "{{%{open_dash} filter __generation_span {close_dash}%}}"
            )),
            "endgeneration" => out.push_str(&format!("{{%{open_dash} endfilter {close_dash}%}}")),
            _ => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Builds the environment. `fuel` bounds the work a template may do (minijinja counts
/// instructions), so a runaway template ends in an error rather than a hang.
pub(crate) fn environment(clock: Clock, fuel: Option<u64>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(false)
            .build()
            .expect("the default delimiters are valid"),
    );
    env.set_fuel(fuel);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_filter("tojson", tojson);
    env.add_filter("__generation_span", |body: String| {
        let mut s = String::with_capacity(body.len() + 8);
        s.push(GENERATION_START);
        s.push_str(&body);
        s.push(GENERATION_END);
        JValue::from_safe_string(s)
    });
    env.add_function(
        "raise_exception",
        |message: String| -> Result<JValue, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        },
    );
    let clock = Arc::new(clock);
    env.add_function(
        "strftime_now",
        move |format: String| -> Result<JValue, Error> {
            let now: NaiveDateTime = clock.now();
            now.strftime(&format)
                .map(JValue::from)
                .map_err(|e| Error::new(ErrorKind::InvalidOperation, e))
        },
    );
    env
}

/// `tojson` as transformers defines it: `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`, not HTML-escaped.
fn tojson(value: JValue, kwargs: Kwargs) -> Result<JValue, Error> {
    if value.kind() == ValueKind::Undefined {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "Object of type Undefined is not JSON serializable",
        ));
    }
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let indent: Option<JValue> = kwargs.get("indent")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_i64() {
            Some(n) => Some(" ".repeat(n.max(0) as usize)),
            None => Some(v.as_str().unwrap_or_default().to_string()),
        },
    };
    let (item_sep, key_sep) = match separators {
        Some(s) if s.len() == 2 => (s[0].clone(), s[1].clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "separators must be an (item_separator, key_separator) pair",
            ))
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let json: Value = serde_json::to_value(&value).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("not JSON serializable: {e}"),
        )
    })?;
    let style = PyJson {
        indent,
        item_sep,
        key_sep,
        ensure_ascii: ensure_ascii.unwrap_or(false),
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    style.write(&json, 0, &mut out);
    Ok(JValue::from_safe_string(out))
}

/// Python's `json.dumps` output format.
pub struct PyJson {
    pub indent: Option<String>,
    pub item_sep: String,
    pub key_sep: String,
    pub ensure_ascii: bool,
    pub sort_keys: bool,
}

impl PyJson {
    /// `json.dumps(value, ensure_ascii=False)`.
    pub fn compact() -> PyJson {
        PyJson {
            indent: None,
            item_sep: ", ".into(),
            key_sep: ": ".into(),
            ensure_ascii: false,
            sort_keys: false,
        }
    }

    fn newline(&self, depth: usize, out: &mut String) {
        if let Some(indent) = &self.indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(indent);
            }
        }
    }

    pub fn write(&self, v: &Value, depth: usize, out: &mut String) {
        match v {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => out.push_str(&i.to_string()),
                (_, Some(u), _) => out.push_str(&u.to_string()),
                (_, _, Some(f)) => out.push_str(&python_float(f)),
                _ => out.push_str(&n.to_string()),
            },
            Value::String(s) => self.string(s, out),
            Value::Array(items) => {
                if items.is_empty() {
                    out.push_str("[]");
                    return;
                }
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(depth + 1, out);
                    self.write(item, depth + 1, out);
                }
                self.newline(depth, out);
                out.push(']');
            }
            Value::Object(map) => {
                if map.is_empty() {
                    out.push_str("{}");
                    return;
                }
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (k, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(depth + 1, out);
                    self.string(k, out);
                    out.push_str(&self.key_sep);
                    self.write(item, depth + 1, out);
                }
                self.newline(depth, out);
                out.push('}');
            }
        }
    }

    fn string(&self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{08}' => out.push_str("\\b"),
                '\u{0c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c if self.ensure_ascii && !c.is_ascii() => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// Python's `repr(float)`, as `json.dumps` writes floats.
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Rust writes 1e20 and 1.5e-7; Python writes 1e+20 and 1.5e-07.
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    if f.fract() == 0.0 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_become_filter_blocks() {
        assert_eq!(
            rewrite_generation_tags("a{% generation %}b{%- endgeneration -%}c{{ x }}{% if y %}"),
            "a{% filter __generation_span %}b{%- endfilter -%}c{{ x }}{% if y %}"
        );
    }

    #[test]
    fn python_json_format() {
        let v = serde_json::json!({"b": [1, 2.0, 1e20, 0.5], "a": "é\n\"", "c": {}, "d": []});
        let mut out = String::new();
        PyJson::compact().write(&v, 0, &mut out);
        assert_eq!(
            out,
            r#"{"b": [1, 2.0, 1e+20, 0.5], "a": "é\n\"", "c": {}, "d": []}"#
        );
        let style = PyJson {
            indent: Some("  ".into()),
            item_sep: ",".into(),
            key_sep: ": ".into(),
            ensure_ascii: true,
            sort_keys: true,
        };
        let mut out = String::new();
        style.write(&v, 0, &mut out);
        assert_eq!(
            out,
            "{\n  \"a\": \"\\u00e9\\n\\\"\",\n  \"b\": [\n    1,\n    2.0,\n    1e+20,\n    0.5\n  ],\n  \"c\": {},\n  \"d\": []\n}"
        );
    }
}

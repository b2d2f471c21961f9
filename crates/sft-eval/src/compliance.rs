//! Format compliance of generated samples: did generation stop by itself, did special
//! tokens or chat-template markers leak into the reply, are `<think>` blocks balanced, is
//! the reply JSON (and does it follow a schema), does it match a pattern, is it of the
//! right length.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why generation of a sample stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The end-of-turn token (e.g. `<|im_end|>`).
    EndOfTurn,
    /// The end-of-sequence token.
    Eos,
    /// The token budget ran out.
    MaxNewTokens,
}

/// One generated sample.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    /// The generated text, decoded raw (special tokens not skipped).
    pub text: &'a str,
    /// Why generation stopped.
    pub stopped_by: StopReason,
    /// The reference answer, if the prompt has one.
    pub reference: Option<&'a str>,
    /// Number of generated tokens.
    pub new_tokens: usize,
}

/// What a compliant reply looks like.
#[derive(Debug, Clone, Default)]
pub struct ComplianceOptions {
    /// Special tokens that must not appear in a reply, e.g. `<|im_start|>`, `<|im_end|>`.
    pub special_tokens: Vec<String>,
    /// Any other strings that must not appear, e.g. role headers such as
    /// `<|im_start|>assistant`.
    pub template_markers: Vec<String>,
    /// The reply must be JSON (also implied by `json_schema` or a JSON reference).
    pub expect_json: bool,
    /// A JSON Schema (the subset of [`validate_schema`]) the reply must follow.
    pub json_schema: Option<Value>,
    /// A pattern (the syntax of [`Pattern`]) the reply must match somewhere.
    pub expect_pattern: Option<String>,
    /// Fewest characters of the reply.
    pub min_chars: Option<usize>,
    /// Most characters of the reply.
    pub max_chars: Option<usize>,
}

/// The outcome of one check on one sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    /// The check: one of [`CHECK_NAMES`].
    pub name: &'static str,
    /// Whether the sample passed.
    pub passed: bool,
    /// Why it failed (or a note), if anything.
    pub detail: Option<String>,
}

/// Every check [`check_sample`] may run, in the order it runs them.
pub const CHECK_NAMES: [&str; 7] = [
    "stopped",
    "no_special_tokens",
    "think_balanced",
    "json",
    "json_schema",
    "pattern",
    "length",
];

fn result(name: &'static str, failure: Option<String>) -> CheckResult {
    CheckResult {
        name,
        passed: failure.is_none(),
        detail: failure,
    }
}

/// Runs the checks that apply to `sample`:
/// - `stopped`: generation did not run into `max_new_tokens`;
/// - `no_special_tokens`: no special token or template marker in the reply;
/// - `think_balanced` (when the reply has `<think>` or `</think>`): each `<think>` is
///   closed by a later `</think>`, without nesting;
/// - `json` (when `expect_json`, a schema is given, or the reference is a JSON object or
///   array): the trimmed reply, or a single fenced ```` ```json ```` block in it, parses;
/// - `json_schema` (when a schema is given): the parsed reply follows it;
/// - `pattern` (when a pattern is given): the reply matches it;
/// - `length` (when bounds are given): the reply's length in characters is within them.
///
/// When generation stopped by itself, a special token ending the text is the stop token,
/// not a leak: it is cut off before the checks look at the reply.
pub fn check_sample(sample: &Sample, opts: &ComplianceOptions) -> Vec<CheckResult> {
    let reply = reply(sample, opts);
    let mut out = vec![result(
        "stopped",
        (sample.stopped_by == StopReason::MaxNewTokens)
            .then(|| format!("hit max_new_tokens ({} tokens)", sample.new_tokens)),
    )];
    let leak = opts
        .special_tokens
        .iter()
        .chain(&opts.template_markers)
        .filter(|s| !s.is_empty())
        .filter_map(|s| reply.find(s.as_str()).map(|at| (at, s)))
        .min_by_key(|&(at, s)| (at, std::cmp::Reverse(s.len())));
    out.push(result(
        "no_special_tokens",
        leak.map(|(at, s)| format!("{s:?} at byte {at}")),
    ));
    if reply.contains("<think>") || reply.contains("</think>") {
        out.push(result("think_balanced", think_balanced(reply).err()));
    }
    let reference_is_json = sample
        .reference
        .and_then(|r| serde_json::from_str::<Value>(r.trim()).ok())
        .is_some_and(|v| v.is_object() || v.is_array());
    if opts.expect_json || opts.json_schema.is_some() || reference_is_json {
        let parsed = parse_json_reply(reply);
        out.push(result("json", parsed.as_ref().err().cloned()));
        if let Some(schema) = &opts.json_schema {
            let failure = match &parsed {
                Ok(value) => validate_schema(value, schema).err(),
                Err(_) => Some("the reply is not JSON".to_string()),
            };
            out.push(result("json_schema", failure));
        }
    }
    if let Some(p) = &opts.expect_pattern {
        let failure = match Pattern::new(p) {
            Ok(pat) => (!pat.is_match(reply)).then(|| format!("no match for {p:?}")),
            Err(e) => Some(format!("invalid pattern {p:?}: {e}")),
        };
        out.push(result("pattern", failure));
    }
    if opts.min_chars.is_some() || opts.max_chars.is_some() {
        let n = reply.chars().count();
        let failure = match (opts.min_chars, opts.max_chars) {
            (Some(min), _) if n < min => Some(format!("{n} chars, fewer than {min}")),
            (_, Some(max)) if n > max => Some(format!("{n} chars, more than {max}")),
            _ => None,
        };
        out.push(result("length", failure));
    }
    out
}

/// The text the checks look at: without the stop token that ends it, if any.
fn reply<'a>(sample: &Sample<'a>, opts: &ComplianceOptions) -> &'a str {
    if sample.stopped_by == StopReason::MaxNewTokens {
        return sample.text;
    }
    let t = sample.text.trim_end();
    opts.special_tokens
        .iter()
        .filter(|s| !s.is_empty())
        .find_map(|s| t.strip_suffix(s.as_str()))
        .unwrap_or(sample.text)
}

fn think_balanced(text: &str) -> Result<(), String> {
    let mut open: Option<usize> = None;
    let mut i = 0;
    while let Some(at) = text[i..].find("think>").map(|a| a + i) {
        i = at + "think>".len();
        if text[..at].ends_with("</") {
            if open.take().is_none() {
                return Err(format!("</think> at byte {} without <think>", at - 2));
            }
        } else if text[..at].ends_with('<') {
            if let Some(o) = open.replace(at - 1) {
                return Err(format!(
                    "<think> at byte {} inside <think> at byte {o}",
                    at - 1
                ));
            }
        }
    }
    match open {
        Some(o) => Err(format!("<think> at byte {o} is never closed")),
        None => Ok(()),
    }
}

/// Parses a reply as JSON: the trimmed text, or else the content of its single fenced
/// block (```` ```json ```` or a bare ```` ``` ````). The error is serde_json's, with line
/// and column.
pub fn parse_json_reply(text: &str) -> Result<Value, String> {
    let trimmed = text.trim();
    let direct = serde_json::from_str(trimmed);
    if let Ok(v) = direct {
        return Ok(v);
    }
    let fences: Vec<usize> = trimmed.match_indices("```").map(|(i, _)| i).collect();
    if let [open, close] = fences[..] {
        let block = &trimmed[open + 3..close];
        let (lang, body) = block.split_once('\n').unwrap_or((block, ""));
        if matches!(lang.trim(), "" | "json" | "JSON") {
            return serde_json::from_str(body.trim()).map_err(|e| e.to_string());
        }
    }
    direct.map_err(|e| e.to_string())
}

/// Validates `value` against a JSON Schema subset: boolean schemas, `type` (a name or a
/// list of names: string, number, integer, boolean, object, array, null), `enum`,
/// `const`, `minimum`, `maximum`, `minLength`, `maxLength` (in characters), `minItems`,
/// `maxItems`, `properties`, `required`, `additionalProperties` (a boolean or a schema)
/// and `items` (one schema for every item). Other keywords are ignored. The error names
/// the JSON path of the first violation, e.g. `$.steps[2].name: expected string, got
/// number`.
pub fn validate_schema(value: &Value, schema: &Value) -> Result<(), String> {
    validate_at(value, schema, "$")
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(v: &Value, name: &str) -> bool {
    match name {
        "number" => v.is_number(),
        "integer" => v.as_f64().is_some_and(|x| x.fract() == 0.0),
        other => type_name(v) == other,
    }
}

fn child_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_alphanumeric() || c == '_');
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::from(key))
    }
}

fn validate_at(v: &Value, schema: &Value, path: &str) -> Result<(), String> {
    let fail = |msg: String| Err(format!("{path}: {msg}"));
    let s = match schema {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return fail("no value is allowed here".into()),
        Value::Object(s) => s,
        _ => return Ok(()),
    };
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() && !types.iter().any(|t| has_type(v, t)) {
        return fail(format!(
            "expected {}, got {}",
            types.join(" or "),
            type_name(v)
        ));
    }
    if let Some(Value::Array(options)) = s.get("enum") {
        if !options.contains(v) {
            let list: Vec<String> = options.iter().map(Value::to_string).collect();
            return fail(format!("{v} is not one of {}", list.join(", ")));
        }
    }
    if let Some(c) = s.get("const") {
        if c != v {
            return fail(format!("expected {c}, got {v}"));
        }
    }
    let bound = |key: &str| s.get(key).and_then(Value::as_f64);
    let count = |key: &str| s.get(key).and_then(Value::as_u64).map(|n| n as usize);
    if let Some(x) = v.as_f64() {
        if let Some(min) = bound("minimum").filter(|&m| x < m) {
            return fail(format!("{v} is less than minimum {min}"));
        }
        if let Some(max) = bound("maximum").filter(|&m| x > m) {
            return fail(format!("{v} is more than maximum {max}"));
        }
    }
    if let Some(text) = v.as_str() {
        let n = text.chars().count();
        if let Some(min) = count("minLength").filter(|&m| n < m) {
            return fail(format!("length {n} is less than minLength {min}"));
        }
        if let Some(max) = count("maxLength").filter(|&m| n > m) {
            return fail(format!("length {n} is more than maxLength {max}"));
        }
    }
    if let Some(items) = v.as_array() {
        let n = items.len();
        if let Some(min) = count("minItems").filter(|&m| n < m) {
            return fail(format!("{n} items, fewer than minItems {min}"));
        }
        if let Some(max) = count("maxItems").filter(|&m| n > m) {
            return fail(format!("{n} items, more than maxItems {max}"));
        }
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate_at(item, item_schema, &format!("{path}[{i}]"))?;
            }
        }
    }
    if let Some(obj) = v.as_object() {
        if let Some(Value::Array(required)) = s.get("required") {
            if let Some(missing) = required
                .iter()
                .filter_map(Value::as_str)
                .find(|k| !obj.contains_key(*k))
            {
                return fail(format!("missing required property {missing:?}"));
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (key, item) in obj {
            let sub = child_path(path, key);
            match (
                props.and_then(|p| p.get(key)),
                s.get("additionalProperties"),
            ) {
                (Some(prop_schema), _) => validate_at(item, prop_schema, &sub)?,
                (None, Some(Value::Bool(false))) => {
                    return fail(format!("unexpected property {key:?}"))
                }
                (None, Some(extra @ Value::Object(_))) => validate_at(item, extra, &sub)?,
                _ => {}
            }
        }
    }
    Ok(())
}

/// Checks that `p` is a valid [`Pattern`]; the error says what is wrong and where.
pub fn validate_pattern(p: &str) -> Result<(), String> {
    Pattern::new(p).map(|_| ())
}

/// A regular expression (the `regex` crate's syntax, close to Python's `re` without
/// look-around and back-references), matched anywhere in a text (search semantics) in time
/// linear in the text.
///
/// `^` and `$` match at the start and end of the whole text; `.` matches any character but
/// `\n`; `\d`, `\w`, `\s` and `\b` are Unicode-aware, as in Python 3's `re` on text.
#[derive(Debug, Clone)]
pub struct Pattern {
    regex: regex::Regex,
}

/// The size limit of a compiled pattern (a pattern such as `(a{1000}){1000}` is refused
/// rather than compiled into a huge program).
const MAX_PROGRAM_BYTES: usize = 1 << 20;

impl Pattern {
    /// Parses and compiles a pattern; the error says what is wrong and where.
    pub fn new(pattern: &str) -> Result<Pattern, String> {
        // Python's `re` refuses a repetition of nothing or of an anchor (`^*`, `(?:)+`),
        // which `regex` would accept as an empty match: refused here too.
        if let Ok(ast) = regex_syntax::ast::parse::Parser::new().parse(pattern) {
            nothing_repeated(&ast)?;
        }
        regex::RegexBuilder::new(pattern)
            .size_limit(MAX_PROGRAM_BYTES)
            .build()
            .map(|regex| Pattern { regex })
            .map_err(|e| match e {
                regex::Error::Syntax(message) => message,
                regex::Error::CompiledTooBig(limit) => format!(
                    "the pattern compiles to more than {limit} bytes; use fewer or smaller repetitions"
                ),
                other => other.to_string(),
            })
    }

    /// Whether the pattern matches somewhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

/// Refuses a repetition whose operand is empty or an assertion, naming where it is.
fn nothing_repeated(ast: &regex_syntax::ast::Ast) -> Result<(), String> {
    use regex_syntax::ast::Ast;
    match ast {
        Ast::Repetition(rep) => {
            if matches!(*rep.ast, Ast::Empty(_) | Ast::Assertion(_)) {
                return Err(format!(
                    "nothing to repeat at position {}",
                    rep.op.span.start.offset
                ));
            }
            nothing_repeated(&rep.ast)
        }
        Ast::Group(group) => match &*group.ast {
            Ast::Empty(_) => Ok(()),
            inner => nothing_repeated(inner),
        },
        Ast::Alternation(alt) => alt.asts.iter().try_for_each(nothing_repeated),
        Ast::Concat(concat) => concat.asts.iter().try_for_each(nothing_repeated),
        _ => Ok(()),
    }
}

/// For each check that ran on at least one sample, in the order of [`CHECK_NAMES`]: its
/// name, on how many samples it ran and how many passed it.
pub fn pass_rates(results: &[Vec<CheckResult>]) -> Vec<(String, usize, usize)> {
    CHECK_NAMES
        .iter()
        .filter_map(|&name| {
            let ran = results.iter().flatten().filter(|r| r.name == name);
            let (applied, passed) =
                ran.fold((0, 0), |(a, p), r| (a + 1, p + usize::from(r.passed)));
            (applied > 0).then(|| (name.to_string(), applied, passed))
        })
        .collect()
}

/// The share of samples that passed every check that ran on them (0.0 without samples).
pub fn compliance_rate(results: &[Vec<CheckResult>]) -> f64 {
    if results.is_empty() {
        return 0.0;
    }
    let ok = results
        .iter()
        .filter(|rs| rs.iter().all(|r| r.passed))
        .count();
    ok as f64 / results.len() as f64
}

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

/// A small regular expression, matched anywhere in a text (search semantics) by an NFA
/// simulation, in time linear in the text and without recursion.
///
/// Syntax:
/// - any other character matches itself; `.` matches any character but `\n`;
/// - `^` and `$` match at the start and end of the whole text;
/// - `*`, `+`, `?`, `{m}`, `{m,}`, `{m,n}` repeat the preceding item (a trailing `?`
///   making them lazy is accepted and changes nothing, as only whether there is a match
///   matters);
/// - `[a-z0-9_]` a character class, `[^...]` its complement (`]` first is a literal,
///   escapes work inside);
/// - `(...)` a group (also `(?:...)`), `|` alternation;
/// - escapes: `\d` (ASCII digit), `\w` (alphanumeric or `_`), `\s` (Unicode whitespace),
///   their complements `\D \W \S`, `\b`/`\B` (word boundary or not), `\n \t \r`, and a
///   backslash before any punctuation for the character itself (`\. \* \( \\` ...).
#[derive(Debug, Clone)]
pub struct Pattern {
    prog: Vec<Inst>,
}

#[derive(Debug, Clone)]
enum Inst {
    Char(char),
    Any,
    Class(Class),
    Split(usize, usize),
    Jmp(usize),
    Start,
    End,
    WordBoundary(bool),
    Match,
}

#[derive(Debug, Clone)]
struct Class {
    negated: bool,
    items: Vec<ClassItem>,
}

#[derive(Debug, Clone)]
enum ClassItem {
    Range(char, char),
    /// `d`, `w` or `s`, and whether negated.
    Perl(char, bool),
}

#[derive(Debug, Clone)]
enum Node {
    Char(char),
    Any,
    Class(Class),
    Start,
    End,
    WordBoundary(bool),
    Alt(Vec<Vec<Node>>),
    Repeat(Box<Node>, u32, Option<u32>),
}

const MAX_PROGRAM: usize = 20_000;

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl Class {
    fn matches(&self, c: char) -> bool {
        let hit = self.items.iter().any(|item| match *item {
            ClassItem::Range(lo, hi) => lo <= c && c <= hi,
            ClassItem::Perl(kind, neg) => {
                let m = match kind {
                    'd' => c.is_ascii_digit(),
                    'w' => is_word(c),
                    _ => c.is_whitespace(),
                };
                m != neg
            }
        });
        hit != self.negated
    }
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    src: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += usize::from(c.is_some());
        c
    }

    fn error(&self, msg: &str) -> String {
        format!("{msg} at character {} of {:?}", self.pos, self.src)
    }

    fn alternation(&mut self) -> Result<Node, String> {
        let mut alts = vec![self.sequence()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            alts.push(self.sequence()?);
        }
        Ok(Node::Alt(alts))
    }

    fn sequence(&mut self) -> Result<Vec<Node>, String> {
        let mut seq = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let mut node = self.atom()?;
            while let Some((min, max)) = self.quantifier()? {
                if matches!(node, Node::Start | Node::End | Node::WordBoundary(_)) {
                    return Err(self.error("nothing to repeat"));
                }
                node = Node::Repeat(Box::new(node), min, max);
            }
            seq.push(node);
        }
        Ok(seq)
    }

    fn quantifier(&mut self) -> Result<Option<(u32, Option<u32>)>, String> {
        let q = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{') => {
                let close = (self.pos..self.chars.len()).find(|&i| self.chars[i] == '}');
                let close = close.ok_or_else(|| self.error("unclosed {"))?;
                let body: String = self.chars[self.pos + 1..close].iter().collect();
                let num = |s: &str| s.trim().parse::<u32>().ok();
                let (min, max) = match body.split_once(',') {
                    None => (num(&body), num(&body)),
                    Some((a, "")) => (num(a), None),
                    Some((a, b)) => (num(a), Some(num(b).ok_or_else(|| self.error("bad {m,n}"))?)),
                };
                let min = min.ok_or_else(|| self.error("bad {m,n}"))?;
                if max.is_some_and(|m| m < min) {
                    return Err(self.error("{m,n} with n < m"));
                }
                self.pos = close;
                (min, max)
            }
            _ => return Ok(None),
        };
        self.pos += 1;
        Ok(Some(q))
    }

    fn atom(&mut self) -> Result<Node, String> {
        let c = self.next().ok_or_else(|| self.error("unexpected end"))?;
        Ok(match c {
            '(' => {
                if self.chars[self.pos..].starts_with(&['?', ':']) {
                    self.pos += 2;
                }
                let inner = self.alternation()?;
                if self.next() != Some(')') {
                    return Err(self.error("unclosed ("));
                }
                inner
            }
            '[' => Node::Class(self.class()?),
            '.' => Node::Any,
            '^' => Node::Start,
            '$' => Node::End,
            '*' | '+' | '?' | '{' => return Err(self.error("nothing to repeat")),
            '\\' if matches!(self.peek(), Some('b' | 'B')) => {
                Node::WordBoundary(self.next() == Some('b'))
            }
            '\\' => match self.escape()? {
                ClassItem::Range(c, _) => Node::Char(c),
                perl => Node::Class(Class {
                    negated: false,
                    items: vec![perl],
                }),
            },
            c => Node::Char(c),
        })
    }

    /// After a backslash: a Perl class or a single character (as a one-character range).
    fn escape(&mut self) -> Result<ClassItem, String> {
        let c = self
            .next()
            .ok_or_else(|| self.error("trailing backslash"))?;
        let lit = |c| Ok(ClassItem::Range(c, c));
        match c {
            'd' | 'w' | 's' => Ok(ClassItem::Perl(c, false)),
            'D' | 'W' | 'S' => Ok(ClassItem::Perl(c.to_ascii_lowercase(), true)),
            'n' => lit('\n'),
            't' => lit('\t'),
            'r' => lit('\r'),
            c if !c.is_alphanumeric() => lit(c),
            c => Err(self.error(&format!("unknown escape \\{c}"))),
        }
    }

    fn class(&mut self) -> Result<Class, String> {
        let negated = self.peek() == Some('^');
        self.pos += usize::from(negated);
        let mut items = Vec::new();
        let mut first = true;
        loop {
            let c = self.next().ok_or_else(|| self.error("unclosed ["))?;
            if c == ']' && !first {
                return Ok(Class { negated, items });
            }
            first = false;
            let item = if c == '\\' {
                self.escape()?
            } else {
                ClassItem::Range(c, c)
            };
            let ClassItem::Range(lo, _) = item else {
                items.push(item);
                continue;
            };
            if self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|&n| n != ']') {
                self.pos += 1;
                let hi = match self.next() {
                    Some('\\') => match self.escape()? {
                        ClassItem::Range(hi, _) => hi,
                        _ => return Err(self.error("class in a range")),
                    },
                    Some(hi) => hi,
                    None => return Err(self.error("unclosed [")),
                };
                if hi < lo {
                    return Err(self.error(&format!("range {lo}-{hi} out of order")));
                }
                items.push(ClassItem::Range(lo, hi));
            } else {
                items.push(item);
            }
        }
    }
}

/// Compiles `node` to instructions (Thompson's construction).
fn compile(node: &Node, prog: &mut Vec<Inst>) -> Result<(), String> {
    if prog.len() > MAX_PROGRAM {
        return Err("pattern too large".into());
    }
    match node {
        Node::Char(c) => prog.push(Inst::Char(*c)),
        Node::Any => prog.push(Inst::Any),
        Node::Class(c) => prog.push(Inst::Class(c.clone())),
        Node::Start => prog.push(Inst::Start),
        Node::End => prog.push(Inst::End),
        Node::WordBoundary(b) => prog.push(Inst::WordBoundary(*b)),
        Node::Alt(alts) => {
            let mut jumps = Vec::new();
            for (i, alt) in alts.iter().enumerate() {
                let split = prog.len();
                if i + 1 < alts.len() {
                    prog.push(Inst::Split(split + 1, 0));
                }
                for n in alt {
                    compile(n, prog)?;
                }
                if i + 1 < alts.len() {
                    jumps.push(prog.len());
                    prog.push(Inst::Jmp(0));
                    let next = prog.len();
                    prog[split] = Inst::Split(split + 1, next);
                }
            }
            let end = prog.len();
            for j in jumps {
                prog[j] = Inst::Jmp(end);
            }
        }
        Node::Repeat(inner, min, max) => {
            for _ in 0..*min {
                compile(inner, prog)?;
            }
            match max {
                None => {
                    let split = prog.len();
                    prog.push(Inst::Split(split + 1, 0));
                    compile(inner, prog)?;
                    prog.push(Inst::Jmp(split));
                    prog[split] = Inst::Split(split + 1, prog.len());
                }
                Some(max) => {
                    let mut splits = Vec::new();
                    for _ in *min..*max {
                        splits.push(prog.len());
                        prog.push(Inst::Split(prog.len() + 1, 0));
                        compile(inner, prog)?;
                    }
                    let end = prog.len();
                    for s in splits {
                        prog[s] = Inst::Split(s + 1, end);
                    }
                }
            }
        }
    }
    Ok(())
}

impl Pattern {
    /// Parses and compiles a pattern (see the type's documentation for the syntax).
    pub fn new(pattern: &str) -> Result<Pattern, String> {
        let mut parser = Parser {
            chars: pattern.chars().collect(),
            pos: 0,
            src: pattern,
        };
        let ast = parser.alternation()?;
        if parser.pos < parser.chars.len() {
            return Err(parser.error("unmatched )"));
        }
        let mut prog = Vec::new();
        compile(&ast, &mut prog)?;
        prog.push(Inst::Match);
        Ok(Pattern { prog })
    }

    /// Whether the pattern matches somewhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let mut seen = vec![usize::MAX; self.prog.len()];
        let (mut current, mut next) = (Vec::new(), Vec::new());
        for pos in 0..=chars.len() {
            self.add(0, pos, &chars, &mut current, &mut seen);
            if current
                .iter()
                .any(|&pc| matches!(self.prog[pc], Inst::Match))
            {
                return true;
            }
            let Some(&c) = chars.get(pos) else { break };
            for &pc in &current {
                let step = match &self.prog[pc] {
                    Inst::Char(x) => *x == c,
                    Inst::Any => c != '\n',
                    Inst::Class(class) => class.matches(c),
                    _ => false,
                };
                if step {
                    self.add(pc + 1, pos + 1, &chars, &mut next, &mut seen);
                }
            }
            current.clear();
            std::mem::swap(&mut current, &mut next);
        }
        false
    }

    /// Adds `pc` and everything reachable from it without consuming a character to
    /// `list`, the threads at position `pos` (`seen` marks those added at `pos`).
    fn add(
        &self,
        pc: usize,
        pos: usize,
        chars: &[char],
        list: &mut Vec<usize>,
        seen: &mut [usize],
    ) {
        let mut stack = vec![pc];
        while let Some(pc) = stack.pop() {
            if seen[pc] == pos {
                continue;
            }
            seen[pc] = pos;
            match self.prog[pc] {
                Inst::Jmp(to) => stack.push(to),
                Inst::Split(a, b) => stack.extend([b, a]),
                Inst::Start if pos == 0 => stack.push(pc + 1),
                Inst::End if pos == chars.len() => stack.push(pc + 1),
                Inst::WordBoundary(want) => {
                    let before = pos > 0 && is_word(chars[pos - 1]);
                    let after = chars.get(pos).is_some_and(|&c| is_word(c));
                    if (before != after) == want {
                        stack.push(pc + 1);
                    }
                }
                Inst::Start | Inst::End => {}
                _ => list.push(pc),
            }
        }
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

//! Row-level detection and validation: what a row is, and everything wrong with it.

use serde_json::{Map, Value};

use crate::{foreign_role, Format, IssueCode, RowIssue, RowKind, Shape, KNOWN_ROLES};

/// The verdict on one row.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedRow {
    pub kind: RowKind,
    /// Every problem in the row, in the order of its fields.
    pub issues: Vec<RowIssue>,
    /// Characters of text the row carries (contents, prompt, completion, text).
    pub chars: usize,
    /// Number of turns for conversational rows, 1 for the others.
    pub turns: usize,
}

/// Detects the format (or convertible shape) of `row` and validates it completely: every
/// problem is reported, not only the first.
pub fn validate_row(row: &Value) -> CheckedRow {
    let mut v = Validator::default();
    let kind = match row.as_object() {
        Some(obj) => v.object(obj),
        None => {
            v.push(
                IssueCode::NotAnObject,
                "",
                format!("the row is {}, not a JSON object", json_type_phrase(row)),
            );
            RowKind::Unrecognized
        }
    };
    CheckedRow {
        kind,
        issues: v.issues,
        chars: v.chars,
        turns: v.turns.max(1),
    }
}

/// Detects the kind of a row without validating it.
pub fn detect_row(row: &Value) -> RowKind {
    row.as_object().map_or(RowKind::Unrecognized, detect)
}

/// Detects the kind of a row object without validating it.
pub fn detect(obj: &Map<String, Value>) -> RowKind {
    // Preference and KTO rows also have the keys of the formats (`prompt`, `completion`,
    // `conversations`): they are recognised first, so their answers are not lost.
    if obj.contains_key("chosen") && obj.contains_key("rejected") {
        return RowKind::Convertible(Shape::Preference);
    }
    if obj.get("kto_tag").is_some_and(Value::is_boolean)
        || (obj.get("label").is_some_and(Value::is_boolean) && obj.contains_key("completion"))
    {
        return RowKind::Convertible(Shape::Kto);
    }
    if let Some(messages) = obj.get("messages") {
        if looks_like_sharegpt_turns(messages) {
            return RowKind::Convertible(Shape::ShareGpt);
        }
        if is_openai_legacy(obj, messages) {
            return RowKind::Convertible(Shape::OpenAiLegacy);
        }
        return RowKind::Format(Format::Messages);
    }
    let prompt = obj.get("prompt");
    let completion = obj.get("completion");
    if prompt.is_some() || completion.is_some() {
        let conversational =
            prompt.is_some_and(Value::is_array) || completion.is_some_and(Value::is_array);
        return RowKind::Format(if conversational {
            Format::ConversationalPromptCompletion
        } else {
            Format::PromptCompletion
        });
    }
    if obj.contains_key("text") {
        return RowKind::Format(Format::Text);
    }
    if obj.contains_key("conversations") {
        return RowKind::Convertible(Shape::ShareGpt);
    }
    if obj.contains_key("instruction") || (obj.contains_key("input") && obj.contains_key("output"))
    {
        return RowKind::Convertible(Shape::Alpaca);
    }
    RowKind::Unrecognized
}

fn looks_like_sharegpt_turns(messages: &Value) -> bool {
    messages.as_array().is_some_and(|turns| {
        turns.iter().any(|t| {
            t.as_object().is_some_and(|m| {
                m.contains_key("from") && m.contains_key("value") && !m.contains_key("role")
            })
        })
    })
}

fn is_openai_legacy(obj: &Map<String, Value>, messages: &Value) -> bool {
    if obj.get("functions").is_some_and(|f| !f.is_null()) {
        return true;
    }
    messages.as_array().is_some_and(|turns| {
        turns.iter().any(|t| {
            t.get("function_call").is_some_and(|f| !f.is_null())
                || t.get("role").and_then(Value::as_str) == Some("function")
        })
    })
}

pub(crate) fn json_type_phrase(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// End-of-sequence and end-of-turn tokens of common tokenizers, as they appear in text.
const END_TOKENS: &[&str] = &[
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|end|>",
    "</s>",
    "<eos>",
    "<end_of_turn>",
];

const MEDIA_PART_TYPES: &[&str] = &[
    "image",
    "image_url",
    "input_image",
    "audio",
    "input_audio",
    "video",
    "video_url",
    "file",
];

#[derive(Default)]
struct Validator {
    issues: Vec<RowIssue>,
    chars: usize,
    turns: usize,
}

/// Where the messages of a conversation live in the row: one list, or a prompt list then a
/// completion list (conversational prompt-completion).
struct Turns<'a> {
    parts: Vec<(&'static str, &'a [Value])>,
}

impl<'a> Turns<'a> {
    fn iter(&self) -> impl Iterator<Item = (&'static str, usize, &'a Value)> + '_ {
        self.parts
            .iter()
            .flat_map(|(key, list)| list.iter().enumerate().map(move |(i, m)| (*key, i, m)))
    }
}

fn path(key: &str, index: usize) -> String {
    format!("{key}[{index}]")
}

impl Validator {
    fn push(&mut self, code: IssueCode, path: impl Into<String>, message: impl Into<String>) {
        self.issues.push(RowIssue::new(code, path, message));
    }

    fn push_hint(
        &mut self,
        code: IssueCode,
        path: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<std::borrow::Cow<'static, str>>,
    ) {
        self.issues
            .push(RowIssue::new(code, path, message).with_hint(hint));
    }

    fn object(&mut self, obj: &Map<String, Value>) -> RowKind {
        let kind = detect(obj);
        match kind {
            RowKind::Format(Format::Text) => self.text(obj),
            RowKind::Format(Format::Messages) => self.messages_row(obj),
            RowKind::Format(Format::PromptCompletion) => self.prompt_completion(obj),
            RowKind::Format(Format::ConversationalPromptCompletion) => {
                self.conversational_prompt_completion(obj)
            }
            RowKind::Convertible(Shape::Alpaca) => self.alpaca(obj),
            RowKind::Convertible(Shape::ShareGpt) => self.sharegpt(obj),
            RowKind::Convertible(Shape::OpenAiLegacy) => self.messages_row(obj),
            // What they are is reported for the dataset (needs_conversion); `convert`
            // checks each row as it converts it.
            RowKind::Convertible(Shape::Preference | Shape::Kto) => {}
            RowKind::Unrecognized => self.unrecognized(obj),
        }
        if matches!(
            kind,
            RowKind::Format(_) | RowKind::Convertible(Shape::OpenAiLegacy)
        ) {
            self.optional_fields(obj);
        }
        kind
    }

    fn unrecognized(&mut self, obj: &Map<String, Value>) {
        let keys: Vec<&str> = obj.keys().map(String::as_str).take(8).collect();
        let listed = if keys.is_empty() {
            "the row is an empty object".to_string()
        } else {
            format!(
                "the row has keys {}",
                keys.iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let message = format!("{listed}, but none of `text`, `messages`, `prompt`/`completion`");
        if obj.get("input_ids").is_some_and(Value::is_array) {
            self.push_hint(
                IssueCode::UnrecognizedRow,
                "",
                format!("the row is already tokenized: {listed} (a table `sft-data prepare` writes, or TRL's pre-tokenized columns), not one of the four formats"),
                "it is ready for training: pass it to sft-train as --dataset_name (with its manifest beside it); to check or show the data, use the file it was prepared from",
            );
        } else {
            self.push(IssueCode::UnrecognizedRow, "", message);
        }
    }

    fn text(&mut self, obj: &Map<String, Value>) {
        self.target_string(obj, "text", "`text`");
    }

    /// A string field the model learns from: it must exist, be a string, and not be blank.
    fn target_string(&mut self, obj: &Map<String, Value>, key: &str, name: &str) {
        match obj.get(key) {
            None => self.push(IssueCode::MissingField, key, format!("{name} is missing")),
            Some(Value::String(s)) => {
                self.chars += char_count(s);
                if s.trim().is_empty() {
                    self.push(
                        IssueCode::EmptyTarget,
                        key,
                        format!("{name} is {}", blank_phrase(s)),
                    );
                }
                self.target_text(s, key);
            }
            Some(other) => self.push(
                IssueCode::WrongType,
                key,
                format!("{name} is {}, expected a string", json_type_phrase(other)),
            ),
        }
    }

    fn prompt_completion(&mut self, obj: &Map<String, Value>) {
        match obj.get("prompt") {
            None => self.push(
                IssueCode::MissingField,
                "prompt",
                "`completion` is present but `prompt` is missing",
            ),
            Some(Value::String(s)) => {
                self.chars += char_count(s);
                if s.trim().is_empty() {
                    self.push(
                        IssueCode::EmptyContent,
                        "prompt",
                        format!("`prompt` is {}", blank_phrase(s)),
                    );
                }
            }
            Some(other) => self.push(
                IssueCode::WrongType,
                "prompt",
                format!("`prompt` is {}, expected a string", json_type_phrase(other)),
            ),
        }
        if obj.contains_key("completion") {
            self.target_string(obj, "completion", "`completion`");
        } else {
            self.push(
                IssueCode::MissingField,
                "completion",
                "`prompt` is present but `completion` is missing",
            );
        }
    }

    fn messages_row(&mut self, obj: &Map<String, Value>) {
        let Some(list) = self.message_list(obj, "messages") else {
            return;
        };
        let turns = Turns {
            parts: vec![("messages", list)],
        };
        self.conversation(&turns, "messages");
    }

    fn conversational_prompt_completion(&mut self, obj: &Map<String, Value>) {
        let prompt = self.message_list(obj, "prompt");
        let completion = self.message_list(obj, "completion");
        let (Some(prompt), Some(completion)) = (prompt, completion) else {
            return;
        };
        let turns = Turns {
            parts: vec![("prompt", prompt), ("completion", completion)],
        };
        self.conversation(&turns, "completion");
        if let Some(last) = prompt
            .last()
            .and_then(|m| m.get("role"))
            .and_then(Value::as_str)
        {
            if last == "assistant" {
                self.push_hint(
                    IssueCode::ConsecutiveSameRole,
                    path("prompt", prompt.len() - 1),
                    "the prompt ends with an assistant turn, so the completion continues an assistant reply",
                    "end the prompt with the user turn the completion answers",
                );
            }
        }
    }

    /// A list of messages under `key`, or `None` (after reporting) when it is not one.
    fn message_list<'a>(&mut self, obj: &'a Map<String, Value>, key: &str) -> Option<&'a [Value]> {
        match obj.get(key) {
            None => {
                self.push(IssueCode::MissingField, key, format!("`{key}` is missing"));
                None
            }
            Some(Value::Array(list)) => {
                if list.is_empty() {
                    self.push(
                        IssueCode::EmptyMessages,
                        key,
                        format!("`{key}` is an empty list"),
                    );
                    None
                } else {
                    Some(list)
                }
            }
            Some(other) => {
                let hint = if other.is_string() {
                    "a JSON string holding the list is not accepted: store the list itself (json.loads it before writing)"
                } else {
                    "expected a list of {\"role\": ..., \"content\": ...} messages"
                };
                self.push_hint(
                    IssueCode::WrongType,
                    key,
                    format!(
                        "`{key}` is {}, expected a list of messages",
                        json_type_phrase(other)
                    ),
                    hint,
                );
                None
            }
        }
    }

    /// Checks every message and the order of roles. `target` names the list whose assistant
    /// turns the model learns from.
    fn conversation(&mut self, turns: &Turns, target: &str) {
        let mut roles: Vec<Option<&str>> = Vec::new();
        let mut paths: Vec<String> = Vec::new();
        let mut calls_pending = false;
        let mut assistant_in_target = false;
        let mut has_user = false;
        let mut seen_non_system = false;
        let mut last_in_target: Option<(Option<&str>, String)> = None;

        for (key, i, message) in turns.iter() {
            self.turns += 1;
            let p = path(key, i);
            let role = self.message(message, &p, key == target);
            let has_calls = message
                .get("tool_calls")
                .is_some_and(|c| c.as_array().is_some_and(|a| !a.is_empty()));
            match role {
                Some("system") | Some("developer") => {
                    if seen_non_system {
                        self.push(
                            IssueCode::SystemNotFirst,
                            format!("{p}.role"),
                            format!(
                                "a {} turn comes after the conversation started",
                                role.unwrap_or("system")
                            ),
                        );
                    }
                }
                Some(r) => {
                    seen_non_system = true;
                    match r {
                        "user" => {
                            calls_pending = false;
                            has_user = true;
                        }
                        "assistant" => {
                            calls_pending = has_calls;
                            if key == target {
                                assistant_in_target = true;
                            }
                        }
                        "tool" if !calls_pending => self.push(
                            IssueCode::OrphanToolMessage,
                            p.clone(),
                            "a tool turn with no assistant tool call before it",
                        ),
                        _ => {}
                    }
                }
                None => seen_non_system = true,
            }
            if let (Some(prev), Some(cur)) = (roles.last().copied().flatten(), role) {
                if prev == cur && cur != "tool" && KNOWN_ROLES.contains(&cur) {
                    self.push(
                        IssueCode::ConsecutiveSameRole,
                        format!("{p}.role"),
                        format!(
                            "two {cur} turns in a row ({} and {p})",
                            paths.last().map(String::as_str).unwrap_or("")
                        ),
                    );
                }
            }
            if key == target {
                last_in_target = Some((role, p.clone()));
            }
            roles.push(role);
            paths.push(p);
        }

        if assistant_in_target && !has_user && target == "messages" {
            self.push(
                IssueCode::NoUserTurn,
                target,
                "the conversation has no user turn",
            );
        }
        if !assistant_in_target {
            if roles.iter().all(Option::is_some) {
                let message = if target == "messages" {
                    "the conversation has no assistant turn".to_string()
                } else {
                    "the completion has no assistant turn".to_string()
                };
                self.push(IssueCode::NoAssistantTurn, target, message);
            }
        } else if let Some((Some(role), p)) = last_in_target {
            if role != "assistant" {
                self.push(
                    IssueCode::NotEndingWithAssistant,
                    p,
                    format!("the conversation ends with a {role} turn, not an assistant reply"),
                );
            }
        }
    }

    /// Checks one message and returns its role when it is a string.
    fn message<'a>(&mut self, message: &'a Value, p: &str, trained: bool) -> Option<&'a str> {
        let Some(m) = message.as_object() else {
            self.push(
                IssueCode::WrongType,
                p,
                format!(
                    "the message is {}, expected an object with `role` and `content`",
                    json_type_phrase(message)
                ),
            );
            return None;
        };
        let role = match m.get("role") {
            None | Some(Value::Null) => {
                let hint = if m.contains_key("from") {
                    "`from`/`value` turns are ShareGPT: run `sft-data convert --from sharegpt`"
                } else {
                    IssueCode::MissingRole.default_hint()
                };
                self.push_hint(
                    IssueCode::MissingRole,
                    format!("{p}.role"),
                    "the message has no `role`",
                    hint,
                );
                None
            }
            Some(Value::String(r)) => {
                if !KNOWN_ROLES.contains(&r.as_str()) {
                    let hint = match foreign_role(r) {
                        Some(meant) if matches!(r.as_str(), "human" | "gpt" | "observation" | "function_call") => {
                            format!("`{r}` is ShareGPT's name for `{meant}`: run `sft-data convert --from sharegpt`")
                        }
                        Some(meant) => format!("`{r}` presumably means `{meant}`: rename it, or convert with `sft-data convert`"),
                        None => IssueCode::UnknownRole.default_hint().to_string(),
                    };
                    self.push_hint(
                        IssueCode::UnknownRole,
                        format!("{p}.role"),
                        format!("unknown role `{r}`"),
                        hint,
                    );
                }
                Some(r.as_str())
            }
            Some(other) => {
                self.push(
                    IssueCode::WrongType,
                    format!("{p}.role"),
                    format!("`role` is {}, expected a string", json_type_phrase(other)),
                );
                None
            }
        };
        let is_assistant = role == Some("assistant");
        let tool_calls = m.get("tool_calls").filter(|c| !c.is_null());
        let has_calls = tool_calls.is_some_and(|c| c.as_array().is_some_and(|a| !a.is_empty()));
        if let Some(calls) = tool_calls {
            if !is_assistant && role.is_some() {
                self.push(
                    IssueCode::MalformedToolCalls,
                    format!("{p}.tool_calls"),
                    format!(
                        "a {} turn carries tool_calls; only assistant turns call tools",
                        role.unwrap_or("")
                    ),
                );
            }
            self.tool_calls(calls, &format!("{p}.tool_calls"));
        }
        let content_path = format!("{p}.content");
        match m.get("content") {
            None | Some(Value::Null) => {
                if !has_calls {
                    let hint = if m.contains_key("value") || m.contains_key("text") {
                        let key = if m.contains_key("value") {
                            "value"
                        } else {
                            "text"
                        };
                        format!("the text is under `{key}`; rename it to `content`")
                    } else {
                        IssueCode::MissingContent.default_hint().to_string()
                    };
                    self.push_hint(
                        IssueCode::MissingContent,
                        content_path,
                        "the message has no `content`",
                        hint,
                    );
                }
            }
            Some(Value::String(s)) => {
                self.chars += char_count(s);
                if s.trim().is_empty() && !has_calls {
                    self.blank_content(role, trained, content_path, blank_phrase(s));
                } else if is_assistant && trained {
                    self.target_text(s, &content_path);
                }
            }
            Some(Value::Array(parts)) => {
                let text_chars = self.content_parts(parts, &content_path);
                if text_chars == 0
                    && !has_calls
                    && parts
                        .iter()
                        .all(|part| part.get("type").and_then(Value::as_str) == Some("text"))
                {
                    self.blank_content(role, trained, content_path, "empty");
                }
            }
            Some(other) => self.push(
                IssueCode::WrongType,
                content_path,
                format!(
                    "`content` is {}, expected a string or a list of parts",
                    json_type_phrase(other)
                ),
            ),
        }
        role
    }

    /// Checks a text the model learns from for loops and for a literal end token.
    fn target_text(&mut self, s: &str, p: &str) {
        self.repetition(s, p);
        let end = s.trim_end();
        if let Some(token) = END_TOKENS.iter().find(|t| end.ends_with(*t)) {
            self.push(
                IssueCode::LiteralSpecialToken,
                p,
                format!("the text ends with a literal `{token}`"),
            );
        }
    }

    fn repetition(&mut self, s: &str, p: &str) {
        if let Some(ending) = looping_tail(s) {
            let shown: String = ending.unit.chars().take(40).collect();
            self.push(
                IssueCode::RepetitiveContent,
                p,
                format!(
                    "the text ends in a loop: {:?} repeated {} times ({} of {} bytes)",
                    shown,
                    ending.repeats,
                    ending.run,
                    s.len()
                ),
            );
        }
    }

    fn blank_content(
        &mut self,
        role: Option<&str>,
        trained: bool,
        content_path: String,
        what: &str,
    ) {
        if role == Some("assistant") && trained {
            self.push(
                IssueCode::EmptyTarget,
                content_path,
                format!("the assistant reply is {what}"),
            );
        } else {
            self.push(
                IssueCode::EmptyContent,
                content_path,
                format!("the {} turn is {what}", role.unwrap_or("message")),
            );
        }
    }

    /// Checks a list of content parts; returns the characters of text in them.
    fn content_parts(&mut self, parts: &[Value], p: &str) -> usize {
        let mut text_chars = 0;
        for (j, part) in parts.iter().enumerate() {
            let pp = format!("{p}[{j}]");
            let Some(obj) = part.as_object() else {
                self.push(
                    IssueCode::WrongType,
                    pp,
                    format!(
                        "the content part is {}, expected an object with `type`",
                        json_type_phrase(part)
                    ),
                );
                continue;
            };
            match obj.get("type").and_then(Value::as_str) {
                Some("text") => match obj.get("text") {
                    Some(Value::String(s)) => {
                        let n = char_count(s);
                        self.chars += n;
                        if !s.trim().is_empty() {
                            text_chars += n;
                        }
                    }
                    Some(other) => self.push(
                        IssueCode::WrongType,
                        format!("{pp}.text"),
                        format!("`text` is {}, expected a string", json_type_phrase(other)),
                    ),
                    None => self.push(
                        IssueCode::MissingField,
                        format!("{pp}.text"),
                        "a text part has no `text`",
                    ),
                },
                Some(t) if MEDIA_PART_TYPES.contains(&t) => {}
                Some(t) => self.push(
                    IssueCode::UnknownContentPart,
                    format!("{pp}.type"),
                    format!("unknown content part type `{t}`"),
                ),
                None => self.push(
                    IssueCode::UnknownContentPart,
                    format!("{pp}.type"),
                    "the content part has no string `type`",
                ),
            }
        }
        text_chars
    }

    fn tool_calls(&mut self, calls: &Value, p: &str) {
        let Some(list) = calls.as_array() else {
            self.push(
                IssueCode::MalformedToolCalls,
                p,
                format!(
                    "`tool_calls` is {}, expected a list",
                    json_type_phrase(calls)
                ),
            );
            return;
        };
        for (j, call) in list.iter().enumerate() {
            let cp = format!("{p}[{j}]");
            let Some(obj) = call.as_object() else {
                self.push(
                    IssueCode::MalformedToolCalls,
                    cp,
                    format!(
                        "the tool call is {}, expected an object",
                        json_type_phrase(call)
                    ),
                );
                continue;
            };
            if let Some(t) = obj.get("type").and_then(Value::as_str) {
                if t != "function" {
                    self.push(
                        IssueCode::MalformedToolCalls,
                        format!("{cp}.type"),
                        format!("tool call type `{t}`, expected `function`"),
                    );
                }
            }
            let Some((function, fp)) =
                self.function_object(obj, &cp, IssueCode::MalformedToolCalls)
            else {
                continue;
            };
            match function.get("name") {
                Some(Value::String(n)) if !n.trim().is_empty() => {}
                Some(Value::String(_)) => self.push(
                    IssueCode::MalformedToolCalls,
                    format!("{fp}.name"),
                    "the tool call's name is empty",
                ),
                Some(other) => self.push(
                    IssueCode::MalformedToolCalls,
                    format!("{fp}.name"),
                    format!(
                        "the tool call's `name` is {}, expected a string",
                        json_type_phrase(other)
                    ),
                ),
                None => self.push(
                    IssueCode::MalformedToolCalls,
                    format!("{fp}.name"),
                    "the tool call has no `name`",
                ),
            }
            match function.get("arguments") {
                Some(Value::Object(_)) => {}
                Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                    Ok(Value::Object(_)) => {}
                    Ok(other) => self.push(
                        IssueCode::MalformedToolCalls,
                        format!("{fp}.arguments"),
                        format!(
                            "the arguments string holds {}, expected a JSON object",
                            json_type_phrase(&other)
                        ),
                    ),
                    Err(e) => self.push(
                        IssueCode::MalformedToolCalls,
                        format!("{fp}.arguments"),
                        format!("the arguments string is not valid JSON: {e}"),
                    ),
                },
                Some(other) => self.push(
                    IssueCode::MalformedToolCalls,
                    format!("{fp}.arguments"),
                    format!(
                        "`arguments` is {}, expected an object or a JSON string",
                        json_type_phrase(other)
                    ),
                ),
                None => self.push(
                    IssueCode::MalformedToolCalls,
                    format!("{fp}.arguments"),
                    "the tool call has no `arguments`",
                ),
            }
        }
    }

    /// The object that holds a tool's or a call's `name`: under `function` in the OpenAI
    /// form; some datasets put it on the object itself, and common templates render both.
    fn function_object<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        p: &str,
        code: IssueCode,
    ) -> Option<(&'a Map<String, Value>, String)> {
        match obj.get("function") {
            Some(Value::Object(f)) => Some((f, format!("{p}.function"))),
            Some(other) => {
                self.push(
                    code,
                    format!("{p}.function"),
                    format!(
                        "`function` is {}, expected an object with a `name`",
                        json_type_phrase(other)
                    ),
                );
                None
            }
            None => Some((obj, p.to_string())),
        }
    }

    fn optional_fields(&mut self, obj: &Map<String, Value>) {
        if let Some(tools) = obj.get("tools").filter(|t| !t.is_null()) {
            self.tools(tools);
        }
        if let Some(kwargs) = obj.get("chat_template_kwargs").filter(|k| !k.is_null()) {
            if !kwargs.is_object() {
                self.push(
                    IssueCode::WrongType,
                    "chat_template_kwargs",
                    format!("`chat_template_kwargs` is {}, expected an object such as {{\"enable_thinking\": false}}", json_type_phrase(kwargs)),
                );
            }
        }
    }

    fn tools(&mut self, tools: &Value) {
        let parsed;
        let list = match tools {
            Value::Array(list) => list,
            Value::String(s) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Array(list)) => {
                    parsed = list;
                    &parsed
                }
                Ok(other) => {
                    self.push(
                        IssueCode::MalformedTools,
                        "tools",
                        format!(
                            "the `tools` string holds {}, expected a list of tool schemas",
                            json_type_phrase(&other)
                        ),
                    );
                    return;
                }
                Err(e) => {
                    self.push(
                        IssueCode::MalformedTools,
                        "tools",
                        format!("the `tools` string is not valid JSON: {e}"),
                    );
                    return;
                }
            },
            other => {
                self.push(
                    IssueCode::MalformedTools,
                    "tools",
                    format!(
                        "`tools` is {}, expected a list of tool schemas",
                        json_type_phrase(other)
                    ),
                );
                return;
            }
        };
        for (j, tool) in list.iter().enumerate() {
            let tp = format!("tools[{j}]");
            let Some(obj) = tool.as_object() else {
                self.push(
                    IssueCode::MalformedTools,
                    tp,
                    format!(
                        "the tool is {}, expected a JSON schema object",
                        json_type_phrase(tool)
                    ),
                );
                continue;
            };
            let Some((function, fp)) = self.function_object(obj, &tp, IssueCode::MalformedTools)
            else {
                continue;
            };
            match function.get("name") {
                Some(Value::String(n)) if !n.trim().is_empty() => {}
                _ => self.push(
                    IssueCode::MalformedTools,
                    format!("{fp}.name"),
                    "the tool has no string `name`",
                ),
            }
            if let Some(params) = function.get("parameters") {
                if !params.is_object() && !params.is_null() {
                    self.push(
                        IssueCode::MalformedTools,
                        format!("{fp}.parameters"),
                        format!(
                            "`parameters` is {}, expected a JSON schema object",
                            json_type_phrase(params)
                        ),
                    );
                }
            }
        }
    }

    fn alpaca(&mut self, obj: &Map<String, Value>) {
        let mut prompt_chars = 0;
        for key in ["instruction", "input", "system"] {
            match obj.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => {
                    let n = char_count(s.trim());
                    self.chars += n;
                    if key != "system" {
                        prompt_chars += n;
                    }
                }
                Some(other) => self.push(
                    IssueCode::WrongType,
                    key,
                    format!("`{key}` is {}, expected a string", json_type_phrase(other)),
                ),
            }
        }
        if prompt_chars == 0 && obj.get("instruction").is_none_or(Value::is_string) {
            self.push(
                IssueCode::EmptyContent,
                "instruction",
                "both `instruction` and `input` are empty",
            );
        }
        self.target_string(obj, "output", "`output`");
        if let Some(history) = obj.get("history").filter(|h| !h.is_null()) {
            let ok = history.as_array().is_some_and(|turns| {
                turns.iter().all(|pair| {
                    pair.as_array()
                        .is_some_and(|p| p.len() == 2 && p.iter().all(Value::is_string))
                })
            });
            if !ok {
                self.push(
                    IssueCode::WrongType,
                    "history",
                    "`history` must be a list of [user, assistant] string pairs",
                );
            }
        }
    }

    fn sharegpt(&mut self, obj: &Map<String, Value>) {
        let key = if obj.contains_key("conversations") {
            "conversations"
        } else {
            "messages"
        };
        let Some(list) = self.message_list(obj, key) else {
            return;
        };
        let mut has_reply = false;
        for (i, turn) in list.iter().enumerate() {
            self.turns += 1;
            let p = path(key, i);
            let Some(t) = turn.as_object() else {
                self.push(
                    IssueCode::WrongType,
                    p,
                    format!(
                        "the turn is {}, expected an object with `from` and `value`",
                        json_type_phrase(turn)
                    ),
                );
                continue;
            };
            let from = match t.get("from") {
                Some(Value::String(f)) => {
                    let known = matches!(f.as_str(), "function_call")
                        || KNOWN_ROLES.contains(&f.as_str())
                        || foreign_role(f).is_some();
                    if !known {
                        self.push(
                            IssueCode::UnknownRole,
                            format!("{p}.from"),
                            format!("unknown ShareGPT speaker `{f}`"),
                        );
                    }
                    Some(f.as_str())
                }
                Some(other) => {
                    self.push(
                        IssueCode::WrongType,
                        format!("{p}.from"),
                        format!("`from` is {}, expected a string", json_type_phrase(other)),
                    );
                    None
                }
                None => {
                    self.push(
                        IssueCode::MissingRole,
                        format!("{p}.from"),
                        "the turn has no `from`",
                    );
                    None
                }
            };
            let is_reply = from.is_some_and(|f| {
                f == "function_call" || foreign_role(f) == Some("assistant") || f == "assistant"
            });
            match t.get("value") {
                Some(Value::String(s)) => {
                    self.chars += char_count(s);
                    if is_reply {
                        has_reply = true;
                        if s.trim().is_empty() {
                            self.push(
                                IssueCode::EmptyTarget,
                                format!("{p}.value"),
                                format!(
                                    "the {} turn is {}",
                                    from.unwrap_or("gpt"),
                                    blank_phrase(s)
                                ),
                            );
                        }
                    }
                }
                Some(other) => self.push(
                    IssueCode::WrongType,
                    format!("{p}.value"),
                    format!("`value` is {}, expected a string", json_type_phrase(other)),
                ),
                None => self.push(
                    IssueCode::MissingContent,
                    format!("{p}.value"),
                    "the turn has no `value`",
                ),
            }
        }
        if !has_reply {
            self.push(
                IssueCode::NoAssistantTurn,
                key,
                "the conversation has no gpt turn",
            );
        }
        if let Some(tools) = obj.get("tools").filter(|t| !t.is_null()) {
            self.tools(tools);
        }
    }
}

/// A text that ends by repeating one short unit many times, as a model stuck in a loop does.
#[derive(Debug, PartialEq)]
struct Loop<'a> {
    unit: &'a str,
    repeats: usize,
    /// Bytes of the looping tail.
    run: usize,
}

/// Finds a loop at the end of `s`: a unit of at most 512 bytes repeated so that the periodic
/// tail is at least 300 bytes, 8 repeats, and half the text. Costs about two kilobytes of
/// comparisons per long string, whatever its length.
fn looping_tail(s: &str) -> Option<Loop<'_>> {
    const NEEDLE: usize = 16;
    const MAX_UNIT: usize = 512;
    let b = s.as_bytes();
    if b.len() < 300 {
        return None;
    }
    let needle = &b[b.len() - NEEDLE..];
    // The smallest period: the nearest earlier occurrence of the last bytes.
    let period = (1..=MAX_UNIT.min(b.len() - NEEDLE))
        .find(|&p| &b[b.len() - NEEDLE - p..b.len() - p] == needle)?;
    let mut start = b.len() - period;
    while start > 0 && b[start - 1] == b[start - 1 + period] {
        start -= 1;
    }
    let run = b.len() - start;
    let repeats = run / period;
    if run < 300 || repeats < 8 || run * 2 < b.len() {
        return None;
    }
    let mut unit_start = b.len() - period;
    while !s.is_char_boundary(unit_start) {
        unit_start -= 1;
    }
    Some(Loop {
        unit: &s[unit_start..],
        repeats,
        run,
    })
}

fn blank_phrase(s: &str) -> &'static str {
    if s.is_empty() {
        "empty"
    } else {
        "only whitespace"
    }
}

fn char_count(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn codes(row: Value) -> Vec<(String, String)> {
        validate_row(&row)
            .issues
            .into_iter()
            .map(|i| (i.code.as_str().to_string(), i.path))
            .collect()
    }

    fn one(code: &str, path: &str) -> Vec<(String, String)> {
        vec![(code.to_string(), path.to_string())]
    }

    #[test]
    fn clean_rows_of_each_format() {
        let rows = [
            (json!({"text": "Once upon a time"}), Format::Text),
            (
                json!({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}),
                Format::Messages,
            ),
            (
                json!({"prompt": "2+2=", "completion": "4"}),
                Format::PromptCompletion,
            ),
            (
                json!({"prompt": [{"role": "user", "content": "2+2?"}], "completion": [{"role": "assistant", "content": "4"}]}),
                Format::ConversationalPromptCompletion,
            ),
        ];
        for (row, format) in rows {
            let checked = validate_row(&row);
            assert_eq!(checked.kind, RowKind::Format(format), "{row}");
            assert!(checked.issues.is_empty(), "{row}: {:?}", checked.issues);
        }
    }

    #[test]
    fn shapes_are_recognised() {
        assert_eq!(
            validate_row(&json!({"instruction": "Say hi", "input": "", "output": "hi"})).kind,
            RowKind::Convertible(Shape::Alpaca)
        );
        assert_eq!(
            validate_row(&json!({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]})).kind,
            RowKind::Convertible(Shape::ShareGpt)
        );
        assert_eq!(
            validate_row(&json!({"messages": [{"from": "human", "value": "hi"}]})).kind,
            RowKind::Convertible(Shape::ShareGpt)
        );
        assert_eq!(
            validate_row(&json!({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{}"}}], "functions": [{"name": "f"}]})).kind,
            RowKind::Convertible(Shape::OpenAiLegacy)
        );
    }

    #[test]
    fn sharegpt_roles_in_messages_get_a_hint() {
        let row = json!({"messages": [{"role": "human", "content": "hi"}, {"role": "gpt", "content": "hello"}]});
        let checked = validate_row(&row);
        assert_eq!(checked.issues.len(), 3, "{:?}", checked.issues);
        assert_eq!(checked.issues[0].code, IssueCode::UnknownRole);
        assert_eq!(checked.issues[0].path, "messages[0].role");
        assert!(checked.issues[0].hint().contains("--from sharegpt"));
        assert_eq!(checked.issues[2].code, IssueCode::NoAssistantTurn);
    }

    #[test]
    fn every_problem_in_a_row_is_reported() {
        let row = json!({"messages": [
            {"role": "user", "content": "a"},
            {"role": "system", "content": "late system"},
            {"content": "no role"},
            {"role": "assistant"},
            {"role": "assistant", "content": "  "},
            {"role": "tool", "content": "42"},
            {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "hologram"}]}
        ]});
        let got = codes(row);
        let want: Vec<(String, String)> = [
            ("system_not_first", "messages[1].role"),
            ("missing_role", "messages[2].role"),
            ("missing_content", "messages[3].content"),
            ("empty_target", "messages[4].content"),
            ("consecutive_same_role", "messages[4].role"),
            ("orphan_tool_message", "messages[5]"),
            ("unknown_content_part", "messages[6].content[1].type"),
            ("not_ending_with_assistant", "messages[6]"),
        ]
        .iter()
        .map(|(c, p)| (c.to_string(), p.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn tool_calls_and_tools() {
        let good = json!({
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [{"type": "function", "function": {"name": "get", "arguments": "{\"city\": \"Paris\"}"}}]},
                {"role": "tool", "content": "sunny"},
                {"role": "assistant", "content": "Sunny."}
            ],
            "tools": "[{\"type\": \"function\", \"function\": {\"name\": \"get\", \"parameters\": {}}}]"
        });
        assert!(
            validate_row(&good).issues.is_empty(),
            "{:?}",
            validate_row(&good).issues
        );
        let bad = json!({
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "tool_calls": [{"function": {"arguments": "{city"}}]},
                {"role": "assistant", "content": "x"}
            ],
            "tools": [{"function": {"name": ""}}]
        });
        let got = codes(bad);
        assert!(got.contains(&(
            "malformed_tool_calls".into(),
            "messages[1].tool_calls[0].function.name".into()
        )));
        assert!(got.contains(&(
            "malformed_tool_calls".into(),
            "messages[1].tool_calls[0].function.arguments".into()
        )));
        assert!(got.contains(&("malformed_tools".into(), "tools[0].function.name".into())));
        assert_eq!(
            codes(
                json!({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "tools": 3})
            ),
            one("malformed_tools", "tools")
        );
    }

    #[test]
    fn wrong_types_and_missing_fields() {
        assert_eq!(codes(json!({"text": 3})), one("wrong_type", "text"));
        assert_eq!(codes(json!({"text": " \n"})), one("empty_target", "text"));
        assert_eq!(
            codes(json!({"prompt": "q"})),
            one("missing_field", "completion")
        );
        assert_eq!(
            codes(json!({"prompt": "q", "completion": ""})),
            one("empty_target", "completion")
        );
        assert_eq!(
            codes(json!({"messages": "[]"})),
            one("wrong_type", "messages")
        );
        assert_eq!(
            codes(json!({"messages": []})),
            one("empty_messages", "messages")
        );
        assert_eq!(codes(json!([1, 2])), one("not_an_object", ""));
        assert_eq!(
            codes(json!({"question": "q", "answer": "a"})),
            one("unrecognized_row", "")
        );
        assert_eq!(
            codes(
                json!({"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "user", "content": "a"}]})
            ),
            vec![
                (
                    "consecutive_same_role".to_string(),
                    "completion[0].role".to_string()
                ),
                ("no_assistant_turn".to_string(), "completion".to_string())
            ]
        );
    }

    #[test]
    fn loops_are_found_and_prose_is_not() {
        let looped = "Eat a banana!".repeat(2000);
        let found = looping_tail(&looped).unwrap();
        assert_eq!((found.unit, found.repeats), ("Eat a banana!", 2000));
        let row = json!({"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": looped}]});
        assert_eq!(
            codes(row),
            vec![
                (
                    "repetitive_content".to_string(),
                    "messages[1].content".to_string()
                ),
                ("no_user_turn".to_string(), "messages".to_string())
            ]
        );
        let prose = "The quick brown fox jumps over the lazy dog while the cat watches. ".repeat(3)
            + "Then something else happens, and the story ends in a quite different way than expected, which is fine.";
        assert!(looping_tail(&prose).is_none());
        let table = format!("{}\n{}", "| a | b |\n".repeat(3), "x".repeat(400));
        assert!(
            looping_tail(&table).is_some(),
            "a run of one character is a loop"
        );
    }

    #[test]
    fn literal_end_tokens_in_targets() {
        assert_eq!(
            codes(json!({"prompt": "Label: ", "completion": "Business<|endoftext|>"})),
            one("literal_special_token", "completion")
        );
        let row = json!({"messages": [{"role": "user", "content": "hi</s>"}, {"role": "assistant", "content": "hello<|im_end|>\n"}]});
        assert_eq!(
            codes(row),
            one("literal_special_token", "messages[1].content")
        );
    }

    #[test]
    fn user_turns_in_a_prompt_are_not_targets() {
        let row = json!({"prompt": [{"role": "user", "content": ""}], "completion": [{"role": "assistant", "content": "a"}]});
        assert_eq!(codes(row), one("empty_content", "prompt[0].content"));
    }
}

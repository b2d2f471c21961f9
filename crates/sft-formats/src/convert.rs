//! Turning the shapes people have into one of the four formats.
//!
//! Every source row goes through one intermediate form ([`Example`]): plain text, a
//! prompt/completion pair of strings, or a list of messages with an optional split between
//! prompt and completion. Every target format is produced from that form, so each source
//! converts to each target where the conversion means something, and is rejected with a
//! reason where it does not (a multi-turn chat cannot become one prompt/completion pair
//! without a chat template). Fields the conversion does not use are kept.

use serde_json::{json, Map, Value};

use crate::validate::{detect, json_type_phrase};
use crate::{foreign_role, validate_row, Format, RowKind, Severity, Shape};

/// Where rows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Decide per row from its keys.
    Auto,
    Alpaca,
    ShareGpt,
    OpenAi,
    /// A table whose columns are renamed with [`ConvertOptions::column_map`].
    Columns,
    /// Preference rows (`chosen`/`rejected`): the chosen reply becomes the target.
    Preference,
    /// KTO rows (`label`/`kto_tag`): desirable rows are kept, undesirable ones rejected.
    Kto,
    Format(Format),
}

impl std::str::FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => Source::Auto,
            "alpaca" => Source::Alpaca,
            "sharegpt" => Source::ShareGpt,
            "openai" => Source::OpenAi,
            "columns" => Source::Columns,
            "preference" => Source::Preference,
            "kto" => Source::Kto,
            other => Source::Format(other.parse().map_err(|_| {
                format!("unknown source `{other}`: expected auto, alpaca, sharegpt, openai, columns, preference, kto, text, messages, prompt-completion or conversational-prompt-completion")
            })?),
        })
    }
}

/// How to convert.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub from: Source,
    pub to: Format,
    /// A system prompt added to conversations that have none.
    pub system: Option<String>,
    /// `(key in the output, column in the input)`, e.g. `("prompt", "question")`.
    pub column_map: Vec<(String, String)>,
}

/// Why a row was not converted: a stable code and a sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub code: String,
    pub reason: String,
}

impl Rejection {
    fn new(code: &str, reason: impl Into<String>) -> Self {
        Rejection {
            code: code.to_string(),
            reason: reason.into(),
        }
    }
}

/// The content of a row, whatever shape it came in.
enum Example {
    Text(String),
    Pair {
        prompt: String,
        completion: String,
    },
    Chat {
        messages: Vec<Value>,
        /// Index of the first completion message, when the source said where it starts.
        split: Option<usize>,
    },
}

/// Converts one row. The result is validated as the target format: a row whose converted
/// form has errors (an empty reply, say) is rejected with them, so converted data checks clean.
pub fn convert_row(row: Value, options: &ConvertOptions) -> Result<Value, Rejection> {
    let Value::Object(mut obj) = row else {
        return Err(Rejection::new(
            "not_an_object",
            format!("the row is {}, not a JSON object", json_type_phrase(&row)),
        ));
    };
    if !options.column_map.is_empty() {
        apply_column_map(&mut obj, &options.column_map)?;
    }
    let mut from = options.from;
    if matches!(from, Source::Auto | Source::Columns) {
        match detect(&obj) {
            RowKind::Convertible(Shape::Preference) => from = Source::Preference,
            RowKind::Convertible(Shape::Kto) => from = Source::Kto,
            _ => {}
        }
    }
    // Preference and KTO rows become rows of the shape under them, then convert as usual.
    match from {
        Source::Preference => {
            take_chosen(&mut obj)?;
            from = Source::Auto;
        }
        Source::Kto => {
            keep_desirable(&mut obj)?;
            from = Source::Auto;
        }
        _ => {}
    }
    let source = match from {
        Source::Auto | Source::Columns => match detect(&obj) {
            RowKind::Format(f) => Source::Format(f),
            RowKind::Convertible(Shape::Alpaca) => Source::Alpaca,
            RowKind::Convertible(Shape::ShareGpt) => Source::ShareGpt,
            RowKind::Convertible(Shape::OpenAiLegacy) => Source::OpenAi,
            RowKind::Convertible(Shape::Preference | Shape::Kto) => {
                return Err(Rejection::new(
                    "unrecognized_row",
                    "the row holds preference or KTO keys twice (`chosen`/`rejected`, `label`/`kto_tag`)",
                ))
            }
            RowKind::Unrecognized => {
                let keys: Vec<String> = obj.keys().take(8).map(|k| format!("`{k}`")).collect();
                return Err(Rejection::new(
                    "unrecognized_row",
                    format!(
                        "no known shape in keys {}; name the columns with --from columns --map KEY=COLUMN",
                        keys.join(", ")
                    ),
                ));
            }
        },
        other => other,
    };
    let mut example = match source {
        Source::Alpaca => from_alpaca(&mut obj)?,
        Source::ShareGpt => from_sharegpt(&mut obj)?,
        Source::OpenAi => from_openai(&mut obj)?,
        Source::Format(f) => from_format(&mut obj, f)?,
        Source::Auto | Source::Columns | Source::Preference | Source::Kto => {
            unreachable!("resolved above")
        }
    };
    if let Some(system) = &options.system {
        add_system(&mut example, &mut obj, system);
    }
    let mut out = to_format(example, options.to, &mut obj)?;
    for (key, value) in obj {
        let key = if out.contains_key(&key) {
            format!("source_{key}")
        } else {
            key
        };
        out.insert(key, value);
    }
    let out = Value::Object(out);
    let checked = validate_row(&out);
    if let Some(error) = checked
        .issues
        .iter()
        .find(|i| i.severity() == Severity::Error)
    {
        let at = if error.path.is_empty() {
            String::new()
        } else {
            format!(" at {}", error.path)
        };
        return Err(Rejection::new(
            error.code.as_str(),
            format!("after conversion{at}: {}", error.message),
        ));
    }
    Ok(out)
}

/// A preference row as the row it would be with only its chosen reply: TRL's
/// `{prompt, chosen}` becomes prompt-completion (strings or messages), implicit `{chosen}`
/// messages (or text), LLaMA-Factory's `conversations` + `chosen` turn a ShareGPT
/// conversation ending in that turn, and `instruction` + `chosen` an Alpaca row. The
/// rejected reply is dropped: it is what the model should not say.
fn take_chosen(obj: &mut Map<String, Value>) -> Result<(), Rejection> {
    obj.shift_remove("rejected");
    let chosen = match obj.shift_remove("chosen") {
        None | Some(Value::Null) => {
            return Err(Rejection::new(
                "missing_field",
                "`--from preference` needs a `chosen` reply, and the row has none",
            ))
        }
        Some(c) => c,
    };
    let empty = match &chosen {
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    if empty {
        return Err(Rejection::new(
            "empty_target",
            "the chosen reply is empty: there is nothing to learn",
        ));
    }
    if let Some(Value::Array(turns)) = obj.get_mut("conversations") {
        match chosen {
            Value::Array(more) => turns.extend(more),
            turn @ Value::Object(_) => turns.push(turn),
            other => turns.push(json!({"from": "gpt", "value": other})),
        }
    } else if let (Some(Value::Array(turns)), true) = (obj.get_mut("messages"), chosen.is_object())
    {
        turns.push(chosen);
    } else if obj.contains_key("instruction") {
        obj.insert("output".into(), chosen);
    } else if obj.contains_key("prompt") {
        obj.insert("completion".into(), chosen);
    } else if chosen.is_array() {
        obj.insert("messages".into(), chosen);
    } else if chosen.is_string() {
        obj.insert("text".into(), chosen);
    } else {
        return Err(Rejection::new(
            "wrong_type",
            format!(
                "`chosen` is {}; expected a string, a list of messages, or (with `conversations`) a turn",
                json_type_phrase(&chosen)
            ),
        ));
    }
    Ok(())
}

/// A KTO row without its label, when the label says the completion is desirable.
fn keep_desirable(obj: &mut Map<String, Value>) -> Result<(), Rejection> {
    let (key, label) = match obj.shift_remove("label") {
        Some(l) => ("label", l),
        None => (
            "kto_tag",
            obj.shift_remove("kto_tag").unwrap_or(Value::Null),
        ),
    };
    match label {
        Value::Bool(true) => Ok(()),
        Value::Bool(false) => Err(Rejection::new(
            "undesirable_example",
            format!("`{key}` is false: the completion is an example of what not to say; SFT learns only the desirable ones"),
        )),
        other => Err(Rejection::new(
            "wrong_type",
            format!("`{key}` is {}, expected true or false", json_type_phrase(&other)),
        )),
    }
}

fn apply_column_map(
    obj: &mut Map<String, Value>,
    map: &[(String, String)],
) -> Result<(), Rejection> {
    let mut taken = Vec::with_capacity(map.len());
    for (key, column) in map {
        match obj.shift_remove(column) {
            Some(value) => taken.push((key.clone(), value)),
            None => {
                let keys: Vec<String> = obj.keys().take(8).map(|k| format!("`{k}`")).collect();
                return Err(Rejection::new(
                    "missing_field",
                    format!(
                        "column `{column}` (mapped to `{key}`) is not in the row; it has {}",
                        keys.join(", ")
                    ),
                ));
            }
        }
    }
    // Mapped keys go first, in the order given, so the output reads naturally.
    let rest = std::mem::take(obj);
    obj.extend(taken);
    for (k, v) in rest {
        obj.entry(k).or_insert(v);
    }
    Ok(())
}

fn take_string(obj: &mut Map<String, Value>, key: &str) -> Result<Option<String>, Rejection> {
    match obj.shift_remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Rejection::new(
            "wrong_type",
            format!("`{key}` is {}, expected a string", json_type_phrase(&other)),
        )),
    }
}

fn message(role: &str, content: impl Into<Value>) -> Value {
    json!({"role": role, "content": content.into()})
}

fn from_alpaca(obj: &mut Map<String, Value>) -> Result<Example, Rejection> {
    let instruction = take_string(obj, "instruction")?.unwrap_or_default();
    let input = take_string(obj, "input")?.unwrap_or_default();
    let output = take_string(obj, "output")?
        .ok_or_else(|| Rejection::new("missing_field", "the Alpaca row has no `output`"))?;
    let system = take_string(obj, "system")?;
    // An empty instruction with the question in `input` is common; join whatever is there.
    let user = [instruction.trim_end(), input.trim()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    let mut messages = Vec::new();
    if let Some(system) = system.filter(|s| !s.trim().is_empty()) {
        messages.push(message("system", system));
    }
    match obj.shift_remove("history") {
        None | Some(Value::Null) => {}
        Some(Value::Array(pairs)) => {
            for (i, pair) in pairs.into_iter().enumerate() {
                match pair {
                    Value::Array(p) if p.len() == 2 && p.iter().all(Value::is_string) => {
                        let mut p = p.into_iter();
                        messages.push(message("user", p.next().unwrap_or_default()));
                        messages.push(message("assistant", p.next().unwrap_or_default()));
                    }
                    _ => {
                        return Err(Rejection::new(
                            "wrong_type",
                            format!("history[{i}] is not a [user, assistant] pair of strings"),
                        ))
                    }
                }
            }
        }
        Some(other) => {
            return Err(Rejection::new(
                "wrong_type",
                format!(
                    "`history` is {}, expected a list of [user, assistant] pairs",
                    json_type_phrase(&other)
                ),
            ))
        }
    }
    messages.push(message("user", user));
    messages.push(message("assistant", output));
    let split = Some(messages.len() - 1);
    Ok(Example::Chat { messages, split })
}

/// Maps a ShareGPT speaker to a role; `function_call` becomes an assistant tool call.
fn sharegpt_role(from: &str) -> Option<&'static str> {
    match from {
        "system" => Some("system"),
        "user" => Some("user"),
        "assistant" => Some("assistant"),
        "tool" => Some("tool"),
        "function_call" => Some("function_call"),
        other => foreign_role(other),
    }
}

fn from_sharegpt(obj: &mut Map<String, Value>) -> Result<Example, Rejection> {
    let key = if obj.contains_key("conversations") {
        "conversations"
    } else {
        "messages"
    };
    let turns = match obj.shift_remove(key) {
        Some(Value::Array(turns)) => turns,
        Some(other) => {
            return Err(Rejection::new(
                "wrong_type",
                format!(
                    "`{key}` is {}, expected a list of turns",
                    json_type_phrase(&other)
                ),
            ))
        }
        None => {
            return Err(Rejection::new(
                "missing_field",
                "the row has no `conversations`",
            ))
        }
    };
    let mut messages = Vec::with_capacity(turns.len() + 1);
    if let Some(system) = take_string(obj, "system")?.filter(|s| !s.trim().is_empty()) {
        messages.push(message("system", system));
    }
    for (i, turn) in turns.into_iter().enumerate() {
        let Value::Object(mut t) = turn else {
            return Err(Rejection::new(
                "wrong_type",
                format!("{key}[{i}] is not an object with `from` and `value`"),
            ));
        };
        let from = match t.shift_remove("from") {
            Some(Value::String(f)) => f,
            _ => {
                return Err(Rejection::new(
                    "missing_role",
                    format!("{key}[{i}] has no string `from`"),
                ))
            }
        };
        let value = match t.shift_remove("value") {
            Some(Value::String(v)) => v,
            _ => {
                return Err(Rejection::new(
                    "missing_content",
                    format!("{key}[{i}] has no string `value`"),
                ))
            }
        };
        let role = sharegpt_role(&from).ok_or_else(|| {
            Rejection::new(
                "unknown_role",
                format!("{key}[{i}].from is `{from}`, which has no role mapping"),
            )
        })?;
        let mut m = Map::new();
        if role == "function_call" {
            let call: Value = serde_json::from_str(&value).map_err(|e| {
                Rejection::new(
                    "malformed_tool_calls",
                    format!("{key}[{i}] is a function_call whose value is not JSON: {e}"),
                )
            })?;
            let calls = match call {
                Value::Array(list) => list,
                one => vec![one],
            };
            let calls: Vec<Value> = calls
                .into_iter()
                .map(|c| {
                    let name = c.get("name").cloned().unwrap_or(Value::Null);
                    let arguments = c.get("arguments").cloned().unwrap_or_else(|| json!({}));
                    json!({"type": "function", "function": {"name": name, "arguments": arguments}})
                })
                .collect();
            m.insert("role".into(), "assistant".into());
            m.insert("content".into(), Value::Null);
            m.insert("tool_calls".into(), Value::Array(calls));
        } else {
            m.insert("role".into(), role.into());
            m.insert("content".into(), value.into());
        }
        // Keep whatever else the turn carried (weights, names, ids).
        m.extend(t);
        messages.push(Value::Object(m));
    }
    if let Some(tools) = obj.shift_remove("tools") {
        obj.insert("tools".into(), parse_tools(tools)?);
    }
    Ok(Example::Chat {
        messages,
        split: None,
    })
}

/// Tools stored as a JSON string become the list itself; an empty string means none.
fn parse_tools(tools: Value) -> Result<Value, Rejection> {
    match tools {
        Value::String(s) if s.trim().is_empty() => Ok(Value::Null),
        Value::String(s) => serde_json::from_str(&s).map_err(|e| {
            Rejection::new(
                "malformed_tools",
                format!("the `tools` string is not valid JSON: {e}"),
            )
        }),
        other => Ok(other),
    }
}

fn from_openai(obj: &mut Map<String, Value>) -> Result<Example, Rejection> {
    let mut messages = match obj.shift_remove("messages") {
        Some(Value::Array(m)) => m,
        Some(other) => {
            return Err(Rejection::new(
                "wrong_type",
                format!(
                    "`messages` is {}, expected a list",
                    json_type_phrase(&other)
                ),
            ))
        }
        None => return Err(Rejection::new("missing_field", "the row has no `messages`")),
    };
    // The legacy function-calling fields become today's tools and tool_calls.
    if let Some(functions) = obj.shift_remove("functions").filter(|f| !f.is_null()) {
        let Value::Array(functions) = functions else {
            return Err(Rejection::new(
                "malformed_tools",
                "`functions` is not a list of function schemas",
            ));
        };
        let tools: Vec<Value> = functions
            .into_iter()
            .map(|f| json!({"type": "function", "function": f}))
            .collect();
        obj.insert("tools".into(), Value::Array(tools));
    }
    for m in messages.iter_mut() {
        let Some(m) = m.as_object_mut() else { continue };
        if let Some(call) = m.shift_remove("function_call").filter(|c| !c.is_null()) {
            let name = call.get("name").cloned().unwrap_or(Value::Null);
            let arguments = call
                .get("arguments")
                .cloned()
                .unwrap_or_else(|| json!("{}"));
            m.insert(
                "tool_calls".into(),
                json!([{"type": "function", "function": {"name": name, "arguments": arguments}}]),
            );
        }
        if m.get("role").and_then(Value::as_str) == Some("function") {
            m.insert("role".into(), "tool".into());
        }
    }
    Ok(Example::Chat {
        messages,
        split: None,
    })
}

fn take_messages(obj: &mut Map<String, Value>, key: &str) -> Result<Vec<Value>, Rejection> {
    match obj.shift_remove(key) {
        Some(Value::Array(m)) => Ok(m),
        Some(other) => Err(Rejection::new(
            "wrong_type",
            format!(
                "`{key}` is {}, expected a list of messages",
                json_type_phrase(&other)
            ),
        )),
        None => Err(Rejection::new(
            "missing_field",
            format!("the row has no `{key}`"),
        )),
    }
}

fn from_format(obj: &mut Map<String, Value>, format: Format) -> Result<Example, Rejection> {
    let missing = |key: &str| Rejection::new("missing_field", format!("the row has no `{key}`"));
    Ok(match format {
        Format::Text => Example::Text(take_string(obj, "text")?.ok_or_else(|| missing("text"))?),
        Format::PromptCompletion => Example::Pair {
            prompt: take_string(obj, "prompt")?.ok_or_else(|| missing("prompt"))?,
            completion: take_string(obj, "completion")?.ok_or_else(|| missing("completion"))?,
        },
        Format::Messages => Example::Chat {
            messages: take_messages(obj, "messages")?,
            split: None,
        },
        Format::ConversationalPromptCompletion => {
            let mut messages = take_messages(obj, "prompt")?;
            let split = Some(messages.len());
            messages.extend(take_messages(obj, "completion")?);
            Example::Chat { messages, split }
        }
    })
}

fn role_of(m: &Value) -> Option<&str> {
    m.get("role").and_then(Value::as_str)
}

fn add_system(example: &mut Example, obj: &mut Map<String, Value>, system: &str) {
    match example {
        Example::Chat { messages, split } => {
            if messages.first().and_then(role_of) != Some("system") {
                messages.insert(0, message("system", system));
                if let Some(s) = split {
                    *s += 1;
                }
            }
        }
        // The string formats have no place for a system prompt: it is kept as a column.
        Example::Pair { .. } | Example::Text(_) => {
            obj.entry("system").or_insert_with(|| system.into());
        }
    }
}

fn string_content(m: &Value) -> Option<&str> {
    m.get("content").and_then(Value::as_str)
}

fn to_format(
    example: Example,
    to: Format,
    extra: &mut Map<String, Value>,
) -> Result<Map<String, Value>, Rejection> {
    let mut out = Map::new();
    match (to, example) {
        (Format::Text, Example::Text(text)) => {
            out.insert("text".into(), text.into());
        }
        (Format::Text, Example::Pair { prompt, completion }) => {
            out.insert("text".into(), format!("{prompt}{completion}").into());
        }
        (Format::Text, Example::Chat { .. }) => {
            return Err(Rejection::new(
                "needs_chat_template",
                "a conversation becomes plain text only through a chat template: use `sft-data render --chat-template NAME`, or keep the messages (training renders the template)",
            ))
        }
        (_, Example::Text(_)) => {
            return Err(Rejection::new(
                "no_turns",
                format!("raw text has no prompt or turns to make {to} from; use --to text"),
            ))
        }
        (Format::PromptCompletion, Example::Pair { prompt, completion }) => {
            out.insert("prompt".into(), prompt.into());
            out.insert("completion".into(), completion.into());
        }
        (Format::PromptCompletion, Example::Chat { messages, .. }) => {
            let (prompt, completion) = flatten_single_turn(messages, extra)?;
            out.insert("prompt".into(), prompt.into());
            out.insert("completion".into(), completion.into());
        }
        (Format::Messages, Example::Pair { prompt, completion }) => {
            let mut messages = system_turn(extra);
            messages.push(message("user", prompt));
            messages.push(message("assistant", completion));
            out.insert("messages".into(), Value::Array(messages));
        }
        (Format::Messages, Example::Chat { messages, .. }) => {
            out.insert("messages".into(), Value::Array(messages));
        }
        (Format::ConversationalPromptCompletion, Example::Pair { prompt, completion }) => {
            let mut messages = system_turn(extra);
            messages.push(message("user", prompt));
            out.insert("prompt".into(), Value::Array(messages));
            out.insert("completion".into(), json!([message("assistant", completion)]));
        }
        (Format::ConversationalPromptCompletion, Example::Chat { mut messages, split }) => {
            let split = match split {
                Some(s) => s,
                None => completion_start(&messages)?,
            };
            let completion = messages.split_off(split);
            out.insert("prompt".into(), Value::Array(messages));
            out.insert("completion".into(), Value::Array(completion));
        }
    }
    if to.is_conversational() {
        for key in ["tools", "chat_template_kwargs"] {
            if let Some(v) = extra.shift_remove(key) {
                if !v.is_null() {
                    out.insert(key.into(), v);
                }
            }
        }
    }
    Ok(out)
}

/// A `system` column of a string-format row (where `--system` and conversions to the
/// string formats keep it) becomes the system turn again in a conversation.
fn system_turn(extra: &mut Map<String, Value>) -> Vec<Value> {
    match extra.get("system") {
        Some(Value::String(s)) if !s.trim().is_empty() => {
            let system = message("system", s.clone());
            extra.shift_remove("system");
            vec![system]
        }
        _ => Vec::new(),
    }
}

/// Where the completion of a conversation starts: after its last user turn, so the
/// completion is the final reply with any tool calls and results inside it.
fn completion_start(messages: &[Value]) -> Result<usize, Rejection> {
    let last_user = messages
        .iter()
        .rposition(|m| role_of(m) == Some("user"))
        .ok_or_else(|| {
            Rejection::new(
                "no_user_turn",
                "the conversation has no user turn to split the prompt at",
            )
        })?;
    if last_user + 1 == messages.len() {
        return Err(Rejection::new(
            "not_ending_with_assistant",
            "the conversation ends with a user turn, so there is no completion",
        ));
    }
    Ok(last_user + 1)
}

fn flatten_single_turn(
    messages: Vec<Value>,
    extra: &mut Map<String, Value>,
) -> Result<(String, String), Rejection> {
    let mut systems = Vec::new();
    let mut rest = Vec::new();
    for m in &messages {
        if matches!(role_of(m), Some("system") | Some("developer")) {
            systems.push(m);
        } else {
            rest.push(m);
        }
    }
    let [user, assistant] = rest.as_slice() else {
        return Err(Rejection::new(
            "cannot_flatten",
            format!(
                "a conversation with {} non-system {} cannot become one prompt/completion pair of strings; use --to conversational-prompt-completion",
                rest.len(),
                if rest.len() == 1 { "turn" } else { "turns" }
            ),
        ));
    };
    if role_of(user) != Some("user") || role_of(assistant) != Some("assistant") {
        return Err(Rejection::new(
            "cannot_flatten",
            "prompt-completion needs one user turn followed by one assistant turn",
        ));
    }
    let (Some(prompt), Some(completion)) = (string_content(user), string_content(assistant)) else {
        return Err(Rejection::new(
            "cannot_flatten",
            "turns with tool calls or content parts cannot become plain strings; use --to conversational-prompt-completion",
        ));
    };
    if let Some(system) = systems.first().and_then(|m| string_content(m)) {
        // The string formats have no system turn: keep it as a column rather than lose it.
        extra.insert("system".into(), system.into());
    }
    Ok((prompt.to_string(), completion.to_string()))
}

/// `--map KEY=COLUMN` entries as (output key, input column) pairs.
pub fn parse_column_map(entries: &[String]) -> Result<Vec<(String, String)>, String> {
    entries
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((key, column)) if !key.is_empty() && !column.is_empty() => {
                Ok((key.to_string(), column.to_string()))
            }
            _ => Err(format!(
                "--map {entry}: expected KEY=COLUMN, such as --map prompt=question"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {

    #[test]
    fn column_maps_are_key_equals_column() {
        let m = parse_column_map(&["prompt=question".into(), "completion=a=b".into()]).unwrap();
        assert_eq!(
            m,
            [
                ("prompt".to_string(), "question".to_string()),
                ("completion".to_string(), "a=b".to_string())
            ]
        );
        for bad in ["prompt", "=question", "prompt="] {
            assert!(parse_column_map(&[bad.into()])
                .unwrap_err()
                .contains("KEY=COLUMN"));
        }
    }

    use super::*;

    fn opts(from: Source, to: Format) -> ConvertOptions {
        ConvertOptions {
            from,
            to,
            system: None,
            column_map: vec![],
        }
    }

    #[test]
    fn alpaca_to_every_format() {
        let row = json!({"instruction": "Translate to French", "input": "cat", "output": "chat", "id": 7});
        let m = convert_row(row.clone(), &opts(Source::Auto, Format::Messages)).unwrap();
        assert_eq!(
            m,
            json!({"messages": [{"role": "user", "content": "Translate to French\n\ncat"}, {"role": "assistant", "content": "chat"}], "id": 7})
        );
        let pc = convert_row(row.clone(), &opts(Source::Alpaca, Format::PromptCompletion)).unwrap();
        assert_eq!(
            pc,
            json!({"prompt": "Translate to French\n\ncat", "completion": "chat", "id": 7})
        );
        let cpc = convert_row(
            row.clone(),
            &opts(Source::Alpaca, Format::ConversationalPromptCompletion),
        )
        .unwrap();
        assert_eq!(
            cpc["completion"],
            json!([{"role": "assistant", "content": "chat"}])
        );
        let text = convert_row(row, &opts(Source::Alpaca, Format::Text)).unwrap_err();
        assert_eq!(text.code, "needs_chat_template");
    }

    #[test]
    fn alpaca_question_in_input_and_system_kept() {
        let row = json!({"instruction": "", "input": "What is 2+2?", "output": "4", "system": "Be terse."});
        let pc = convert_row(row.clone(), &opts(Source::Alpaca, Format::PromptCompletion)).unwrap();
        assert_eq!(
            pc,
            json!({"prompt": "What is 2+2?", "completion": "4", "system": "Be terse."})
        );
        let m = convert_row(row, &opts(Source::Alpaca, Format::Messages)).unwrap();
        assert_eq!(
            m["messages"][0],
            json!({"role": "system", "content": "Be terse."})
        );
    }

    #[test]
    fn sharegpt_with_tools() {
        let row = json!({"conversations": [
            {"from": "human", "value": "Weather in Paris?"},
            {"from": "function_call", "value": "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}"},
            {"from": "observation", "value": "{\"temp\": 21}"},
            {"from": "gpt", "value": "21 degrees."}
        ], "tools": "[{\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\"}}]"});
        let m = convert_row(row, &opts(Source::ShareGpt, Format::Messages)).unwrap();
        assert_eq!(
            m["messages"][1]["tool_calls"][0]["function"]["name"],
            "get_weather"
        );
        assert_eq!(m["messages"][2]["role"], "tool");
        assert!(m["tools"].is_array());
    }

    #[test]
    fn conversation_splits_after_last_user_turn() {
        let row = json!({"messages": [
            {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}
        ]});
        let cpc = convert_row(
            row.clone(),
            &opts(Source::Auto, Format::ConversationalPromptCompletion),
        )
        .unwrap();
        assert_eq!(cpc["prompt"].as_array().unwrap().len(), 3);
        assert_eq!(
            cpc["completion"],
            json!([{"role": "assistant", "content": "d"}])
        );
        let pc = convert_row(row, &opts(Source::Auto, Format::PromptCompletion)).unwrap_err();
        assert_eq!(pc.code, "cannot_flatten");
    }

    #[test]
    fn column_map_and_system() {
        let row = json!({"question": "2+2?", "answer": "4", "source": "math"});
        let mut o = opts(Source::Columns, Format::Messages);
        o.column_map = vec![
            ("prompt".into(), "question".into()),
            ("completion".into(), "answer".into()),
        ];
        o.system = Some("You are a calculator.".into());
        let m = convert_row(row, &o).unwrap();
        assert_eq!(
            m,
            json!({"messages": [
                {"role": "system", "content": "You are a calculator."},
                {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}
            ], "source": "math"})
        );
        let missing = convert_row(json!({"q": "x"}), &o).unwrap_err();
        assert_eq!(missing.code, "missing_field");
        assert!(missing.reason.contains("`question`"), "{}", missing.reason);
    }

    #[test]
    fn converted_rows_that_fail_validation_are_rejected() {
        let row = json!({"instruction": "Say something", "input": "", "output": "   "});
        let r = convert_row(row, &opts(Source::Alpaca, Format::Messages)).unwrap_err();
        assert_eq!(r.code, "empty_target");
        assert!(r.reason.contains("messages[1].content"), "{}", r.reason);
    }

    #[test]
    fn openai_legacy_functions() {
        let row = json!({"messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{}"}},
            {"role": "function", "name": "f", "content": "ok"},
            {"role": "assistant", "content": "done"}
        ], "functions": [{"name": "f", "parameters": {"type": "object"}}]});
        let m = convert_row(row, &opts(Source::Auto, Format::Messages)).unwrap();
        assert_eq!(m["messages"][2]["role"], "tool");
        assert_eq!(m["tools"][0]["function"]["name"], "f");
        assert!(validate_row(&m).issues.is_empty());
    }
}

//! Chat templates, rendered exactly as Python `transformers.apply_chat_template` renders
//! them.
//!
//! This is the stage of the flow between a conversation and the text a tokenizer sees
//! (read -> detect -> validate -> convert -> **render** -> tokenize -> ...). A
//! [`ChatTemplate`] is a Jinja template (bundled by name, from a model folder, a GGUF file
//! or a path, see [`source`]) plus the special tokens it may refer to. Rendering follows
//! transformers 5: null message keys dropped, reasoning fields aliased, `tools` and
//! `documents` always defined, Python's `tojson`, `raise_exception`, `strftime_now`, and
//! `{% generation %}` blocks, whose character spans are returned.
//!
//! [`ChatTemplate::assistant_spans`] finds the span of every assistant turn for any
//! template, markers or not, by rendering each prefix of the conversation (see [`spans`]).
//!
//! ```
//! use sft_template::{ChatTemplate, RenderOptions};
//! let template = ChatTemplate::bundled("smollm2").unwrap();
//! let messages = serde_json::json!([{"role": "user", "content": "Hi"}]);
//! let prompt = template
//!     .render(messages.as_array().unwrap(), &RenderOptions::generation())
//!     .unwrap();
//! assert!(prompt.text.ends_with("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
//! ```

mod clock;
mod env;
pub mod source;
pub mod spans;

pub use clock::{Clock, NaiveDateTime};
pub use env::PyJson;
pub use source::{SpecialTokens, TemplateSource};
pub use spans::{AssistantSpan, AssistantSpans, SpanMethod};

use std::fmt;
use std::ops::Range;

use std::sync::atomic::{AtomicUsize, Ordering};

use minijinja::{Environment, Value as JValue};
use serde_json::{Map, Value};

use env::{GENERATION_END, GENERATION_START};

/// Work a template may do per render, in minijinja fuel units (roughly instructions).
/// Real templates use a few thousand per conversation; a million is far beyond any of them
/// and ends a runaway loop within a fraction of a second.
pub const DEFAULT_FUEL: u64 = 5_000_000;
/// Largest rendered text accepted, in bytes.
pub const DEFAULT_MAX_OUTPUT: usize = 64 << 20;

/// Why a render failed.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError {
    pub message: String,
}

impl TemplateError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        TemplateError {
            message: message.into(),
        }
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TemplateError {}

fn jinja_error(e: minijinja::Error) -> TemplateError {
    if e.kind() == minijinja::ErrorKind::OutOfFuel {
        return TemplateError::new(
            "the render ran out of fuel (the work a render may do): the row is too large for this template, or the template loops; shorten or split the row",
        );
    }
    // The template's own message (raise_exception) first, then where it happened.
    let mut message = match e.detail() {
        Some(detail) if e.kind() == minijinja::ErrorKind::InvalidOperation => detail.to_string(),
        _ => e.to_string(),
    };
    if let Some(line) = e.line() {
        if !message.contains("line ") {
            message.push_str(&format!(" (template line {line})"));
        }
    }
    TemplateError::new(message)
}

/// How to render.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// End with the header of an assistant turn, for generation. Never for training text.
    pub add_generation_prompt: bool,
    /// End inside the final message (it is continued, not closed), for prefilled replies.
    pub continue_final_message: bool,
    /// Tool schemas (`tools` in the template; null when absent).
    pub tools: Option<Value>,
    /// Documents for retrieval-augmented templates (null when absent).
    pub documents: Option<Value>,
    /// Extra template variables (`chat_template_kwargs`, e.g. `enable_thinking`).
    pub kwargs: Map<String, Value>,
}

impl RenderOptions {
    /// Training text: no generation prompt (TRL's rule).
    pub fn training() -> Self {
        RenderOptions::default()
    }

    /// A prompt to generate from.
    pub fn generation() -> Self {
        RenderOptions {
            add_generation_prompt: true,
            ..RenderOptions::default()
        }
    }

    /// These options (tools, kwargs) for training text: no generation prompt, nothing continued.
    pub fn for_training(&self) -> RenderOptions {
        RenderOptions {
            add_generation_prompt: false,
            continue_final_message: false,
            ..self.clone()
        }
    }

    /// These options (tools, kwargs) for a prompt that ends with the generation prompt.
    pub fn for_generation(&self) -> RenderOptions {
        RenderOptions {
            add_generation_prompt: true,
            continue_final_message: false,
            ..self.clone()
        }
    }

    /// These options with a dataset row's own `tools` (a list, or a JSON string holding
    /// one) and `chat_template_kwargs` (which win over these).
    pub fn with_row(&self, row: &Value) -> Result<RenderOptions, String> {
        let mut options = self.clone();
        match row.get("tools") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.trim().is_empty() => {}
            Some(Value::String(s)) => {
                options.tools = Some(
                    serde_json::from_str(s)
                        .map_err(|e| format!("`tools` is a string that is not JSON: {e}"))?,
                )
            }
            Some(tools) => options.tools = Some(tools.clone()),
        }
        if let Some(Value::Object(kwargs)) = row.get("chat_template_kwargs") {
            for (k, v) in kwargs {
                options.kwargs.insert(k.clone(), v.clone());
            }
        }
        Ok(options)
    }
}

/// A rendered conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub text: String,
    /// Byte ranges of `{% generation %}` blocks in `text`, in order.
    pub generation_spans: Vec<Range<usize>>,
}

/// A chat template ready to render.
pub struct ChatTemplate {
    name: String,
    env: Environment<'static>,
    special_tokens: SpecialTokens,
    has_generation_tags: bool,
    max_output: usize,
    /// The largest output so far (up to 1 MiB), to size the next output buffer.
    output_hint: AtomicUsize,
    /// xxh3-64 of the template source, hex.
    fingerprint: String,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("name", &self.name)
            .field("special_tokens", &self.special_tokens)
            .finish()
    }
}

const TEMPLATE_NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compiles a template. `name` is used in messages only.
    pub fn new(
        name: impl Into<String>,
        source: &str,
        special_tokens: SpecialTokens,
    ) -> Result<ChatTemplate, TemplateError> {
        Self::with_clock(name, source, special_tokens, Clock::System)
    }

    /// As [`new`](Self::new), with the clock `strftime_now` reads.
    pub fn with_clock(
        name: impl Into<String>,
        source: &str,
        special_tokens: SpecialTokens,
        clock: Clock,
    ) -> Result<ChatTemplate, TemplateError> {
        let name = name.into();
        let rewritten = env::rewrite_generation_tags(source);
        let has_generation_tags = rewritten != source;
        let mut env = env::environment(clock, Some(DEFAULT_FUEL));
        env.add_template_owned(TEMPLATE_NAME, rewritten)
            .map_err(|e| {
                TemplateError::new(format!("the chat template {name} does not compile: {e}"))
            })?;
        Ok(ChatTemplate {
            name,
            env,
            special_tokens,
            has_generation_tags,
            max_output: DEFAULT_MAX_OUTPUT,
            output_hint: AtomicUsize::new(1024),
            fingerprint: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(source.as_bytes())),
        })
    }

    /// A template shipped with the project, by name (`smollm2`, `qwen3`, `llama3`, ...).
    pub fn bundled(name: &str) -> Result<ChatTemplate, TemplateError> {
        let (name, source, tokens) = source::bundled(name)?;
        ChatTemplate::new(name, source, tokens)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A hash of the template's source (xxh3-64, hex), recorded with prepared data.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special_tokens
    }

    /// Whether the template marks assistant output with `{% generation %}`.
    pub fn has_generation_tags(&self) -> bool {
        self.has_generation_tags
    }

    /// Caps the rendered size (bytes); larger renders fail.
    pub fn set_max_output(&mut self, bytes: usize) {
        self.max_output = bytes;
    }

    /// Caps the work per render (minijinja fuel); `None` lifts the cap.
    pub fn set_fuel(&mut self, fuel: Option<u64>) {
        self.env.set_fuel(fuel);
    }

    /// Renders `messages` as transformers' `apply_chat_template(..., tokenize=False)` does.
    pub fn render(
        &self,
        messages: &[Value],
        options: &RenderOptions,
    ) -> Result<Rendered, TemplateError> {
        if options.add_generation_prompt && options.continue_final_message {
            return Err(TemplateError::new(
                "continue_final_message and add_generation_prompt are not compatible: use continue_final_message to continue the final message, add_generation_prompt to start a new assistant turn",
            ));
        }
        if messages.is_empty() {
            return Err(TemplateError::new(
                "cannot apply a chat template to an empty conversation",
            ));
        }
        // The context is built straight from the JSON, normalised on the way, without
        // intermediate copies: for short conversations this is a large part of a render.
        let mut context: Vec<(&str, JValue)> = Vec::with_capacity(8 + options.kwargs.len());
        context.push(("messages", messages_to_jinja(messages)?));
        context.push((
            "tools",
            options.tools.as_ref().map_or(JValue::from(()), to_jinja),
        ));
        context.push((
            "documents",
            options
                .documents
                .as_ref()
                .map_or(JValue::from(()), to_jinja),
        ));
        context.push((
            "add_generation_prompt",
            JValue::from(options.add_generation_prompt),
        ));
        for (k, v) in self.special_tokens.iter() {
            context.push((k.as_str(), JValue::from(v.as_str())));
        }
        for (k, v) in &options.kwargs {
            context.push((k.as_str(), to_jinja(v)));
        }
        let template = self.env.get_template(TEMPLATE_NAME).map_err(jinja_error)?;
        let mut out = CappedWriter {
            buf: Vec::with_capacity(self.output_hint.load(Ordering::Relaxed)),
            cap: self.max_output,
        };
        template
            .render_captured_to(JValue::from_pairs(context), &mut out)
            .map(drop)
            .map_err(|e| {
                if out.buf.len() > out.cap {
                    TemplateError::new(format!(
                        "the chat template produced more than {} bytes: a runaway template?",
                        out.cap
                    ))
                } else {
                    jinja_error(e)
                }
            })?;
        self.output_hint
            .fetch_max(out.buf.len().min(1 << 20), Ordering::Relaxed);
        let raw = String::from_utf8(out.buf)
            .map_err(|_| TemplateError::new("the chat template produced invalid UTF-8"))?;
        let mut rendered = if self.has_generation_tags {
            extract_generation_spans(raw)
        } else {
            Rendered {
                text: raw,
                generation_spans: Vec::new(),
            }
        };
        if options.continue_final_message {
            continue_final_message(&mut rendered, messages.last().expect("not empty"))?;
        }
        Ok(rendered)
    }

    /// The text the template adds for `add_generation_prompt` after a user turn, such as
    /// `<|im_start|>assistant\n`, under the given tools and kwargs; `None` when the template
    /// adds nothing or rewrites earlier text.
    pub fn generation_prompt(&self, options: &RenderOptions) -> Option<String> {
        let messages = [serde_json::json!({"role": "user", "content": "ping"})];
        let without = self.render(&messages, &options.for_training()).ok()?;
        let with = self.render(&messages, &options.for_generation()).ok()?;
        with.text
            .strip_prefix(&without.text)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }
}

/// A writer that stops accepting bytes past its cap, so a runaway template fails early.
struct CappedWriter {
    buf: Vec<u8>,
    cap: usize,
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.cap {
            self.buf.extend_from_slice(
                &data[..(self.cap + 1)
                    .saturating_sub(self.buf.len())
                    .min(data.len())],
            );
            return Err(std::io::Error::other("output cap reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// transformers' message normalisation, as borrowed key/value pairs in template order:
/// keys whose value is null are dropped, and the reasoning fields alias each other (a
/// message with any of `reasoning_content`, `thinking`, `reasoning` gets `thinking` first and
/// `reasoning_content`, as Python's `{"thinking": r, **m, "reasoning_content": r}` does: a key
/// already in the message keeps its place, a new one goes last).
fn normalized_pairs(obj: &Map<String, Value>) -> Vec<(&str, &Value)> {
    let reasoning = ["reasoning_content", "thinking", "reasoning"]
        .iter()
        .find_map(|k| obj.get(*k).filter(|v| !v.is_null()));
    let mut pairs: Vec<(&str, &Value)> = Vec::with_capacity(obj.len() + 2);
    let Some(r) = reasoning else {
        pairs.extend(
            obj.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.as_str(), v)),
        );
        return pairs;
    };
    pairs.push(("thinking", r));
    let mut has_reasoning_content = false;
    for (k, v) in obj {
        match k.as_str() {
            "thinking" => {}
            "reasoning_content" => {
                pairs.push(("reasoning_content", r));
                has_reasoning_content = true;
            }
            _ if v.is_null() => {}
            _ => pairs.push((k.as_str(), v)),
        }
    }
    if !has_reasoning_content {
        pairs.push(("reasoning_content", r));
    }
    pairs
}

/// The messages as the template sees them (see [`normalized_pairs`]).
pub fn normalize_messages(messages: &[Value]) -> Result<Vec<Value>, TemplateError> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let obj = m
                .as_object()
                .ok_or_else(|| TemplateError::new(format!("message {i} is not an object")))?;
            Ok(Value::Object(
                normalized_pairs(obj)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            ))
        })
        .collect()
}

/// A JSON value as a template value, without an intermediate copy.
fn to_jinja(v: &Value) -> JValue {
    match v {
        Value::Null => JValue::from(()),
        Value::Bool(b) => JValue::from(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => JValue::from(i),
            (_, Some(u)) => JValue::from(u),
            _ => JValue::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => JValue::from(s.as_str()),
        Value::Array(items) => JValue::from(items.iter().map(to_jinja).collect::<Vec<_>>()),
        Value::Object(map) => {
            JValue::from_pairs(map.iter().map(|(k, v)| (k.as_str(), to_jinja(v))))
        }
    }
}

fn messages_to_jinja(messages: &[Value]) -> Result<JValue, TemplateError> {
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let obj = m
            .as_object()
            .ok_or_else(|| TemplateError::new(format!("message {i} is not an object")))?;
        out.push(JValue::from_pairs(
            normalized_pairs(obj)
                .into_iter()
                .map(|(k, v)| (k, to_jinja(v))),
        ));
    }
    Ok(JValue::from(out))
}

fn extract_generation_spans(raw: String) -> Rendered {
    if !raw.contains([GENERATION_START, GENERATION_END]) {
        return Rendered {
            text: raw,
            generation_spans: Vec::new(),
        };
    }
    let mut text = String::with_capacity(raw.len());
    let mut spans = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    for c in raw.chars() {
        match c {
            GENERATION_START => open.push(text.len()),
            GENERATION_END => {
                if let Some(start) = open.pop() {
                    // Nested blocks count once, as the outermost.
                    if open.is_empty() && start < text.len() {
                        spans.push(start..text.len());
                    }
                }
            }
            c => text.push(c),
        }
    }
    Rendered {
        text,
        generation_spans: spans,
    }
}

/// transformers' `continue_final_message`: cut the render right after the final message's
/// content, so generation continues it.
fn continue_final_message(rendered: &mut Rendered, last: &Value) -> Result<(), TemplateError> {
    let content = match last.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .last()
            .and_then(|p| p.get("text"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    };
    let cut = match rendered.text.rfind(&content) {
        Some(at) if !content.is_empty() => at + content.len(),
        _ => {
            let trimmed = content.trim();
            match rendered.text.rfind(trimmed) {
                Some(at) if !trimmed.is_empty() => at + trimmed.len(),
                _ => {
                    return Err(TemplateError::new(
                        "continue_final_message is set but the final message does not appear in the rendered chat; the template may change or drop it",
                    ))
                }
            }
        }
    };
    rendered.text.truncate(cut);
    for span in &mut rendered.generation_spans {
        span.end = span.end.min(cut);
    }
    rendered.generation_spans.retain(|s| s.start < s.end);
    Ok(())
}

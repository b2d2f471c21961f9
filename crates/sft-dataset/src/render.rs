//! Conversations through a chat template: `render` writes what the model sees, and `check
//! --chat-template` reports the rows a template rejects.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::{json, Map, Value};
use sft_formats::{conversation, detect_row, IssueCode, RowIssue, RowKind};
use sft_io::write::{DatasetWriter, OutputFormat, WriteError};
use sft_io::{ByteCounter, DataFile, ReadOptions};
use sft_template::{ChatTemplate, RenderOptions};

use crate::pipeline::{self, parse_row, FileEvent};

/// The messages of a conversational row and, for conversational prompt-completion, the
/// index where the completion starts. `None` for the string formats and other rows.
pub fn conversation_of(row: &Value) -> Option<(Vec<Value>, Option<usize>)> {
    match detect_row(row) {
        RowKind::Format(f) if f.is_conversational() => conversation(row, f).ok(),
        _ => None,
    }
}

/// What a template does with a row's tool calls: `None` when the row has none or the
/// template renders them; otherwise the issue `template_drops_tool_calls`, naming the first
/// message with calls, when the render is the same without them (the template drops them)
/// or fails with them only (often: `content` null beside `tool_calls`, which a template
/// without tool support concatenates). Filling in an empty `content` instead would train
/// an empty reply and lose the call.
pub fn tool_call_loss(
    template: &ChatTemplate,
    base: &RenderOptions,
    row: &Value,
) -> Option<RowIssue> {
    let (messages, split) = conversation_of(row)?;
    let has_calls = |m: &Value| {
        m.get("tool_calls")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    };
    let first = messages.iter().position(has_calls)?;
    let options = base.with_row(row).ok()?.for_training();
    // The same conversation without the calls: a turn that only called a tool is empty.
    let without: Vec<Value> = messages
        .iter()
        .map(|m| {
            let mut m = m.clone();
            if has_calls(&m) {
                if let Some(obj) = m.as_object_mut() {
                    obj.shift_remove("tool_calls");
                    if obj.get("content").is_none_or(Value::is_null) {
                        obj.insert("content".into(), Value::String(String::new()));
                    }
                }
            }
            m
        })
        .collect();
    let path = match split {
        Some(k) if first >= k => format!("completion[{}].tool_calls", first - k),
        Some(_) => format!("prompt[{first}].tool_calls"),
        None => format!("messages[{first}].tool_calls"),
    };
    let name = template.name();
    let message = match (template.render(&messages, &options), template.render(&without, &options)) {
        (Err(e), Ok(_)) => format!("the chat template {name} fails on the tool calls ({e}); it has no tool support"),
        (Ok(a), Ok(b)) if a.text == b.text => format!(
            "the chat template {name} drops the tool calls: the row renders the same without them, so the calls would not be trained"
        ),
        _ => return None,
    };
    Some(RowIssue::new(
        IssueCode::TemplateDropsToolCalls,
        path,
        message,
    ))
}

/// Template checks of one conversational row, as `check --chat-template` reports them.
pub fn template_issues(
    template: &ChatTemplate,
    base: &RenderOptions,
    generation_prompt: Option<&str>,
    row: &Value,
) -> Vec<RowIssue> {
    let Some((messages, split)) = conversation_of(row) else {
        return Vec::new();
    };
    let options = match base.with_row(row) {
        Ok(o) => o,
        // The row's own validation already reports bad tools.
        Err(_) => return Vec::new(),
    };
    let training = options.for_training();
    if let Some(issue) = tool_call_loss(template, base, row) {
        return vec![issue];
    }
    let full = match template.render(&messages, &training) {
        Ok(r) => r,
        Err(e) => {
            return vec![RowIssue::new(
                IssueCode::TemplateError,
                "",
                format!("the chat template {} rejects the row: {e}", template.name()),
            )]
        }
    };
    let mut issues = Vec::new();
    if let Some(prompt) = generation_prompt {
        if full.text.ends_with(prompt) {
            issues.push(RowIssue::new(
                IssueCode::RenderAwaitsAssistant,
                "",
                format!("the training text ends with the generation prompt {prompt:?}"),
            ));
        }
    }
    if let Some(split) = split {
        let prompting = training.for_generation();
        match template.render(&messages[..split], &prompting) {
            Err(e) => issues.push(RowIssue::new(
                IssueCode::TemplateError,
                "prompt",
                format!("the chat template {} rejects the prompt with the generation prompt: {e}", template.name()),
            )),
            Ok(p) if !full.text.starts_with(&p.text) => issues.push(RowIssue::new(
                IssueCode::PromptNotPrefix,
                "prompt",
                "the prompt rendered with the generation prompt is not the start of the whole conversation's render",
            )),
            Ok(_) => {}
        }
    }
    issues
}

pub struct RenderJob {
    pub inputs: Vec<DataFile>,
    pub read: ReadOptions,
    pub template: ChatTemplate,
    pub options: RenderOptions,
    pub output: PathBuf,
    pub progress: ByteCounter,
}

#[derive(Debug, Clone)]
pub struct RenderSummary {
    pub rows: u64,
    pub rendered: u64,
    /// Rows written as `{"error": ...}`.
    pub errors: u64,
    /// Files that could not be read.
    pub unreadable_files: Vec<(String, String)>,
    /// Whether the output was written: not when an input could not be read to its end.
    pub output_written: bool,
    /// Rows known not to have been read (files that say how many rows they have).
    pub rows_not_read: u64,
    pub first_errors: Vec<(crate::Location, String)>,
    pub seconds: f64,
}

/// One output line per input row, in order: `{"text": ...}` or `{"error": ...}`.
fn render_one(template: &ChatTemplate, base: &RenderOptions, row: Result<Value, String>) -> Value {
    let row = match row {
        Ok(r) => r,
        Err(e) => return json!({ "error": e }),
    };
    let Some((messages, _)) = conversation_of(&row) else {
        let kind = detect_row(&row);
        return json!({ "error": format!("the row is {kind}, not a conversation (messages, or prompt and completion as lists of messages)") });
    };
    // A row `check` calls an error is not rendered (a role the template does not know would
    // pass through as `<|im_start|>human`). A render need not have a reply: prompts to
    // generate from have none.
    let errors = pipeline::row_errors(
        &row,
        &[IssueCode::NoAssistantTurn, IssueCode::EmptyTarget],
        "text",
    );
    if let Some(first) = errors.first() {
        let listed: Vec<String> = errors.iter().map(pipeline::describe_row_error).collect();
        return json!({ "error": listed.join("; "), "code": first.code.as_str() });
    }
    let options = match base.with_row(&row) {
        Ok(o) => o,
        Err(e) => return json!({ "error": e }),
    };
    match template.render(&messages, &options) {
        Ok(r) => {
            let mut out = Map::new();
            out.insert("text".into(), Value::String(r.text));
            Value::Object(out)
        }
        Err(e) => json!({ "error": e.message }),
    }
}

const FIRST_ERRORS_KEPT: usize = 5;

pub fn render(job: &RenderJob) -> Result<RenderSummary, WriteError> {
    let started = Instant::now();
    pipeline::refuse_overwriting_inputs(
        &job.inputs,
        std::slice::from_ref(&job.output),
        &job.output,
    )?;
    let mut writer = DatasetWriter::create_as(&job.output, OutputFormat::JsonLines)?;
    let mut summary = RenderSummary {
        rows: 0,
        rendered: 0,
        errors: 0,
        unreadable_files: Vec::new(),
        output_written: false,
        rows_not_read: 0,
        first_errors: Vec::new(),
        seconds: 0.0,
    };
    let mut failure = None;
    let mut file_rows = vec![0u64; job.inputs.len()];
    let mut lost_rows = false;
    pipeline::run(
        &job.inputs,
        &job.read,
        &job.progress,
        |batch, raw| {
            let row = parse_row(batch, raw).map_err(|p| p.message);
            render_one(&job.template, &job.options, row)
        },
        |file, event| {
            if failure.is_some() {
                return;
            }
            match event {
                FileEvent::Opened(_) => {}
                FileEvent::Row(raw, line) => {
                    summary.rows += 1;
                    file_rows[file] += 1;
                    if let Some(e) = line.get("error").and_then(Value::as_str) {
                        summary.errors += 1;
                        if summary.first_errors.len() < FIRST_ERRORS_KEPT {
                            summary.first_errors.push((
                                pipeline::row_location(&job.inputs[file], raw),
                                e.to_string(),
                            ));
                        }
                    } else {
                        summary.rendered += 1;
                    }
                    if let Err(e) = writer.write(&line) {
                        failure = Some(e);
                    }
                }
                FileEvent::Failed(e) => {
                    let unread = pipeline::UnreadFile::of(&job.inputs[file], file_rows[file], &e);
                    lost_rows |= unread.lost_rows;
                    summary.rows_not_read += unread.rows_not_read;
                    summary
                        .unreadable_files
                        .push((job.inputs[file].display.clone(), unread.reason))
                }
            }
        },
    );
    if let Some(e) = failure {
        return Err(e);
    }
    if lost_rows {
        // Dropping the writer removes its temporary file: no output that looks complete.
        drop(writer);
    } else {
        writer.finish()?;
        summary.output_written = true;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

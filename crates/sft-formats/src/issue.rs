//! Problems found in a dataset: a stable code, a severity, where, and what to do.

use std::borrow::Cow;
use std::fmt;

/// How bad a problem is. Errors make `check` exit 1; warnings only with `--strict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! issue_codes {
    ($( $variant:ident => ($code:literal, $severity:ident, $hint:literal), )*) => {
        /// Every kind of problem `check` reports. The string codes are stable: batch jobs
        /// and the JSON report match on them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum IssueCode { $( $variant, )* }

        impl IssueCode {
            pub const ALL: &'static [IssueCode] = &[ $( IssueCode::$variant, )* ];

            /// The stable snake_case code, as written in reports.
            pub fn as_str(self) -> &'static str {
                match self { $( IssueCode::$variant => $code, )* }
            }

            pub fn severity(self) -> Severity {
                match self { $( IssueCode::$variant => Severity::$severity, )* }
            }

            /// What to do about it, in one line, when the issue has no more specific hint.
            pub fn default_hint(self) -> &'static str {
                match self { $( IssueCode::$variant => $hint, )* }
            }

            pub fn from_code(code: &str) -> Option<IssueCode> {
                match code { $( $code => Some(IssueCode::$variant), )* _ => None }
            }
        }
    };
}

issue_codes! {
    // Files that cannot be read as data at all.
    EmptyFile => ("empty_file", Error, "the file has no rows; check that the export or download finished"),
    LfsPointer => ("lfs_pointer", Error, "this is a Git LFS pointer, not the data: run `git lfs pull` in the dataset repository"),
    BinaryFile => ("binary_file", Error, "the file is binary but not Parquet or Arrow; pass a .jsonl, .json, .parquet or .arrow file"),
    UnreadableFile => ("unreadable_file", Error, "the file could not be read; check the path, its permissions and that it is not truncated"),
    // One row that cannot be parsed.
    InvalidJson => ("invalid_json", Error, "fix the JSON on this line; each line of a JSON lines file must be one complete JSON object"),
    InvalidUtf8 => ("invalid_utf8", Error, "the text is not UTF-8; re-encode the file (e.g. `iconv -f latin1 -t utf-8`)"),
    NotAnObject => ("not_an_object", Error, "each row must be a JSON object such as {\"messages\": [...]}"),
    // Rows that parse but are not one of the four formats.
    UnrecognizedRow => ("unrecognized_row", Error, "expected `text`, `messages`, or `prompt` + `completion`; map your columns with `sft-data convert --from columns --map prompt=COL --map completion=COL`"),
    NeedsConversion => ("needs_conversion", Error, "this shape is not one of the four SFT formats: run `sft-data convert` on it"),
    MixedFormats => ("mixed_formats", Error, "a dataset must use one format; split the files or convert them to one format with `sft-data convert`"),
    FormatMismatch => ("format_mismatch", Error, "the row is not in the format given with --format; check the flag or the data"),
    MissingField => ("missing_field", Error, "add the missing field, or convert the data with `sft-data convert`"),
    WrongType => ("wrong_type", Error, "the field has the wrong JSON type; see the four formats in the README"),
    // Conversations.
    EmptyMessages => ("empty_messages", Error, "a conversation needs at least one user and one assistant turn; drop the row or fill it"),
    MissingRole => ("missing_role", Error, "every message needs a `role` (system, user, assistant or tool)"),
    UnknownRole => ("unknown_role", Error, "roles are system, developer, user, assistant and tool"),
    MissingContent => ("missing_content", Error, "every message needs `content` (an assistant turn may instead carry `tool_calls`)"),
    SystemNotFirst => ("system_not_first", Warning, "most chat templates only honour a system message as the first turn; move it to the start"),
    NoUserTurn => ("no_user_turn", Warning, "the assistant answers nothing: add the user turn it replies to"),
    NoAssistantTurn => ("no_assistant_turn", Error, "nothing to learn: the conversation has no assistant turn"),
    NotEndingWithAssistant => ("not_ending_with_assistant", Warning, "turns after the last assistant reply teach nothing; trim them or add the reply"),
    ConsecutiveSameRole => ("consecutive_same_role", Warning, "many chat templates require roles to alternate; merge the two turns"),
    EmptyTarget => ("empty_target", Error, "the text the model should learn is empty or only whitespace; drop the row or fill it"),
    RepetitiveContent => ("repetitive_content", Warning, "text that loops teaches the model to loop; fix or drop the row"),
    LiteralSpecialToken => ("literal_special_token", Warning, "the trainer adds the end-of-sequence token itself; strip the literal token from the text"),
    EmptyContent => ("empty_content", Warning, "an empty turn is usually an export bug; drop or fill it"),
    MalformedToolCalls => ("malformed_tool_calls", Error, "tool_calls must be a list of {\"type\": \"function\", \"function\": {\"name\": str, \"arguments\": object or JSON string}}"),
    MalformedTools => ("malformed_tools", Error, "tools must be a list of JSON schemas {\"type\": \"function\", \"function\": {\"name\", \"description\", \"parameters\"}} or that list as a JSON string"),
    OrphanToolMessage => ("orphan_tool_message", Error, "a tool turn answers an assistant turn with tool_calls; add the call or drop the tool turn"),
    UnknownContentPart => ("unknown_content_part", Error, "content parts are objects with `type` text, image, image_url, audio, input_audio, video or file"),
    // Rendering with a chat template (`check --chat-template`).
    TemplateError => ("template_error", Error, "the chat template raised on this row; fix the row (often: roles that must alternate, a system turn the template rejects) or pick another template"),
    TemplateDropsToolCalls => ("template_drops_tool_calls", Error, "the chat template has no tool support: it drops or fails on tool calls, so the call would not be trained; use a template that renders them (qwen2.5, qwen3, llama3.2, smollm3 are bundled) with --chat-template"),
    RenderAwaitsAssistant => ("render_awaits_assistant", Warning, "the training text ends with the generation prompt, so the model learns to stop right there; check add_generation_prompt in chat_template_kwargs and the template"),
    PromptNotPrefix => ("prompt_not_prefix", Warning, "the prompt rendered alone is not the start of the whole render, so a completion mask taken by prefix would be wrong; the template changes earlier text when the completion follows"),
    DoubleBos => ("double_bos", Warning, "the text (or template) already starts with BOS and the tokenizer adds another; drop one of them"),
    NoChatTemplate => ("no_chat_template", Error, "conversational rows need a chat template: pass --chat-template NAME|PATH, or use a tokenizer folder that has one"),
    // Dataset-level findings.
    TooFewExamples => ("too_few_examples", Warning, "SFT usually needs at least 1,000 examples; add data or expect the model to memorise"),
    BelowRecommendedSize => ("below_recommended_size", Warning, "10,000 or more examples are recommended for robust SFT"),
    DuplicateRow => ("duplicate_row", Warning, "exact duplicates weigh those examples twice; deduplicate the data"),
    LongOutlier => ("long_outlier", Warning, "far longer than the rest: likely an export bug or a loop; these are truncated at max_length"),
    EvalOverlap => ("eval_overlap", Warning, "rows in both training and evaluation data make the evaluation loss meaningless; remove them from one side"),
}

impl fmt::Display for IssueCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem inside one row, before the row's location in a file is known.
#[derive(Debug, Clone, PartialEq)]
pub struct RowIssue {
    pub code: IssueCode,
    /// JSON path of the field inside the row, such as `messages[3].role`; empty for the row.
    pub path: String,
    pub message: String,
    /// A hint more specific than the code's default, when there is one.
    pub hint: Option<Cow<'static, str>>,
}

impl RowIssue {
    pub fn new(code: IssueCode, path: impl Into<String>, message: impl Into<String>) -> Self {
        RowIssue {
            code,
            path: path.into(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<Cow<'static, str>>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn severity(&self) -> Severity {
        self.code.severity()
    }

    pub fn hint(&self) -> &str {
        self.hint
            .as_deref()
            .unwrap_or_else(|| self.code.default_hint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for code in IssueCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate code {code}");
            assert_eq!(IssueCode::from_code(code.as_str()), Some(*code));
            assert!(!code.default_hint().is_empty());
        }
    }
}

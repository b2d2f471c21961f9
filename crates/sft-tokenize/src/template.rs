//! Which chat template a job renders with: the one rule every command follows.
//!
//! A template named by the user (`--chat-template` / `--chat_template_path`: a bundled name,
//! a model folder, a `.gguf` or a template file) is compiled with the tokenizer's special
//! tokens under the template source's own; without one, the tokenizer folder's own template
//! is used, with the tokenizer's special tokens over the template's. Special tokens given
//! explicitly (`--special-tokens`) override both.

use sft_template::{ChatTemplate, Clock, SpecialTokens, TemplateSource};

use crate::SftTokenizer;

/// A template as the user asked for it.
#[derive(Debug, Clone, Default)]
pub struct TemplateChoice {
    /// A bundled name, a model folder, a `.gguf` file or a template file; `None`: the
    /// tokenizer folder's own.
    pub spec: Option<String>,
    /// Which of several named templates in `tokenizer_config.json` (such as `tool_use`).
    pub variant: Option<String>,
    /// Special tokens that override every other source's.
    pub special_tokens: Option<SpecialTokens>,
    /// The clock `strftime_now` reads.
    pub clock: Clock,
}

impl TemplateChoice {
    /// The template named by `spec`, with the defaults for the rest.
    pub fn named(spec: Option<&str>) -> TemplateChoice {
        TemplateChoice {
            spec: spec.map(str::to_string),
            ..TemplateChoice::default()
        }
    }
}

/// The template to render with, `Ok(None)` when nothing names one and the tokenizer folder
/// has none. Errors say what could not be found or compiled.
pub fn chat_template(
    tokenizer: Option<&SftTokenizer>,
    choice: &TemplateChoice,
) -> Result<Option<ChatTemplate>, String> {
    let (name, source, mut tokens) = match &choice.spec {
        Some(spec) => {
            let source = TemplateSource::resolve(spec, choice.variant.as_deref())
                .map_err(|e| format!("{e}\n  hint: a chat template is a bundled name, a model folder, a .gguf file or a template file"))?;
            let mut tokens = tokenizer.map(|t| t.special.clone()).unwrap_or_default();
            tokens.merge(&source.special_tokens);
            (source.name, source.source, tokens)
        }
        None => {
            let Some(source) = tokenizer.and_then(|t| t.template.as_ref()) else {
                return Ok(None);
            };
            let mut tokens = source.special_tokens.clone();
            if let Some(t) = tokenizer {
                tokens.merge(&t.special);
            }
            (source.name.clone(), source.source.clone(), tokens)
        }
    };
    if let Some(extra) = &choice.special_tokens {
        tokens.merge(extra);
    }
    ChatTemplate::with_clock(&name, &source, tokens, choice.clock)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// The tokens that end a turn or a sequence: the tokenizer's EOS, and the template's
/// end-of-turn token (the last special token of a rendered assistant turn, such as
/// `<|im_end|>` or `<|eot_id|>`). Training must teach them; generation stops at them.
pub fn stop_token_ids(tokenizer: &SftTokenizer, template: Option<&ChatTemplate>) -> Vec<u32> {
    let mut ids: Vec<u32> = tokenizer.eos.iter().map(|t| t.id).collect();
    if let Some(eot) = template.and_then(|t| end_of_turn_id(tokenizer, t)) {
        if !ids.contains(&eot) {
            ids.push(eot);
        }
    }
    ids
}

fn end_of_turn_id(tok: &SftTokenizer, template: &ChatTemplate) -> Option<u32> {
    let messages = [
        serde_json::json!({"role": "user", "content": "ping"}),
        serde_json::json!({"role": "assistant", "content": "pong"}),
    ];
    let spans = template
        .assistant_spans(&messages, &sft_template::RenderOptions::training())
        .ok()?;
    let span = spans.spans.last()?;
    let ids = tok.encode(&spans.text[span.range.clone()], false).ok()?;
    ids.into_iter().rev().find(|&id| tok.is_special(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn tokenizer() -> SftTokenizer {
        SftTokenizer::from_path(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../data-samples/models/smollm2-135m-instruct-tokenizer"
        )))
        .unwrap()
    }

    #[test]
    fn the_tokenizer_folder_template_is_the_default_and_a_named_one_wins() {
        let tok = tokenizer();
        let own = chat_template(Some(&tok), &TemplateChoice::default())
            .unwrap()
            .unwrap();
        assert_eq!(own.fingerprint().len(), 16);
        let named = chat_template(Some(&tok), &TemplateChoice::named(Some("qwen3")))
            .unwrap()
            .unwrap();
        assert_ne!(named.fingerprint(), own.fingerprint());
        assert!(chat_template(None, &TemplateChoice::default())
            .unwrap()
            .is_none());
        let err = chat_template(Some(&tok), &TemplateChoice::named(Some("no-such-template")))
            .unwrap_err();
        assert!(
            err.contains("no-such-template") && err.contains("hint"),
            "{err}"
        );
    }
}

/// The template flags of a data command as given: `--chat-template`,
/// `--chat-template-name`, `--special-tokens`, `--template-kwargs` and `--now`.
#[derive(Debug, Clone, Default)]
pub struct TemplateFlags {
    pub chat_template: Option<String>,
    pub chat_template_name: Option<String>,
    pub special_tokens: Option<std::path::PathBuf>,
    pub template_kwargs: Option<String>,
    pub now: Option<String>,
}

impl TemplateFlags {
    /// The template (`--chat-template`, else the tokenizer folder's own when a tokenizer
    /// is given) and the options every row starts from; `Ok(None)` when there is none.
    pub fn load(
        &self,
        tokenizer: Option<&SftTokenizer>,
    ) -> Result<Option<(ChatTemplate, sft_template::RenderOptions)>, String> {
        if self.chat_template.is_none() {
            for (set, flag) in [
                (self.chat_template_name.is_some(), "--chat-template-name"),
                (self.special_tokens.is_some(), "--special-tokens"),
                (self.template_kwargs.is_some(), "--template-kwargs"),
                (self.now.is_some(), "--now"),
            ] {
                if set {
                    return Err(format!("{flag} needs --chat-template"));
                }
            }
        }
        let special_tokens = match &self.special_tokens {
            None => None,
            Some(path) => Some(SpecialTokens::from_file(path)?),
        };
        let clock = match &self.now {
            None => Clock::System,
            Some(text) => Clock::Fixed(
                sft_template::NaiveDateTime::parse(text).map_err(|e| format!("--now {e}"))?,
            ),
        };
        let choice = TemplateChoice {
            spec: self.chat_template.clone(),
            variant: self.chat_template_name.clone(),
            special_tokens,
            clock,
        };
        let Some(template) = chat_template(tokenizer, &choice)? else {
            return Ok(None);
        };
        let mut options = sft_template::RenderOptions::default();
        if let Some(text) = &self.template_kwargs {
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(serde_json::Value::Object(map)) => options.kwargs = map,
                _ => return Err(format!("--template-kwargs {text}: expected a JSON object such as '{{\"enable_thinking\": false}}'")),
            }
        }
        Ok(Some((template, options)))
    }

    /// The files the flags name (a template file or folder, the special tokens): what a
    /// job that renders with them reads.
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        let mut paths: Vec<std::path::PathBuf> = self
            .chat_template
            .iter()
            .map(std::path::PathBuf::from)
            .filter(|p| p.exists())
            .collect();
        paths.extend(self.special_tokens.iter().cloned());
        paths
    }
}

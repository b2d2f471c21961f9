//! Where templates and their special tokens come from: the bundled `templates/` folder (by
//! name), a model folder (`chat_template.jinja`, or `chat_template` in
//! `tokenizer_config.json`, a string or a list of named templates), a GGUF file's
//! `tokenizer.chat_template`, or a template file.

use std::path::Path;

use serde_json::Value;

use crate::TemplateError;

/// The special tokens a template may refer to (`bos_token`, `eos_token`, ...), in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpecialTokens(Vec<(String, String)>);

impl SpecialTokens {
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut tokens = SpecialTokens::default();
        for (k, v) in pairs {
            tokens.set(&k, v);
        }
        tokens
    }

    pub fn iter(&self) -> impl Iterator<Item = &(String, String)> {
        self.0.iter()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, name: &str, value: String) {
        match self.0.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    /// Reads a JSON file of special tokens (`{"eos_token": "</s>", ...}`, as
    /// `special_tokens_map.json`); errors name the file.
    pub fn from_file(path: &Path) -> Result<SpecialTokens, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: invalid JSON: {e}", path.display()))?;
        if !value.is_object() {
            return Err(format!(
                "{}: expected a JSON object such as {{\"eos_token\": \"</s>\"}}",
                path.display()
            ));
        }
        Ok(SpecialTokens::from_json(&value))
    }

    /// Reads `*_token` entries of a JSON object: strings, or `{"content": ...}` objects as
    /// transformers 4 writes them. Other keys are ignored.
    pub fn from_json(value: &Value) -> SpecialTokens {
        let mut tokens = SpecialTokens::default();
        if let Some(obj) = value.as_object() {
            for (k, v) in obj {
                if !k.ends_with("_token") {
                    continue;
                }
                let text = match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(o) => o.get("content").and_then(Value::as_str).map(String::from),
                    _ => None,
                };
                if let Some(text) = text {
                    tokens.set(k, text);
                }
            }
        }
        tokens
    }

    /// Entries of `other` replace or extend these.
    pub fn merge(&mut self, other: &SpecialTokens) {
        for (k, v) in other.iter() {
            self.set(k, v.clone());
        }
    }
}

/// A template's text with its origin.
#[derive(Debug, Clone)]
pub struct TemplateSource {
    /// Where it came from, for messages: a bundled name or a path.
    pub name: String,
    pub source: String,
    pub special_tokens: SpecialTokens,
}

macro_rules! bundled_templates {
    ($( $name:literal => $file:literal ),* $(,)?) => {
        /// Names of the templates shipped in `templates/`.
        pub const BUNDLED: &[&str] = &[$($name),*];
        fn bundled_source(name: &str) -> Option<&'static str> {
            match name {
                $( $name => Some(include_str!(concat!("../../../templates/", $file))), )*
                _ => None,
            }
        }
    };
}

bundled_templates! {
    "chatml" => "chatml_openhermes.jinja",
    "smollm2" => "smollm2.jinja",
    "smollm3" => "smollm3.jinja",
    "llama3" => "llama3_instruct.jinja",
    "llama3.2" => "llama3_2_instruct.jinja",
    "qwen2.5" => "qwen2_5_instruct.jinja",
    "qwen3" => "qwen3.jinja",
    "mistral" => "mistral_7b_instruct_v0_1.jinja",
    "gemma3" => "gemma3_it.jinja",
    "phi3.5" => "phi3_5_mini_instruct.jinja",
    "zephyr" => "zephyr_7b_beta.jinja",
    "deepseek-r1" => "deepseek_r1_distill_qwen.jinja",
}

const BUNDLED_TOKENS: &str = include_str!("../../../templates/special_tokens.json");

/// Other names people use for the bundled templates.
fn canonical_name(name: &str) -> &str {
    match name.to_ascii_lowercase().replace('_', "-").as_str() {
        "chatml-openhermes" | "openhermes" => "chatml",
        "llama3-instruct" | "llama-3" | "llama3.1" => "llama3",
        "llama3-2-instruct" | "llama3-2" | "llama-3.2" => "llama3.2",
        "qwen2-5-instruct" | "qwen2-5" | "qwen2.5-instruct" | "qwen2" => "qwen2.5",
        "mistral-7b-instruct-v0-1" | "mistral-instruct" => "mistral",
        "gemma" | "gemma3-it" | "gemma-3" => "gemma3",
        "phi3" | "phi-3" | "phi3-5-mini-instruct" | "phi3-5" => "phi3.5",
        "zephyr-7b-beta" => "zephyr",
        "deepseek-r1-distill-qwen" | "deepseek" => "deepseek-r1",
        _ => name,
    }
}

/// The file stem of a bundled template, the key of its tokens in special_tokens.json.
fn bundled_file_stem(name: &str) -> Option<&'static str> {
    Some(match name {
        "chatml" => "chatml_openhermes",
        "smollm2" => "smollm2",
        "smollm3" => "smollm3",
        "llama3" => "llama3_instruct",
        "llama3.2" => "llama3_2_instruct",
        "qwen2.5" => "qwen2_5_instruct",
        "qwen3" => "qwen3",
        "mistral" => "mistral_7b_instruct_v0_1",
        "gemma3" => "gemma3_it",
        "phi3.5" => "phi3_5_mini_instruct",
        "zephyr" => "zephyr_7b_beta",
        "deepseek-r1" => "deepseek_r1_distill_qwen",
        _ => return None,
    })
}

/// A bundled template with the special tokens of the model it comes from.
pub fn bundled(name: &str) -> Result<(String, &'static str, SpecialTokens), TemplateError> {
    let canonical = canonical_name(name).to_string();
    let canonical = if bundled_source(&canonical).is_some() {
        canonical
    } else {
        name.to_string()
    };
    let source = bundled_source(&canonical).ok_or_else(|| {
        TemplateError::new(format!(
            "no bundled chat template named `{name}`; bundled: {}",
            BUNDLED.join(", ")
        ))
    })?;
    let all: Value =
        serde_json::from_str(BUNDLED_TOKENS).expect("bundled special_tokens.json is valid");
    let tokens = bundled_file_stem(&canonical)
        .and_then(|stem| all.get(stem))
        .map(SpecialTokens::from_json)
        .unwrap_or_default();
    Ok((canonical, source, tokens))
}

fn read_json(path: &Path) -> Result<Value, TemplateError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| TemplateError::new(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| TemplateError::new(format!("{}: invalid JSON: {e}", path.display())))
}

impl TemplateSource {
    /// Finds a template from what a person typed: a model folder, a `.gguf` file, a
    /// template file, or a bundled name. `variant` picks one of several named templates in
    /// a `tokenizer_config.json` (such as `tool_use`); the default is `default`.
    pub fn resolve(spec: &str, variant: Option<&str>) -> Result<TemplateSource, TemplateError> {
        let path = Path::new(spec);
        if path.is_dir() {
            return Self::from_model_dir(path, variant);
        }
        if path.is_file() {
            if spec.to_ascii_lowercase().ends_with(".gguf") {
                return crate::source::gguf::template_from_gguf(path);
            }
            let source = std::fs::read_to_string(path)
                .map_err(|e| TemplateError::new(format!("{spec}: {e}")))?;
            return Ok(TemplateSource {
                name: spec.to_string(),
                source,
                special_tokens: SpecialTokens::default(),
            });
        }
        match bundled(spec) {
            Ok((name, source, special_tokens)) => Ok(TemplateSource {
                name,
                source: source.to_string(),
                special_tokens,
            }),
            Err(_) => Err(TemplateError::new(format!(
                "`{spec}` is not a file, a model folder or a bundled template; bundled: {}",
                BUNDLED.join(", ")
            ))),
        }
    }

    /// A Hugging Face model folder, in the transformers 5 layout (`chat_template.jinja`) or
    /// the transformers 4 one (`chat_template` in `tokenizer_config.json`).
    pub fn from_model_dir(
        dir: &Path,
        variant: Option<&str>,
    ) -> Result<TemplateSource, TemplateError> {
        let config_path = dir.join("tokenizer_config.json");
        let config = if config_path.is_file() {
            Some(read_json(&config_path)?)
        } else {
            None
        };
        let mut special_tokens = SpecialTokens::default();
        let map_path = dir.join("special_tokens_map.json");
        if map_path.is_file() {
            special_tokens.merge(&SpecialTokens::from_json(&read_json(&map_path)?));
        }
        if let Some(config) = &config {
            special_tokens.merge(&SpecialTokens::from_json(config));
        }
        let jinja = dir.join("chat_template.jinja");
        let (name, source) = if jinja.is_file() && variant.is_none_or(|v| v == "default") {
            let source = std::fs::read_to_string(&jinja)
                .map_err(|e| TemplateError::new(format!("{}: {e}", jinja.display())))?;
            (jinja.display().to_string(), source)
        } else if let Some(v) = variant.filter(|_| dir.join("additional_chat_templates").is_dir()) {
            let file = dir
                .join("additional_chat_templates")
                .join(format!("{v}.jinja"));
            let source = std::fs::read_to_string(&file)
                .map_err(|e| TemplateError::new(format!("{}: {e}", file.display())))?;
            (file.display().to_string(), source)
        } else {
            let template = config.as_ref().and_then(|c| c.get("chat_template")).ok_or_else(|| {
                TemplateError::new(format!(
                    "{} has no chat template (no chat_template.jinja, no `chat_template` in tokenizer_config.json); pass one with --chat-template NAME|FILE",
                    dir.display()
                ))
            })?;
            let wanted = variant.unwrap_or("default");
            let source = match template {
                Value::String(s) => s.clone(),
                Value::Array(list) => {
                    let names: Vec<&str> = list
                        .iter()
                        .filter_map(|t| t.get("name").and_then(Value::as_str))
                        .collect();
                    list.iter()
                        .find(|t| t.get("name").and_then(Value::as_str) == Some(wanted))
                        .and_then(|t| t.get("template"))
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            TemplateError::new(format!(
                                "{} has no chat template named `{wanted}`; it has {}",
                                config_path.display(),
                                names.join(", ")
                            ))
                        })?
                        .to_string()
                }
                _ => {
                    return Err(TemplateError::new(format!(
                        "{}: `chat_template` is neither a string nor a list of named templates",
                        config_path.display()
                    )))
                }
            };
            (format!("{}#{wanted}", config_path.display()), source)
        };
        Ok(TemplateSource {
            name,
            source,
            special_tokens,
        })
    }
}

pub mod gguf;

//! The tokenizer as llama.cpp reads it from a GGUF file: a byte-level BPE (`gpt2`)
//! vocabulary with token types and merges, the pre-tokenizer's llama.cpp name, the special
//! token ids, whether BOS/EOS are added, and the chat template, all taken from the model
//! folder's `tokenizer.json`, `tokenizer_config.json`, `config.json` and chat template.
//!
//! llama.cpp does not run the Hugging Face pre-tokenizer; it picks its own implementation
//! by name (`tokenizer.ggml.pre`). Its converter names the pre-tokenizer by encoding a
//! fixed text and hashing the token ids; the same is done here, and the hash looked up in
//! the fingerprints of the families the trainer handles.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::format::MetaValue;
use crate::GgufError;

/// The text llama.cpp's converter (`get_vocab_base_pre`) encodes to tell pre-tokenizers
/// apart: whitespace runs, emoji, digits of every length, several scripts, contractions.
const FINGERPRINT_TEXT: &str = "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\u{1f680} (normal) \u{1f636}\u{200d}\u{1f32b}\u{fe0f} (multiple emojis concatenated) \u{2705} \u{1f999}\u{1f999} 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 \u{1780}\u{17b6}\u{1793}\u{17cb}\u{178f}\u{17c2}\u{1796}\u{17b7}\u{179f}\u{17c1}\u{179f}\u{17a2}\u{17b6}\u{1785}\u{1f601} ?\u{6211}\u{60f3}\u{5728}apple\u{5de5}\u{4f5c}1314151\u{5929}\u{ff5e} ------======= \u{43d}\u{435}\u{449}\u{43e} \u{43d}\u{430} \u{411}\u{44a}\u{43b}\u{433}\u{430}\u{440}\u{441}\u{43a}\u{438} ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL";

/// sha256 of the token ids of [`FINGERPRINT_TEXT`] (as Python prints the list) -> the
/// name llama.cpp gives that pre-tokenizer, for the tokenizer families the trainer handles
/// (the values are those of llama.cpp's converter and `convert_hf_to_gguf_update.py`).
const KNOWN_PRE_TOKENIZERS: &[(&str, &str)] = &[
    // HuggingFaceTB/SmolLM-135M, SmolLM2.
    (
        "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249",
        "smollm",
    ),
    // meta-llama/Meta-Llama-3-8B (Llama 3, 3.1, 3.2).
    (
        "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5",
        "llama-bpe",
    ),
    // Qwen/Qwen1.5-7B (Qwen1.5, Qwen2, Qwen2.5, Qwen3).
    (
        "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea",
        "qwen2",
    ),
    // Qwen/Qwen3-Embedding-0.6B.
    (
        "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c",
        "qwen2",
    ),
    // openai-community/gpt2.
    (
        "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454",
        "gpt-2",
    ),
];

/// llama.cpp's token types (`llama_token_type`).
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

/// The tokenizer of a model folder, ready to be written.
#[derive(Debug, Clone)]
pub(crate) struct GgufTokenizer {
    /// The `tokenizer.*` keys, in the order written.
    pub metadata: Vec<(String, MetaValue)>,
    /// Token texts by id (for the Modelfile's stop words).
    pub tokens: Vec<String>,
    pub eos_id: Option<u32>,
    pub chat_template: Option<String>,
}

/// The pre-tokenizer fingerprint of a `tokenizer.json`, and llama.cpp's name for it when
/// known.
pub fn pre_tokenizer_fingerprint(
    tokenizer_json: &Path,
) -> Result<(String, Option<&'static str>), GgufError> {
    let tokenizer = tokenizers::Tokenizer::from_file(tokenizer_json).map_err(|e| {
        GgufError::model(
            tokenizer_json,
            format!("the tokenizers library cannot load it: {e}"),
            "save the tokenizer again with transformers",
        )
    })?;
    let encoding = tokenizer.encode(FINGERPRINT_TEXT, true).map_err(|e| {
        GgufError::model(
            tokenizer_json,
            format!("cannot encode the pre-tokenizer fingerprint text: {e}"),
            "",
        )
    })?;
    let ids: Vec<String> = encoding.get_ids().iter().map(|i| i.to_string()).collect();
    let hash = format!(
        "{:x}",
        Sha256::digest(format!("[{}]", ids.join(", ")).as_bytes())
    );
    let name = KNOWN_PRE_TOKENIZERS
        .iter()
        .find(|(h, _)| *h == hash)
        .map(|(_, n)| *n);
    Ok((hash, name))
}

fn read_json(path: &Path) -> Result<Option<Map<String, Value>>, GgufError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| GgufError::io(path, e))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(GgufError::model(path, "is not a JSON object", "")),
        Err(e) => Err(GgufError::model(
            path,
            format!("not valid JSON: {e}"),
            "fix or regenerate the file",
        )),
    }
}

/// Whether an added token's text marks it as a control token even when
/// `tokenizer.json` does not say `special` (the converter's `does_token_look_special`).
fn looks_special(token: &str) -> bool {
    matches!(token, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (token.starts_with("<|") && token.ends_with("|>"))
        || (token.starts_with("<\u{ff5c}") && token.ends_with("\u{ff5c}>"))
        || (token.starts_with("<unused") && token.ends_with('>'))
}

/// The content of a `tokenizer_config.json` token entry: a string or `{"content": ...}`.
fn token_content(entry: Option<&Value>) -> Option<&str> {
    match entry? {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get("content").and_then(Value::as_str),
        _ => None,
    }
}

/// Reads the tokenizer of `dir` for a model of `vocab_size` ids. `pre_override` names the
/// pre-tokenizer when its fingerprint is not known. `space_prefix_key`: the llama family
/// converter also writes `add_prefix_space` from `tokenizer_config.json`.
pub(crate) fn read_tokenizer(
    dir: &Path,
    config: &Map<String, Value>,
    vocab_size: usize,
    pre_override: Option<&str>,
    space_prefix_key: bool,
) -> Result<GgufTokenizer, GgufError> {
    let tokenizer_path = dir.join("tokenizer.json");
    let Some(tokenizer) = read_json(&tokenizer_path)? else {
        return Err(GgufError::model(
            &tokenizer_path,
            "missing",
            "a GGUF file carries the tokenizer; the model folder needs the tokenizer.json transformers saves",
        ));
    };
    let config_path = dir.join("tokenizer_config.json");
    let tokenizer_config = read_json(&config_path)?.unwrap_or_default();
    let model = tokenizer.get("model").and_then(Value::as_object);
    let model_type = model.and_then(|m| m.get("type")).and_then(Value::as_str);
    let byte_level = |v: Option<&Value>| -> bool {
        let Some(v) = v else { return false };
        match v.get("type").and_then(Value::as_str) {
            Some("ByteLevel") => true,
            Some("Sequence") => v
                .get("pretokenizers")
                .and_then(Value::as_array)
                .is_some_and(|a| {
                    a.iter()
                        .any(|p| p.get("type").and_then(Value::as_str) == Some("ByteLevel"))
                }),
            _ => false,
        }
    };
    if model_type != Some("BPE") || !byte_level(tokenizer.get("pre_tokenizer")) {
        return Err(GgufError::unsupported(
            &tokenizer_path,
            format!(
                "a {} tokenizer{}: only byte-level BPE tokenizers (GGUF \"gpt2\": SmolLM, Llama 3, Qwen) are exported",
                model_type.unwrap_or("(no model type)"),
                if model_type == Some("BPE") { " without a ByteLevel pre-tokenizer" } else { "" }
            ),
            "SentencePiece tokenizers (Llama 2, Mistral v0.1-0.3) are not supported yet",
        ));
    }
    let model = model.expect("checked above");

    let pre = match pre_override {
        Some(name) => name.to_string(),
        None => {
            let (hash, name) = pre_tokenizer_fingerprint(&tokenizer_path)?;
            match name {
                Some(n) => n.to_string(),
                None => {
                    return Err(GgufError::unsupported(
                        &tokenizer_path,
                        format!("its pre-tokenizer is not one llama.cpp is known to implement (fingerprint {hash})"),
                        "if you know which llama.cpp pre-tokenizer it is (tokenizer.ggml.pre: smollm, llama-bpe, qwen2, ...), name it with the tokenizer_pre option",
                    ))
                }
            }
        }
    };

    // Ids -> texts, from the model's vocabulary and the added tokens.
    let mut by_id: BTreeMap<u64, String> = BTreeMap::new();
    if let Some(vocab) = model.get("vocab").and_then(Value::as_object) {
        for (token, id) in vocab {
            if let Some(id) = id.as_u64() {
                by_id.insert(id, token.clone());
            }
        }
    }
    let added = tokenizer
        .get("added_tokens")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // content -> (id, special)
    let mut added_by_content: HashMap<String, (u64, bool)> = HashMap::new();
    for entry in &added {
        let (Some(id), Some(content)) = (
            entry.get("id").and_then(Value::as_u64),
            entry.get("content").and_then(Value::as_str),
        ) else {
            continue;
        };
        let special = entry
            .get("special")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        by_id.insert(id, content.to_string());
        added_by_content
            .entry(content.to_string())
            .or_insert((id, special));
    }
    if let Some((&max, token)) = by_id.last_key_value() {
        if max as usize >= vocab_size {
            return Err(GgufError::model(
                &tokenizer_path,
                format!("token {token:?} has id {max}, but config.json has vocab_size {vocab_size}"),
                "the tokenizer and the model do not match; resize the model's embeddings to the tokenizer",
            ));
        }
    }
    let mut tokens = Vec::with_capacity(vocab_size);
    let mut types = Vec::with_capacity(vocab_size);
    for id in 0..vocab_size as u64 {
        match by_id.get(&id) {
            None => {
                tokens.push(format!("[PAD{id}]"));
                types.push(UNUSED);
            }
            Some(token) => match added_by_content.get(token) {
                Some(&(_, special)) if special || looks_special(token) => {
                    tokens.push(token.clone());
                    types.push(CONTROL);
                }
                Some(_) => {
                    tokens.push(token.replace('\u{2581}', " "));
                    types.push(USER_DEFINED);
                }
                None => {
                    tokens.push(token.clone());
                    types.push(NORMAL);
                }
            },
        }
    }

    let merges = match model.get("merges").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .map(|m| match m {
                Value::String(s) => Ok(s.clone()),
                // transformers >= 4.45 writes pairs, whose parts may hold spaces; llama.cpp
                // reads "a b" strings, so a space inside a part is written as U+0120.
                Value::Array(pair) if pair.len() == 2 => {
                    let part = |v: &Value| v.as_str().map(|s| s.replace(' ', "\u{120}"));
                    match (part(&pair[0]), part(&pair[1])) {
                        (Some(a), Some(b)) => Ok(format!("{a} {b}")),
                        _ => Err(()),
                    }
                }
                _ => Err(()),
            })
            .collect::<Result<Vec<String>, ()>>()
            .map_err(|_| {
                GgufError::model(
                    &tokenizer_path,
                    "model.merges holds an entry that is neither \"a b\" nor [\"a\", \"b\"]",
                    "",
                )
            })?,
        None => Vec::new(),
    };
    if merges.is_empty() {
        return Err(GgufError::model(
            &tokenizer_path,
            "the BPE model has no merges",
            "llama.cpp cannot load a byte-level BPE vocabulary without merges",
        ));
    }

    // Special token ids: tokenizer_config.json's tokens (looked up among the added tokens),
    // then config.json's *_token_id, as the converter's SpecialVocab does.
    let kinds = [
        ("bos", "bos_token_id"),
        ("eos", "eos_token_id"),
        ("unk", "unknown_token_id"),
        ("sep", "seperator_token_id"),
        ("pad", "padding_token_id"),
        ("mask", "mask_token_id"),
    ];
    let mut special_ids: BTreeMap<&str, u64> = BTreeMap::new();
    for (kind, _) in kinds {
        let from_tokenizer = token_content(tokenizer_config.get(&format!("{kind}_token")))
            .and_then(|content| {
                added
                    .iter()
                    .find(|a| a.get("content").and_then(Value::as_str) == Some(content))
                    .and_then(|a| a.get("id").and_then(Value::as_u64))
            });
        let from_config = config
            .get(&format!("{kind}_token_id"))
            .and_then(Value::as_u64);
        if let Some(id) = from_tokenizer.or(from_config) {
            if id as usize >= vocab_size {
                return Err(GgufError::model(
                    &config_path,
                    format!("the {kind} token has id {id}, outside the vocabulary of {vocab_size}"),
                    "fix the token id in config.json or tokenizer_config.json",
                ));
            }
            special_ids.insert(kind, id);
        }
    }

    let (add_bos, add_eos) = added_special_tokens(&tokenizer, &tokenizer_config);

    let template = chat_template(dir, &tokenizer_config, &config_path)?;

    let mut metadata = vec![
        (
            "tokenizer.ggml.model".to_string(),
            MetaValue::Str("gpt2".into()),
        ),
        ("tokenizer.ggml.pre".to_string(), MetaValue::Str(pre)),
        (
            "tokenizer.ggml.tokens".to_string(),
            MetaValue::Array(tokens.iter().cloned().map(MetaValue::Str).collect()),
        ),
        (
            "tokenizer.ggml.token_type".to_string(),
            MetaValue::Array(types.iter().copied().map(MetaValue::I32).collect()),
        ),
        (
            "tokenizer.ggml.merges".to_string(),
            MetaValue::Array(merges.into_iter().map(MetaValue::Str).collect()),
        ),
    ];
    for (kind, key) in kinds {
        if let Some(&id) = special_ids.get(kind) {
            metadata.push((format!("tokenizer.ggml.{key}"), MetaValue::U32(id as u32)));
        }
    }
    metadata.push((
        "tokenizer.ggml.add_bos_token".into(),
        MetaValue::Bool(add_bos),
    ));
    metadata.push((
        "tokenizer.ggml.add_eos_token".into(),
        MetaValue::Bool(add_eos),
    ));
    if space_prefix_key {
        if let Some(prefix) = tokenizer_config
            .get("add_prefix_space")
            .and_then(Value::as_bool)
        {
            metadata.push((
                "tokenizer.ggml.add_space_prefix".into(),
                MetaValue::Bool(prefix),
            ));
        }
    }
    let (lowercase, strip_accents) = normalizer_flags(tokenizer.get("normalizer"));
    if let Some(v) = lowercase {
        metadata.push((
            "tokenizer.ggml.normalizer.lowercase".into(),
            MetaValue::Bool(v),
        ));
    }
    if let Some(v) = strip_accents {
        metadata.push((
            "tokenizer.ggml.normalizer.strip_accents".into(),
            MetaValue::Bool(v),
        ));
    }
    let mut chat_template_text = None;
    match template {
        Some(Template::One(text)) => {
            metadata.push((
                "tokenizer.chat_template".into(),
                MetaValue::Str(text.clone()),
            ));
            chat_template_text = Some(text);
        }
        Some(Template::Named(list)) => {
            let mut names = Vec::new();
            for (name, text) in list {
                if name == "default" {
                    metadata.push((
                        "tokenizer.chat_template".into(),
                        MetaValue::Str(text.clone()),
                    ));
                    chat_template_text = Some(text);
                } else {
                    metadata.push((
                        format!("tokenizer.chat_template.{name}"),
                        MetaValue::Str(text),
                    ));
                    names.push(MetaValue::Str(name));
                }
            }
            if !names.is_empty() {
                metadata.push(("tokenizer.chat_templates".into(), MetaValue::Array(names)));
            }
        }
        None => {}
    }
    Ok(GgufTokenizer {
        metadata,
        tokens,
        eos_id: special_ids.get("eos").map(|&id| id as u32),
        chat_template: chat_template_text,
    })
}

/// Whether the tokenizer adds BOS and EOS to a text: from its post-processor, else from
/// `add_bos_token`/`add_eos_token` in tokenizer_config.json, else not (the converter's
/// reading, with "not said" written as false so that llama.cpp's per-pre-tokenizer
/// defaults never decide it).
fn added_special_tokens(
    tokenizer: &Map<String, Value>,
    config: &Map<String, Value>,
) -> (bool, bool) {
    let bos = token_content(config.get("bos_token")).or(token_content(config.get("cls_token")));
    let eos = token_content(config.get("eos_token")).or(token_content(config.get("sep_token")));
    let (mut add_bos, mut add_eos): (Option<bool>, Option<bool>) = (None, None);
    if let Some(post) = tokenizer.get("post_processor").filter(|p| !p.is_null()) {
        let processors = match post.get("processors").and_then(Value::as_array) {
            Some(list) => list.clone(),
            None => vec![post.clone()],
        };
        for p in processors {
            match p.get("type").and_then(Value::as_str) {
                Some("ByteLevel") => {
                    add_bos.get_or_insert(false);
                    add_eos.get_or_insert(false);
                }
                Some("RobertaProcessing") => {
                    add_bos = Some(true);
                    add_eos = Some(true);
                }
                Some("TemplateProcessing") => {
                    let single = p
                        .get("single")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    if single.len() > 1 {
                        let special = |v: &Value| {
                            v.get("SpecialToken")
                                .and_then(|s| s.get("id"))
                                .and_then(Value::as_str)
                                .map(str::to_string)
                        };
                        if let Some(first) = special(&single[0]) {
                            add_bos = Some(bos.is_none() || bos == Some(first.as_str()));
                        }
                        if let Some(last) = special(&single[single.len() - 1]) {
                            add_eos = Some(eos.is_none() || eos == Some(last.as_str()));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let flag = |key: &str| config.get(key).and_then(Value::as_bool);
    (
        add_bos.or(flag("add_bos_token")).unwrap_or(false),
        add_eos.or(flag("add_eos_token")).unwrap_or(false),
    )
}

fn normalizer_flags(normalizer: Option<&Value>) -> (Option<bool>, Option<bool>) {
    let mut lowercase = None;
    let mut strip = None;
    fn walk(v: &Value, lowercase: &mut Option<bool>, strip: &mut Option<bool>) {
        match v.get("type").and_then(Value::as_str) {
            Some("Lowercase") => *lowercase = Some(true),
            Some("StripAccents") => *strip = Some(true),
            Some("BertNormalizer") => {
                if let Some(l) = v.get("lowercase").and_then(Value::as_bool) {
                    *lowercase = Some(l);
                }
                if let Some(s) = v.get("strip_accents").and_then(Value::as_bool) {
                    *strip = Some(s);
                }
            }
            Some("Sequence") => {
                for n in v
                    .get("normalizers")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    walk(n, lowercase, strip);
                }
            }
            _ => {}
        }
    }
    if let Some(n) = normalizer.filter(|n| !n.is_null()) {
        walk(n, &mut lowercase, &mut strip);
    }
    (lowercase, strip)
}

enum Template {
    One(String),
    /// `[{"name": ..., "template": ...}]`, with `default` among them.
    Named(Vec<(String, String)>),
}

/// The chat template: tokenizer_config.json's `chat_template` wins (as in the converter),
/// then `chat_template.jinja` (with `additional_chat_templates/*.jinja` as named ones),
/// then `chat_template.json`.
fn chat_template(
    dir: &Path,
    config: &Map<String, Value>,
    config_path: &Path,
) -> Result<Option<Template>, GgufError> {
    let parse = |v: &Value, path: &Path| -> Result<Option<Template>, GgufError> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(Template::One(s.clone()))),
            Value::Array(list) => {
                let mut named = Vec::new();
                for item in list {
                    match (
                        item.get("name").and_then(Value::as_str),
                        item.get("template").and_then(Value::as_str),
                    ) {
                        (Some(n), Some(t)) => named.push((n.to_string(), t.to_string())),
                        _ => {
                            return Err(GgufError::model(
                                path,
                                "chat_template list entries need \"name\" and \"template\"",
                                "",
                            ))
                        }
                    }
                }
                Ok(Some(Template::Named(named)))
            }
            _ => Err(GgufError::model(
                path,
                "chat_template is neither a string nor a list",
                "",
            )),
        }
    };
    if let Some(v) = config.get("chat_template") {
        return parse(v, config_path);
    }
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        let text = std::fs::read_to_string(&jinja).map_err(|e| GgufError::io(&jinja, e))?;
        let extra_dir = dir.join("additional_chat_templates");
        let mut extra = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&extra_dir) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "jinja") {
                    let name = p
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let t = std::fs::read_to_string(&p).map_err(|e| GgufError::io(&p, e))?;
                    extra.push((name, t));
                }
            }
        }
        if extra.is_empty() {
            return Ok(Some(Template::One(text)));
        }
        extra.sort();
        let mut named = vec![("default".to_string(), text)];
        named.extend(extra);
        return Ok(Some(Template::Named(named)));
    }
    let json = dir.join("chat_template.json");
    if let Some(map) = read_json(&json)? {
        if let Some(v) = map.get("chat_template") {
            return parse(v, &json);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smollm2_tokenizer_is_named_as_llama_cpp_names_it() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data-samples/models/tiny-llama");
        let (hash, name) = pre_tokenizer_fingerprint(&dir.join("tokenizer.json")).unwrap();
        assert_eq!(
            hash,
            "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249"
        );
        assert_eq!(name, Some("smollm"));
    }

    #[test]
    fn special_looking_tokens() {
        assert!(looks_special("<|im_end|>"));
        assert!(looks_special("<unused12>"));
        assert!(!looks_special("<s>"));
    }
}

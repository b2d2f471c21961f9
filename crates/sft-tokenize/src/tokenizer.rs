//! A Hugging Face tokenizer with what SFT needs around it: special tokens, the chat
//! template of its folder, and a fingerprint that prepared data is checked against.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sft_template::{SpecialTokens, TemplateSource};
use tokenizers::Tokenizer;

use crate::bpe::{EncoderPath, FastBpe};

#[derive(Debug, Clone)]
pub struct TokenizerError {
    pub message: String,
}

impl fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TokenizerError {}

fn err(message: impl Into<String>) -> TokenizerError {
    TokenizerError {
        message: message.into(),
    }
}

/// Start and end byte of the text a token came from.
pub type ByteSpan = (usize, usize);

/// A special token: its text and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub id: u32,
}

pub struct SftTokenizer {
    pub tokenizer: Tokenizer,
    pub path: PathBuf,
    /// Special tokens by name (`bos_token`, `eos_token`, `pad_token`, ...), as the chat
    /// template sees them.
    pub special: SpecialTokens,
    pub bos: Option<Token>,
    pub eos: Option<Token>,
    pub pad: Option<Token>,
    /// The chat template of the model folder, when it has one.
    pub template: Option<TemplateSource>,
    /// xxh3-64 of `tokenizer.json`, hex: prepared data records it.
    pub fingerprint: String,
    /// Our byte-level BPE encoder, when it covers this tokenizer exactly.
    fast: Option<FastBpe>,
    encoder: EncoderPath,
}

impl fmt::Debug for SftTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftTokenizer")
            .field("path", &self.path)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("pad", &self.pad)
            .field("encoder", &self.encoder)
            .finish()
    }
}

impl SftTokenizer {
    /// Loads a model folder (`tokenizer.json`, optional `tokenizer_config.json` and chat
    /// template) or a `tokenizer.json` file.
    pub fn from_path(path: &Path) -> Result<SftTokenizer, TokenizerError> {
        let (dir, file) = if path.is_dir() {
            (Some(path), path.join("tokenizer.json"))
        } else {
            (None, path.to_path_buf())
        };
        if !file.is_file() {
            return Err(err(format!(
                "{}: no tokenizer.json{}",
                path.display(),
                if dir.is_some() {
                    " in this folder; a model folder needs tokenizer.json (transformers' `save_pretrained` writes it)"
                } else {
                    ""
                }
            )));
        }
        let bytes = std::fs::read(&file).map_err(|e| err(format!("{}: {e}", file.display())))?;
        let tokenizer = Tokenizer::from_bytes(&bytes).map_err(|e| {
            err(format!(
                "{}: not a tokenizer.json that can be loaded: {e}",
                file.display()
            ))
        })?;
        let fingerprint = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes));
        let mut special = SpecialTokens::default();
        let mut template = None;
        if let Some(dir) = dir {
            let config_path = dir.join("tokenizer_config.json");
            if config_path.is_file() {
                let text = std::fs::read_to_string(&config_path)
                    .map_err(|e| err(format!("{}: {e}", config_path.display())))?;
                let config: Value = serde_json::from_str(&text)
                    .map_err(|e| err(format!("{}: invalid JSON: {e}", config_path.display())))?;
                special.merge(&SpecialTokens::from_json(&config));
            }
            let map_path = dir.join("special_tokens_map.json");
            if map_path.is_file() {
                if let Ok(map) = std::fs::read_to_string(&map_path)
                    .map_err(|_| ())
                    .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|_| ()))
                {
                    let mut from_map = SpecialTokens::from_json(&map);
                    from_map.merge(&special);
                    special = from_map;
                }
            }
            template = TemplateSource::from_model_dir(dir, None).ok();
        }
        let lookup = |name: &str| -> Option<Token> {
            let text = special.get(name)?.to_string();
            let id = tokenizer.token_to_id(&text)?;
            Some(Token { text, id })
        };
        let (bos, eos, pad) = (
            lookup("bos_token"),
            lookup("eos_token"),
            lookup("pad_token"),
        );
        let (fast, encoder) = choose_encoder(&tokenizer);
        Ok(SftTokenizer {
            fast,
            encoder,
            tokenizer,
            path: path.to_path_buf(),
            special,
            bos,
            eos,
            pad,
            template,
            fingerprint,
        })
    }

    /// Which encoder runs: our byte-level BPE ([`EncoderPath::Fast`]) or `tokenizers`
    /// (with the reason the fast one does not cover this tokenizer). Both give the same
    /// ids; prepared data records which one ran.
    pub fn encoder_path(&self) -> &EncoderPath {
        &self.encoder
    }

    /// Token ids of `text`; `add_special_tokens` runs the tokenizer's post-processor
    /// (which may add BOS), as `tokenizer(text)` does in Python.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        if let Some(ids) = self
            .fast
            .as_ref()
            .and_then(|f| f.encode(text, add_special_tokens, None))
        {
            return Ok(ids);
        }
        self.encode_reference(text, add_special_tokens)
    }

    /// [`SftTokenizer::encode`] by the `tokenizers` crate whatever the encoder: the
    /// reference the fast path is tested against.
    pub fn encode_reference(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        self.tokenizer
            .encode_fast(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| err(format!("tokenization failed: {e}")))
    }

    /// Token ids and the byte range of the text each token came from.
    pub fn encode_with_offsets(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<(Vec<u32>, Vec<ByteSpan>), TokenizerError> {
        if let Some(fast) = &self.fast {
            let mut offsets = Vec::new();
            if let Some(ids) = fast.encode(text, add_special_tokens, Some(&mut offsets)) {
                return Ok((ids, offsets));
            }
        }
        self.encode_with_offsets_reference(text, add_special_tokens)
    }

    /// [`SftTokenizer::encode_with_offsets`] by the `tokenizers` crate.
    pub fn encode_with_offsets_reference(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<(Vec<u32>, Vec<ByteSpan>), TokenizerError> {
        self.tokenizer
            .encode(text, add_special_tokens)
            .map(|e| (e.get_ids().to_vec(), e.get_offsets().to_vec()))
            .map_err(|e| err(format!("tokenization failed: {e}")))
    }

    pub fn token_text(&self, id: u32) -> Option<String> {
        self.tokenizer.id_to_token(id)
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.tokenizer
            .get_added_tokens_decoder()
            .get(&id)
            .is_some_and(|t| t.special)
    }

    /// Whether encoding with special tokens adds a BOS of its own (then a template or a
    /// text that starts with BOS doubles it).
    pub fn adds_bos(&self) -> bool {
        let Some(bos) = &self.bos else { return false };
        self.encode("a", true)
            .ok()
            .and_then(|ids| ids.first().copied())
            .is_some_and(|first| first == bos.id)
    }
}

/// The fast encoder when it covers `tokenizer` and `SFT_FAST_BPE` is not `0`.
fn choose_encoder(tokenizer: &Tokenizer) -> (Option<FastBpe>, EncoderPath) {
    if std::env::var("SFT_FAST_BPE").is_ok_and(|v| v == "0") {
        return (
            None,
            EncoderPath::Tokenizers {
                reason: "SFT_FAST_BPE=0".into(),
            },
        );
    }
    match FastBpe::new(tokenizer) {
        Ok(fast) => {
            let split = fast.split_name();
            (Some(fast), EncoderPath::Fast { split })
        }
        Err(reason) => (None, EncoderPath::Tokenizers { reason }),
    }
}

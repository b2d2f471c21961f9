//! The chat template and special tokens stored in a GGUF file's metadata (llama.cpp's
//! format: a header, then typed key/value pairs, then tensors, which are not read).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use super::{SpecialTokens, TemplateSource};
use crate::TemplateError;

/// A metadata value, reduced to what templates need.
enum Meta {
    Int(u64),
    Str(String),
    Strings(Vec<String>),
    Other,
}

struct Reader<R: Read> {
    inner: R,
}

impl<R: Read> Reader<R> {
    fn bytes<const N: usize>(&mut self) -> std::io::Result<[u8; N]> {
        let mut b = [0u8; N];
        self.inner.read_exact(&mut b)?;
        Ok(b)
    }
    fn u32(&mut self) -> std::io::Result<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }
    fn u64(&mut self) -> std::io::Result<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }
    fn string(&mut self) -> std::io::Result<String> {
        let len = self.u64()?;
        if len > (1 << 30) {
            return Err(std::io::Error::other("a metadata string longer than 1 GiB"));
        }
        let mut buf = vec![0u8; len as usize];
        self.inner.read_exact(&mut buf)?;
        String::from_utf8(buf).map_err(|_| std::io::Error::other("a metadata string is not UTF-8"))
    }
    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink())?;
        Ok(())
    }

    /// Reads a value of GGUF type `ty`.
    fn value(&mut self, ty: u32) -> std::io::Result<Meta> {
        Ok(match ty {
            0 | 1 | 7 => Meta::Int(self.bytes::<1>()?[0] as u64),
            2 | 3 => Meta::Int(u16::from_le_bytes(self.bytes()?) as u64),
            4 | 5 => Meta::Int(self.u32()? as u64),
            6 => {
                self.skip(4)?;
                Meta::Other
            }
            8 => Meta::Str(self.string()?),
            9 => {
                let item = self.u32()?;
                let count = self.u64()?;
                if item == 8 {
                    let mut items = Vec::with_capacity(count.min(1 << 20) as usize);
                    for _ in 0..count {
                        items.push(self.string()?);
                    }
                    Meta::Strings(items)
                } else {
                    for _ in 0..count {
                        self.value(item)?;
                    }
                    Meta::Other
                }
            }
            10 | 11 => Meta::Int(self.u64()?),
            12 => {
                self.skip(8)?;
                Meta::Other
            }
            other => {
                return Err(std::io::Error::other(format!(
                    "unknown metadata type {other}"
                )))
            }
        })
    }
}

pub(crate) fn template_from_gguf(path: &Path) -> Result<TemplateSource, TemplateError> {
    let fail = |e: std::io::Error| {
        TemplateError::new(format!("{}: not a readable GGUF file: {e}", path.display()))
    };
    let file = File::open(path).map_err(fail)?;
    let mut r = Reader {
        inner: BufReader::with_capacity(1 << 20, file),
    };
    if &r.bytes::<4>().map_err(fail)? != b"GGUF" {
        return Err(TemplateError::new(format!(
            "{}: not a GGUF file (no GGUF magic)",
            path.display()
        )));
    }
    let version = r.u32().map_err(fail)?;
    if !(2..=3).contains(&version) {
        return Err(TemplateError::new(format!(
            "{}: GGUF version {version} is not supported (2 or 3 are)",
            path.display()
        )));
    }
    let _tensors = r.u64().map_err(fail)?;
    let kv_count = r.u64().map_err(fail)?;
    let (mut template, mut tokens) = (None, Vec::new());
    let mut ids: Vec<(&'static str, u64)> = Vec::new();
    for _ in 0..kv_count {
        let key = r.string().map_err(fail)?;
        let ty = r.u32().map_err(fail)?;
        let value = r.value(ty).map_err(fail)?;
        let token_key = match key.as_str() {
            "tokenizer.ggml.bos_token_id" => Some("bos_token"),
            "tokenizer.ggml.eos_token_id" => Some("eos_token"),
            "tokenizer.ggml.unknown_token_id" => Some("unk_token"),
            "tokenizer.ggml.padding_token_id" => Some("pad_token"),
            _ => None,
        };
        match (key.as_str(), value, token_key) {
            ("tokenizer.chat_template", Meta::Str(s), _) => template = Some(s),
            ("tokenizer.ggml.tokens", Meta::Strings(t), _) => tokens = t,
            (_, Meta::Int(id), Some(name)) => ids.push((name, id)),
            _ => {}
        }
    }
    let source = template.ok_or_else(|| {
        TemplateError::new(format!(
            "{}: the GGUF file has no tokenizer.chat_template",
            path.display()
        ))
    })?;
    let special_tokens = SpecialTokens::new(ids.into_iter().filter_map(|(name, id)| {
        tokens
            .get(id as usize)
            .map(|t| (name.to_string(), t.clone()))
    }));
    Ok(TemplateSource {
        name: path.display().to_string(),
        source,
        special_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    #[test]
    fn reads_template_and_special_tokens() {
        let mut f = b"GGUF".to_vec();
        f.extend(3u32.to_le_bytes());
        f.extend(0u64.to_le_bytes());
        f.extend(5u64.to_le_bytes());
        string(&mut f, "general.architecture");
        f.extend(8u32.to_le_bytes());
        string(&mut f, "llama");
        string(&mut f, "llama.rope.freq_base");
        f.extend(6u32.to_le_bytes());
        f.extend(10000f32.to_le_bytes());
        string(&mut f, "tokenizer.ggml.tokens");
        f.extend(9u32.to_le_bytes());
        f.extend(8u32.to_le_bytes());
        f.extend(3u64.to_le_bytes());
        for t in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
            string(&mut f, t);
        }
        string(&mut f, "tokenizer.ggml.eos_token_id");
        f.extend(4u32.to_le_bytes());
        f.extend(2u32.to_le_bytes());
        string(&mut f, "tokenizer.chat_template");
        f.extend(8u32.to_le_bytes());
        string(&mut f, "{{ messages[0].content }}{{ eos_token }}");
        let dir = std::env::temp_dir().join(format!("sft-gguf-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.gguf");
        std::fs::write(&path, &f).unwrap();
        let t = template_from_gguf(&path).unwrap();
        assert_eq!(t.source, "{{ messages[0].content }}{{ eos_token }}");
        assert_eq!(t.special_tokens.get("eos_token"), Some("<|im_end|>"));
        std::fs::write(&path, b"GGUF\x09\x00\x00\x00").unwrap();
        assert!(template_from_gguf(&path)
            .unwrap_err()
            .message
            .contains("version 9"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The weights of a Hugging Face model folder, indexed by name across its safetensors
//! files (one, or the shards of `model.safetensors.index.json`) and read one tensor at a
//! time, so that an export holds one tensor in memory, never the model.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use serde_json::Value;

use crate::GgufError;

/// The element types a source tensor may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceDType {
    F32,
    F16,
    BF16,
    F64,
}

impl SourceDType {
    fn size(self) -> usize {
        match self {
            SourceDType::F32 => 4,
            SourceDType::F16 | SourceDType::BF16 => 2,
            SourceDType::F64 => 8,
        }
    }
}

/// Where one tensor's bytes are.
#[derive(Debug, Clone)]
pub(crate) struct SourceTensor {
    pub file: PathBuf,
    pub start: u64,
    pub dtype: SourceDType,
    /// PyTorch's order: rows first.
    pub shape: Vec<usize>,
}

impl SourceTensor {
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Every tensor of a model folder, by Hugging Face name.
pub(crate) fn index_folder(dir: &Path) -> Result<BTreeMap<String, SourceTensor>, GgufError> {
    let files = sft_model::weights::weight_files(dir).map_err(|e| {
        GgufError::model(
            dir,
            e.to_string(),
            "the folder must hold model.safetensors or a sharded model.safetensors.index.json",
        )
    })?;
    let mut out = BTreeMap::new();
    for file in files {
        for (name, tensor) in index_file(&file)? {
            if out.contains_key(&name) {
                return Err(GgufError::tensor(
                    &file,
                    &name,
                    "is stored in two files",
                    "each tensor belongs in one shard; check model.safetensors.index.json",
                ));
            }
            out.insert(name, tensor);
        }
    }
    Ok(out)
}

fn index_file(path: &Path) -> Result<Vec<(String, SourceTensor)>, GgufError> {
    let bad = |m: String| {
        GgufError::model(
            path,
            format!("not a readable safetensors file: {m}"),
            "the file is damaged or not safetensors; save the model again",
        )
    };
    let mut file = std::fs::File::open(path).map_err(|e| GgufError::io(path, e))?;
    let size = file.metadata().map_err(|e| GgufError::io(path, e))?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| bad("shorter than its 8-byte header length".into()))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > size.saturating_sub(8) {
        return Err(bad(format!(
            "its header length {header_len} is longer than the file (a Git LFS pointer?)"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| GgufError::io(path, e))?;
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&header) else {
        return Err(bad("its header is not a JSON object".into()));
    };
    let data_start = 8 + header_len;
    let mut out = Vec::new();
    for (name, info) in map {
        if name == "__metadata__" {
            continue;
        }
        let dtype = match info.get("dtype").and_then(Value::as_str) {
            Some("F32") => SourceDType::F32,
            Some("F16") => SourceDType::F16,
            Some("BF16") => SourceDType::BF16,
            Some("F64") => SourceDType::F64,
            other => {
                return Err(GgufError::tensor(
                    path,
                    &name,
                    format!("has dtype {}", other.unwrap_or("(none)")),
                    "weights must be float (F32, F16, BF16); a quantised checkpoint (GPTQ, AWQ, bitsandbytes) must be dequantised first",
                ))
            }
        };
        let shape: Option<Vec<usize>> = info.get("shape").and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(|d| d.as_u64().map(|d| d as usize))
                .collect()
        });
        let offsets: Option<Vec<u64>> = info
            .get("data_offsets")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).collect());
        let (Some(shape), Some([from, to])) = (shape, offsets.as_deref()) else {
            return Err(bad(format!("tensor {name} has no shape or data_offsets")));
        };
        let want = shape.iter().product::<usize>() as u64 * dtype.size() as u64;
        if to < from || to - from != want || data_start + to > size {
            return Err(GgufError::tensor(
                path,
                &name,
                format!("its bytes [{from}, {to}) do not hold shape {shape:?} inside the file"),
                "the file is truncated or damaged",
            ));
        }
        out.push((
            name,
            SourceTensor {
                file: path.to_path_buf(),
                start: data_start + from,
                dtype,
                shape,
            },
        ));
    }
    Ok(out)
}

/// A tensor's values as f32 (exact for every source dtype but f64).
pub(crate) fn read_f32(name: &str, t: &SourceTensor) -> Result<Vec<f32>, GgufError> {
    let mut file = std::fs::File::open(&t.file).map_err(|e| GgufError::io(&t.file, e))?;
    let mut bytes = vec![0u8; t.elements() * t.dtype.size()];
    file.seek(SeekFrom::Start(t.start))
        .and_then(|_| file.read_exact(&mut bytes))
        .map_err(|e| {
            GgufError::tensor(
                &t.file,
                name,
                format!("cannot read its bytes: {e}"),
                "the file changed while it was read, or is damaged",
            )
        })?;
    let values = match t.dtype {
        SourceDType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        SourceDType::F16 => bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        SourceDType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        SourceDType::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
    };
    Ok(values)
}

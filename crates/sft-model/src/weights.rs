//! Reading and writing weights as Hugging Face model folders: `model.safetensors` or a
//! sharded `model.safetensors.index.json`, any of f32/f16/bf16 on disk, f32 in memory.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use crate::ModelError;

/// Every tensor of a model folder, cast to `dtype`, by HF name.
pub fn load_folder(
    dir: &Path,
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>, ModelError> {
    load_folder_with(dir, Some(dtype), device)
}

/// Every tensor of a model folder in the float dtype it is stored in (f64 read as f32).
pub fn load_folder_as_stored(
    dir: &Path,
    device: &Device,
) -> Result<HashMap<String, Tensor>, ModelError> {
    load_folder_with(dir, None, device)
}

fn load_folder_with(
    dir: &Path,
    dtype: Option<DType>,
    device: &Device,
) -> Result<HashMap<String, Tensor>, ModelError> {
    let files = weight_files(dir)?;
    let mut out = HashMap::new();
    for file in files {
        let fail = |e: ReadError| match e {
            ReadError::Io(e) => ModelError::io(&file, e),
            ReadError::Format(why) => {
                let why = safetensors_damage(&file).unwrap_or(why);
                ModelError::weights(&file, format!("cannot read safetensors: {why}"))
            }
        };
        // Read one tensor at a time (not the whole file into a buffer, nor mapped: a
        // mapping's touched pages count as resident until it is dropped), so loading holds
        // the weights once plus one tensor's bytes.
        for item in read_tensors(&file).map_err(fail)? {
            let (name, t) = item.map_err(fail)?;
            let t = match t.dtype() {
                DType::F32 | DType::F16 | DType::BF16 | DType::F64 => t
                    .to_dtype(dtype.unwrap_or(match t.dtype() {
                        DType::F64 => DType::F32,
                        stored => stored,
                    }))
                    .and_then(|t| t.to_device(device))
                    .map_err(|e| ModelError::weights(&file, format!("{name}: {e}")))?,
                other => {
                    return Err(ModelError::weights(
                        &file,
                        format!("tensor {name} has dtype {other:?}; expected a float type"),
                    ))
                }
            };
            // Made a variable here (the model's parameters are), so that building the model
            // does not copy every weight a second time.
            let t = candle_core::Var::from_tensor(&t)
                .map_err(|e| ModelError::weights(&file, format!("{name}: {e}")))?
                .as_tensor()
                .clone();
            out.insert(name, t);
        }
    }
    Ok(out)
}

enum ReadError {
    Io(std::io::Error),
    Format(String),
}

/// The tensors of a safetensors file, read one at a time in file order.
fn read_tensors(
    path: &Path,
) -> Result<impl Iterator<Item = Result<(String, Tensor), ReadError>>, ReadError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let size = file.metadata().map_err(ReadError::Io)?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| ReadError::Format("shorter than its 8-byte header length".into()))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > size.saturating_sub(8) {
        return Err(ReadError::Format("header longer than the file".into()));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(ReadError::Io)?;
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&header) else {
        return Err(ReadError::Format("header is not a JSON object".into()));
    };
    let data_start = 8 + header_len;
    let mut entries = Vec::new();
    for (name, info) in map {
        if name == "__metadata__" {
            continue;
        }
        let dtype = match info["dtype"].as_str() {
            Some("F32") => DType::F32,
            Some("F16") => DType::F16,
            Some("BF16") => DType::BF16,
            Some("F64") => DType::F64,
            Some("U8") => DType::U8,
            Some("U32") => DType::U32,
            Some("I64") => DType::I64,
            other => {
                return Err(ReadError::Format(format!(
                    "tensor {name}: unsupported dtype {other:?}"
                )))
            }
        };
        let shape: Option<Vec<usize>> = info["shape"].as_array().map(|a| {
            a.iter()
                .filter_map(|d| d.as_u64().map(|d| d as usize))
                .collect()
        });
        let offsets: Option<Vec<u64>> = info["data_offsets"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect());
        let (Some(shape), Some([from, to])) = (shape, offsets.as_deref()) else {
            return Err(ReadError::Format(format!(
                "tensor {name}: no shape or data_offsets"
            )));
        };
        let (from, to) = (*from, *to);
        let want = shape.iter().product::<usize>() as u64 * dtype.size_in_bytes() as u64;
        if to < from || to - from != want || data_start + to > size {
            return Err(ReadError::Format(format!(
                "tensor {name}: its bytes [{from}, {to}) do not hold shape {shape:?} of {dtype:?} inside the file"
            )));
        }
        entries.push((from, to, name, dtype, shape));
    }
    entries.sort_by_key(|e| e.0);
    Ok(entries
        .into_iter()
        .map(move |(from, to, name, dtype, shape)| {
            let mut bytes = vec![0u8; (to - from) as usize];
            file.seek(SeekFrom::Start(data_start + from))
                .and_then(|_| file.read_exact(&mut bytes))
                .map_err(ReadError::Io)?;
            let t = Tensor::from_raw_buffer(&bytes, dtype, &shape, &Device::Cpu)
                .map_err(|e| ReadError::Format(format!("tensor {name}: {e}")))?;
            Ok((name, t))
        }))
}

/// The safetensors files of a folder: the shards named by the index, or `model.safetensors`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| ModelError::io(&index, e))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::weights(&index, format!("not valid JSON: {e}")))?;
        let Some(map) = value.get("weight_map").and_then(Value::as_object) else {
            return Err(ModelError::weights(
                &index,
                "no \"weight_map\" object".into(),
            ));
        };
        let mut files: Vec<PathBuf> = map
            .values()
            .filter_map(Value::as_str)
            .map(|f| dir.join(f))
            .collect();
        files.sort();
        files.dedup();
        for f in &files {
            if !f.is_file() {
                return Err(ModelError::weights(
                    f,
                    "shard named in the index is missing".into(),
                ));
            }
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let hint = if dir.join("pytorch_model.bin").exists() {
        "this folder has only pytorch_model.bin; convert it with transformers: \
         AutoModelForCausalLM.from_pretrained(DIR).save_pretrained(DIR, safe_serialization=True)"
    } else if std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "gguf"))
        })
        .unwrap_or(false)
    {
        "this folder has a GGUF file; turn it into safetensors with \
         data-samples/models/smollm2_from_gguf.py (see the README)"
    } else {
        "a Hugging Face model folder has model.safetensors or model.safetensors.index.json"
    };
    Err(ModelError::Weights {
        path: dir.to_path_buf(),
        message: "no model.safetensors or model.safetensors.index.json".into(),
        hint: hint.into(),
    })
}

/// Writes tensors as one safetensors file with the `format: pt` metadata transformers
/// expects, atomically (temporary file, then rename): bf16 and f16 tensors as they are,
/// every other float type as f32.
pub fn save_safetensors(tensors: &BTreeMap<String, Tensor>, path: &Path) -> Result<(), ModelError> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut datas: Vec<Vec<u8>> = Vec::with_capacity(tensors.len());
    let mut offset = 0usize;
    for (name, t) in tensors {
        let bad = |e: candle_core::Error| ModelError::weights(path, format!("{name}: {e}"));
        let flat = t.flatten_all().map_err(bad)?;
        let (dtype, bytes): (&str, Vec<u8>) = match t.dtype() {
            DType::BF16 => (
                "BF16",
                flat.to_vec1::<half::bf16>()
                    .map_err(bad)?
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
            DType::F16 => (
                "F16",
                flat.to_vec1::<half::f16>()
                    .map_err(bad)?
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
            _ => (
                "F32",
                flat.to_dtype(DType::F32)
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(bad)?
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
        };
        let len = bytes.len();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": t.dims(), "data_offsets": [offset, offset + len]}),
        );
        offset += len;
        datas.push(bytes);
    }
    let mut header = serde_json::to_vec(&Value::Object(header)).expect("header serialises");
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    write_atomic(path, |w| {
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(&header)?;
        for data in &datas {
            w.write_all(data)?;
        }
        Ok(())
    })
}

/// Writes a file atomically (sft-io's one way: a synced temporary beside it, renamed).
pub(crate) fn write_atomic(
    path: &Path,
    body: impl FnOnce(&mut sft_io::write::AtomicFile) -> std::io::Result<()>,
) -> Result<(), ModelError> {
    sft_io::write::write_atomic_with(path, body)
        .map_err(|e| ModelError::io(path, std::io::Error::other(e.message)))
}

/// What is wrong with a safetensors file's layout, if anything: a file too short for its
/// header, a header that is not JSON, a tensor whose bytes lie outside the file, or a file
/// shorter (cut short) or longer than its tensors. `None` when the layout is sound, so a
/// reader's own error can be reported as it is.
pub fn safetensors_damage(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return Some(e.to_string()),
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut len = [0u8; 8];
    if size < 8 || file.read_exact(&mut len).is_err() {
        return Some(format!(
            "only {size} bytes: cut short before its header (an interrupted copy or a full disk)"
        ));
    }
    let header_len = u64::from_le_bytes(len);
    if header_len > size - 8 {
        return Some(format!(
            "{size} bytes, but its header alone says it is {header_len} bytes: cut short (an \
             interrupted copy or a full disk) or not a safetensors file"
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    if let Err(e) = file.read_exact(&mut header) {
        return Some(e.to_string());
    }
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&header) else {
        return Some(
            "its header is not a JSON object: not a safetensors file, or overwritten".into(),
        );
    };
    let data = size - 8 - header_len;
    let mut end = 0u64;
    for (name, info) in &map {
        if name == "__metadata__" {
            continue;
        }
        let offsets = info
            .get("data_offsets")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).collect::<Vec<_>>());
        match offsets.as_deref() {
            Some([from, to]) if from <= to => end = end.max(*to),
            _ => {
                return Some(format!(
                    "tensor {name}: no valid data_offsets in the header"
                ))
            }
        }
    }
    if end > data {
        return Some(format!(
            "cut short: its header describes {end} bytes of tensor data, the file holds {data} \
             (an interrupted copy or a full disk)"
        ));
    }
    if end < data {
        return Some(format!(
            "{} bytes after the last tensor its header describes: not one whole safetensors file",
            data - end
        ));
    }
    None
}

/// The values of a tensor that are not finite: how many, and the first (flat index, value).
pub fn non_finite(t: &Tensor) -> candle_core::Result<Option<(usize, usize, f32)>> {
    let values: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let mut first = None;
    let mut count = 0;
    for (i, v) in values.iter().enumerate() {
        if !v.is_finite() {
            count += 1;
            first.get_or_insert((i, *v));
        }
    }
    Ok(first.map(|(i, v)| (count, i, v)))
}

/// The file of a model folder that holds tensor `name` (by the shard index, if any).
pub fn file_of_tensor(dir: &Path, name: &str) -> PathBuf {
    let index = dir.join("model.safetensors.index.json");
    std::fs::read_to_string(&index)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["weight_map"][name].as_str().map(|f| dir.join(f)))
        .unwrap_or_else(|| dir.join("model.safetensors"))
}

//! The GGUF container (version 3, as ggml's `gguf.cpp` reads it): a header of typed
//! key/value metadata and tensor records, then each tensor's bytes at an offset aligned to
//! 32. Written in two steps so that tensors can be produced one at a time: the header
//! (which needs every tensor's type and size, not its data) and then the data in order.
//! A small reader gives the header and any tensor's bytes back, for checks and tests.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::types::TensorType;
use crate::GgufError;

const MAGIC: &[u8; 4] = b"GGUF";
const VERSION: u32 = 3;
/// ggml's default; the file does not say otherwise (no `general.alignment` key).
pub const ALIGNMENT: u64 = 32;

/// A metadata value, in the GGUF types the converter writes.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    /// An array of values of one type (never empty when written by us).
    Array(Vec<MetaValue>),
}

impl MetaValue {
    fn type_id(&self) -> u32 {
        match self {
            MetaValue::U8(_) => 0,
            MetaValue::I8(_) => 1,
            MetaValue::U16(_) => 2,
            MetaValue::I16(_) => 3,
            MetaValue::U32(_) => 4,
            MetaValue::I32(_) => 5,
            MetaValue::F32(_) => 6,
            MetaValue::Bool(_) => 7,
            MetaValue::Str(_) => 8,
            MetaValue::Array(_) => 9,
            MetaValue::U64(_) => 10,
            MetaValue::I64(_) => 11,
            MetaValue::F64(_) => 12,
        }
    }

    /// The GGUF type's name (`UINT32`, `ARRAY[STRING]`, ...), for reports and fixtures.
    pub fn type_name(&self) -> String {
        match self {
            MetaValue::U8(_) => "UINT8".into(),
            MetaValue::I8(_) => "INT8".into(),
            MetaValue::U16(_) => "UINT16".into(),
            MetaValue::I16(_) => "INT16".into(),
            MetaValue::U32(_) => "UINT32".into(),
            MetaValue::I32(_) => "INT32".into(),
            MetaValue::U64(_) => "UINT64".into(),
            MetaValue::I64(_) => "INT64".into(),
            MetaValue::F32(_) => "FLOAT32".into(),
            MetaValue::F64(_) => "FLOAT64".into(),
            MetaValue::Bool(_) => "BOOL".into(),
            MetaValue::Str(_) => "STRING".into(),
            MetaValue::Array(items) => format!(
                "ARRAY[{}]",
                items.first().map(|i| i.type_name()).unwrap_or_default()
            ),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v as u64),
            MetaValue::U16(v) => Some(v as u64),
            MetaValue::U32(v) => Some(v as u64),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) if v >= 0 => Some(v as u64),
            MetaValue::I16(v) if v >= 0 => Some(v as u64),
            MetaValue::I32(v) if v >= 0 => Some(v as u64),
            MetaValue::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }

    /// The value as JSON (floats as f64 of the stored value), for fixtures and reports.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            MetaValue::U8(v) => Value::from(*v),
            MetaValue::I8(v) => Value::from(*v),
            MetaValue::U16(v) => Value::from(*v),
            MetaValue::I16(v) => Value::from(*v),
            MetaValue::U32(v) => Value::from(*v),
            MetaValue::I32(v) => Value::from(*v),
            MetaValue::U64(v) => Value::from(*v),
            MetaValue::I64(v) => Value::from(*v),
            MetaValue::F32(v) => Value::from(*v as f64),
            MetaValue::F64(v) => Value::from(*v),
            MetaValue::Bool(v) => Value::from(*v),
            MetaValue::Str(v) => Value::from(v.as_str()),
            MetaValue::Array(items) => Value::Array(items.iter().map(|i| i.to_json()).collect()),
        }
    }

    /// The value's bytes as the file stores them, without its type tag (for fingerprints
    /// of long arrays).
    pub fn encoded(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out).expect("writing to memory");
        out
    }

    fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        match self {
            MetaValue::U8(v) => w.write_all(&v.to_le_bytes()),
            MetaValue::I8(v) => w.write_all(&v.to_le_bytes()),
            MetaValue::U16(v) => w.write_all(&v.to_le_bytes()),
            MetaValue::I16(v) => w.write_all(&v.to_le_bytes()),
            MetaValue::U32(v) => w.write_all(&v.to_le_bytes()),
            MetaValue::I32(v) => w.write_all(&v.to_le_bytes()),
            MetaValue::U64(v) => w.write_all(&v.to_le_bytes()),
            MetaValue::I64(v) => w.write_all(&v.to_le_bytes()),
            MetaValue::F32(v) => w.write_all(&v.to_le_bytes()),
            MetaValue::F64(v) => w.write_all(&v.to_le_bytes()),
            MetaValue::Bool(v) => w.write_all(&[*v as u8]),
            MetaValue::Str(s) => write_string(w, s),
            MetaValue::Array(items) => {
                let item_type = items.first().map(|i| i.type_id()).unwrap_or(8);
                w.write_all(&item_type.to_le_bytes())?;
                w.write_all(&(items.len() as u64).to_le_bytes())?;
                for item in items {
                    item.write_to(w)?;
                }
                Ok(())
            }
        }
    }
}

fn write_string(w: &mut impl Write, s: &str) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

/// One tensor as the header describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRecord {
    pub name: String,
    /// ggml's order: the row length first (the reverse of PyTorch's shape).
    pub dims: Vec<u64>,
    pub ttype: TensorType,
    /// From the start of the data section.
    pub offset: u64,
}

impl TensorRecord {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    pub fn bytes(&self) -> u64 {
        self.ttype.bytes_for(self.elements() as usize) as u64
    }
}

fn padding(len: u64) -> u64 {
    (ALIGNMENT - len % ALIGNMENT) % ALIGNMENT
}

/// Lays out tensors (name, dims, type) one after another, each at an aligned offset.
pub(crate) fn lay_out(tensors: Vec<(String, Vec<u64>, TensorType)>) -> Vec<TensorRecord> {
    let mut offset = 0;
    tensors
        .into_iter()
        .map(|(name, dims, ttype)| {
            let record = TensorRecord {
                name,
                dims,
                ttype,
                offset,
            };
            offset += record.bytes();
            offset += padding(offset);
            record
        })
        .collect()
}

/// Writes the header: metadata in the order given, then the tensor records, padded so that
/// the data section starts aligned. Returns the bytes written.
pub(crate) fn write_header(
    w: &mut impl Write,
    metadata: &[(String, MetaValue)],
    tensors: &[TensorRecord],
) -> io::Result<u64> {
    let mut header = Vec::new();
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        write_string(&mut header, key)?;
        header.extend_from_slice(&value.type_id().to_le_bytes());
        value.write_to(&mut header)?;
    }
    for t in tensors {
        write_string(&mut header, &t.name)?;
        header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            header.extend_from_slice(&d.to_le_bytes());
        }
        header.extend_from_slice(&t.ttype.ggml_id().to_le_bytes());
        header.extend_from_slice(&t.offset.to_le_bytes());
    }
    let pad = padding(header.len() as u64) as usize;
    header.resize(header.len() + pad, 0);
    w.write_all(&header)?;
    Ok(header.len() as u64)
}

/// Writes one tensor's bytes and the padding after them.
pub(crate) fn write_tensor_data(w: &mut impl Write, data: &[u8]) -> io::Result<u64> {
    w.write_all(data)?;
    let pad = padding(data.len() as u64);
    w.write_all(&vec![0u8; pad as usize])?;
    Ok(data.len() as u64 + pad)
}

/// A GGUF file's header, read back.
#[derive(Debug, Clone)]
pub struct GgufInfo {
    pub version: u32,
    /// Keys in file order.
    pub metadata: Vec<(String, MetaValue)>,
    pub tensors: Vec<TensorRecord>,
    /// Where the data section starts in the file.
    pub data_start: u64,
}

impl GgufInfo {
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn metadata_map(&self) -> BTreeMap<&str, &MetaValue> {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect()
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorRecord> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Reads a GGUF file's header. Only the tensor types this crate writes are understood;
/// any other is an error naming the tensor.
pub fn read_info(path: &Path) -> Result<GgufInfo, GgufError> {
    let file = std::fs::File::open(path).map_err(|e| GgufError::io(path, e))?;
    let size = file.metadata().map_err(|e| GgufError::io(path, e))?.len();
    let mut r = Reader {
        inner: io::BufReader::new(file),
        pos: 0,
        size,
    };
    let bad = |m: String| GgufError::model(path, m, "the file is not a complete GGUF file");
    let mut magic = [0u8; 4];
    r.exact(&mut magic).map_err(|e| bad(e.to_string()))?;
    if &magic != MAGIC {
        return Err(bad("does not start with GGUF".into()));
    }
    let version = r.u32().map_err(|e| bad(e.to_string()))?;
    if version != VERSION {
        return Err(bad(format!("GGUF version {version}; only 3 is read")));
    }
    let n_tensors = r.u64().map_err(|e| bad(e.to_string()))?;
    let n_kv = r.u64().map_err(|e| bad(e.to_string()))?;
    let mut metadata = Vec::new();
    for _ in 0..n_kv {
        let key = r.string().map_err(|e| bad(e.to_string()))?;
        let t = r.u32().map_err(|e| bad(e.to_string()))?;
        let value = r
            .value(t)
            .map_err(|e| bad(format!("metadata key {key}: {e}")))?;
        metadata.push((key, value));
    }
    let mut tensors = Vec::new();
    for _ in 0..n_tensors {
        let name = r.string().map_err(|e| bad(e.to_string()))?;
        let n_dims = r.u32().map_err(|e| bad(e.to_string()))?;
        if n_dims > 4 {
            return Err(bad(format!("tensor {name} has {n_dims} dimensions")));
        }
        let dims = (0..n_dims)
            .map(|_| r.u64())
            .collect::<io::Result<Vec<u64>>>()
            .map_err(|e| bad(e.to_string()))?;
        let t = r.u32().map_err(|e| bad(e.to_string()))?;
        let offset = r.u64().map_err(|e| bad(e.to_string()))?;
        let Some(ttype) = TensorType::from_ggml_id(t) else {
            return Err(GgufError::tensor(
                path,
                &name,
                format!("ggml type {t} is not one this crate reads"),
                "",
            ));
        };
        tensors.push(TensorRecord {
            name,
            dims,
            ttype,
            offset,
        });
    }
    let alignment = metadata
        .iter()
        .find(|(k, _)| k == "general.alignment")
        .and_then(|(_, v)| v.as_u64())
        .unwrap_or(ALIGNMENT);
    let data_start = r.pos.div_ceil(alignment) * alignment;
    for t in &tensors {
        if data_start + t.offset + t.bytes() > size {
            return Err(GgufError::tensor(
                path,
                &t.name,
                "its data runs past the end of the file",
                "the file is truncated",
            ));
        }
    }
    Ok(GgufInfo {
        version,
        metadata,
        tensors,
        data_start,
    })
}

/// The bytes of one tensor of a file read with [`read_info`].
pub fn read_tensor_bytes(
    path: &Path,
    info: &GgufInfo,
    tensor: &TensorRecord,
) -> Result<Vec<u8>, GgufError> {
    let mut file = std::fs::File::open(path).map_err(|e| GgufError::io(path, e))?;
    file.seek(SeekFrom::Start(info.data_start + tensor.offset))
        .map_err(|e| GgufError::io(path, e))?;
    let mut data = vec![0u8; tensor.bytes() as usize];
    file.read_exact(&mut data)
        .map_err(|e| GgufError::io(path, e))?;
    Ok(data)
}

struct Reader<R: Read> {
    inner: R,
    pos: u64,
    size: u64,
}

impl<R: Read> Reader<R> {
    fn exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }
    fn u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> io::Result<u64> {
        let mut b = [0u8; 8];
        self.exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn string(&mut self) -> io::Result<String> {
        let len = self.u64()?;
        if len > self.size.saturating_sub(self.pos) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a string of {len} bytes runs past the end of the file"),
            ));
        }
        let mut b = vec![0u8; len as usize];
        self.exact(&mut b)?;
        String::from_utf8(b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
    fn value(&mut self, t: u32) -> io::Result<MetaValue> {
        let mut b1 = [0u8; 1];
        let mut b2 = [0u8; 2];
        let mut b4 = [0u8; 4];
        let mut b8 = [0u8; 8];
        Ok(match t {
            0 => {
                self.exact(&mut b1)?;
                MetaValue::U8(b1[0])
            }
            1 => {
                self.exact(&mut b1)?;
                MetaValue::I8(b1[0] as i8)
            }
            2 => {
                self.exact(&mut b2)?;
                MetaValue::U16(u16::from_le_bytes(b2))
            }
            3 => {
                self.exact(&mut b2)?;
                MetaValue::I16(i16::from_le_bytes(b2))
            }
            4 => {
                self.exact(&mut b4)?;
                MetaValue::U32(u32::from_le_bytes(b4))
            }
            5 => {
                self.exact(&mut b4)?;
                MetaValue::I32(i32::from_le_bytes(b4))
            }
            6 => {
                self.exact(&mut b4)?;
                MetaValue::F32(f32::from_le_bytes(b4))
            }
            7 => {
                self.exact(&mut b1)?;
                MetaValue::Bool(b1[0] != 0)
            }
            8 => MetaValue::Str(self.string()?),
            9 => {
                let item = self.u32()?;
                let n = self.u64()?;
                if item == 9 || n > self.size.saturating_sub(self.pos) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("an array of {n} items of type {item} cannot be read"),
                    ));
                }
                let items = (0..n)
                    .map(|_| self.value(item))
                    .collect::<io::Result<Vec<_>>>()?;
                MetaValue::Array(items)
            }
            10 => {
                self.exact(&mut b8)?;
                MetaValue::U64(u64::from_le_bytes(b8))
            }
            11 => {
                self.exact(&mut b8)?;
                MetaValue::I64(i64::from_le_bytes(b8))
            }
            12 => {
                self.exact(&mut b8)?;
                MetaValue::F64(f64::from_le_bytes(b8))
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown value type {other}"),
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_data_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gguf");
        let metadata = vec![
            (
                "general.architecture".to_string(),
                MetaValue::Str("llama".into()),
            ),
            ("a.u32".to_string(), MetaValue::U32(7)),
            ("a.f32".to_string(), MetaValue::F32(1e-5)),
            ("a.flag".to_string(), MetaValue::Bool(true)),
            (
                "a.list".to_string(),
                MetaValue::Array(vec![MetaValue::I32(1), MetaValue::I32(-3)]),
            ),
        ];
        let tensors = lay_out(vec![
            ("x".into(), vec![3], TensorType::F32),
            ("y".into(), vec![2, 2], TensorType::F16),
        ]);
        assert_eq!(tensors[1].offset, 32);
        let mut out = Vec::new();
        let header = write_header(&mut out, &metadata, &tensors).unwrap();
        assert_eq!(header % ALIGNMENT, 0);
        write_tensor_data(&mut out, &[1u8; 12]).unwrap();
        write_tensor_data(&mut out, &[2u8; 8]).unwrap();
        std::fs::write(&path, &out).unwrap();
        let info = read_info(&path).unwrap();
        assert_eq!(info.metadata, metadata);
        assert_eq!(info.tensors, tensors);
        assert_eq!(info.data_start, header);
        let y = read_tensor_bytes(&path, &info, &info.tensors[1]).unwrap();
        assert_eq!(y, vec![2u8; 8]);
    }

    #[test]
    fn a_truncated_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gguf");
        let metadata = vec![("k".to_string(), MetaValue::Str("v".repeat(100)))];
        let mut out = Vec::new();
        write_header(&mut out, &metadata, &[]).unwrap();
        for cut in [0, 3, 10, 30, 60] {
            std::fs::write(&path, &out[..cut]).unwrap();
            let err = read_info(&path).unwrap_err().to_string();
            assert!(err.contains("t.gguf"), "{err}");
        }
    }
}

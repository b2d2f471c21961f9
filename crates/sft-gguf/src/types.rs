//! What a GGUF file holds: the file types a user asks for (`Q4_K_M`, ...) and the ggml
//! tensor types each tensor is stored in.

use std::fmt;
use std::str::FromStr;

use candle_core::quantized::GgmlDType;

use crate::GgufError;

/// A GGUF file type, named as llama.cpp names it (`llama-quantize`, file names on the Hub).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GgufType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q6K,
    Q5KM,
    Q4KM,
}

impl GgufType {
    pub const ALL: [GgufType; 7] = [
        GgufType::F32,
        GgufType::F16,
        GgufType::BF16,
        GgufType::Q8_0,
        GgufType::Q6K,
        GgufType::Q5KM,
        GgufType::Q4KM,
    ];

    /// The name llama.cpp uses: `F16`, `Q4_K_M`, ...
    pub fn name(self) -> &'static str {
        match self {
            GgufType::F32 => "F32",
            GgufType::F16 => "F16",
            GgufType::BF16 => "BF16",
            GgufType::Q8_0 => "Q8_0",
            GgufType::Q6K => "Q6_K",
            GgufType::Q5KM => "Q5_K_M",
            GgufType::Q4KM => "Q4_K_M",
        }
    }

    /// `general.file_type`: llama.cpp's `llama_ftype` number.
    pub fn file_type(self) -> u32 {
        match self {
            GgufType::F32 => 0,
            GgufType::F16 => 1,
            GgufType::Q8_0 => 7,
            GgufType::Q4KM => 15,
            GgufType::Q5KM => 17,
            GgufType::Q6K => 18,
            GgufType::BF16 => 32,
        }
    }

    /// The type most weight matrices get; the mixtures raise some tensors above it.
    pub(crate) fn base(self) -> TensorType {
        match self {
            GgufType::F32 => TensorType::F32,
            GgufType::F16 => TensorType::F16,
            GgufType::BF16 => TensorType::BF16,
            GgufType::Q8_0 => TensorType::Q8_0,
            GgufType::Q6K => TensorType::Q6K,
            GgufType::Q5KM => TensorType::Q5K,
            GgufType::Q4KM => TensorType::Q4K,
        }
    }

    /// Whether the file is made by quantising (as `llama-quantize` does), not by casting
    /// (as the converter's `--outtype` does).
    pub(crate) fn is_quantized(self) -> bool {
        !matches!(self, GgufType::F32 | GgufType::F16 | GgufType::BF16)
    }

    /// Parses a list such as `q4_k_m,Q8_0` (commas or spaces), keeping the order given and
    /// dropping repeats.
    pub fn parse_list(text: &str) -> Result<Vec<GgufType>, GgufError> {
        let mut out = Vec::new();
        for part in text.split([',', ' ']).filter(|p| !p.trim().is_empty()) {
            let t: GgufType = part.trim().parse()?;
            if !out.contains(&t) {
                out.push(t);
            }
        }
        if out.is_empty() {
            return Err(GgufError::UnknownType {
                name: text.to_string(),
            });
        }
        Ok(out)
    }
}

impl fmt::Display for GgufType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GgufType {
    type Err = GgufError;

    /// llama.cpp's names in any case; `Q4_K` and `Q5_K` mean the `_M` mixtures, as they do
    /// for `llama-quantize`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = match s.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "F32" => GgufType::F32,
            "F16" => GgufType::F16,
            "BF16" => GgufType::BF16,
            "Q8_0" => GgufType::Q8_0,
            "Q6_K" => GgufType::Q6K,
            "Q5_K_M" | "Q5_K" => GgufType::Q5KM,
            "Q4_K_M" | "Q4_K" => GgufType::Q4KM,
            _ => {
                return Err(GgufError::UnknownType {
                    name: s.to_string(),
                })
            }
        };
        Ok(t)
    }
}

/// The ggml type of one tensor's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q5_0,
    Q5_1,
    Q4K,
    Q5K,
    Q6K,
}

impl TensorType {
    /// The number ggml gives the type in a GGUF tensor record.
    pub fn ggml_id(self) -> u32 {
        match self {
            TensorType::F32 => 0,
            TensorType::F16 => 1,
            TensorType::Q5_0 => 6,
            TensorType::Q5_1 => 7,
            TensorType::Q8_0 => 8,
            TensorType::Q4K => 12,
            TensorType::Q5K => 13,
            TensorType::Q6K => 14,
            TensorType::BF16 => 30,
        }
    }

    /// ggml's name of the type (`Q4_K`, ...).
    pub fn name(self) -> &'static str {
        match self {
            TensorType::F32 => "F32",
            TensorType::F16 => "F16",
            TensorType::BF16 => "BF16",
            TensorType::Q8_0 => "Q8_0",
            TensorType::Q5_0 => "Q5_0",
            TensorType::Q5_1 => "Q5_1",
            TensorType::Q4K => "Q4_K",
            TensorType::Q5K => "Q5_K",
            TensorType::Q6K => "Q6_K",
        }
    }

    pub fn from_ggml_id(id: u32) -> Option<TensorType> {
        [
            TensorType::F32,
            TensorType::F16,
            TensorType::BF16,
            TensorType::Q8_0,
            TensorType::Q5_0,
            TensorType::Q5_1,
            TensorType::Q4K,
            TensorType::Q5K,
            TensorType::Q6K,
        ]
        .into_iter()
        .find(|t| t.ggml_id() == id)
    }

    pub(crate) fn candle(self) -> GgmlDType {
        match self {
            TensorType::F32 => GgmlDType::F32,
            TensorType::F16 => GgmlDType::F16,
            TensorType::BF16 => GgmlDType::BF16,
            TensorType::Q8_0 => GgmlDType::Q8_0,
            TensorType::Q5_0 => GgmlDType::Q5_0,
            TensorType::Q5_1 => GgmlDType::Q5_1,
            TensorType::Q4K => GgmlDType::Q4K,
            TensorType::Q5K => GgmlDType::Q5K,
            TensorType::Q6K => GgmlDType::Q6K,
        }
    }

    /// Values per block (1 for the float types).
    pub fn block_size(self) -> usize {
        self.candle().block_size()
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        self.candle().type_size()
    }

    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Bytes of a tensor of `elements` values whose rows are whole blocks.
    pub fn bytes_for(self, elements: usize) -> usize {
        elements / self.block_size() * self.block_bytes()
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_any_case() {
        assert_eq!("q4_k_m".parse::<GgufType>().unwrap(), GgufType::Q4KM);
        assert_eq!("Q4_K".parse::<GgufType>().unwrap(), GgufType::Q4KM);
        assert_eq!("bf16".parse::<GgufType>().unwrap(), GgufType::BF16);
        assert_eq!(
            GgufType::parse_list("F16, q8_0,Q8_0").unwrap(),
            vec![GgufType::F16, GgufType::Q8_0]
        );
        let err = "q3_k_s".parse::<GgufType>().unwrap_err().to_string();
        assert!(err.contains("q3_k_s") && err.contains("Q4_K_M"), "{err}");
        for t in GgufType::ALL {
            assert_eq!(t.name().parse::<GgufType>().unwrap(), t);
        }
    }

    #[test]
    fn block_sizes_are_ggml_s() {
        assert_eq!(TensorType::Q8_0.block_bytes(), 34);
        assert_eq!(TensorType::Q4K.block_bytes(), 144);
        assert_eq!(TensorType::Q5K.block_bytes(), 176);
        assert_eq!(TensorType::Q6K.block_bytes(), 210);
        assert_eq!(TensorType::Q5_0.block_bytes(), 22);
        assert_eq!(TensorType::Q5_1.block_bytes(), 24);
        assert_eq!(TensorType::Q4K.block_size(), 256);
    }
}

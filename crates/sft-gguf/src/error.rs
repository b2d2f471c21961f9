//! Why an export failed: each error names the file (and the tensor or key) it concerns and,
//! where there is one, what to do.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum GgufError {
    /// A file could not be read.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The model folder (config, tokenizer, template) holds something that cannot be
    /// exported as it is.
    Model {
        path: PathBuf,
        message: String,
        hint: String,
    },
    /// A tensor is missing, has an unexpected name, shape or dtype, or its bytes are
    /// damaged.
    Tensor {
        path: PathBuf,
        tensor: String,
        message: String,
        hint: String,
    },
    /// The model is of a kind no GGUF file can be made for here without being wrong.
    Unsupported {
        path: PathBuf,
        message: String,
        hint: String,
    },
    /// A file type name that is not one of those exported.
    UnknownType { name: String },
    /// Where the files would go is not allowed (the source folder, ...).
    Output { message: String, hint: String },
    /// An output could not be written.
    Write { path: PathBuf, message: String },
}

impl GgufError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        GgufError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn model(path: &Path, message: impl Into<String>, hint: impl Into<String>) -> Self {
        GgufError::Model {
            path: path.to_path_buf(),
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub(crate) fn tensor(
        path: &Path,
        tensor: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        GgufError::Tensor {
            path: path.to_path_buf(),
            tensor: tensor.to_string(),
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub(crate) fn unsupported(
        path: &Path,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        GgufError::Unsupported {
            path: path.to_path_buf(),
            message: message.into(),
            hint: hint.into(),
        }
    }
}

fn hint(f: &mut fmt::Formatter<'_>, hint: &str) -> fmt::Result {
    if hint.is_empty() {
        Ok(())
    } else {
        write!(f, "\n  hint: {hint}")
    }
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GgufError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            GgufError::Model {
                path,
                message,
                hint: h,
            }
            | GgufError::Unsupported {
                path,
                message,
                hint: h,
            } => {
                write!(f, "{}: {message}", path.display())?;
                hint(f, h)
            }
            GgufError::Tensor {
                path,
                tensor,
                message,
                hint: h,
            } => {
                write!(f, "{}: tensor {tensor}: {message}", path.display())?;
                hint(f, h)
            }
            GgufError::UnknownType { name } => write!(
                f,
                "unknown GGUF type \"{name}\"\n  hint: one or more of F32, F16, BF16, Q8_0, Q6_K, Q5_K_M, Q4_K_M (any case, comma-separated)"
            ),
            GgufError::Output { message, hint: h } => {
                f.write_str(message)?;
                hint(f, h)
            }
            GgufError::Write { path, message } => {
                write!(f, "cannot write {}: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for GgufError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GgufError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<sft_io::write::WriteError> for GgufError {
    fn from(e: sft_io::write::WriteError) -> Self {
        GgufError::Write {
            path: e.path,
            message: e.message,
        }
    }
}

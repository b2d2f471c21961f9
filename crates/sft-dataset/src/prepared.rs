//! The prepared token table: the Parquet file `sft-data prepare` writes and `sft-train` and
//! `sft-eval` read, its column names, and the manifest beside it that says how it was made.
//!
//! This module is the one owner of the table's layout: [`prepare`](crate::prepare::prepare)
//! writes it with these names and this [`Manifest`], and every reader asks [`is_prepared`]
//! and [`Manifest::check_tokenizer`] here.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sft_tokenize::SftTokenizer;

/// Token ids of each row (`list<int32>`).
pub const INPUT_IDS: &str = "input_ids";
/// The token ids to learn, `-100` where nothing is trained (`list<int32>`).
pub const LABELS: &str = "labels";
/// 1 where a token is trained, 0 elsewhere (`list<int32>`), as TRL's `completion_mask`.
pub const COMPLETION_MASK: &str = "completion_mask";
/// The lengths of the documents packed into a row (`list<int32>`), summing to its length.
pub const SEQ_LENGTHS: &str = "seq_lengths";
/// Where each row came from (`utf8`; `list<utf8>` with one name per document in a packed
/// table): the rows' `source` field, as `sft-data mix` writes it, or their file's name.
/// Trainers ignore it (TRL drops columns its collator does not take).
pub const SOURCE: &str = "source";

/// The columns of a table without packing, or with packing that lets documents run into
/// each other (`wrapped`).
pub const COLUMNS: [&str; 3] = [INPUT_IDS, LABELS, COMPLETION_MASK];
/// The columns of a table of best-fit packed rows, whose documents stay apart.
pub const PACKED_COLUMNS: [&str; 4] = [INPUT_IDS, LABELS, COMPLETION_MASK, SEQ_LENGTHS];

/// Where the manifest of the table at `table` lives: `NAME.manifest.json` beside it.
pub fn manifest_path(table: &Path) -> PathBuf {
    let stem = table
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    table.with_file_name(format!("{stem}.manifest.json"))
}

/// Whether `path` is a table written by `prepare`: a `.parquet` file with its manifest.
pub fn is_prepared(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "parquet") && manifest_path(path).is_file()
}

/// The tokenizer a table was prepared with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestTokenizer {
    pub path: String,
    /// xxh3-64 of its `tokenizer.json`, hex ([`SftTokenizer::fingerprint`]).
    pub fingerprint: String,
    pub eos_token: Option<String>,
    pub vocab_size: usize,
    /// The encoder that tokenized the rows ([`sft_tokenize::EncoderPath::name`]:
    /// `fast-bpe (gpt2)`, `tokenizers`); both give the same ids.
    #[serde(default)]
    pub encoder: String,
}

/// The chat template conversations were rendered with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestTemplate {
    pub name: String,
    pub fingerprint: String,
}

/// `NAME.manifest.json`: how a prepared table was made. `sft-train` and `sft-eval` check
/// it against the model they are given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub tokenizer: ManifestTokenizer,
    pub chat_template: Option<ManifestTemplate>,
    pub max_length: Option<usize>,
    pub completion_only_loss: Option<bool>,
    pub assistant_only_loss: bool,
    /// The packing strategy (`bfd`, `bfd_split`, `wrapped`), if the rows are packed.
    pub packing: Option<String>,
    pub columns: Vec<String>,
    /// The job's summary ([`PrepareSummary`](crate::prepare::PrepareSummary)) as written.
    pub summary: serde_json::Value,
}

/// What is wrong with a prepared table or its manifest.
#[derive(Debug, Clone, PartialEq)]
pub enum PreparedError {
    /// The manifest cannot be read or is not a manifest.
    Manifest { path: PathBuf, reason: String },
    /// The table was tokenized with another tokenizer than the model's.
    OtherTokenizer {
        table: PathBuf,
        prepared_with: String,
        fingerprint: String,
        model_dir: PathBuf,
        model_fingerprint: String,
    },
}

impl fmt::Display for PreparedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Manifest { path, reason } => {
                write!(f, "{}: unreadable manifest: {reason}\n  hint: prepare the table again with `sft-data prepare`", path.display())
            }
            Self::OtherTokenizer {
                table,
                prepared_with,
                fingerprint,
                model_dir,
                model_fingerprint,
            } => write!(
                f,
                "{}: prepared with another tokenizer ({prepared_with}; fingerprint {fingerprint}) than the model's ({}; {model_fingerprint})\n  hint: prepare it again with --tokenizer {}",
                table.display(),
                model_dir.display(),
                model_dir.display()
            ),
        }
    }
}

impl std::error::Error for PreparedError {}

impl Manifest {
    /// The manifest of the table at `table`.
    pub fn read(table: &Path) -> Result<Manifest, PreparedError> {
        let path = manifest_path(table);
        let fail = |reason: String| PreparedError::Manifest {
            path: path.clone(),
            reason,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| fail(e.to_string()))
    }

    /// Writes the manifest of the table at `table`, atomically.
    pub fn write(&self, table: &Path) -> Result<(), sft_io::write::WriteError> {
        let text = serde_json::to_string_pretty(self).expect("a manifest serialises");
        sft_io::write::write_atomic(&manifest_path(table), text.as_bytes())
    }

    /// Refuses a table prepared with another tokenizer than `tokenizer` (the one of the
    /// model in `model_dir`).
    pub fn check_tokenizer(
        &self,
        table: &Path,
        tokenizer: &SftTokenizer,
        model_dir: &Path,
    ) -> Result<(), PreparedError> {
        if self.tokenizer.fingerprint == tokenizer.fingerprint {
            return Ok(());
        }
        Err(PreparedError::OtherTokenizer {
            table: table.to_path_buf(),
            prepared_with: self.tokenizer.path.clone(),
            fingerprint: self.tokenizer.fingerprint.clone(),
            model_dir: model_dir.to_path_buf(),
            model_fingerprint: tokenizer.fingerprint.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(fingerprint: &str) -> Manifest {
        Manifest {
            version: 1,
            tokenizer: ManifestTokenizer {
                path: "tok".into(),
                fingerprint: fingerprint.into(),
                eos_token: Some("<|im_end|>".into()),
                vocab_size: 49152,
                encoder: "tokenizers".into(),
            },
            chat_template: None,
            max_length: Some(1024),
            completion_only_loss: None,
            assistant_only_loss: false,
            packing: Some("bfd".into()),
            columns: PACKED_COLUMNS.iter().map(|c| c.to_string()).collect(),
            summary: serde_json::json!({"rows_in": 3}),
        }
    }

    #[test]
    fn a_written_manifest_reads_back_and_marks_the_table_prepared() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("train.parquet");
        std::fs::write(&table, b"PAR1").unwrap();
        assert!(!is_prepared(&table));
        let m = manifest("00112233");
        m.write(&table).unwrap();
        assert!(dir.path().join("train.manifest.json").is_file());
        assert!(is_prepared(&table));
        assert_eq!(Manifest::read(&table).unwrap(), m);
        // A .jsonl with a manifest beside it is not a prepared table.
        assert!(!is_prepared(&dir.path().join("train.jsonl")));
    }

    #[test]
    fn a_broken_manifest_is_named_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("t.parquet");
        std::fs::write(dir.path().join("t.manifest.json"), "{\"version\": 1}").unwrap();
        let err = Manifest::read(&table).unwrap_err();
        assert!(matches!(err, PreparedError::Manifest { .. }));
        let text = err.to_string();
        assert!(
            text.contains("t.manifest.json") && text.contains("tokenizer"),
            "{text}"
        );
    }

    #[test]
    fn another_tokenizer_is_refused_with_both_fingerprints() {
        let tok = SftTokenizer::from_path(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../data-samples/models/smollm2-135m-instruct-tokenizer"
        )))
        .unwrap();
        let table = Path::new("t.parquet");
        let model = Path::new("model");
        manifest(&tok.fingerprint)
            .check_tokenizer(table, &tok, model)
            .unwrap();
        let err = manifest("ffff")
            .check_tokenizer(table, &tok, model)
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("ffff")
                && text.contains(&tok.fingerprint)
                && text.contains("--tokenizer model"),
            "{text}"
        );
    }
}

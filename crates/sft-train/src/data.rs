//! Token rows for training and scoring: a prepared table (checked against the model's
//! tokenizer) or any dataset prepared on the fly exactly as `sft-data prepare` does.
//!
//! [`Dataset::open`] decides once what a path holds; [`load_rows`] turns it into the rows
//! the trainer and the scorer batch. The table's layout and manifest belong to
//! [`sft_dataset::prepared`].

use std::fmt;
use std::path::{Path, PathBuf};

use sft_dataset::prepare::{prepare, PrepareJob, PrepareSummary};
use sft_dataset::prepared::{self, Manifest, PreparedError};
use sft_io::{discover, ByteCounter, DataFile, ReadOptions};
use sft_model::BatchRow;
use sft_tokenize::{chat_template, PackingStrategy, SftTokenizer, TemplateChoice, TokenizeOptions};

/// How rows become token rows (the flags `sft-data prepare` takes).
#[derive(Debug, Clone, Default)]
pub struct DataPlan {
    /// Packing of these rows (TRL's `packing` for the training set, `eval_packing` for the
    /// others).
    pub packing: Option<PackingStrategy>,
    pub options: TokenizeOptions,
    /// A chat template other than the model's own.
    pub chat_template: Option<String>,
}

/// What a dataset path holds, decided once.
#[derive(Debug, Clone)]
pub enum Dataset {
    /// A table written by `sft-data prepare` (with its manifest).
    Prepared {
        table: PathBuf,
        manifest: Box<Manifest>,
    },
    /// Data files in any of the four formats.
    Files { path: PathBuf, files: Vec<DataFile> },
}

impl Dataset {
    pub fn open(path: &Path) -> Result<Dataset, DataError> {
        if prepared::is_prepared(path) {
            let manifest = Box::new(Manifest::read(path).map_err(DataError::Prepared)?);
            return Ok(Dataset::Prepared {
                table: path.to_path_buf(),
                manifest,
            });
        }
        let files = discover(&[path.to_path_buf()]).map_err(|e| DataError::Files(e.to_string()))?;
        Ok(Dataset::Files {
            path: path.to_path_buf(),
            files,
        })
    }

    /// Data files given one by one (the files of a Hub dataset's split); `label` is the
    /// path shown for them.
    pub fn open_files(label: &Path, paths: &[PathBuf]) -> Result<Dataset, DataError> {
        if let [one] = paths {
            return Self::open(one);
        }
        let files = discover(paths).map_err(|e| DataError::Files(e.to_string()))?;
        Ok(Dataset::Files {
            path: label.to_path_buf(),
            files,
        })
    }

    pub fn path(&self) -> &Path {
        match self {
            Dataset::Prepared { table, .. } => table,
            Dataset::Files { path, .. } => path,
        }
    }
}

/// Rows ready to batch, and where they came from.
#[derive(Debug)]
pub struct LoadedRows {
    pub rows: Vec<BatchRow>,
    /// The table the rows were read from.
    pub table: PathBuf,
    /// The preparation that made the table, when it was prepared now (not read as given).
    pub prepared: Option<PrepareSummary>,
}

impl LoadedRows {
    /// What loading did, as lines for a log: the prepared table read, or the preparation
    /// done now with its first rejects, unreadable files and warnings.
    pub fn describe(&self, name: &str) -> Vec<String> {
        let Some(s) = &self.prepared else {
            return vec![format!(
                "{name}: {} prepared rows from {}",
                self.rows.len(),
                self.table.display()
            )];
        };
        let mut lines = vec![format!(
            "{name}: {} rows read, {} examples, {} rejected{}, {} rows of {} tokens ({} trained) -> {}",
            s.rows_in,
            s.examples,
            s.rejected,
            s.rejects_file
                .as_ref()
                .map(|p| format!(" (see {})", p.display()))
                .unwrap_or_default(),
            s.rows_out,
            s.tokens,
            s.trained_tokens,
            self.table.display()
        )];
        for (location, code, reason) in &s.first_rejects {
            lines.push(format!("{name}: rejected {location}: {code}: {reason}"));
        }
        for (file, reason) in &s.unreadable_files {
            lines.push(format!("{name}: unreadable {file}: {reason}"));
        }
        for w in &s.warnings {
            lines.push(format!("{name}: warning [{}]: {}", w.code, w.message));
        }
        lines
    }
}

/// Why rows could not be had.
#[derive(Debug)]
pub enum DataError {
    /// The model folder has no usable tokenizer.
    Tokenizer(String),
    /// No data files at the path.
    Files(String),
    /// The chat template cannot be found or compiled.
    Template(String),
    /// A prepared table whose manifest is broken or made with another tokenizer.
    Prepared(PreparedError),
    /// Preparing the rows failed (an output that cannot be written).
    Prepare(String),
    /// The token table is not one `prepare` writes, or a row is broken.
    Table(String),
    /// Every row was rejected.
    NoUsableRows { path: PathBuf, rejected: u64 },
    /// An input could not be read to its end, so nothing was prepared from it (rows would
    /// be missing without a trace).
    Unreadable {
        path: PathBuf,
        files: Vec<(String, String)>,
        rows_not_read: u64,
    },
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Tokenizer(e) => write!(f, "{e}\n  hint: the model folder needs tokenizer.json (and tokenizer_config.json with the chat template)"),
            DataError::Files(e) => write!(f, "{e}\n  hint: pass data files (.jsonl, .json, .parquet, .arrow, .txt), a folder of them, or a prepared .parquet"),
            DataError::Template(e) | DataError::Prepare(e) | DataError::Table(e) => f.write_str(e),
            DataError::Prepared(e) => write!(f, "{e}"),
            DataError::Unreadable {
                path,
                files,
                rows_not_read,
            } => {
                write!(
                    f,
                    "{}: an input could not be read to its end, so nothing was prepared from it",
                    path.display()
                )?;
                if *rows_not_read > 0 {
                    write!(f, " ({rows_not_read} rows not read)")?;
                }
                for (file, reason) in files {
                    write!(f, "\n  {file}: {reason}")?;
                }
                write!(f, "\n  hint: repair or re-download the file, or leave it out; `sft-data check` shows where it breaks")
            }
            DataError::NoUsableRows { path, rejected } => write!(
                f,
                "{}: no usable rows ({rejected} rejected; see the rejects file)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for DataError {}

/// Rows of `dataset` for the model in `model_dir`: a prepared table as it is (after checking
/// its tokenizer), anything else prepared into `work/NAME.parquet` (with its manifest and
/// rejects beside it).
pub fn load_rows(
    dataset: &Dataset,
    name: &str,
    model_dir: &Path,
    plan: &DataPlan,
    work: &Path,
) -> Result<LoadedRows, DataError> {
    let tokenizer =
        SftTokenizer::from_path(model_dir).map_err(|e| DataError::Tokenizer(e.to_string()))?;
    // The model's vocabulary bounds the token ids (its config is beside the tokenizer).
    let vocab = sft_model::read_config(&model_dir.join("config.json"))
        .ok()
        .map(|c| c.vocab_size());
    let files = match dataset {
        Dataset::Prepared { table, manifest } => {
            manifest
                .check_tokenizer(table, &tokenizer, model_dir)
                .map_err(DataError::Prepared)?;
            return Ok(LoadedRows {
                rows: load_prepared(table, vocab).map_err(DataError::Table)?,
                table: table.clone(),
                prepared: None,
            });
        }
        Dataset::Files { files, .. } => files.clone(),
    };
    let template = chat_template(
        Some(&tokenizer),
        &TemplateChoice::named(plan.chat_template.as_deref()),
    )
    .map_err(DataError::Template)?;
    std::fs::create_dir_all(work)
        .map_err(|e| DataError::Prepare(format!("{}: {e}", work.display())))?;
    let output = work.join(format!("{name}.parquet"));
    let job = PrepareJob {
        inputs: files,
        read: ReadOptions::default(),
        tokenizer,
        template,
        options: plan.options.clone(),
        packing: plan.packing,
        output: output.clone(),
        rejects: None,
        progress: ByteCounter::default(),
    };
    let summary = prepare(&job).map_err(|e| DataError::Prepare(e.to_string()))?;
    if !summary.output_written {
        return Err(DataError::Unreadable {
            path: dataset.path().to_path_buf(),
            files: summary.unreadable_files.clone(),
            rows_not_read: summary.rows_not_read,
        });
    }
    if summary.rows_out == 0 {
        return Err(DataError::NoUsableRows {
            path: dataset.path().to_path_buf(),
            rejected: summary.rejected,
        });
    }
    Ok(LoadedRows {
        rows: load_prepared(&output, vocab).map_err(DataError::Table)?,
        table: output,
        prepared: Some(summary),
    })
}

/// Reads `input_ids`, `labels` (or `completion_mask`) and `seq_lengths` of a prepared
/// Parquet file into rows; with `vocab_size`, every id must be below it. Errors name the
/// file and the row.
pub fn load_prepared(path: &Path, vocab_size: Option<usize>) -> Result<Vec<BatchRow>, String> {
    let columns = sft_io::tokens::read_token_table(path)?;
    let col = |name: &str| {
        columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, rows)| rows)
    };
    let ids = col(prepared::INPUT_IDS).ok_or_else(|| {
        format!(
            "{}: no {} column; is this a table written by `sft-data prepare`?",
            path.display(),
            prepared::INPUT_IDS
        )
    })?;
    let labels = col(prepared::LABELS);
    let mask = col(prepared::COMPLETION_MASK);
    let seq = col(prepared::SEQ_LENGTHS);
    let mut rows = Vec::with_capacity(ids.len());
    for (r, input) in ids.iter().enumerate() {
        let where_ = || format!("{}: row {r}", path.display());
        if input.iter().any(|&x| x < 0) {
            return Err(format!("{}: input_ids holds a negative id", where_()));
        }
        if let Some(v) = vocab_size {
            if let Some(bad) = input.iter().find(|&&x| x as usize >= v) {
                return Err(format!(
                    "{}: token id {bad} is outside the model's vocabulary of {v}\n  hint: was it prepared with another tokenizer? prepare it again with the model's",
                    where_()
                ));
            }
        }
        let input_ids: Vec<u32> = input.iter().map(|&x| x as u32).collect();
        let labels: Vec<i64> = match (labels, mask) {
            (Some(l), _) => l[r].iter().map(|&x| x as i64).collect(),
            (None, Some(m)) => m[r]
                .iter()
                .zip(input)
                .map(|(&m, &id)| if m == 1 { id as i64 } else { -100 })
                .collect(),
            (None, None) => input.iter().map(|&x| x as i64).collect(),
        };
        if labels.len() != input_ids.len() {
            return Err(format!(
                "{}: {} labels for {} input_ids",
                where_(),
                labels.len(),
                input_ids.len()
            ));
        }
        let seq_lengths = match seq {
            Some(s) => s[r].iter().map(|&x| x.max(0) as usize).collect(),
            None => vec![input_ids.len()],
        };
        if seq_lengths.iter().sum::<usize>() != input_ids.len() {
            return Err(format!(
                "{}: seq_lengths do not add up to the row length",
                where_()
            ));
        }
        rows.push(BatchRow {
            input_ids,
            labels,
            seq_lengths,
        });
    }
    Ok(rows)
}

/// The micro-batches of step `step_in_epoch` of an epoch whose rows come in `order`:
/// `accumulation` micro-batches of `batch_size` rows (fewer at the end of the epoch).
pub fn micro_batches(
    rows: &[BatchRow],
    order: &[usize],
    step_in_epoch: usize,
    batch_size: usize,
    accumulation: usize,
) -> Vec<Vec<BatchRow>> {
    let micro_per_epoch = order.len().div_ceil(batch_size);
    let first = step_in_epoch * accumulation;
    let last = (first + accumulation).min(micro_per_epoch);
    (first..last)
        .map(|m| {
            let lo = m * batch_size;
            let hi = (lo + batch_size).min(order.len());
            order[lo..hi].iter().map(|&i| rows[i].clone()).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data-samples/models/tiny-llama"
    );
    const MESSAGES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data-samples/formats/messages.jsonl"
    );

    #[test]
    fn ids_outside_the_vocabulary_are_reported_with_their_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let mut w = sft_io::tokens::TokenTableWriter::create(&path, &["input_ids"]).unwrap();
        w.write(&[&[5, 6, 7]]).unwrap();
        w.write(&[&[5, 60000]]).unwrap();
        w.finish().unwrap();
        assert_eq!(load_prepared(&path, None).unwrap().len(), 2);
        let err = load_prepared(&path, Some(49152)).unwrap_err();
        assert!(
            err.contains("row 1") && err.contains("60000") && err.contains("49152"),
            "{err}"
        );
    }

    #[test]
    fn rows_prepared_now_read_back_as_a_prepared_table_with_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let files = Dataset::open(Path::new(MESSAGES)).unwrap();
        assert!(matches!(files, Dataset::Files { .. }));
        let plan = DataPlan {
            options: TokenizeOptions {
                max_length: Some(256),
                ..TokenizeOptions::default()
            },
            ..DataPlan::default()
        };
        let now = load_rows(&files, "heldout", Path::new(TINY), &plan, dir.path()).unwrap();
        let summary = now.prepared.as_ref().expect("prepared now");
        assert_eq!(summary.rows_out as usize, now.rows.len());
        assert!(
            now.describe("heldout")[0].starts_with("heldout: 40 rows read"),
            "{:?}",
            now.describe("heldout")
        );
        assert_eq!(now.table, dir.path().join("heldout.parquet"));
        // The table it wrote is a prepared table: read as it is, with the same rows.
        let table = Dataset::open(&now.table).unwrap();
        assert!(matches!(table, Dataset::Prepared { .. }));
        let again = load_rows(&table, "x", Path::new(TINY), &plan, dir.path()).unwrap();
        assert!(again.prepared.is_none());
        assert_eq!(
            again.describe("x"),
            [format!(
                "x: {} prepared rows from {}",
                now.rows.len(),
                now.table.display()
            )]
        );
        assert_eq!(again.rows, now.rows);
    }

    #[test]
    fn micro_batches_follow_the_order_and_end_short_at_the_epoch_end() {
        let rows: Vec<BatchRow> = (0..5)
            .map(|i| BatchRow {
                input_ids: vec![i],
                labels: vec![i as i64],
                seq_lengths: vec![1],
            })
            .collect();
        let ids = |m: &[Vec<BatchRow>]| -> Vec<Vec<u32>> {
            m.iter()
                .map(|b| b.iter().map(|r| r.input_ids[0]).collect())
                .collect()
        };
        let order = [4, 2, 0, 1, 3];
        assert_eq!(
            ids(&micro_batches(&rows, &order, 0, 2, 2)),
            [vec![4, 2], vec![0, 1]]
        );
        assert_eq!(ids(&micro_batches(&rows, &order, 1, 2, 2)), [vec![3]]);
    }

    #[test]
    fn a_missing_dataset_is_a_files_error_with_a_hint() {
        let err = Dataset::open(Path::new("/no/such/data.jsonl")).unwrap_err();
        assert!(matches!(err, DataError::Files(_)));
        assert!(err.to_string().contains("hint"), "{err}");
    }
}

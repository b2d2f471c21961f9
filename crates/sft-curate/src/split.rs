//! `split`: a deterministic train/test split in the Hugging Face Hub layout
//! (`DIR/data/train-00000-of-00001.parquet`, `DIR/data/test-00000-of-00001.parquet`), that
//! `datasets.load_dataset(DIR)` reads as a `DatasetDict`, with no leak between the sides:
//! exact duplicates, near-duplicates and rows that share their prompt land on one side.
//!
//! Each row is first given a side as `train_test_split` would (exactly `ceil(test_size *
//! n)` rows drawn for the test side, from the seed; within each source when stratified),
//! then every group of related rows follows its first row; the rows that changed side are
//! counted as moved.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use sft_io::write::{DatasetWriter, OutputFormat};

use crate::groups::{group_rows, GroupBy};
use crate::minhash::LshParams;
use crate::pass::{each_row, Input, OpError, Rejects};
use crate::rng::{Rng, Selection};
use sft_dataset::source::{file_source_name, row_source};

/// How big the test side is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TestSize {
    Fraction(f64),
    Rows(u64),
}

impl TestSize {
    /// `0.05` (a fraction, strictly between 0 and 1) or `500` (rows, at least 2); `0` and
    /// `1` are refused: one is an empty test side, the other ambiguous (all rows, or one).
    pub fn parse(text: &str) -> Result<TestSize, String> {
        let hint = "pass a fraction such as 0.05, or a number of rows such as 500";
        if let Ok(rows) = text.parse::<u64>() {
            return match rows {
                0 => Err(format!(
                    "--test-size 0 leaves the test split empty\n  hint: {hint}"
                )),
                1 => Err(format!(
                    "--test-size 1 is ambiguous (every row, or one row?)\n  hint: {hint}"
                )),
                n => Ok(TestSize::Rows(n)),
            };
        }
        match text.parse::<f64>() {
            Ok(f) if f > 0.0 && f < 1.0 => Ok(TestSize::Fraction(f)),
            Ok(f) => Err(format!(
                "--test-size {f}: a fraction must be strictly between 0 and 1\n  hint: {hint}"
            )),
            Err(_) => Err(format!("--test-size {text}: not a number\n  hint: {hint}")),
        }
    }

    /// Test rows of `n` (as `datasets.train_test_split`: the fraction rounded up).
    pub fn rows_of(&self, n: u64) -> u64 {
        match *self {
            TestSize::Fraction(f) => (f * n as f64).ceil() as u64,
            TestSize::Rows(r) => r,
        }
    }
}

pub struct SplitJob {
    pub input: Input,
    /// The output folder.
    pub output: PathBuf,
    pub test_size: TestSize,
    pub seed: u64,
    /// Draw the test rows within each source (the `source` field, else the file's name).
    pub stratify: bool,
    /// Near-duplicates above this similarity stay together; `None`: only exact duplicates
    /// and shared prompts.
    pub near_threshold: Option<f64>,
    /// Parquet (the Hub layout) or JSON lines.
    pub format: OutputFormat,
    pub rejects: Option<PathBuf>,
    pub report: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SplitSummary {
    pub rows_in: u64,
    pub train: u64,
    pub test: u64,
    /// Test rows drawn before grouping (what `train_test_split` would give).
    pub test_drawn: u64,
    /// Rows moved to the side of their group's first row.
    pub moved_to_train: u64,
    pub moved_to_test: u64,
    /// Rows in a group of more than one row.
    pub grouped_rows: u64,
    pub exact_duplicates: u64,
    pub shared_prompt_links: u64,
    pub bad_rows: u64,
    pub seed: u64,
    pub stratified: bool,
    /// Test rows per source (with --stratify-by-source).
    pub test_by_source: BTreeMap<String, u64>,
    pub train_file: PathBuf,
    pub test_file: PathBuf,
    pub rejects_file: Option<PathBuf>,
    pub seconds: f64,
}

/// The two files of a split folder.
pub fn split_files(dir: &Path, format: OutputFormat) -> (PathBuf, PathBuf) {
    let ext = match format {
        OutputFormat::Parquet => "parquet",
        OutputFormat::JsonLines => "jsonl",
    };
    let data = dir.join("data");
    (
        data.join(format!("train-00000-of-00001.{ext}")),
        data.join(format!("test-00000-of-00001.{ext}")),
    )
}

pub fn split(job: &SplitJob) -> Result<SplitSummary, OpError> {
    let started = Instant::now();
    // Pass 1: keys, and each row's stratum.
    let mut strata: Vec<u16> = Vec::new();
    let mut stratum_names: Vec<String> = Vec::new();
    let mut stratum_of: std::collections::HashMap<String, u16> = Default::default();
    let groups = group_rows(
        &job.input,
        &GroupBy {
            near: job.near_threshold.map(LshParams::for_threshold),
            prompt: true,
        },
        |at, value| {
            if !job.stratify {
                return;
            }
            let name = match value {
                Some(v) => row_source(v, &file_source_name(&at.file.path)),
                None => String::new(),
            };
            let next = stratum_names.len() as u16;
            let id = *stratum_of.entry(name.clone()).or_insert_with(|| {
                stratum_names.push(name);
                next
            });
            strata.push(id);
        },
    )?;
    if job.stratify && stratum_names.len() > u16::MAX as usize - 1 {
        return Err(OpError::Usage(format!(
            "--stratify-by-source: {} sources; at most {} can be stratified",
            stratum_names.len(),
            u16::MAX - 1
        )));
    }
    let n = groups.good_rows();
    let wanted = job.test_size.rows_of(n);
    if wanted == 0 || wanted >= n {
        return Err(OpError::Usage(format!(
            "the input has {n} usable rows; a test size of {wanted} leaves {} side empty\n  hint: pass a --test-size between 1 and {} rows",
            if wanted == 0 { "the test" } else { "the train" },
            n.saturating_sub(1)
        )));
    }
    // The sides as drawn: exactly `wanted` test rows (per stratum: its share, rounded up).
    let words = (groups.rows as usize).div_ceil(64);
    let mut drawn = vec![0u64; words];
    let mut rng = Rng::new(job.seed);
    let mut test_by_source = BTreeMap::new();
    if job.stratify {
        let mut sizes = vec![0u64; stratum_names.len()];
        for row in 0..groups.rows {
            if !groups.is_bad(row) {
                sizes[strata[row as usize] as usize] += 1;
            }
        }
        let mut selections: Vec<Selection> = sizes
            .iter()
            .map(|&s| {
                let share = match job.test_size {
                    TestSize::Fraction(f) => (f * s as f64).ceil() as u64,
                    TestSize::Rows(r) => (r as f64 * s as f64 / n as f64).round() as u64,
                };
                Selection::new(share, s)
            })
            .collect();
        for row in 0..groups.rows {
            if !groups.is_bad(row) && selections[strata[row as usize] as usize].take(&mut rng) {
                drawn[(row / 64) as usize] |= 1 << (row % 64);
            }
        }
        drop(strata);
    } else {
        let mut selection = Selection::new(wanted, n);
        for row in 0..groups.rows {
            if !groups.is_bad(row) && selection.take(&mut rng) {
                drawn[(row / 64) as usize] |= 1 << (row % 64);
            }
        }
    }
    let is_drawn = |row: u64| drawn[(row / 64) as usize] >> (row % 64) & 1 == 1;
    let (train_path, test_path) = split_files(&job.output, job.format);
    std::fs::create_dir_all(train_path.parent().expect("has a folder")).map_err(|e| {
        OpError::Data(format!(
            "cannot create {}: {e}",
            job.output.join("data").display()
        ))
    })?;
    let mut train = DatasetWriter::create_as(&train_path, job.format)?;
    let mut test = DatasetWriter::create_as(&test_path, job.format)?;
    let rejects_path = job
        .rejects
        .clone()
        .unwrap_or_else(|| crate::pass::default_rejects_path(&job.output));
    let mut rejects = Rejects::new(&rejects_path, job.rejects.is_some())?;
    let mut summary = SplitSummary {
        rows_in: groups.rows,
        train: 0,
        test: 0,
        test_drawn: 0,
        moved_to_train: 0,
        moved_to_test: 0,
        grouped_rows: 0,
        exact_duplicates: 0,
        shared_prompt_links: groups.prompt_links,
        bad_rows: groups.bad_rows,
        seed: job.seed,
        stratified: job.stratify,
        test_by_source: BTreeMap::new(),
        train_file: train_path.clone(),
        test_file: test_path.clone(),
        rejects_file: None,
        seconds: 0.0,
    };
    each_row(
        &job.input,
        |file, value| {
            let source = job
                .stratify
                .then(|| row_source(&value, &file_source_name(&file.path)));
            (value, source)
        },
        |at, result| {
            let (value, source) = match result {
                Ok(v) => v,
                Err(bad) => return rejects.bad_row(&at, *bad),
            };
            let row = at.seq;
            let first = groups.representative(row);
            let side_test = is_drawn(first);
            if is_drawn(row) {
                summary.test_drawn += 1;
            }
            if groups.in_group(row) {
                summary.grouped_rows += 1;
            }
            if groups.is_exact_duplicate(row) {
                summary.exact_duplicates += 1;
            }
            match (is_drawn(row), side_test) {
                (true, false) => summary.moved_to_train += 1,
                (false, true) => summary.moved_to_test += 1,
                _ => {}
            }
            if side_test {
                if let Some(s) = source {
                    *test_by_source.entry(s).or_insert(0u64) += 1;
                }
                test.write(&value)?;
            } else {
                train.write(&value)?;
            }
            Ok(())
        },
    )?;
    // One schema for both files: `datasets` loads the splits with one set of features.
    let counts = sft_io::write::finish_as_one_dataset(vec![train, test])?;
    (summary.train, summary.test) = (counts[0], counts[1]);
    summary.test_by_source = test_by_source;
    summary.rejects_file = rejects.finish()?;
    summary.seconds = started.elapsed().as_secs_f64();
    if let Some(path) = &job.report {
        let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
        sft_io::write::write_atomic(path, text.as_bytes())?;
    }
    Ok(summary)
}

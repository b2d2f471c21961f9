//! `mix`: sources sampled by weight into one dataset, each row tagged with its `source`.
//!
//! The rows each source gives are fixed first: `rows * weight / total weight`, rounded so
//! that they add up (largest remainders). Without replacement a source asked for more rows
//! than it has is taken whole as many times as fit and the rest drawn without
//! replacement (no row repeats more than once more than any other); with replacement every
//! row is drawn independently. The sources are then interleaved at random in proportion to
//! what each has left, so every stretch of the output has the mix's proportions, and each
//! source is read as a stream: memory does not grow with the data (4 bytes per drawn row
//! with replacement, to sort the draws).

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use sft_dataset::pipeline::parse_row;
use sft_io::write::DatasetWriter;
use sft_io::{DataFile, RawRow, RowBatch, RowReader};

use crate::pass::{each_row, Input, OpError, Rejects};
use crate::rng::{Rng, Selection};

pub struct MixSource {
    pub name: String,
    pub files: Vec<DataFile>,
    pub weight: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MixSize {
    /// This many rows in all.
    Rows(u64),
    /// One pass over the named source; the others in proportion.
    EpochsOf(String),
}

pub struct MixJob {
    pub sources: Vec<MixSource>,
    pub size: MixSize,
    pub seed: u64,
    pub replacement: bool,
    pub read: sft_io::ReadOptions,
    pub progress: sft_io::ByteCounter,
    pub output: PathBuf,
    pub rejects: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceShare {
    pub name: String,
    pub weight: f64,
    /// Usable rows the source has.
    pub available: u64,
    pub taken: u64,
    /// The share asked for (weight over total weight) and the share written.
    pub asked: f64,
    pub realised: f64,
    /// How many times over the source was used (taken / available).
    pub epochs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MixSummary {
    pub rows: u64,
    pub sources: Vec<SourceShare>,
    pub seed: u64,
    pub replacement: bool,
    pub bad_rows: u64,
    pub output: PathBuf,
    pub rejects_file: Option<PathBuf>,
    pub seconds: f64,
}

/// Rows of each source for `total` rows: proportional to the weights, rounded by largest
/// remainders so that they add up to `total`.
pub fn shares(weights: &[f64], total: u64) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    let exact: Vec<f64> = weights.iter().map(|w| w / sum * total as f64).collect();
    let mut counts: Vec<u64> = exact.iter().map(|e| e.floor() as u64).collect();
    let mut left = total - counts.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .partial_cmp(&(exact[a] - exact[a].floor()))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    for i in order {
        if left == 0 {
            break;
        }
        counts[i] += 1;
        left -= 1;
    }
    counts
}

/// The usable rows of a source, read again and again from its files.
struct RowStream<'a> {
    files: &'a [DataFile],
    read: &'a sft_io::ReadOptions,
    file: usize,
    reader: Option<Box<dyn RowReader>>,
    batch: RowBatch,
    rows: std::vec::IntoIter<RawRow>,
}

impl<'a> RowStream<'a> {
    fn new(files: &'a [DataFile], read: &'a sft_io::ReadOptions) -> Self {
        RowStream {
            files,
            read,
            file: 0,
            reader: None,
            batch: RowBatch::default(),
            rows: Vec::new().into_iter(),
        }
    }

    fn rewind(&mut self) {
        self.file = 0;
        self.reader = None;
        self.rows = Vec::new().into_iter();
    }

    /// The next row that parses (bad rows were rejected on the counting pass).
    fn next(&mut self) -> Result<Option<Value>, OpError> {
        loop {
            if let Some(raw) = self.rows.next() {
                if let Ok(v) = parse_row(&self.batch, &raw) {
                    return Ok(Some(v));
                }
                continue;
            }
            if self.file >= self.files.len() {
                return Ok(None);
            }
            if self.reader.is_none() {
                let f = &self.files[self.file];
                self.reader = Some(sft_io::open(f, self.read).map_err(|e| {
                    OpError::Data(format!("{}: {}; nothing was written", f.display, e.message))
                })?);
            }
            let f = &self.files[self.file];
            match self.reader.as_mut().expect("opened").next_batch() {
                Ok(Some(mut batch)) => {
                    self.rows = std::mem::take(&mut batch.rows).into_iter();
                    self.batch = batch;
                }
                Ok(None) => {
                    self.reader = None;
                    self.file += 1;
                }
                Err(e) if e.kind == sft_io::FileErrorKind::Empty => {
                    self.reader = None;
                    self.file += 1;
                }
                Err(e) => {
                    return Err(OpError::Data(format!(
                        "{}: {}; nothing was written",
                        f.display, e.message
                    )))
                }
            }
        }
    }
}

/// Which rows of a source are written, and how often.
enum Plan {
    /// `full` whole passes, then a pass that takes `rest` rows of `available`.
    Passes { full: u64, rest: Selection },
    /// Independent draws: the row numbers drawn, sorted.
    Draws { draws: std::vec::IntoIter<u32> },
}

struct SourceRows<'a> {
    stream: RowStream<'a>,
    plan: Plan,
    rng: Rng,
    pass: u64,
    /// The usable row the stream is at (with replacement).
    at: u64,
    /// With replacement: the current row and how many more copies of it to write.
    copies: Option<(Value, u64)>,
}

impl SourceRows<'_> {
    fn next(&mut self) -> Result<Option<Value>, OpError> {
        match &mut self.plan {
            Plan::Passes { full, rest } => loop {
                match self.stream.next()? {
                    Some(v) => {
                        if self.pass < *full || rest.take(&mut self.rng) {
                            return Ok(Some(v));
                        }
                    }
                    None => {
                        self.pass += 1;
                        if self.pass > *full {
                            return Ok(None);
                        }
                        self.stream.rewind();
                    }
                }
            },
            Plan::Draws { draws } => {
                if let Some((v, left)) = &mut self.copies {
                    if *left > 0 {
                        *left -= 1;
                        return Ok(Some(v.clone()));
                    }
                }
                let Some(target) = draws.next() else {
                    return Ok(None);
                };
                let mut extra = 0;
                while draws.as_slice().first() == Some(&target) {
                    draws.next();
                    extra += 1;
                }
                loop {
                    let Some(v) = self.stream.next()? else {
                        return Ok(None);
                    };
                    self.at += 1;
                    if self.at - 1 == target as u64 {
                        self.copies = Some((v.clone(), extra));
                        return Ok(Some(v));
                    }
                }
            }
        }
    }
}

pub fn mix(job: &MixJob) -> Result<MixSummary, OpError> {
    let started = Instant::now();
    let rejects_path = job
        .rejects
        .clone()
        .unwrap_or_else(|| crate::pass::default_rejects_path(&job.output));
    let mut rejects = Rejects::new(&rejects_path, job.rejects.is_some())?;
    // Pass 1: usable rows per source; bad rows go to the rejects file.
    let mut available = Vec::with_capacity(job.sources.len());
    let mut bad_rows = 0;
    for source in &job.sources {
        let input = Input {
            files: source.files.clone(),
            read: job.read.clone(),
            progress: job.progress.clone(),
        };
        let mut good = 0u64;
        each_row(
            &input,
            |_, _| (),
            |at, result| match result {
                Ok(()) => {
                    good += 1;
                    Ok(())
                }
                Err(bad) => {
                    bad_rows += 1;
                    rejects.bad_row(&at, *bad)
                }
            },
        )?;
        if good == 0 {
            return Err(OpError::Data(format!(
                "source {}: no usable row in {}",
                source.name,
                source
                    .files
                    .iter()
                    .map(|f| f.display.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        available.push(good);
    }
    let weights: Vec<f64> = job.sources.iter().map(|s| s.weight).collect();
    let total_weight: f64 = weights.iter().sum();
    let total = match &job.size {
        MixSize::Rows(n) => *n,
        MixSize::EpochsOf(name) => {
            let i = job
                .sources
                .iter()
                .position(|s| &s.name == name)
                .ok_or_else(|| {
                    OpError::Usage(format!(
                        "--epochs-of {name}: no source of that name (the sources are {})",
                        job.sources
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            (available[i] as f64 * total_weight / weights[i]).round() as u64
        }
    };
    let taken = shares(&weights, total);
    if !job.replacement {
        // Whole passes are fine; only say so, as a source repeated is often a mistake.
        for (i, s) in job.sources.iter().enumerate() {
            if taken[i] > available[i] {
                eprintln!(
                    "sft-data: note: source {} has {} rows and gives {}: it is repeated {:.2} times",
                    s.name,
                    available[i],
                    taken[i],
                    taken[i] as f64 / available[i] as f64
                );
            }
        }
    }
    let mut streams: Vec<SourceRows> = job
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut rng = Rng::derive(job.seed, i as u64 + 1);
            let plan = if job.replacement {
                let mut draws: Vec<u32> = (0..taken[i])
                    .map(|_| rng.below(available[i]) as u32)
                    .collect();
                draws.sort_unstable();
                Plan::Draws {
                    draws: draws.into_iter(),
                }
            } else {
                Plan::Passes {
                    full: taken[i] / available[i],
                    rest: Selection::new(taken[i] % available[i], available[i]),
                }
            };
            SourceRows {
                stream: RowStream::new(&s.files, &job.read),
                plan,
                rng,
                pass: 0,
                at: 0,
                copies: None,
            }
        })
        .collect();
    let mut writer = DatasetWriter::create(&job.output)?;
    let mut left = taken.clone();
    let mut left_total: u64 = left.iter().sum();
    let mut rng = Rng::new(job.seed);
    let mut written = vec![0u64; job.sources.len()];
    while left_total > 0 {
        let mut pick = rng.below(left_total);
        let mut i = 0;
        while pick >= left[i] {
            pick -= left[i];
            i += 1;
        }
        left[i] -= 1;
        left_total -= 1;
        let Some(mut row) = streams[i].next()? else {
            return Err(OpError::Data(format!(
                "source {}: its files gave fewer rows on the second read than on the first (were they changed during the mix?)",
                job.sources[i].name
            )));
        };
        if let Value::Object(map) = &mut row {
            map.insert("source".into(), Value::String(job.sources[i].name.clone()));
        }
        writer.write(&row)?;
        written[i] += 1;
    }
    let rows = writer.finish()?;
    let sources = job
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| SourceShare {
            name: s.name.clone(),
            weight: s.weight,
            available: available[i],
            taken: written[i],
            asked: s.weight / total_weight,
            realised: if rows == 0 {
                0.0
            } else {
                written[i] as f64 / rows as f64
            },
            epochs: written[i] as f64 / available[i] as f64,
        })
        .collect();
    Ok(MixSummary {
        rows,
        sources,
        seed: job.seed,
        replacement: job.replacement,
        bad_rows,
        output: job.output.clone(),
        rejects_file: rejects.finish()?,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_follow_the_weights() {
        let s = shares(&[1.0, 1.0, 1.0], 100);
        assert_eq!(s.iter().sum::<u64>(), 100);
        assert_eq!(s, vec![34, 33, 33]);
        assert_eq!(shares(&[3.0, 1.0], 8), vec![6, 2]);
    }
}

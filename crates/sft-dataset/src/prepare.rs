//! `prepare`: rows to a training-ready token table (TRL's pre-tokenized columns), with a
//! manifest, the rows that could not be used, and the checks that protect training.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use serde_json::{json, Value};
use sft_io::tokens::{TextColumn, TokenTableWriter};
use sft_io::write::{DatasetWriter, WriteError};
use sft_io::{ByteCounter, DataFile, ReadOptions};
use sft_template::ChatTemplate;
use sft_tokenize::{
    pack, packing_stats, stop_token_ids, tokenize_row, Example, PackingStrategy, SftTokenizer,
    TokenizeOptions,
};

use crate::location::Location;
use crate::pipeline::{self, parse_row, row_location, FileEvent};
use crate::prepared::{
    Manifest, ManifestTemplate, ManifestTokenizer, COLUMNS, PACKED_COLUMNS, SOURCE,
};
use crate::source::{file_source_name, source_field};
use crate::stats::LengthStats;

pub struct PrepareJob {
    pub inputs: Vec<DataFile>,
    pub read: ReadOptions,
    pub tokenizer: SftTokenizer,
    pub template: Option<ChatTemplate>,
    pub options: TokenizeOptions,
    pub packing: Option<PackingStrategy>,
    pub output: PathBuf,
    /// Where unusable rows go; `None` puts them beside the output as `NAME.rejects.jsonl`.
    pub rejects: Option<PathBuf>,
    pub progress: ByteCounter,
}

/// A finding about the prepared data that would hurt training.
#[derive(Debug, Clone, Serialize)]
pub struct Warning {
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PackingSummary {
    pub strategy: &'static str,
    pub rows: u64,
    pub lower_bound_rows: u64,
    pub efficiency: f64,
}

/// What one source contributed to the table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SourceCounts {
    pub source: String,
    /// Examples kept (before packing).
    pub examples: u64,
    /// Tokens of those examples, as written (after truncation).
    pub tokens: u64,
    pub trained_tokens: u64,
}

/// Sources listed in the summary and manifest; past it the smallest are counted together.
pub const SOURCES_LISTED: usize = 1000;

#[derive(Debug, Clone, Serialize)]
pub struct PrepareSummary {
    pub rows_in: u64,
    /// Examples kept (before packing).
    pub examples: u64,
    /// Rows in the output table (after packing).
    pub rows_out: u64,
    pub rejected: u64,
    /// Rows dropped because no token of theirs is trained (after truncation).
    pub no_trained_tokens: u64,
    pub truncated: u64,
    pub tokens: u64,
    pub trained_tokens: u64,
    pub lengths: Option<LengthStats>,
    pub packing: Option<PackingSummary>,
    /// Per source (the rows' `source` field, or their file's name), largest first; at most
    /// [`SOURCES_LISTED`].
    pub sources: Vec<SourceCounts>,
    /// Sources not listed (there were more than [`SOURCES_LISTED`]).
    pub sources_left_out: u64,
    pub warnings: Vec<Warning>,
    #[serde(skip)]
    pub first_rejects: Vec<(Location, String, String)>,
    #[serde(skip)]
    pub unreadable_files: Vec<(String, String)>,
    #[serde(skip)]
    pub rejects_file: Option<PathBuf>,
    /// Rows known not to have been read (a file that says how many rows it has, cut short).
    pub rows_not_read: u64,
    /// Input files that could not be read to their end.
    pub files_not_read: u64,
    /// Whether the table and its manifest were written: not after a read error that lost
    /// rows, so that no table looks complete without them.
    #[serde(skip)]
    pub output_written: bool,
    pub seconds: f64,
    /// The encoder that tokenized the rows: our fast BPE, or `tokenizers`
    /// ([`sft_tokenize::EncoderPath::name`]).
    pub encoder: String,
}

const FIRST_REJECTS_KEPT: usize = 5;

/// What the training checks need to know of the examples, gathered as they pass.
#[derive(Default)]
struct ExampleTally {
    examples: u64,
    tokens: u64,
    trained_tokens: u64,
    /// Examples longer than the row length (cut, without packing or with bfd).
    over_length: u64,
    /// Whether any example trains on EOS or the end-of-turn token.
    stop_trained: bool,
    doubled_bos: u64,
    full_lengths: Vec<u32>,
}

impl ExampleTally {
    fn add(&mut self, e: &Example, capacity: usize, stop_ids: &[u32], bos: Option<u32>) {
        self.examples += 1;
        self.tokens += e.input_ids.len() as u64;
        self.trained_tokens += e.trained_tokens() as u64;
        if e.full_length > capacity {
            self.over_length += 1;
        }
        if !self.stop_trained {
            self.stop_trained = e
                .input_ids
                .iter()
                .zip(&e.mask)
                .any(|(id, &m)| m == 1 && stop_ids.contains(id));
        }
        if let Some(bos) = bos {
            if e.input_ids.len() >= 2 && e.input_ids[0] == bos && e.input_ids[1] == bos {
                self.doubled_bos += 1;
            }
        }
        self.full_lengths
            .push(e.full_length.min(u32::MAX as usize) as u32);
    }
}

/// A row that cannot be trained on: its code, the reason, the row (or an excerpt) and any
/// details for the rejects file.
struct Rejected {
    code: &'static str,
    reason: String,
    record: Value,
    details: Value,
}

/// A row that fails `check`'s validation, as a reject: the first error's code, its field
/// and message as the reason, and every error of the row when there are several.
fn validation_reject(
    first: &sft_formats::RowIssue,
    errors: &[sft_formats::RowIssue],
    row: Value,
) -> Rejected {
    let mut reason = if first.path.is_empty() {
        first.message.clone()
    } else {
        format!("{}: {}", first.path, first.message)
    };
    if errors.len() > 1 {
        reason.push_str(&format!(" (and {} more errors)", errors.len() - 1));
    }
    let mut details = json!({"path": first.path, "hint": first.hint()});
    if errors.len() > 1 {
        details["issues"] = errors
            .iter()
            .map(|i| json!({"code": i.code.as_str(), "path": i.path, "message": i.message}))
            .collect();
    }
    Rejected {
        code: first.code.as_str(),
        reason,
        record: row,
        details,
    }
}

fn to_i32(v: &[u32]) -> Vec<i32> {
    v.iter().map(|&x| x as i32).collect()
}

fn mask_i32(m: &[u8]) -> Vec<i32> {
    m.iter().map(|&x| x as i32).collect()
}

pub fn prepare(job: &PrepareJob) -> Result<PrepareSummary, WriteError> {
    let started = Instant::now();
    let rejects_path = job
        .rejects
        .clone()
        .unwrap_or_else(|| crate::convert::default_rejects_path(&job.output));
    // Whoever calls this (sft-data, sft-train, sft-eval), no input is written over.
    crate::pipeline::refuse_overwriting_inputs(
        &job.inputs,
        &[
            job.output.clone(),
            rejects_path.clone(),
            crate::prepared::manifest_path(&job.output),
        ],
        &job.output,
    )?;
    let mut rejects: Option<DatasetWriter> = None;
    let mut summary = PrepareSummary {
        rows_in: 0,
        examples: 0,
        rows_out: 0,
        rejected: 0,
        no_trained_tokens: 0,
        truncated: 0,
        tokens: 0,
        trained_tokens: 0,
        lengths: None,
        packing: None,
        sources: Vec::new(),
        sources_left_out: 0,
        warnings: Vec::new(),
        first_rejects: Vec::new(),
        unreadable_files: Vec::new(),
        rejects_file: None,
        rows_not_read: 0,
        files_not_read: 0,
        output_written: false,
        seconds: 0.0,
        encoder: job.tokenizer.encoder_path().name(),
    };
    let mut file_rows = vec![0u64; job.inputs.len()];
    let capacity = job.options.max_length.unwrap_or(1024);
    // With packing, examples are not truncated one by one (as in TRL): bfd cuts them to the
    // row length while packing, bfd_split and wrapped split them.
    let tokenize_options = TokenizeOptions {
        max_length: if job.packing.is_some() {
            None
        } else {
            job.options.max_length
        },
        ..job.options.clone()
    };
    // Best-fit packing keeps documents apart: `seq_lengths` lets attention and positions
    // restart per document, and the first token of each document is not predicted from the
    // one before (label -100), as TRL's padding-free collator does. Wrapped packing is
    // plain language-model packing: documents run into each other.
    let separate_documents = matches!(
        job.packing,
        Some(PackingStrategy::Bfd | PackingStrategy::BfdSplit)
    );
    let columns: &[&str] = if separate_documents {
        &PACKED_COLUMNS
    } else {
        &COLUMNS
    };
    // Every row's source is kept beside its tokens: a string per row, or one per document
    // of a packed row (in the order of `seq_lengths`).
    let text_column = if job.packing.is_some() {
        TextColumn::PerDocument(SOURCE)
    } else {
        TextColumn::PerRow(SOURCE)
    };
    let mut table = TokenTableWriter::create_with_text(&job.output, columns, Some(text_column))?;
    let file_sources: Vec<String> = job
        .inputs
        .iter()
        .map(|f| file_source_name(&f.path))
        .collect();
    let mut sources = SourceNames::default();
    let stop_ids = stop_token_ids(&job.tokenizer, job.template.as_ref());
    let bos = job.tokenizer.bos.as_ref().map(|t| t.id);
    let mut tally = ExampleTally::default();
    // Without packing, examples stream to the table; packing needs them all (and their
    // sources, as indices into `sources`).
    let mut kept: Vec<Example> = Vec::new();
    let mut kept_sources: Vec<u32> = Vec::new();
    let mut failure: Option<WriteError> = None;
    pipeline::run(
        &job.inputs,
        &job.read,
        &job.progress,
        |batch, raw| example_of(job, &tokenize_options, batch, raw),
        |file, event| {
            if failure.is_some() {
                return;
            }
            let reject = |rejects: &mut Option<DatasetWriter>, entry: Value| {
                crate::convert::write_reject(rejects, &rejects_path, &entry)
            };
            let result = match event {
                FileEvent::Opened(_) => Ok(()),
                FileEvent::Failed(e) => {
                    let unread = pipeline::UnreadFile::of(&job.inputs[file], file_rows[file], &e);
                    if unread.lost_rows {
                        summary.files_not_read += 1;
                        summary.rows_not_read += unread.rows_not_read;
                    }
                    summary
                        .unreadable_files
                        .push((job.inputs[file].display.clone(), unread.reason));
                    reject(&mut rejects, unread.reject_entry)
                }
                FileEvent::Row(raw, outcome) => {
                    summary.rows_in += 1;
                    file_rows[file] += 1;
                    match outcome {
                        Ok((example, source)) => {
                            tally.add(&example, capacity, &stop_ids, bos);
                            let source =
                                sources.index(source.as_deref().unwrap_or(&file_sources[file]));
                            if job.packing.is_some() {
                                kept.push(example);
                                kept_sources.push(source);
                                Ok(())
                            } else {
                                sources.count(
                                    source,
                                    example.input_ids.len(),
                                    example.trained_tokens(),
                                );
                                table.write_with_text(
                                    &[
                                        &to_i32(&example.input_ids),
                                        &example.labels(),
                                        &mask_i32(&example.mask),
                                    ],
                                    &[sources.name(source)],
                                )
                            }
                        }
                        Err(rejected) => {
                            let Rejected {
                                code,
                                reason,
                                record,
                                details,
                            } = *rejected;
                            let location = row_location(&job.inputs[file], raw);
                            summary.rejected += 1;
                            if code == "no_trained_tokens" {
                                summary.no_trained_tokens += 1;
                            }
                            if summary.first_rejects.len() < FIRST_REJECTS_KEPT {
                                summary.first_rejects.push((
                                    location.clone(),
                                    code.to_string(),
                                    reason.clone(),
                                ));
                            }
                            let mut entry = json!({"file": location.file, "line": location.line, "row": location.row, "code": code, "reason": reason});
                            if let (Value::Object(entry), Value::Object(details)) =
                                (&mut entry, details)
                            {
                                entry.extend(details);
                            }
                            // `record`, or `record_excerpt` and `record_bytes`.
                            if let (Value::Object(entry), Value::Object(record)) =
                                (&mut entry, record)
                            {
                                entry.extend(record);
                            }
                            reject(&mut rejects, entry)
                        }
                    }
                }
            };
            if let Err(e) = result {
                failure = Some(e);
            }
        },
    );
    if let Some(e) = failure {
        return Err(e);
    }
    if summary.files_not_read > 0 {
        // A table without the rows that could not be read would look complete: none is
        // written (dropping the writer removes its temporary file), nor a manifest.
        drop(table);
        summary.examples = tally.examples;
        summary.tokens = tally.tokens;
        summary.trained_tokens = tally.trained_tokens;
        if let Some(r) = rejects {
            r.finish()?;
            summary.rejects_file = Some(rejects_path);
        }
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    summary.examples = tally.examples;
    summary.tokens = tally.tokens;
    summary.trained_tokens = tally.trained_tokens;
    summary.truncated = match job.packing {
        None | Some(PackingStrategy::Bfd) => tally.over_length,
        Some(_) => 0,
    };
    summary.lengths = LengthStats::of(&mut tally.full_lengths);
    summary.warnings = training_warnings(job, &tally, &stop_ids, &summary);

    if let Some(strategy) = job.packing {
        let packed = Packed {
            examples: &kept,
            sources: &kept_sources,
            capacity,
            strategy,
            separate_documents,
        };
        let (packing, tokens, trained) = packed.write(&mut table, &mut sources)?;
        summary.packing = Some(packing);
        summary.tokens = tokens;
        summary.trained_tokens = trained;
    }
    (summary.sources, summary.sources_left_out) = sources.listed();
    summary.rows_out = table.finish()?;
    summary.output_written = true;
    match rejects {
        Some(r) => {
            r.finish()?;
            summary.rejects_file = Some(rejects_path);
        }
        None => {
            let _ = std::fs::remove_file(&rejects_path);
        }
    }
    summary.seconds = started.elapsed().as_secs_f64();
    manifest(job, columns, &summary).write(&job.output)?;
    Ok(summary)
}

/// The first stage of `prepare`, run on every row in parallel: parse, validate as `check`
/// does, refuse tool calls the template would lose, render and tokenize with TRL's masks.
/// The example and the row's own `source`, or why the row is rejected.
fn example_of(
    job: &PrepareJob,
    options: &TokenizeOptions,
    batch: &sft_io::RowBatch,
    raw: &sft_io::RawRow,
) -> Result<(Example, Option<String>), Box<Rejected>> {
    let row = match parse_row(batch, raw) {
        Ok(row) => row,
        Err(p) => {
            return Err(Box::new(Rejected {
                code: "invalid_json",
                reason: p.message,
                record: Value::Object(pipeline::reject_record(batch, raw, || {
                    Value::String(
                        String::from_utf8_lossy(batch.json(raw).unwrap_or_default()).into_owned(),
                    )
                })),
                details: Value::Null,
            }))
        }
    };
    // The rejects file keeps the row, or an excerpt of a huge one.
    let record = |row: Value| Value::Object(pipeline::reject_record(batch, raw, || row));
    // What `check` calls an error is never trained.
    let errors = pipeline::row_errors(&row, &[], &options.text_field);
    if let Some(first) = errors.first() {
        return Err(Box::new(validation_reject(first, &errors, record(row))));
    }
    // A template without tool support would lose the calls (or fail on them).
    if let Some(issue) = job
        .template
        .as_ref()
        .and_then(|t| crate::render::tool_call_loss(t, &options.render, &row))
    {
        return Err(Box::new(validation_reject(
            &issue,
            std::slice::from_ref(&issue),
            record(row),
        )));
    }
    match tokenize_row(&job.tokenizer, job.template.as_ref(), &row, options) {
        Ok(example) if example.trained_tokens() > 0 => {
            Ok((example, source_field(&row).map(str::to_string)))
        }
        Ok(example) => {
            let reason = if example.truncated() {
                format!(
                    "no token is trained after truncation to {} tokens (the row has {}); raise --max-length",
                    example.input_ids.len(),
                    example.full_length
                )
            } else {
                "no token of the row is trained".to_string()
            };
            Err(Box::new(Rejected {
                code: "no_trained_tokens",
                reason,
                record: record(row),
                details: Value::Null,
            }))
        }
        Err(e) => Err(Box::new(Rejected {
            code: e.code.as_str(),
            reason: e.reason,
            record: record(row),
            details: Value::Null,
        })),
    }
}

/// The packing stage: kept examples into rows of `capacity` tokens by `strategy`.
struct Packed<'a> {
    examples: &'a [Example],
    /// Each example's source (an index into the run's source names).
    sources: &'a [u32],
    capacity: usize,
    strategy: PackingStrategy,
    /// Whether documents stay apart (`seq_lengths`, no label across a boundary).
    separate_documents: bool,
}

impl Packed<'_> {
    /// Writes the packed rows; returns the packing's numbers and the table's token and
    /// trained-token counts (bfd cuts examples to the row length, and the first token of
    /// each document is not trained when documents are kept apart).
    fn write(
        &self,
        table: &mut TokenTableWriter,
        sources: &mut SourceNames,
    ) -> Result<(PackingSummary, u64, u64), WriteError> {
        let lengths: Vec<usize> = self.examples.iter().map(|e| e.input_ids.len()).collect();
        let bins = pack(&lengths, self.capacity, self.strategy);
        let stats = packing_stats(&bins, self.capacity);
        let summary = PackingSummary {
            strategy: self.strategy.name(),
            rows: stats.rows,
            lower_bound_rows: stats.lower_bound_rows,
            efficiency: stats.efficiency,
        };
        let (mut tokens, mut trained) = (0u64, 0u64);
        for bin in &bins {
            let (mut ids, mut labels, mut mask, mut seq_lengths, mut names) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for piece in bin {
                let e = &self.examples[piece.example];
                ids.extend(to_i32(&e.input_ids[piece.start..piece.end]));
                let first = labels.len();
                labels.extend_from_slice(&e.labels()[piece.start..piece.end]);
                if self.separate_documents {
                    labels[first] = -100;
                }
                mask.extend(mask_i32(&e.mask[piece.start..piece.end]));
                seq_lengths.push(piece.len() as i32);
                let source = self.sources[piece.example];
                let piece_trained = labels[first..].iter().filter(|&&l| l != -100).count();
                // A document split over rows (bfd_split, wrapped) counts once as an example.
                sources.count_piece(source, piece.start == 0, piece.len(), piece_trained);
                names.push(source);
            }
            tokens += ids.len() as u64;
            trained += labels.iter().filter(|&&l| l != -100).count() as u64;
            let names: Vec<&str> = names.iter().map(|&i| sources.name(i)).collect();
            if self.separate_documents {
                table.write_with_text(&[&ids, &labels, &mask, &seq_lengths], &names)?;
            } else {
                table.write_with_text(&[&ids, &labels, &mask], &names)?;
            }
        }
        Ok((summary, tokens, trained))
    }
}

/// The manifest stage: what the table was made from and with, beside it.
fn manifest(job: &PrepareJob, columns: &[&str], summary: &PrepareSummary) -> Manifest {
    Manifest {
        version: 1,
        tokenizer: ManifestTokenizer {
            path: job.tokenizer.path.display().to_string(),
            fingerprint: job.tokenizer.fingerprint.clone(),
            eos_token: job.tokenizer.eos.as_ref().map(|t| t.text.clone()),
            vocab_size: job.tokenizer.tokenizer.get_vocab_size(true),
            encoder: job.tokenizer.encoder_path().name(),
        },
        chat_template: job.template.as_ref().map(|t| ManifestTemplate {
            name: t.name().to_string(),
            fingerprint: t.fingerprint().to_string(),
        }),
        max_length: job.options.max_length,
        completion_only_loss: job.options.completion_only_loss,
        assistant_only_loss: job.options.assistant_only_loss,
        packing: job.packing.map(|p| p.name().to_string()),
        columns: columns
            .iter()
            .chain(std::iter::once(&SOURCE))
            .map(|c| c.to_string())
            .collect(),
        summary: serde_json::to_value(summary).expect("the summary serialises"),
    }
}

/// The distinct sources of the examples, each with its counts.
#[derive(Default)]
struct SourceNames {
    index: std::collections::HashMap<String, u32>,
    counts: Vec<SourceCounts>,
}

impl SourceNames {
    fn index(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.counts.len() as u32;
        self.index.insert(name.to_string(), i);
        self.counts.push(SourceCounts {
            source: name.to_string(),
            ..SourceCounts::default()
        });
        i
    }

    fn name(&self, i: u32) -> &str {
        &self.counts[i as usize].source
    }

    fn count(&mut self, i: u32, tokens: usize, trained: usize) {
        self.count_piece(i, true, tokens, trained);
    }

    fn count_piece(&mut self, i: u32, new_example: bool, tokens: usize, trained: usize) {
        let c = &mut self.counts[i as usize];
        c.examples += new_example as u64;
        c.tokens += tokens as u64;
        c.trained_tokens += trained as u64;
    }

    /// Largest first (by tokens, then name), at most [`SOURCES_LISTED`]; and how many
    /// were left out.
    fn listed(&self) -> (Vec<SourceCounts>, u64) {
        let mut all = self.counts.clone();
        all.sort_by(|a, b| {
            b.tokens
                .cmp(&a.tokens)
                .then_with(|| a.source.cmp(&b.source))
        });
        let left_out = all.len().saturating_sub(SOURCES_LISTED) as u64;
        all.truncate(SOURCES_LISTED);
        (all, left_out)
    }
}

/// The checks that protect training: a model that never learns to stop, a doubled BOS,
/// pad == eos, heavy truncation.
fn training_warnings(
    job: &PrepareJob,
    tally: &ExampleTally,
    stop_ids: &[u32],
    summary: &PrepareSummary,
) -> Vec<Warning> {
    let tok = &job.tokenizer;
    let mut warnings = Vec::new();
    if tally.examples > 0 && !stop_ids.is_empty() && !tally.stop_trained {
        let names: Vec<String> = stop_ids
            .iter()
            .filter_map(|&id| tok.token_text(id))
            .collect();
        warnings.push(Warning {
            code: "stop_token_never_trained",
            message: format!(
                "no example trains on {}: the model will not learn to stop; check the loss masks and that the template's end-of-turn token lies inside the assistant turn",
                names.join(" or ")
            ),
        });
    }
    if let (Some(pad), Some(eos)) = (&tok.pad, &tok.eos) {
        if pad.id == eos.id {
            warnings.push(Warning {
                code: "pad_is_eos",
                message: format!(
                    "the pad token is the EOS token ({}); a collator that masks padding by token id would also mask every EOS, and the model would not learn to stop (these labels keep EOS)",
                    eos.text
                ),
            });
        }
    }
    if let (Some(bos), true) = (&tok.bos, tally.doubled_bos > 0) {
        warnings.push(Warning {
            code: "double_bos",
            message: format!(
                "{} examples start with {} twice: the text or template already has it and the tokenizer adds it again",
                tally.doubled_bos, bos.text
            ),
        });
    }
    if summary.examples > 0 {
        let share = summary.truncated as f64 / summary.examples as f64;
        if share > 0.05 {
            warnings.push(Warning {
                code: "many_truncated",
                message: format!(
                    "{} of {} examples ({:.1}%) are longer than --max-length {} and were cut; raise it or check the longest rows",
                    summary.truncated,
                    summary.examples,
                    share * 100.0,
                    job.options.max_length.unwrap_or(0)
                ),
            });
        }
    }
    warnings
}

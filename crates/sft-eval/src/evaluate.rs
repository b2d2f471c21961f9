//! The evaluation engine: held-out scoring and generation for each checkpoint, the checks
//! on every sample, the diagnosis of the run's curves, into one [`Report`].
//!
//! ```no_run
//! use sft_eval::evaluate::{evaluate, EvalOptions, Gates};
//! let mut options = EvalOptions::new("heldout.jsonl".into(), "/tmp/eval-work".into());
//! options.checkpoints = vec!["out/checkpoint-40".into()];
//! let mut report = evaluate(&options, &mut |_| {}).unwrap();
//! report.apply_gates(&Gates { max_loss: Some(2.5), ..Gates::default() });
//! std::process::exit(if report.passed { 0 } else { 1 });
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device};
use serde_json::Value;
use sft_dataset::pipeline::parse_row;
use sft_io::{DataFile, ReadOptions};
use sft_model::{CausalLm, Generate, GenerateOptions};
use sft_template::{ChatTemplate, RenderOptions};
use sft_tokenize::{chat_template, stop_token_ids, SftTokenizer, TemplateChoice, TokenizeOptions};
use sft_train::data::{load_rows, DataError, DataPlan, Dataset, LoadedRows};

use crate::compliance::{
    check_sample, compliance_rate, pass_rates, validate_pattern, ComplianceOptions, Sample,
    StopReason,
};
use crate::diagnosis::{diagnose_run, read_history, DiagnosisThresholds};
use crate::prompts::{prompt_of, EvalPrompt};
use crate::repetition::{is_repetitive, line_loop, repetition, RepetitionStats};
use crate::report::{
    CheckpointReport, Gate, GenerationSummary, HeldOut, PassRate, RepetitionSummary, Report,
    SampleReport,
};

/// How samples are generated.
#[derive(Debug, Clone)]
pub struct Sampling {
    /// Generate for the first N rows that have a prompt (0: no generation).
    pub max_samples: usize,
    pub max_new_tokens: usize,
    /// 0 is greedy decoding.
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: usize,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            max_samples: 16,
            max_new_tokens: 128,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
        }
    }
}

/// What every reply must be, beyond the checks that always run.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    /// Every reply must be JSON (also on when the reference is JSON).
    pub json: bool,
    /// Every reply must be JSON following this schema.
    pub json_schema: Option<Value>,
    /// Every reply must match this pattern somewhere.
    pub pattern: Option<String>,
    pub min_chars: Option<usize>,
    pub max_chars: Option<usize>,
}

/// Thresholds checked on the best checkpoint (lowest held-out loss).
#[derive(Debug, Clone, Copy, Default)]
pub struct Gates {
    pub max_loss: Option<f64>,
    pub min_compliance: Option<f64>,
    pub max_repetition: Option<f64>,
}

/// An evaluation to run.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Checkpoint folders (Hugging Face model folders, or LoRA adapter folders) to score.
    pub checkpoints: Vec<PathBuf>,
    /// The base model of LoRA adapter checkpoints (default: each adapter's
    /// `base_model_name_or_path`, a folder or a model in the local Hugging Face cache).
    pub base_model: Option<String>,
    /// A training output folder: each checkpoint-N in it and the final model; its curves
    /// are diagnosed.
    pub run: Option<PathBuf>,
    /// Held-out data in any of the four formats, or a prepared table (loss only).
    pub dataset: PathBuf,
    /// The files `dataset` stands for when it is not a local path (a Hub dataset's split,
    /// in the shared cache).
    pub dataset_files: Option<Vec<PathBuf>>,
    /// Where the held-out rows are prepared (with their rejects).
    pub work_dir: PathBuf,
    /// Rows per batch, for scoring and generation.
    pub batch_size: usize,
    /// How held-out rows are tokenized and masked (as in training); `max_length` also
    /// bounds prompt plus generated tokens.
    pub tokenize: TokenizeOptions,
    /// A chat template other than the checkpoint's own.
    pub chat_template: Option<String>,
    pub sampling: Sampling,
    pub expect: Expectations,
    /// Where the checkpoints are loaded and run ([`sft_model::device`]).
    pub device: Device,
}

impl EvalOptions {
    pub fn new(dataset: PathBuf, work_dir: PathBuf) -> EvalOptions {
        EvalOptions {
            checkpoints: Vec::new(),
            base_model: None,
            run: None,
            dataset,
            dataset_files: None,
            work_dir,
            batch_size: 8,
            tokenize: TokenizeOptions {
                max_length: Some(1024),
                ..TokenizeOptions::default()
            },
            chat_template: None,
            sampling: Sampling::default(),
            expect: Expectations::default(),
            device: sft_model::device::default_device(),
        }
    }

    fn max_length(&self) -> usize {
        self.tokenize.max_length.unwrap_or(1024)
    }
}

/// What the engine reports as it goes (the binary prints it).
pub enum EvalEvent<'a> {
    /// The held-out rows are ready.
    Rows(&'a LoadedRows),
    /// A row gave no prompt, and why.
    Note(String),
    /// A checkpoint is scored.
    Checkpoint {
        report: &'a CheckpointReport,
        seconds: f64,
    },
}

/// Why an evaluation could not run.
#[derive(Debug)]
pub enum EvalError {
    /// The options are wrong: a folder that is not there, a bad pattern or schema, a chat
    /// template that cannot be found. The command's fault (exit 2).
    Options(String),
    /// The checkpoint's tokenizer or template cannot be used.
    Checkpoint(String),
    /// The held-out data cannot be prepared.
    Data(DataError),
    /// A model cannot be loaded or run.
    Model(sft_model::ModelError),
    /// The run's history cannot be read.
    History(String),
    /// An output cannot be written.
    Write(sft_io::write::WriteError),
}

impl EvalError {
    /// Whether the command line is at fault (rather than the data or the checkpoints).
    pub fn is_usage(&self) -> bool {
        matches!(self, EvalError::Options(_))
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::Options(m) | EvalError::Checkpoint(m) | EvalError::History(m) => {
                f.write_str(m)
            }
            EvalError::Data(e) => write!(f, "{e}"),
            EvalError::Model(e) => write!(f, "{e}"),
            EvalError::Write(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for EvalError {}

/// The checkpoints to score, oldest first, with their steps.
pub fn checkpoints(
    run: Option<&Path>,
    explicit: &[PathBuf],
) -> Result<Vec<(PathBuf, Option<usize>)>, EvalError> {
    let mut out: Vec<(PathBuf, Option<usize>)> = Vec::new();
    if let Some(run) = run {
        if run.exists() && !run.is_dir() {
            return Err(EvalError::Options(format!(
                "--run {}: a file, not a run folder\n  hint: --run takes the --output_dir of \
                 sft-train (its checkpoint-N folders are scored); score one model folder \
                 with --checkpoint",
                run.display()
            )));
        }
        if !run.is_dir() {
            return Err(EvalError::Options(format!(
                "--run {}: no such folder",
                run.display()
            )));
        }
        for (step, path) in sft_train::checkpoint::list_checkpoints(run) {
            out.push((path, Some(step)));
        }
        if run.join("model.safetensors").is_file()
            || run.join("model.safetensors.index.json").is_file()
            || sft_model::lora::is_adapter_dir(run)
        {
            out.push((run.to_path_buf(), step_of(run)));
        }
        if out.is_empty() && explicit.is_empty() {
            return Err(EvalError::Options(format!(
                "--run {}: no checkpoint-N folders and no final model",
                run.display()
            )));
        }
    }
    for c in explicit {
        let adapter = sft_model::lora::is_adapter_dir(c);
        if !adapter && !c.join("config.json").is_file() {
            return Err(EvalError::Options(format!(
                "--checkpoint {}: not a model folder (no config.json) nor a LoRA adapter folder (no adapter_config.json)",
                c.display()
            )));
        }
        // An adapter without tokenizer files uses its base model's.
        if !adapter && !c.join("tokenizer.json").is_file() {
            return Err(EvalError::Options(format!(
                "--checkpoint {}: no tokenizer.json\n  hint: a model folder carries its tokenizer \
                 (tokenizer.json, tokenizer_config.json); sft-train's checkpoints have them",
                c.display()
            )));
        }
        out.push((c.clone(), step_of(c)));
    }
    if out.is_empty() {
        return Err(EvalError::Options(
            "give --checkpoint DIR [DIR...] or --run OUTPUT_DIR".into(),
        ));
    }
    Ok(out)
}

/// Where a checkpoint's tokenizer is: its own folder, or for a LoRA adapter saved without
/// tokenizer files, its base model's.
fn tokenizer_dir(dir: &Path, base: Option<&str>) -> Result<PathBuf, EvalError> {
    if dir.join("tokenizer.json").is_file() || !sft_model::lora::is_adapter_dir(dir) {
        return Ok(dir.to_path_buf());
    }
    let adapter = sft_model::lora::read_adapter(dir).map_err(EvalError::Model)?;
    sft_model::lora::base_model_dir(&adapter, base).map_err(EvalError::Model)
}

fn step_of(dir: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(dir.join("trainer_state.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["global_step"].as_u64().map(|s| s as usize)
}

/// The tokens that end a generation: `generation_config.json`'s `eos_token_id`(s) and the
/// tokens that end a turn or a sequence ([`stop_token_ids`]: EOS, the template's
/// end-of-turn token).
pub fn stop_ids(dir: &Path, tokenizer: &SftTokenizer, template: Option<&ChatTemplate>) -> Vec<u32> {
    let mut ids = stop_token_ids(tokenizer, template);
    if let Some(v) = std::fs::read_to_string(dir.join("generation_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
    {
        match &v["eos_token_id"] {
            Value::Number(n) => ids.extend(n.as_u64().map(|x| x as u32)),
            Value::Array(a) => ids.extend(a.iter().filter_map(Value::as_u64).map(|x| x as u32)),
            _ => {}
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The texts of the tokenizer's special tokens (a reply must not contain them).
pub fn special_texts(tokenizer: &SftTokenizer) -> Vec<String> {
    let mut v: Vec<String> = tokenizer
        .tokenizer
        .get_added_tokens_decoder()
        .values()
        .filter(|t| t.special)
        .map(|t| t.content.clone())
        .collect();
    v.sort();
    v
}

/// The first `max` rows of `files` that have a prompt; rows that are not JSON are skipped
/// with a note (scoring reports them among its rejects).
pub fn load_prompts(
    files: &[DataFile],
    max: usize,
    template: Option<&ChatTemplate>,
    note: &mut dyn FnMut(String),
) -> Result<Vec<EvalPrompt>, String> {
    let mut prompts = Vec::new();
    if max == 0 {
        return Ok(prompts);
    }
    let options = RenderOptions::default();
    for file in files {
        let mut reader = sft_io::open(file, &ReadOptions::default())
            .map_err(|e| format!("{}: {e}", file.display))?;
        while let Some(batch) = reader
            .next_batch()
            .map_err(|e| format!("{}: {e}", file.display))?
        {
            for raw in &batch.rows {
                let where_ = || format!("{}:{}", file.display, raw.line.unwrap_or(raw.index + 1));
                let row = match parse_row(&batch, raw) {
                    Ok(row) => row,
                    Err(p) => {
                        note(format!(
                            "{}: {}; no prompt taken from this row",
                            where_(),
                            p.message
                        ));
                        continue;
                    }
                };
                match prompt_of(&row, template, &options) {
                    Ok(Some(p)) => prompts.push(p),
                    Ok(None) => {}
                    Err(e) => return Err(format!("{}: {e}", where_())),
                }
                if prompts.len() >= max {
                    return Ok(prompts);
                }
            }
        }
    }
    Ok(prompts)
}

/// Runs the evaluation: every checkpoint scored on the held-out rows and sampled on their
/// prompts, the best one marked, the run's curves diagnosed. Gates are applied by
/// [`Report::apply_gates`].
pub fn evaluate(options: &EvalOptions, on: &mut dyn FnMut(EvalEvent)) -> Result<Report, EvalError> {
    let list = checkpoints(options.run.as_deref(), &options.checkpoints)?;
    if let Some(p) = &options.expect.pattern {
        validate_pattern(p).map_err(|e| EvalError::Options(format!("--expect-regex: {e}")))?;
    }
    if !options.dataset.exists() && options.dataset_files.is_none() {
        return Err(EvalError::Options(format!(
            "--dataset {}: no such file or folder",
            options.dataset.display()
        )));
    }
    let first = tokenizer_dir(&list[0].0, options.base_model.as_deref())?;
    let tokenizer = SftTokenizer::from_path(&first).map_err(|e| {
        EvalError::Checkpoint(format!(
            "{e}\n  hint: a checkpoint folder carries tokenizer.json and tokenizer_config.json"
        ))
    })?;
    // A bad --chat-template is a usage error; a broken template in the checkpoint is not.
    let template = chat_template(
        Some(&tokenizer),
        &TemplateChoice::named(options.chat_template.as_deref()),
    )
    .map_err(|e| {
        if options.chat_template.is_some() {
            EvalError::Options(e)
        } else {
            EvalError::Checkpoint(e)
        }
    })?;
    // The dataset is opened once: a prepared table gives the loss only, data files give
    // held-out rows (prepared as training prepares them) and prompts.
    let dataset = match &options.dataset_files {
        Some(files) => Dataset::open_files(&options.dataset, files),
        None => Dataset::open(&options.dataset),
    }
    .map_err(EvalError::Data)?;
    let plan = DataPlan {
        packing: None,
        options: options.tokenize.clone(),
        chat_template: options.chat_template.clone(),
    };
    let loaded = load_rows(&dataset, "heldout", &first, &plan, &options.work_dir)
        .map_err(EvalError::Data)?;
    on(EvalEvent::Rows(&loaded));
    let rows = loaded.rows;
    let prompts = match &dataset {
        Dataset::Prepared { .. } => Vec::new(),
        Dataset::Files { files, .. } => load_prompts(
            files,
            options.sampling.max_samples,
            template.as_ref(),
            &mut |n| on(EvalEvent::Note(n)),
        )
        .map_err(EvalError::Checkpoint)?,
    };
    let keep = options
        .max_length()
        .saturating_sub(options.sampling.max_new_tokens)
        .max(1);
    let prompt_ids: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            let mut ids = tokenizer
                .encode(&p.text, !p.conversational)
                .unwrap_or_default();
            if ids.len() > keep {
                ids.drain(..ids.len() - keep);
            }
            ids
        })
        .collect();
    // Repetition of each prompt's reference, once for all checkpoints.
    let reference_stats: Vec<Option<RepetitionStats>> = prompts
        .iter()
        .map(|p| {
            p.reference
                .as_ref()
                .map(|r| repetition(&tokenizer.encode(r, false).unwrap_or_default()))
        })
        .collect();
    let present: Vec<RepetitionStats> = reference_stats.iter().flatten().cloned().collect();
    let reference_summary = (!present.is_empty()).then(|| {
        let flags: Vec<bool> = present.iter().map(|s| is_repetitive(s, None)).collect();
        RepetitionSummary::of(&present, &flags)
    });
    let compliance = ComplianceOptions {
        special_tokens: special_texts(&tokenizer),
        template_markers: Vec::new(),
        expect_json: options.expect.json,
        json_schema: options.expect.json_schema.clone(),
        expect_pattern: options.expect.pattern.clone(),
        min_chars: options.expect.min_chars,
        max_chars: options.expect.max_chars,
    };
    let mut reports = Vec::new();
    for (dir, step) in &list {
        let started = Instant::now();
        // An adapter is merged into its base: scored and sampled as the full model it makes.
        let model = sft_model::load_merged(
            dir,
            options.base_model.as_deref(),
            DType::F32,
            &options.device,
        )
        .map_err(EvalError::Model)?;
        let model = model.as_ref();
        let pad = model.config().pad_id(tokenizer.pad.as_ref().map(|t| t.id));
        let heldout = if rows.is_empty() {
            None
        } else {
            Some(score(model, &rows, options.batch_size, pad)?)
        };
        let (generation, samples) = if prompt_ids.is_empty() {
            (None, Vec::new())
        } else {
            let opts = GenerateOptions {
                max_new_tokens: options.sampling.max_new_tokens,
                temperature: options.sampling.temperature,
                top_k: options.sampling.top_k,
                top_p: options.sampling.top_p,
                seed: options.sampling.seed,
                stop_ids: stop_ids(dir, &tokenizer, template.as_ref()),
                pad_id: pad,
            };
            let (summary, samples) = sample(
                model,
                &tokenizer,
                &prompts,
                &prompt_ids,
                &opts,
                options.batch_size,
                &compliance,
                &reference_stats,
            )?;
            (
                Some(GenerationSummary {
                    reference_repetition: reference_summary.clone(),
                    ..summary
                }),
                samples,
            )
        };
        reports.push(CheckpointReport {
            path: dir.display().to_string(),
            step: *step,
            heldout,
            generation,
            samples,
            best: false,
        });
        on(EvalEvent::Checkpoint {
            report: reports.last().expect("pushed"),
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let diagnosis = match &options.run {
        Some(run) => {
            let history = read_history(run).map_err(EvalError::History)?;
            Some(diagnose_run(
                &history,
                run_vocab_size(run),
                &DiagnosisThresholds::default(),
            ))
        }
        None => None,
    };
    let mut report = Report {
        version: 1,
        dataset: options.dataset.display().to_string(),
        checkpoints: reports,
        best_checkpoint: None,
        diagnosis,
        gates: Vec::new(),
        passed: true,
        interrupted: None,
    };
    report.mark_best();
    Ok(report)
}

/// The vocabulary size of a run's model: its final `config.json`, else its newest
/// checkpoint's, else the base model's named in its `training_args.json`.
fn run_vocab_size(run: &Path) -> Option<usize> {
    let mut places = vec![run.to_path_buf()];
    places.extend(
        sft_train::checkpoint::list_checkpoints(run)
            .into_iter()
            .rev()
            .map(|(_, p)| p),
    );
    let args = std::fs::read_to_string(run.join("training_args.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    if let Some(model) = args.as_ref().and_then(|a| a["model_dir"].as_str()) {
        places.push(PathBuf::from(model));
    }
    places.iter().find_map(|dir| {
        sft_model::read_config(&dir.join("config.json"))
            .ok()
            .map(|c| c.vocab_size())
    })
}

/// Held-out loss, perplexity, accuracy and entropy of one model over `rows`.
fn score(
    model: &dyn CausalLm,
    rows: &[sft_model::BatchRow],
    batch_size: usize,
    pad: u32,
) -> Result<HeldOut, EvalError> {
    let t0 = Instant::now();
    // Batches whose working set would not fit in the memory available are split, and the
    // report says the batch size that ran.
    let scored = model
        .score_within(
            rows,
            batch_size,
            pad,
            sft_model::memory_plan::mem_available(),
        )
        .map_err(EvalError::Model)?;
    let s = scored.stats;
    let n = s.tokens.max(1) as f64;
    let seconds = t0.elapsed().as_secs_f64();
    Ok(HeldOut {
        loss: s.loss_sum / n,
        perplexity: (s.loss_sum / n).exp(),
        mean_token_accuracy: s.correct as f64 / n,
        entropy: s.entropy_sum / n,
        tokens: s.tokens,
        rows: rows.len(),
        seconds,
        tokens_per_second: rows.iter().map(|r| r.input_ids.len()).sum::<usize>() as f64
            / seconds.max(1e-9),
        batch_size: scored.batch_size,
    })
}

/// Generates for every prompt, `batch_size` at a time, and checks each sample.
#[allow(clippy::too_many_arguments)]
fn sample(
    model: &dyn CausalLm,
    tokenizer: &SftTokenizer,
    prompts: &[EvalPrompt],
    prompt_ids: &[Vec<u32>],
    opts: &GenerateOptions,
    batch_size: usize,
    compliance: &ComplianceOptions,
    reference_stats: &[Option<RepetitionStats>],
) -> Result<(GenerationSummary, Vec<SampleReport>), EvalError> {
    let t0 = Instant::now();
    // Prompts of like length decode together, so a batch's KV cache is not as long as its
    // longest prompt for all of them; the samples are reported in the prompts' order.
    let mut order: Vec<usize> = (0..prompt_ids.len()).collect();
    order.sort_by_key(|&i| prompt_ids[i].len());
    let mut outs: Vec<Option<sft_model::Generation>> = vec![None; prompt_ids.len()];
    for chunk in order.chunks(batch_size.max(1)) {
        let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| prompt_ids[i].clone()).collect();
        let generated = model.generate(&batch, opts).map_err(EvalError::Model)?;
        for (&i, g) in chunk.iter().zip(generated) {
            outs[i] = Some(g);
        }
    }
    let outs: Vec<sft_model::Generation> = outs.into_iter().flatten().collect();
    let seconds = t0.elapsed().as_secs_f64();
    let mut samples = Vec::new();
    let mut all_checks = Vec::new();
    let mut stats = Vec::new();
    let mut flags = Vec::new();
    let mut new_tokens = 0;
    for (i, (p, g)) in prompts.iter().zip(&outs).enumerate() {
        new_tokens += g.ids.len();
        let body: &[u32] = if g.stopped_by.is_some() {
            &g.ids[..g.ids.len() - 1]
        } else {
            &g.ids
        };
        let raw = tokenizer
            .tokenizer
            .decode(&g.ids, false)
            .unwrap_or_default();
        let output = tokenizer.tokenizer.decode(body, false).unwrap_or_default();
        let stopped_by = match g.stopped_by {
            None => StopReason::MaxNewTokens,
            Some(id) if tokenizer.eos.as_ref().is_some_and(|e| e.id == id) => StopReason::Eos,
            Some(_) => StopReason::EndOfTurn,
        };
        let sample = Sample {
            text: &raw,
            stopped_by,
            reference: p.reference.as_deref(),
            new_tokens: g.ids.len(),
        };
        let checks = check_sample(&sample, compliance);
        let st = repetition(body);
        let rep = is_repetitive(&st, reference_stats[i].as_ref());
        flags.push(rep);
        samples.push(SampleReport {
            index: i,
            prompt: p.text.clone(),
            output: output.clone(),
            reference: p.reference.clone(),
            stopped_by,
            new_tokens: g.ids.len(),
            passed: checks.iter().all(|c| c.passed),
            checks: checks.clone(),
            repetition: st.clone(),
            repetitive: rep,
            line_loop: line_loop(&output),
        });
        all_checks.push(checks);
        stats.push(st);
    }
    let summary = GenerationSummary {
        samples: samples.len(),
        compliance_rate: compliance_rate(&all_checks),
        pass_rates: pass_rates(&all_checks)
            .into_iter()
            .map(|(check, applied, passed)| PassRate {
                rate: passed as f64 / applied.max(1) as f64,
                check,
                applied,
                passed,
            })
            .collect(),
        repetition: RepetitionSummary::of(&stats, &flags),
        reference_repetition: None,
        new_tokens,
        seconds,
        tokens_per_second: new_tokens as f64 / seconds.max(1e-9),
    };
    Ok((summary, samples))
}

/// A gate's name, threshold, measured value and pass rule.
type GateCheck<'a> = (&'a str, Option<f64>, Option<f64>, fn(f64, f64) -> bool);

impl Report {
    /// Checks the gates on the best checkpoint and sets [`Report::passed`].
    pub fn apply_gates(&mut self, gates: &Gates) {
        let best = self.best().cloned();
        let b = best.as_ref();
        let loss = b.and_then(|c| c.heldout.as_ref().map(|h| h.loss));
        let compliance = b.and_then(|c| c.generation.as_ref().map(|g| g.compliance_rate));
        let repetition =
            b.and_then(|c| c.generation.as_ref().map(|g| g.repetition.repetitive_share));
        let checks: [GateCheck; 3] = [
            ("max_loss", gates.max_loss, loss, |v, t| v <= t),
            (
                "min_compliance",
                gates.min_compliance,
                compliance,
                |v, t| v >= t,
            ),
            (
                "max_repetition",
                gates.max_repetition,
                repetition,
                |v, t| v <= t,
            ),
        ];
        self.gates.clear();
        for (name, threshold, value, ok) in checks {
            if let Some(t) = threshold {
                self.gates.push(Gate {
                    name: name.into(),
                    threshold: t,
                    value,
                    passed: value.is_some_and(|v| ok(v, t)),
                });
            }
        }
        self.passed = self.gates.iter().all(|g| g.passed);
    }
}

/// Writes the plots of an evaluation into `dir`: the run's loss curves (with a run),
/// held-out loss per checkpoint, and compliance and repetition per checkpoint (SVG).
pub fn write_plots(report: &Report, run: Option<&Path>, dir: &Path) -> Result<(), EvalError> {
    let write = |name: &str, svg: String| {
        sft_io::write::write_atomic(&dir.join(name), svg.as_bytes()).map_err(EvalError::Write)
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| EvalError::Options(format!("{}: {e}", dir.display())))?;
    if let Some(run) = run {
        let history = read_history(run).map_err(EvalError::History)?;
        write(
            "loss.svg",
            sft_train::charts::loss_chart(&history, "training and eval loss"),
        )?;
    }
    // One point per step: the final model of a run saved at its last checkpoint's step
    // is that checkpoint, not a second point.
    let at = |f: &dyn Fn(&CheckpointReport) -> Option<f64>| -> Vec<(f64, f64)> {
        let mut points: Vec<(f64, f64)> = Vec::new();
        for (i, c) in report.checkpoints.iter().enumerate() {
            let x = c.step.unwrap_or(i) as f64;
            if let Some(y) = f(c) {
                if !points.iter().any(|p| p.0 == x) {
                    points.push((x, y));
                }
            }
        }
        points
    };
    let loss = at(&|c| c.heldout.as_ref().map(|h| h.loss));
    let comp = at(&|c| c.generation.as_ref().map(|g| g.compliance_rate));
    let rep = at(&|c| c.generation.as_ref().map(|g| g.repetition.repetitive_share));
    write(
        "heldout_loss.svg",
        sft_train::charts::line_chart_svg(
            "held-out loss per checkpoint",
            "step",
            "loss",
            &[("held-out loss", "#d62728", loss)],
        ),
    )?;
    write(
        "samples.svg",
        sft_train::charts::line_chart_svg(
            "samples per checkpoint",
            "step",
            "share of samples",
            &[
                ("compliance", "#2ca02c", comp),
                ("repetitive", "#9467bd", rep),
            ],
        ),
    )
}

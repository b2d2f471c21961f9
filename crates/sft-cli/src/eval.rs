//! `sft-eval`: score checkpoints in batch jobs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device};
use clap::Parser;
use serde_json::Value;
use sft_dataset::pipeline::parse_row;
use sft_eval::compliance::{
    check_sample, compliance_rate, pass_rates, validate_pattern, ComplianceOptions, Sample,
    StopReason,
};
use sft_eval::diagnosis::{diagnose, read_history, DiagnosisThresholds};
use sft_eval::prompts::{prompt_of, EvalPrompt};
use sft_eval::repetition::{is_repetitive, line_loop, repetition, RepetitionStats};
use sft_eval::report::{
    markdown, CheckpointReport, Gate, GenerationSummary, HeldOut, PassRate, RepetitionSummary,
    Report, SampleReport,
};
use sft_io::{discover, ReadOptions};
use sft_model::{GenerateOptions, Llama};
use sft_template::RenderOptions;
use sft_tokenize::{SftTokenizer, TokenizeOptions};

use crate::prepared::{chat_template, load_rows, DataPlan};
use crate::{EXIT_PROBLEMS, EXIT_USAGE};

#[derive(Parser, Debug)]
#[command(
    name = "sft-eval",
    version,
    about = "Score checkpoints: held-out loss, generated samples checked for format compliance and repetition, a diagnosis of the loss curves",
    long_about = "Score checkpoints: held-out loss and perplexity (rendered and masked as in training), \
generated samples (prompts rendered with add_generation_prompt=True) checked for format compliance \
and repetition against the references, and a diagnosis of a run's loss curves.\n\n\
Gates (--max-loss, --min-compliance, --max-repetition) apply to the best checkpoint (lowest held-out loss).\n\n\
Exit codes: 0 every gate passed, 1 a gate failed or the evaluation could not run, 2 the command is wrong."
)]
struct EvalArgs {
    /// Checkpoint folders (Hugging Face model folders) to score.
    #[arg(long, num_args = 1.., value_name = "DIR")]
    checkpoint: Vec<PathBuf>,
    /// A training output folder: every checkpoint-N in it and the final model; its
    /// trainer_state.json or metrics.jsonl is diagnosed.
    #[arg(long, value_name = "OUTPUT_DIR")]
    run: Option<PathBuf>,
    /// Held-out data in any of the four formats (or a prepared .parquet for loss only).
    #[arg(long, value_name = "PATH")]
    dataset: PathBuf,
    /// Write the JSON report here.
    #[arg(long, value_name = "OUT.json")]
    report: Option<PathBuf>,
    /// Write a Markdown summary here.
    #[arg(long, value_name = "OUT.md")]
    markdown: Option<PathBuf>,
    /// Write SVG plots (loss curves, metrics per checkpoint) into this folder.
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
    /// Generate for the first N rows that have a prompt (0: no generation).
    #[arg(long, default_value_t = 16, value_name = "N")]
    max_samples: usize,
    #[arg(long, default_value_t = 128, value_name = "N")]
    max_new_tokens: usize,
    /// 0 is greedy decoding.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Rows per batch, for scoring and generation.
    #[arg(long, default_value_t = 8, value_name = "N")]
    batch_size: usize,
    /// Tokens per held-out example (as in training).
    #[arg(long, default_value_t = 1024, value_name = "N")]
    max_length: usize,
    #[arg(long, value_name = "true|false")]
    completion_only_loss: Option<bool>,
    #[arg(long)]
    assistant_only_loss: bool,
    #[arg(long, default_value = "text", value_name = "NAME")]
    dataset_text_field: String,
    /// Chat template for rendering (default: the checkpoint's own).
    #[arg(long, value_name = "NAME|PATH")]
    chat_template: Option<String>,
    /// Every reply must be JSON (`json`); also on when the reference is JSON.
    #[arg(long, value_name = "json")]
    expect: Option<String>,
    /// Every reply must be JSON following this schema.
    #[arg(long, value_name = "FILE.json")]
    json_schema: Option<PathBuf>,
    /// Every reply must match this pattern somewhere.
    #[arg(long, value_name = "PATTERN")]
    expect_regex: Option<String>,
    #[arg(long, value_name = "N")]
    min_chars: Option<usize>,
    #[arg(long, value_name = "N")]
    max_chars: Option<usize>,
    /// Fail (exit 1) when the best held-out loss is above this.
    #[arg(long, value_name = "LOSS")]
    max_loss: Option<f64>,
    /// Fail when the best checkpoint's share of samples passing every check is below this.
    #[arg(long, value_name = "RATE")]
    min_compliance: Option<f64>,
    /// Fail when the best checkpoint's share of repetitive samples is above this.
    #[arg(long, value_name = "SHARE")]
    max_repetition: Option<f64>,
    #[arg(long, short = 'q')]
    quiet: bool,
}

fn usage_error(message: impl std::fmt::Display) -> i32 {
    eprintln!("sft-eval: error: {message}");
    EXIT_USAGE
}

fn run_error(message: impl std::fmt::Display) -> i32 {
    eprintln!("sft-eval: error: {message}");
    EXIT_PROBLEMS
}

pub fn main() -> i32 {
    let args: EvalArgs = match crate::parse_flags(std::env::args_os()) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match run(args) {
        Ok(code) => code,
        Err(code) => code,
    }
}

/// The checkpoints to score, oldest first, with their steps.
fn checkpoints(args: &EvalArgs) -> Result<Vec<(PathBuf, Option<usize>)>, i32> {
    let mut out: Vec<(PathBuf, Option<usize>)> = Vec::new();
    if let Some(run) = &args.run {
        if !run.is_dir() {
            return Err(usage_error(format_args!(
                "--run {}: no such folder",
                run.display()
            )));
        }
        for (step, path) in sft_train::checkpoint::list_checkpoints(run) {
            out.push((path, Some(step)));
        }
        if run.join("model.safetensors").is_file()
            || run.join("model.safetensors.index.json").is_file()
        {
            out.push((run.clone(), step_of(run)));
        }
        if out.is_empty() {
            return Err(usage_error(format_args!(
                "--run {}: no checkpoint-N folders and no final model",
                run.display()
            )));
        }
    }
    for c in &args.checkpoint {
        if !c.join("config.json").is_file() {
            return Err(usage_error(format_args!(
                "--checkpoint {}: not a model folder (no config.json)",
                c.display()
            )));
        }
        out.push((c.clone(), step_of(c)));
    }
    if out.is_empty() {
        return Err(usage_error(
            "give --checkpoint DIR [DIR...] or --run OUTPUT_DIR",
        ));
    }
    Ok(out)
}

fn step_of(dir: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(dir.join("trainer_state.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["global_step"].as_u64().map(|s| s as usize)
}

/// Stop tokens: generation_config.json's eos_token_id(s) and the tokenizer's EOS.
fn stop_ids(dir: &Path, tokenizer: &SftTokenizer) -> Vec<u32> {
    let mut ids = Vec::new();
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
    if let Some(eos) = &tokenizer.eos {
        ids.push(eos.id);
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The first `max` rows of the dataset that have a prompt.
fn load_prompts(
    path: &Path,
    max: usize,
    template: Option<&sft_template::ChatTemplate>,
) -> Result<Vec<EvalPrompt>, String> {
    let mut prompts = Vec::new();
    if max == 0
        || path.extension().is_some_and(|e| e == "parquet")
            && sft_dataset::prepare::manifest_path(path).is_file()
    {
        return Ok(prompts);
    }
    let files = discover(&[path.to_path_buf()]).map_err(|e| e.to_string())?;
    let options = RenderOptions::default();
    for file in &files {
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
                        // Scoring reports it among prepare's rejects; say why no prompt came.
                        eprintln!(
                            "sft-eval: note: {}: {}; no prompt taken from this row",
                            where_(),
                            p.message
                        );
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

fn special_texts(tokenizer: &SftTokenizer) -> Vec<String> {
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

fn run(args: EvalArgs) -> Result<i32, i32> {
    let list = checkpoints(&args)?;
    if args.expect.as_deref().is_some_and(|e| e != "json") {
        return Err(usage_error("--expect takes `json`"));
    }
    if let Some(p) = &args.expect_regex {
        validate_pattern(p).map_err(|e| usage_error(format_args!("--expect-regex: {e}")))?;
    }
    let json_schema = match &args.json_schema {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| usage_error(format_args!("{}: {e}", path.display())))
                .and_then(|t| {
                    serde_json::from_str::<Value>(&t)
                        .map_err(|e| usage_error(format_args!("{}: not JSON: {e}", path.display())))
                })?,
        ),
        None => None,
    };
    if !args.dataset.exists() {
        return Err(usage_error(format_args!(
            "--dataset {}: no such file or folder",
            args.dataset.display()
        )));
    }
    let first = &list[0].0;
    let tokenizer = SftTokenizer::from_path(first).map_err(|e| {
        run_error(format_args!(
            "{e}\n  hint: a checkpoint folder carries tokenizer.json and tokenizer_config.json"
        ))
    })?;
    // A bad --chat-template is a usage error; a broken template in the checkpoint is not.
    let template = chat_template(args.chat_template.as_deref(), &tokenizer).map_err(|e| {
        if args.chat_template.is_some() {
            usage_error(e)
        } else {
            run_error(e)
        }
    })?;
    // Held-out rows, prepared as training prepares them.
    // The prepared held-out rows and their rejects: beside the report when there is one
    // (so the rejects file named on stderr stays), else in a temporary folder.
    let temp = tempfile::tempdir().map_err(|e| run_error(format_args!("temporary folder: {e}")))?;
    let work = match &args.report {
        Some(report) => {
            let stem = report
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            report.with_file_name(format!("{stem}.data"))
        }
        None => temp.path().to_path_buf(),
    };
    let plan = DataPlan {
        packing: None,
        eval_packing: None,
        options: TokenizeOptions {
            max_length: Some(args.max_length),
            completion_only_loss: args.completion_only_loss,
            assistant_only_loss: args.assistant_only_loss,
            text_field: args.dataset_text_field.clone(),
            render: Default::default(),
        },
        chat_template: args.chat_template.clone(),
    };
    let rows =
        load_rows(&args.dataset, "heldout", first, &plan, &work, args.quiet).map_err(run_error)?;
    let prompts =
        load_prompts(&args.dataset, args.max_samples, template.as_ref()).map_err(run_error)?;
    let prompt_ids: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            let mut ids = tokenizer
                .encode(&p.text, !p.conversational)
                .unwrap_or_default();
            let keep = args.max_length.saturating_sub(args.max_new_tokens).max(1);
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
        expect_json: args.expect.is_some(),
        json_schema,
        expect_pattern: args.expect_regex.clone(),
        min_chars: args.min_chars,
        max_chars: args.max_chars,
    };
    let mut reports = Vec::new();
    for (dir, step) in &list {
        let started = Instant::now();
        let model = Llama::load(dir, DType::F32, &Device::Cpu).map_err(run_error)?;
        let pad = model
            .config
            .pad_token_id
            .or(tokenizer.pad.as_ref().map(|t| t.id))
            .unwrap_or(0);
        let heldout = if rows.is_empty() {
            None
        } else {
            let t0 = Instant::now();
            let s = model
                .score(&rows, args.batch_size, pad)
                .map_err(run_error)?;
            let n = s.tokens.max(1) as f64;
            let seconds = t0.elapsed().as_secs_f64();
            Some(HeldOut {
                loss: s.loss_sum / n,
                perplexity: (s.loss_sum / n).exp(),
                mean_token_accuracy: s.correct as f64 / n,
                entropy: s.entropy_sum / n,
                tokens: s.tokens,
                rows: rows.len(),
                seconds,
                tokens_per_second: rows.iter().map(|r| r.input_ids.len()).sum::<usize>() as f64
                    / seconds.max(1e-9),
            })
        };
        let stops = stop_ids(dir, &tokenizer);
        let mut samples = Vec::new();
        let mut generation = None;
        if !prompt_ids.is_empty() {
            let t0 = Instant::now();
            let opts = GenerateOptions {
                max_new_tokens: args.max_new_tokens,
                temperature: args.temperature,
                top_k: args.top_k,
                top_p: args.top_p,
                seed: args.seed,
                stop_ids: stops.clone(),
                pad_id: pad,
            };
            let mut outs = Vec::new();
            for chunk in prompt_ids.chunks(args.batch_size.max(1)) {
                outs.extend(model.generate(chunk, &opts).map_err(run_error)?);
            }
            let seconds = t0.elapsed().as_secs_f64();
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
                    Some(id) if tokenizer.eos.as_ref().is_some_and(|e| e.id == id) => {
                        StopReason::Eos
                    }
                    Some(_) => StopReason::EndOfTurn,
                };
                let sample = Sample {
                    text: &raw,
                    stopped_by,
                    reference: p.reference.as_deref(),
                    new_tokens: g.ids.len(),
                };
                let checks = check_sample(&sample, &compliance);
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
            generation = Some(GenerationSummary {
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
                reference_repetition: reference_summary.clone(),
                new_tokens,
                seconds,
                tokens_per_second: new_tokens as f64 / seconds.max(1e-9),
            });
        }
        if !args.quiet {
            eprintln!(
                "{}: loss {} | compliance {} | repetitive {} ({:.1} s)",
                dir.display(),
                heldout
                    .as_ref()
                    .map(|h| format!(
                        "{:.4} (ppl {:.2}, {} tokens)",
                        h.loss, h.perplexity, h.tokens
                    ))
                    .unwrap_or_else(|| "–".into()),
                generation
                    .as_ref()
                    .map(|g| format!("{:.3} of {}", g.compliance_rate, g.samples))
                    .unwrap_or_else(|| "–".into()),
                generation
                    .as_ref()
                    .map(|g| format!("{:.3}", g.repetition.repetitive_share))
                    .unwrap_or_else(|| "–".into()),
                started.elapsed().as_secs_f64()
            );
        }
        reports.push(CheckpointReport {
            path: dir.display().to_string(),
            step: *step,
            heldout,
            generation,
            samples,
            best: false,
        });
    }
    let history = match &args.run {
        Some(run) => Some(read_history(run).map_err(run_error)?),
        None => None,
    };
    let diagnosis = history
        .as_ref()
        .map(|h| diagnose(h, &DiagnosisThresholds::default()));
    let mut report = Report {
        version: 1,
        dataset: args.dataset.display().to_string(),
        checkpoints: reports,
        best_checkpoint: None,
        diagnosis,
        gates: Vec::new(),
        passed: true,
    };
    report.mark_best();
    let best = report.best().cloned();
    let mut gate =
        |name: &str, threshold: Option<f64>, value: Option<f64>, ok: fn(f64, f64) -> bool| {
            if let Some(t) = threshold {
                let passed = value.is_some_and(|v| ok(v, t));
                report.gates.push(Gate {
                    name: name.into(),
                    threshold: t,
                    value,
                    passed,
                });
            }
        };
    let b = best.as_ref();
    gate(
        "max_loss",
        args.max_loss,
        b.and_then(|c| c.heldout.as_ref().map(|h| h.loss)),
        |v, t| v <= t,
    );
    gate(
        "min_compliance",
        args.min_compliance,
        b.and_then(|c| c.generation.as_ref().map(|g| g.compliance_rate)),
        |v, t| v >= t,
    );
    gate(
        "max_repetition",
        args.max_repetition,
        b.and_then(|c| c.generation.as_ref().map(|g| g.repetition.repetitive_share)),
        |v, t| v <= t,
    );
    report.passed = report.gates.iter().all(|g| g.passed);
    let md = markdown(&report);
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&report).expect("JSON") + "\n";
        sft_train::checkpoint::write_file(path, text.as_bytes()).map_err(run_error)?;
    }
    if let Some(path) = &args.markdown {
        sft_train::checkpoint::write_file(path, md.as_bytes()).map_err(run_error)?;
    }
    if let Some(dir) = &args.plots {
        std::fs::create_dir_all(dir)
            .map_err(|e| run_error(format_args!("{}: {e}", dir.display())))?;
        if let Some(h) = &history {
            let svg = sft_train::logs::loss_chart(h, "training and eval loss");
            sft_train::checkpoint::write_file(&dir.join("loss.svg"), svg.as_bytes())
                .map_err(run_error)?;
        }
        let at = |f: &dyn Fn(&CheckpointReport) -> Option<f64>| -> Vec<(f64, f64)> {
            report
                .checkpoints
                .iter()
                .enumerate()
                .filter_map(|(i, c)| Some((c.step.unwrap_or(i) as f64, f(c)?)))
                .collect()
        };
        let loss = at(&|c| c.heldout.as_ref().map(|h| h.loss));
        let comp = at(&|c| c.generation.as_ref().map(|g| g.compliance_rate));
        let rep = at(&|c| c.generation.as_ref().map(|g| g.repetition.repetitive_share));
        let svg = sft_train::logs::line_chart_svg(
            "held-out loss per checkpoint",
            "step",
            &[("held-out loss", "#d62728", loss)],
        );
        sft_train::checkpoint::write_file(&dir.join("heldout_loss.svg"), svg.as_bytes())
            .map_err(run_error)?;
        let svg = sft_train::logs::line_chart_svg(
            "samples per checkpoint",
            "step",
            &[
                ("compliance", "#2ca02c", comp),
                ("repetitive", "#9467bd", rep),
            ],
        );
        sft_train::checkpoint::write_file(&dir.join("samples.svg"), svg.as_bytes())
            .map_err(run_error)?;
    }
    if !args.quiet {
        println!("{md}");
    }
    Ok(if report.passed { 0 } else { EXIT_PROBLEMS })
}

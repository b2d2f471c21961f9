//! The report of an evaluation: JSON for machines (serde) and Markdown for people. The
//! SVG plots are drawn by [`crate::evaluate::write_plots`].

use serde::Serialize;

use crate::compliance::{CheckResult, StopReason};
use crate::diagnosis::Diagnosis;
use crate::repetition::RepetitionStats;

/// Held-out metrics of one checkpoint, token-weighted over the whole set.
#[derive(Debug, Clone, Serialize)]
pub struct HeldOut {
    pub loss: f64,
    pub perplexity: f64,
    pub mean_token_accuracy: f64,
    pub entropy: f64,
    pub tokens: usize,
    pub rows: usize,
    pub seconds: f64,
    pub tokens_per_second: f64,
    /// The rows per scoring batch that ran: the asked batch size, or less where a batch
    /// would not have fit in the memory available.
    pub batch_size: usize,
}

/// One generated sample with its checks.
#[derive(Debug, Clone, Serialize)]
pub struct SampleReport {
    pub index: usize,
    pub prompt: String,
    pub output: String,
    pub reference: Option<String>,
    pub stopped_by: StopReason,
    pub new_tokens: usize,
    pub checks: Vec<CheckResult>,
    pub passed: bool,
    pub repetition: RepetitionStats,
    pub repetitive: bool,
    pub line_loop: Option<(String, usize)>,
}

/// Averages of repetition figures over samples.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RepetitionSummary {
    pub mean_repeated_ngram_share: [f64; 4],
    pub mean_distinct: [f64; 4],
    pub mean_longest_repeated_span: f64,
    pub looping_samples: usize,
    /// Share of samples judged repetitive (see `repetition::is_repetitive`).
    pub repetitive_share: f64,
}

impl RepetitionSummary {
    pub fn of(stats: &[RepetitionStats], repetitive: &[bool]) -> Self {
        let n = stats.len().max(1) as f64;
        let mut s = RepetitionSummary::default();
        for st in stats {
            for k in 0..4 {
                s.mean_repeated_ngram_share[k] += st.repeated_ngram_share[k] / n;
                s.mean_distinct[k] += st.distinct[k] / n;
            }
            s.mean_longest_repeated_span += st.longest_repeated_span as f64 / n;
            s.looping_samples += st.looping.is_some() as usize;
        }
        s.repetitive_share = repetitive.iter().filter(|&&r| r).count() as f64 / n;
        s
    }
}

/// A check's pass rate over the samples it applied to.
#[derive(Debug, Clone, Serialize)]
pub struct PassRate {
    pub check: String,
    pub applied: usize,
    pub passed: usize,
    pub rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GenerationSummary {
    pub samples: usize,
    pub compliance_rate: f64,
    pub pass_rates: Vec<PassRate>,
    pub repetition: RepetitionSummary,
    pub reference_repetition: Option<RepetitionSummary>,
    pub new_tokens: usize,
    pub seconds: f64,
    pub tokens_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckpointReport {
    pub path: String,
    pub step: Option<usize>,
    pub heldout: Option<HeldOut>,
    pub generation: Option<GenerationSummary>,
    pub samples: Vec<SampleReport>,
    pub best: bool,
}

impl CheckpointReport {
    /// One line for a log: `PATH: loss 2.3456 (ppl 10.45, 3125 tokens) | compliance 0.750 of
    /// 16 | repetitive 0.125`, with `–` for what was not measured.
    pub fn progress_line(&self) -> String {
        let loss = self
            .heldout
            .as_ref()
            .map(|h| {
                format!(
                    "{:.4} (ppl {:.2}, {} tokens)",
                    h.loss, h.perplexity, h.tokens
                )
            })
            .unwrap_or_else(|| "–".into());
        let (compliance, repetitive) = match &self.generation {
            Some(g) => (
                format!("{:.3} of {}", g.compliance_rate, g.samples),
                format!("{:.3}", g.repetition.repetitive_share),
            ),
            None => ("–".into(), "–".into()),
        };
        format!(
            "{}: loss {loss} | compliance {compliance} | repetitive {repetitive}",
            self.path
        )
    }
}

/// A threshold given on the command line, checked on the best checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Gate {
    pub name: String,
    pub threshold: f64,
    pub value: Option<f64>,
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub version: u32,
    pub dataset: String,
    pub checkpoints: Vec<CheckpointReport>,
    pub best_checkpoint: Option<String>,
    pub diagnosis: Option<Diagnosis>,
    pub gates: Vec<Gate>,
    pub passed: bool,
    /// Set when the evaluation was stopped (by a signal) before every checkpoint was
    /// scored: what stopped it. The report then holds the checkpoints scored so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
}

impl Report {
    /// The report of an evaluation stopped by `why` after scoring `checkpoints`: the best of
    /// them marked, no gates applied, not passed.
    pub fn interrupted(dataset: &str, checkpoints: Vec<CheckpointReport>, why: String) -> Report {
        let mut report = Report {
            version: 1,
            dataset: dataset.to_string(),
            checkpoints,
            best_checkpoint: None,
            diagnosis: None,
            gates: Vec::new(),
            passed: false,
            interrupted: Some(why),
        };
        report.mark_best();
        report
    }

    /// Marks the best checkpoint: the lowest held-out loss, else the best compliance.
    pub fn mark_best(&mut self) {
        let key = |c: &CheckpointReport| -> f64 {
            match (&c.heldout, &c.generation) {
                (Some(h), _) if h.loss.is_finite() => h.loss,
                (_, Some(g)) => -g.compliance_rate,
                _ => f64::INFINITY,
            }
        };
        let best = self
            .checkpoints
            .iter()
            .enumerate()
            .min_by(|a, b| key(a.1).total_cmp(&key(b.1)))
            .map(|(i, _)| i);
        for (i, c) in self.checkpoints.iter_mut().enumerate() {
            c.best = Some(i) == best;
        }
        self.best_checkpoint = best.map(|i| self.checkpoints[i].path.clone());
    }

    /// Writes the report as pretty-printed JSON to `path`, atomically (`--report`).
    pub fn write_json(&self, path: &std::path::Path) -> Result<(), sft_io::write::WriteError> {
        let text = serde_json::to_string_pretty(self).expect("a report is JSON") + "\n";
        sft_io::write::write_atomic(path, text.as_bytes())
    }

    pub fn best(&self) -> Option<&CheckpointReport> {
        self.checkpoints.iter().find(|c| c.best)
    }
}

fn cell(text: &str, max: usize) -> String {
    let mut t: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        t.push('…');
    }
    t.replace('|', "\\|").replace('\n', "⏎").replace('\r', "")
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "–".into())
}

/// How a failed check reads in the samples table: what is wrong with the sample.
fn failure_label(check: &str) -> &str {
    match check {
        "stopped" => "not stopped",
        "no_special_tokens" => "special tokens in reply",
        "think_balanced" => "unbalanced think tags",
        "json" => "not JSON",
        "json_schema" => "schema mismatch",
        "pattern" => "pattern not found",
        "length" => "length out of range",
        other => other,
    }
}

/// The Markdown summary: checkpoints x metrics (best marked), gates, diagnosis, samples.
pub fn markdown(report: &Report) -> String {
    let mut md = format!("# Evaluation on {}\n\n", report.dataset);
    if let Some(why) = &report.interrupted {
        md.push_str(&format!(
            "**Interrupted** ({why}): {} checkpoint(s) scored; gates not applied.\n\n",
            report.checkpoints.len()
        ));
    }
    md.push_str("| checkpoint | step | loss | perplexity | token accuracy | compliance | repetitive | looping | distinct-2 |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for c in &report.checkpoints {
        let g = c.generation.as_ref();
        md.push_str(&format!(
            "| {}{} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            if c.best { "**best** " } else { "" },
            cell(&c.path, 80),
            c.step.map(|s| s.to_string()).unwrap_or_else(|| "–".into()),
            opt(c.heldout.as_ref().map(|h| h.loss), 4),
            opt(c.heldout.as_ref().map(|h| h.perplexity), 2),
            opt(c.heldout.as_ref().map(|h| h.mean_token_accuracy), 4),
            opt(g.map(|g| g.compliance_rate), 3),
            opt(g.map(|g| g.repetition.repetitive_share), 3),
            g.map(|g| g.repetition.looping_samples.to_string())
                .unwrap_or_else(|| "–".into()),
            opt(g.map(|g| g.repetition.mean_distinct[1]), 3),
        ));
    }
    if !report.gates.is_empty() {
        md.push_str("\n## Gates (on the best checkpoint)\n\n| gate | threshold | value | result |\n|---|---|---|---|\n");
        for g in &report.gates {
            md.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                g.name,
                g.threshold,
                opt(g.value, 4),
                if g.passed { "pass" } else { "**FAIL**" }
            ));
        }
    }
    if let Some(d) = &report.diagnosis {
        md.push_str("\n## Training curves\n\n");
        for f in &d.findings {
            md.push_str(&format!(
                "- **{:?}** ({:?}): {}\n",
                f.kind, f.severity, f.message
            ));
        }
        if let (Some(step), Some(loss)) = (d.best_step, d.best_eval_loss) {
            md.push_str(&format!("- best eval loss {loss:.4} at step {step}\n"));
        }
    }
    if let Some(best) = report.best() {
        if let Some(g) = &best.generation {
            md.push_str("\n## Checks (best checkpoint)\n\n| check | applied | passed | rate |\n|---|---|---|---|\n");
            for p in &g.pass_rates {
                md.push_str(&format!(
                    "| {} | {} | {} | {:.3} |\n",
                    p.check, p.applied, p.passed, p.rate
                ));
            }
        }
        if !best.samples.is_empty() {
            md.push_str("\n## Samples (best checkpoint)\n\n| # | prompt | output | reference | flags |\n|---|---|---|---|---|\n");
            for s in &best.samples {
                let mut flags: Vec<String> = s
                    .checks
                    .iter()
                    .filter(|c| !c.passed)
                    .map(|c| failure_label(c.name).to_string())
                    .collect();
                if s.repetitive {
                    flags.push("repetitive".into());
                }
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    s.index,
                    cell(&s.prompt, 160),
                    cell(&s.output, 200),
                    cell(s.reference.as_deref().unwrap_or(""), 160),
                    if flags.is_empty() {
                        "ok".into()
                    } else {
                        flags.join(", ")
                    }
                ));
            }
        }
    }
    md.push_str(&format!(
        "\nResult: **{}**\n",
        if report.passed { "pass" } else { "FAIL" }
    ));
    md
}

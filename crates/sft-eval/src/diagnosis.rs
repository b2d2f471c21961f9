//! A diagnosis of a training run from its log history: overfitting, memorisation,
//! underfitting, loss spikes and divergence, or a healthy run.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sft_train::health::logged_number;

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// Eval loss rises from its minimum while training loss keeps falling.
    Overfitting,
    /// Training loss barely falls (or eval loss barely improves).
    Underfitting,
    /// Training loss near zero, far below eval loss.
    Memorisation,
    /// Training loss spikes.
    Instability,
    /// Non-finite losses, or a training loss that ends far above its minimum.
    Divergence,
    /// What sft-train stops a run for: gradients exactly zero, a model collapsed to the
    /// uniform distribution, a loss far above its start for several logging windows
    /// (`sft_train::health`).
    CannotLearn,
    /// Losses fell and nothing above was found.
    Healthy,
    /// Too few training points to judge the curve.
    TooFewPoints,
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For information.
    Info,
    /// Worth a look; the run may still be usable.
    Warning,
    /// The run is broken.
    Error,
}

/// One thing the diagnosis found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// What it is about.
    pub kind: FindingKind,
    /// How serious it is.
    pub severity: Severity,
    /// A sentence for people, with the numbers.
    pub message: String,
    /// The steps that show it.
    pub steps: Vec<usize>,
    /// The loss values at those steps (or the values the message compares).
    pub values: Vec<f64>,
}

/// The diagnosis of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnosis {
    /// What was found, most serious first.
    pub findings: Vec<Finding>,
    /// The step of the lowest eval loss.
    pub best_step: Option<usize>,
    /// The lowest eval loss.
    pub best_eval_loss: Option<f64>,
    /// Number of training-loss entries.
    pub train_points: usize,
    /// Number of eval-loss entries.
    pub eval_points: usize,
}

/// The thresholds of [`diagnose`]; the defaults are given for each field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiagnosisThresholds {
    /// Overfitting: relative rise of eval loss above its minimum (0.05).
    pub overfit_rise: f64,
    /// Overfitting: how many consecutive evals, ending the run, must be above it (2).
    pub overfit_evals: usize,
    /// Memorisation: final smoothed training loss below this (0.1)...
    pub memorise_train_loss: f64,
    /// ...and final eval loss above this multiple of it (3.0)...
    pub memorise_ratio: f64,
    /// ...or above it plus this (1.0).
    pub memorise_gap: f64,
    /// Underfitting: relative fall of smoothed training loss from the first to the last
    /// tenth of the points below this (0.05)...
    pub underfit_train_improvement: f64,
    /// ...judged with at least this many points (10).
    pub underfit_min_points: usize,
    /// Underfitting: relative fall from the first to the best eval loss below this (0.02).
    pub underfit_eval_improvement: f64,
    /// Spikes: points compared with the median of this many previous points (5)...
    pub spike_window: usize,
    /// ...are spikes above this multiple of it (1.5)...
    pub spike_ratio: f64,
    /// ...and this much above it (0.5).
    pub spike_abs: f64,
    /// Divergence: smoothed training loss ends above this multiple of its minimum (2.0).
    pub diverge_ratio: f64,
    /// ...and more than this above it (0.1), so that near-zero losses do not count.
    pub diverge_abs: f64,
    /// Fewer training points than this are too few to judge (3).
    pub min_train_points: usize,
    /// Width of the centered moving median that smooths training loss (5).
    pub smoothing_window: usize,
}

impl Default for DiagnosisThresholds {
    fn default() -> Self {
        Self {
            overfit_rise: 0.05,
            overfit_evals: 2,
            memorise_train_loss: 0.1,
            memorise_ratio: 3.0,
            memorise_gap: 1.0,
            underfit_train_improvement: 0.05,
            underfit_min_points: 10,
            underfit_eval_improvement: 0.02,
            spike_window: 5,
            spike_ratio: 1.5,
            spike_abs: 0.5,
            diverge_ratio: 2.0,
            diverge_abs: 0.1,
            min_train_points: 3,
            smoothing_window: 5,
        }
    }
}

/// The `(step, value)` points of `key` in the history (entries without a step are
/// numbered by their position among the points).
fn series(history: &[Value], key: &str) -> Vec<(usize, f64)> {
    history
        .iter()
        .filter_map(|e| Some((e.get("step"), logged_number(e.get(key)?)?)))
        .enumerate()
        .map(|(i, (step, v))| {
            let step = step.and_then(Value::as_f64).map_or(i + 1, |s| s as usize);
            (step, v)
        })
        .collect()
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Centered moving median of `window` points, the window shrinking at the ends: robust to
/// single spikes, unlike an EMA, and without lag.
fn smooth(xs: &[f64], window: usize) -> Vec<f64> {
    let half = window.max(1) / 2;
    let n = xs.len();
    // The window shrinks symmetrically at the ends, so the first and last points keep
    // their own value and a short history is not flattened.
    (0..n)
        .map(|i| {
            let h = half.min(i).min(n - 1 - i);
            median(&xs[i - h..=i + h])
        })
        .collect()
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn finding(kind: FindingKind, severity: Severity, message: String) -> Finding {
    Finding {
        kind,
        severity,
        message,
        steps: vec![],
        values: vec![],
    }
}

/// Diagnoses a run from its log history (transformers' `log_history`, or the lines of
/// our `metrics.jsonl`): training points are entries with `loss`, eval points entries
/// with `eval_loss`. Training loss is smoothed by a centered moving median of
/// `smoothing_window` points. Findings:
/// - Divergence (error): a non-finite loss, or smoothed training loss ending above
///   `diverge_ratio` times its minimum and `diverge_abs` more than it;
/// - TooFewPoints (info): fewer than `min_train_points` finite training points (nothing
///   else but non-finite losses is judged then);
/// - Instability (warning): spikes, points above both `spike_ratio` times and
///   `spike_abs` plus the median of the `spike_window` previous points (at least 3);
/// - Overfitting (warning): the last `overfit_evals` evals (or more) are all above the
///   minimum eval loss by more than `overfit_rise` (relative), while smoothed training loss
///   fell from the best eval's step to the last step;
/// - Memorisation (warning): final smoothed training loss below `memorise_train_loss` and
///   the last eval loss above `memorise_ratio` times it or `memorise_gap` more than it, or
///   such a training loss without eval;
/// - Underfitting (warning): with at least `underfit_min_points` points, smoothed training
///   loss fell by less than `underfit_train_improvement` (relative) from the mean of the
///   first tenth of the points to the mean of the last tenth, or did not fall at all with
///   fewer points; or, with at least 2 evals, the best eval loss is less than
///   `underfit_eval_improvement` below the first;
/// - Healthy (info): none of the above, and the losses fell.
pub fn diagnose(history: &[Value], t: &DiagnosisThresholds) -> Diagnosis {
    let all_train = series(history, "loss");
    let all_eval = series(history, "eval_loss");
    let mut findings = Vec::new();

    let bad: Vec<&(usize, f64)> = all_train
        .iter()
        .chain(&all_eval)
        .filter(|p| !p.1.is_finite())
        .collect();
    if let Some(first) = bad.first() {
        let mut f = finding(
            FindingKind::Divergence,
            Severity::Error,
            format!(
                "{} non-finite loss value(s), the first at step {}",
                bad.len(),
                first.0
            ),
        );
        f.steps = bad.iter().map(|p| p.0).collect();
        f.values = bad.iter().map(|p| p.1).collect();
        findings.push(f);
    }
    let train: Vec<(usize, f64)> = all_train.into_iter().filter(|p| p.1.is_finite()).collect();
    let eval: Vec<(usize, f64)> = all_eval.into_iter().filter(|p| p.1.is_finite()).collect();
    let best = eval
        .iter()
        .copied()
        .reduce(|b, p| if p.1 < b.1 { p } else { b });
    let mut diagnosis = Diagnosis {
        findings: vec![],
        best_step: best.map(|b| b.0),
        best_eval_loss: best.map(|b| b.1),
        train_points: train.len(),
        eval_points: eval.len(),
    };
    if train.len() < t.min_train_points {
        findings.push(finding(
            FindingKind::TooFewPoints,
            Severity::Info,
            format!(
                "{} training loss point(s); at least {} are needed to judge the curve",
                train.len(),
                t.min_train_points
            ),
        ));
        diagnosis.findings = findings;
        return diagnosis;
    }

    let steps: Vec<usize> = train.iter().map(|p| p.0).collect();
    let losses: Vec<f64> = train.iter().map(|p| p.1).collect();
    let smoothed = smooth(&losses, t.smoothing_window);
    let n = losses.len();
    let (first_step, last_step) = (steps[0], steps[n - 1]);
    let (start, end) = (smoothed[0], smoothed[n - 1]);
    // Smoothed training loss at `step`: that of the last training point at or before it.
    let train_at = |step: usize| smoothed[steps.partition_point(|&s| s <= step).saturating_sub(1)];

    // Divergence: ending far above the minimum.
    let (min_i, min) =
        smoothed
            .iter()
            .copied()
            .enumerate()
            .fold(
                (0, f64::INFINITY),
                |b, (i, x)| if x < b.1 { (i, x) } else { b },
            );
    if end > t.diverge_ratio * min && end > min + t.diverge_abs {
        let mut f = finding(
            FindingKind::Divergence,
            Severity::Error,
            format!(
                "training loss ended at {end:.4} (step {last_step}), {:.1}x its minimum {min:.4} (step {})",
                end / min,
                steps[min_i]
            ),
        );
        f.steps = vec![steps[min_i], last_step];
        f.values = vec![min, end];
        findings.push(f);
    }

    // Instability: spikes above the median of the previous points.
    let spikes: Vec<usize> = (3..n)
        .filter(|&i| {
            let m = median(&losses[i.saturating_sub(t.spike_window.max(1))..i]);
            losses[i] > m * t.spike_ratio && losses[i] > m + t.spike_abs
        })
        .collect();
    if !spikes.is_empty() {
        let listed: Vec<String> = spikes
            .iter()
            .map(|&i| format!("{} ({:.4})", steps[i], losses[i]))
            .collect();
        let mut f = finding(
            FindingKind::Instability,
            Severity::Warning,
            format!(
                "{} training loss spike(s) at step {}",
                spikes.len(),
                listed.join(", ")
            ),
        );
        f.steps = spikes.iter().map(|&i| steps[i]).collect();
        f.values = spikes.iter().map(|&i| losses[i]).collect();
        findings.push(f);
    }

    // Overfitting: eval loss up from its minimum over the last evals, training loss down.
    if let Some((best_step, best_loss)) = best {
        let above = eval
            .iter()
            .rev()
            .take_while(|p| p.1 > best_loss * (1.0 + t.overfit_rise))
            .count();
        let &(eval_last_step, eval_last) = eval.last().expect("a best eval exists");
        let (train_best, train_last) = (train_at(best_step), end);
        if above >= t.overfit_evals.max(1) && train_last < train_best {
            let mut f = finding(
                FindingKind::Overfitting,
                Severity::Warning,
                format!(
                    "eval loss rose from {best_loss:.4} (step {best_step}) to {eval_last:.4} (step {eval_last_step}) \
                     while training loss fell from {train_best:.4} to {train_last:.4}"
                ),
            );
            f.steps = vec![best_step, eval_last_step];
            f.values = vec![best_loss, eval_last];
            findings.push(f);
        }
    }

    // Memorisation: training loss near zero, far below eval loss.
    if end < t.memorise_train_loss {
        let message = match eval.last() {
            None => Some(format!(
                "training loss fell to {end:.4} (step {last_step}) and there is no eval loss to compare"
            )),
            Some(&(step, e)) if e > end * t.memorise_ratio || e > end + t.memorise_gap => Some(format!(
                "training loss fell to {end:.4} (step {last_step}) while eval loss is {e:.4} (step {step})"
            )),
            Some(_) => None,
        };
        if let Some(message) = message {
            let mut f = finding(FindingKind::Memorisation, Severity::Warning, message);
            f.steps = vec![last_step];
            f.values = vec![end];
            if let Some(&(step, e)) = eval.last() {
                f.steps.push(step);
                f.values.push(e);
            }
            findings.push(f);
        }
    }

    // Underfitting: training (or eval) loss barely falls.
    let mut reasons = Vec::new();
    let tenth = n.div_ceil(10);
    let (head, tail) = (mean(&smoothed[..tenth]), mean(&smoothed[n - tenth..]));
    let train_gain = (head - tail) / head.abs().max(f64::MIN_POSITIVE);
    if (n >= t.underfit_min_points && train_gain < t.underfit_train_improvement) || tail >= head {
        reasons.push(format!(
            "training loss went from {head:.4} to {tail:.4} ({:+.1}%) between steps {first_step} and {last_step}",
            -100.0 * train_gain
        ));
    }
    if let (Some(&(first_eval_step, first_eval)), Some((best_step, best_loss))) =
        (eval.first(), best)
    {
        let eval_gain = (first_eval - best_loss) / first_eval.abs().max(f64::MIN_POSITIVE);
        // Eval loss that is lowest at the first evaluation and then rises is overfitting,
        // not underfitting: only a flat eval curve counts here.
        let overfit = findings.iter().any(|f| f.kind == FindingKind::Overfitting);
        if eval.len() >= 2 && eval_gain < t.underfit_eval_improvement && !overfit {
            reasons.push(format!(
                "eval loss improved only from {first_eval:.4} (step {first_eval_step}) to {best_loss:.4} (step {best_step})"
            ));
        }
    }
    if !reasons.is_empty() {
        let mut f = finding(
            FindingKind::Underfitting,
            Severity::Warning,
            reasons.join("; "),
        );
        f.steps = vec![first_step, last_step];
        f.values = vec![head, tail];
        findings.push(f);
    }

    if findings.is_empty() {
        let mut message = format!(
            "training loss fell from {start:.4} to {end:.4} ({:.1}%)",
            100.0 * (start - end) / start
        );
        if let (Some(&(_, first_eval)), Some((best_step, best_loss))) = (eval.first(), best) {
            message += &format!("; eval loss fell from {first_eval:.4} to {best_loss:.4} (best at step {best_step})");
        }
        let mut f = finding(FindingKind::Healthy, Severity::Info, message);
        f.steps = vec![first_step, last_step];
        f.values = vec![start, end];
        findings.push(f);
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    diagnosis.findings = findings;
    diagnosis
}

/// [`diagnose`], plus the checks sft-train runs while it trains (`sft_train::health`) on
/// the same log entries: a run that could not learn is an error finding, first. The
/// vocabulary size (of the run's model) lets the collapse to the uniform distribution be
/// recognised; without it the other checks still run.
pub fn diagnose_run(
    history: &[Value],
    vocab_size: Option<usize>,
    t: &DiagnosisThresholds,
) -> Diagnosis {
    let mut diagnosis = diagnose(history, t);
    let health = sft_train::health::HealthThresholds::default();
    if let Some(v) = sft_train::health::scan(history, vocab_size, &health) {
        let mut f = finding(
            FindingKind::CannotLearn,
            Severity::Error,
            format!(
                "step {}: the run {}: {}; likely cause: {}",
                v.step,
                v.sickness.name(),
                v.message,
                v.cause
            ),
        );
        f.steps = vec![v.since_step, v.step];
        diagnosis
            .findings
            .retain(|f| f.kind != FindingKind::Healthy);
        diagnosis.findings.insert(0, f);
    }
    diagnosis
}

/// Reads a log history from a `trainer_state.json` (its `log_history`; a bare JSON array
/// of entries is accepted too), a `metrics.jsonl` (one JSON object per line; errors name
/// the line), or a run folder holding either (preferring `trainer_state.json`, then
/// `metrics.jsonl`, then the `trainer_state.json` of the latest `checkpoint-N`). Bare
/// `NaN`, `Infinity` and `-Infinity`, as Python writes them, are read as strings.
pub fn read_history(path: &Path) -> Result<Vec<Value>, String> {
    if path.is_dir() {
        let file = ["trainer_state.json", "metrics.jsonl"]
            .iter()
            .map(|name| path.join(name))
            .find(|p| p.is_file())
            .or_else(|| latest_checkpoint_state(path))
            .ok_or_else(|| format!("{}: no trainer_state.json or metrics.jsonl", path.display()))?;
        return read_history(&file);
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = quote_non_finite(&text);
    if path.extension().is_some_and(|e| e == "json") {
        let doc: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        return match doc {
            Value::Array(entries) => Ok(entries),
            Value::Object(mut m) => match m.remove("log_history") {
                Some(Value::Array(entries)) => Ok(entries),
                _ => Err(format!("{}: no log_history array", path.display())),
            },
            _ => Err(format!("{}: expected a JSON object", path.display())),
        };
    }
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        match serde_json::from_str(line) {
            Ok(v @ Value::Object(_)) => entries.push(v),
            Ok(_) => return Err(format!("{}: expected a JSON object", at())),
            Err(e) => return Err(format!("{}: {e}", at())),
        }
    }
    Ok(entries)
}

fn latest_checkpoint_state(dir: &Path) -> Option<std::path::PathBuf> {
    sft_train::checkpoint::list_checkpoints(dir)
        .into_iter()
        .map(|(_, p)| p.join("trainer_state.json"))
        .rfind(|p| p.is_file())
}

/// Puts quotes around the bare `NaN`, `Infinity` and `-Infinity` outside strings.
fn quote_non_finite(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("NaN") && !text.contains("Infinity") {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 16);
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !in_string {
            if let Some(word) = ["NaN", "Infinity", "-Infinity"]
                .iter()
                .find(|w| rest.starts_with(**w))
            {
                out += &format!("\"{word}\"");
                rest = &rest[word.len()..];
                continue;
            }
        }
        if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else {
            in_string = c == '"';
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out.into()
}

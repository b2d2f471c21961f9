//! Runs that cannot learn, found while they run (and afterwards in their logs): gradients
//! that are exactly zero, a model collapsed to the uniform distribution (loss pinned at
//! ln(vocabulary) with maximal entropy), and a loss far above where it started for several
//! logging windows. A non-finite loss or gradient is found by the step itself
//! ([`crate::step::StepOutcome::NonFinite`]). A typo such as `--learning_rate 1e4` (for
//! 1e-4) sends a model to the uniform output in one step; without these checks the run
//! would train on for hours, save and exit 0.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What is wrong with a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sickness {
    /// The gradient norm is exactly zero step after step: nothing changes any more.
    ZeroGradients,
    /// The model gives every token the same probability: loss and entropy at ln(V).
    Collapsed,
    /// The loss stays far above its start.
    Diverged,
}

impl Sickness {
    pub fn name(self) -> &'static str {
        match self {
            Sickness::ZeroGradients => "zero gradients",
            Sickness::Collapsed => "collapsed to the uniform distribution",
            Sickness::Diverged => "diverged",
        }
    }
}

/// When the checks speak; the defaults are given for each field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthThresholds {
    /// Steps (or log entries) in a row with a gradient norm of exactly 0 (3).
    pub zero_gradient_points: usize,
    /// Steps (or log entries) in a row at the uniform distribution (3)...
    pub collapse_points: usize,
    /// ...that is: loss within this share of ln(V) of it, entropy at least (1 - this)
    /// ln(V), and the loss moving less than this share of ln(V) over them (1e-4; a
    /// randomly initialised model is further from uniform than that).
    pub collapse_tolerance: f64,
    /// Log entries in a row whose loss is far above the first one (3)...
    pub diverge_points: usize,
    /// ...that is, above this multiple of it (1.5)...
    pub diverge_ratio: f64,
    /// ...and this much above it (1.0).
    pub diverge_abs: f64,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        Self {
            zero_gradient_points: 3,
            collapse_points: 3,
            collapse_tolerance: 1e-4,
            diverge_points: 3,
            diverge_ratio: 1.5,
            diverge_abs: 1.0,
        }
    }
}

/// A run found unable to learn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub sickness: Sickness,
    /// The step at which it was found.
    pub step: usize,
    /// The first step that showed it (checkpoints from here on are not good).
    pub since_step: usize,
    /// What was seen, with the numbers.
    pub message: String,
    /// The likely cause and what to do.
    pub cause: String,
}

/// Watches a run step by step ([`HealthMonitor::step`]) and log entry by log entry
/// ([`HealthMonitor::log`]).
#[derive(Debug, Clone)]
pub struct HealthMonitor {
    ln_vocab: Option<f64>,
    learning_rate: Option<f64>,
    t: HealthThresholds,
    zero_since: Option<(usize, usize)>,
    uniform: Vec<(usize, f64)>,
    first_loss: Option<f64>,
    above_since: Option<(usize, usize)>,
}

impl HealthMonitor {
    /// A monitor for a model of `vocab_size` tokens trained at `learning_rate` (named in the
    /// causes when known).
    pub fn new(vocab_size: Option<usize>, learning_rate: Option<f64>, t: HealthThresholds) -> Self {
        Self {
            ln_vocab: vocab_size.filter(|&v| v > 1).map(|v| (v as f64).ln()),
            learning_rate,
            t,
            zero_since: None,
            uniform: Vec::new(),
            first_loss: None,
            above_since: None,
        }
    }

    fn lr_cause(&self, what: &str) -> String {
        let lr = match self.learning_rate {
            Some(lr) => format!("the learning rate (--learning_rate {lr}) is likely far too high"),
            None => "the learning rate is likely far too high".into(),
        };
        format!("{lr}: {what}; typical rates are 1e-5 to 1e-4 for full fine-tuning and 1e-4 to 1e-3 for LoRA. Keep --max_grad_norm on and add warmup (--warmup_steps); if the rate is right, look for broken rows with `sft-data check`")
    }

    /// One step's loss, gradient norm and mean entropy (`None` where not known).
    pub fn step(
        &mut self,
        step: usize,
        loss: f64,
        grad_norm: Option<f64>,
        entropy: Option<f64>,
    ) -> Option<Verdict> {
        if let Some(g) = grad_norm {
            if g == 0.0 {
                let (since, n) = self.zero_since.map_or((step, 0), |(s, n)| (s, n));
                self.zero_since = Some((since, n + 1));
                if n + 1 >= self.t.zero_gradient_points {
                    let cause = if loss == 0.0 {
                        "no token is trained (the loss is 0: every label is masked); check --completion_only_loss, --assistant_only_loss and the data (`sft-data render` shows what is trained)".to_string()
                    } else {
                        self.lr_cause(
                            "a step moved the weights to where the loss no longer depends on them",
                        )
                    };
                    return Some(Verdict {
                        sickness: Sickness::ZeroGradients,
                        step,
                        since_step: since,
                        message: format!(
                            "the gradient norm has been exactly 0 for {} steps in a row (since step {since}, loss {loss:.4}): the weights no longer change",
                            n + 1
                        ),
                        cause,
                    });
                }
            } else {
                self.zero_since = None;
            }
        }
        if let (Some(ln_v), Some(e)) = (self.ln_vocab, entropy) {
            let tol = self.t.collapse_tolerance * ln_v;
            if (loss - ln_v).abs() <= tol && e >= ln_v - tol {
                self.uniform.push((step, loss));
                let lo = self
                    .uniform
                    .iter()
                    .map(|p| p.1)
                    .fold(f64::INFINITY, f64::min);
                let hi = self
                    .uniform
                    .iter()
                    .map(|p| p.1)
                    .fold(f64::NEG_INFINITY, f64::max);
                if hi - lo > tol {
                    // Moving, not pinned: keep the latest point only.
                    let last = *self.uniform.last().expect("pushed");
                    self.uniform = vec![last];
                } else if self.uniform.len() >= self.t.collapse_points {
                    let since = self.uniform[0].0;
                    return Some(Verdict {
                        sickness: Sickness::Collapsed,
                        step,
                        since_step: since,
                        message: format!(
                            "the loss has been pinned at ln(vocabulary) = {ln_v:.4} with maximal entropy ({e:.4}) for {} steps in a row (since step {since}): the model gives every token the same probability, whatever the input",
                            self.uniform.len()
                        ),
                        cause: self.lr_cause("the weights were pushed to a state that predicts nothing"),
                    });
                }
            } else {
                self.uniform.clear();
            }
        }
        None
    }

    /// One log entry's loss (the mean over its window).
    pub fn log(&mut self, step: usize, loss: f64) -> Option<Verdict> {
        if !loss.is_finite() {
            return None;
        }
        let Some(first) = self.first_loss else {
            self.first_loss = Some(loss);
            return None;
        };
        if loss > first * self.t.diverge_ratio && loss > first + self.t.diverge_abs {
            let (since, n) = self.above_since.map_or((step, 0), |(s, n)| (s, n));
            self.above_since = Some((since, n + 1));
            if n + 1 >= self.t.diverge_points {
                return Some(Verdict {
                    sickness: Sickness::Diverged,
                    step,
                    since_step: since,
                    message: format!(
                        "the loss has been far above its start ({first:.4}) for {} logging windows in a row (since step {since}; now {loss:.4})",
                        n + 1
                    ),
                    cause: self.lr_cause("training moves away from a solution instead of towards one"),
                });
            }
        } else {
            self.above_since = None;
        }
        None
    }
}

/// A number as logged: a number, a string such as `"NaN"` or `"Infinity"`, or `null` (what
/// serde_json writes for a non-finite number), read as NaN.
pub fn logged_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Null => Some(f64::NAN),
        _ => None,
    }
}

/// The first sign in a run's log history (`metrics.jsonl` or `trainer_state.json`'s
/// `log_history`) that it could not learn: the same checks as during training, on the
/// logged training entries (their last step's gradient norm, their mean loss and entropy).
pub fn scan(history: &[Value], vocab_size: Option<usize>, t: &HealthThresholds) -> Option<Verdict> {
    let mut monitor = HealthMonitor::new(vocab_size, None, t.clone());
    for entry in history {
        let (Some(step), Some(loss)) = (
            entry.get("step").and_then(Value::as_u64),
            entry.get("loss").and_then(logged_number),
        ) else {
            continue;
        };
        let step = step as usize;
        let found = monitor
            .step(
                step,
                loss,
                entry.get("grad_norm").and_then(logged_number),
                entry.get("entropy").and_then(logged_number),
            )
            .or_else(|| monitor.log(step, loss));
        if found.is_some() {
            return found;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const V: usize = 49152;

    #[test]
    fn zero_gradients_are_found_after_three_steps_and_named_with_the_rate() {
        let mut m = HealthMonitor::new(Some(V), Some(1e4), HealthThresholds::default());
        assert!(m.step(1, 12.0, Some(3.0), Some(1.0)).is_none());
        assert!(m.step(2, 10.8, Some(0.0), Some(10.8)).is_none());
        assert!(m.step(3, 10.8, Some(0.0), Some(10.8)).is_none());
        let v = m.step(4, 10.8, Some(0.0), Some(10.8)).unwrap();
        assert_eq!(
            (v.sickness, v.step, v.since_step),
            (Sickness::ZeroGradients, 4, 2)
        );
        assert!(v.cause.contains("--learning_rate 10000"), "{}", v.cause);
        // A non-zero gradient in between starts the count over.
        let mut m = HealthMonitor::new(Some(V), None, HealthThresholds::default());
        for (s, g) in [(1, 0.0), (2, 0.0), (3, 0.1), (4, 0.0), (5, 0.0)] {
            assert!(m.step(s, 2.0, Some(g), None).is_none());
        }
    }

    #[test]
    fn a_loss_pinned_at_ln_v_with_maximal_entropy_is_a_collapse_but_a_falling_one_is_not() {
        let ln_v = (V as f64).ln();
        let mut m = HealthMonitor::new(Some(V), None, HealthThresholds::default());
        for s in 1..=2 {
            assert!(m.step(s, ln_v, Some(1e-3), Some(ln_v)).is_none());
        }
        let v = m
            .step(3, ln_v + 1e-4, Some(1e-3), Some(ln_v - 1e-4))
            .unwrap();
        assert_eq!((v.sickness, v.since_step), (Sickness::Collapsed, 1));
        // A model that starts near uniform and learns: the loss moves, nothing is said.
        let mut m = HealthMonitor::new(Some(V), None, HealthThresholds::default());
        for s in 0..20 {
            let loss = ln_v - 0.004 * s as f64;
            assert!(
                m.step(s, loss, Some(2.0), Some(ln_v - 0.005)).is_none(),
                "step {s}"
            );
        }
    }

    #[test]
    fn a_loss_far_above_its_start_for_three_windows_is_divergence() {
        let mut m = HealthMonitor::new(Some(V), Some(1e-2), HealthThresholds::default());
        assert!(m.log(10, 2.0).is_none());
        assert!(m.log(20, 4.0).is_none());
        assert!(m.log(30, 2.5).is_none(), "back near the start");
        assert!(m.log(40, 5.0).is_none());
        assert!(m.log(50, 6.0).is_none());
        let v = m.log(60, 7.0).unwrap();
        assert_eq!((v.sickness, v.since_step), (Sickness::Diverged, 40));
    }

    #[test]
    fn the_logs_of_a_collapsed_run_are_read_the_same_way() {
        let history = vec![
            json!({"loss": 11.1, "grad_norm": 5.0, "entropy": 9.0, "step": 1}),
            json!({"loss": 10.8027, "grad_norm": 0.0, "entropy": 10.8027, "step": 2}),
            json!({"loss": 10.8027, "grad_norm": 0.0, "entropy": 10.8027, "step": 3}),
            json!({"eval_loss": 10.8, "step": 3}),
            json!({"loss": 10.8027, "grad_norm": 0.0, "entropy": 10.8027, "step": 4}),
        ];
        let v = scan(&history, Some(V), &HealthThresholds::default()).unwrap();
        assert_eq!((v.sickness, v.step), (Sickness::ZeroGradients, 4));
        assert!(scan(&history[..3], Some(V), &HealthThresholds::default()).is_none());
    }
}

//! The logging window: what the steps since the last log entry did, recorded step by
//! step and flushed into the entry transformers logs every `logging_steps`. It is part of
//! a checkpoint, so a resumed run logs the same entries as an uninterrupted one.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::metrics::{peak_rss_mb, round};
use crate::step::StepResult;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Window {
    pub steps: usize,
    pub loss_sum: f64,
    pub accuracy: Vec<f64>,
    pub entropy: Vec<f64>,
    pub tokens: u64,
    pub seconds: f64,
}

impl Window {
    /// Adds a finished step that took `seconds`.
    pub fn record(&mut self, step: &StepResult, seconds: f64) {
        self.steps += 1;
        self.loss_sum += step.loss;
        self.tokens += step.tokens;
        self.seconds += seconds;
        for &(a, e) in &step.ratios {
            self.accuracy.push(a);
            self.entropy.push(e);
        }
    }

    /// The log entry at `step` (with the last step's gradient norm, the rate of the step
    /// to come, the tokens seen so far and the epoch), as transformers names and orders it;
    /// the window starts over.
    pub fn flush(
        &mut self,
        step: usize,
        grad_norm: f64,
        learning_rate: f64,
        num_tokens: u64,
        epoch: f64,
    ) -> Value {
        let w = std::mem::take(self);
        let mean = |v: &[f64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        json!({
            "loss": round(w.loss_sum / w.steps.max(1) as f64),
            "grad_norm": grad_norm,
            "learning_rate": learning_rate,
            "entropy": mean(&w.entropy),
            "num_tokens": num_tokens,
            "mean_token_accuracy": mean(&w.accuracy),
            "tokens_per_second": (w.tokens as f64 / w.seconds.max(1e-9)).round(),
            "peak_memory_mb": peak_rss_mb().map(|m| m.round()),
            "epoch": epoch,
            "step": step,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_averages_its_steps_and_starts_over_when_flushed() {
        let mut w = Window::default();
        let step = |loss, tokens, ratios| StepResult {
            loss,
            grad_norm: 1.0,
            tokens,
            input_tokens: tokens,
            ratios,
        };
        w.record(&step(2.0, 100, vec![(0.5, 1.0), (0.7, 3.0)]), 1.0);
        w.record(&step(3.0, 300, vec![(0.6, 2.0)]), 1.0);
        let e = w.flush(2, 0.25, 1e-5, 400, 0.5);
        assert_eq!(e["loss"], 2.5);
        assert_eq!(e["grad_norm"], 0.25);
        assert!((e["mean_token_accuracy"].as_f64().unwrap() - 0.6).abs() < 1e-12);
        assert_eq!(e["entropy"], 2.0);
        assert_eq!(e["tokens_per_second"], 200.0);
        assert_eq!(
            (e["step"].as_u64(), e["epoch"].as_f64()),
            (Some(2), Some(0.5))
        );
        assert_eq!(w, Window::default());
    }
}

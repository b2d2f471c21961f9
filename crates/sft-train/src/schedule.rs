//! Learning-rate schedules, as transformers' `get_scheduler` defines them: the rate of
//! optimizer step `k` (0-based) is `base * factor(k)`.

use std::f64::consts::PI;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    Linear,
    Cosine,
    Constant,
    ConstantWithWarmup,
}

impl ScheduleKind {
    pub const NAMES: &'static [&'static str] =
        &["linear", "cosine", "constant", "constant_with_warmup"];

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "linear" => Self::Linear,
            "cosine" => Self::Cosine,
            "constant" => Self::Constant,
            "constant_with_warmup" => Self::ConstantWithWarmup,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub base_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

/// transformers 5's rule for `warmup_steps`: below 1 it is a ratio of the total steps,
/// rounded up; from 1 on a step count, truncated.
pub fn warmup_steps(warmup: f64, total_steps: usize) -> usize {
    if warmup >= 1.0 {
        warmup as usize
    } else {
        (total_steps as f64 * warmup).ceil() as usize
    }
}

impl Schedule {
    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        self.base_lr * self.factor(step)
    }

    fn factor(&self, step: usize) -> f64 {
        let (s, w, t) = (
            step as f64,
            self.warmup_steps as f64,
            self.total_steps as f64,
        );
        if self.kind != ScheduleKind::Constant && step < self.warmup_steps {
            return s / w.max(1.0);
        }
        match self.kind {
            ScheduleKind::Constant | ScheduleKind::ConstantWithWarmup => 1.0,
            ScheduleKind::Linear => ((t - s) / (t - w).max(1.0)).max(0.0),
            ScheduleKind::Cosine => {
                let progress = (s - w) / (t - w).max(1.0);
                (0.5 * (1.0 + (PI * 2.0 * 0.5 * progress).cos())).max(0.0)
            }
        }
    }
}

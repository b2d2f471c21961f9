//! The trainer of `sft-train`: AdamW with transformers' decay groups, learning-rate
//! schedules, gradient accumulation weighted by trained tokens, evaluation and early
//! stopping, checkpoints that transformers loads and that resume exactly, and the run's
//! logs (metrics.jsonl, Trackio, a loss chart).
//!
//! The training stage of the flow (... -> prepare -> **train** -> evaluate): it takes token
//! rows ([`data`]: a prepared table, or any dataset prepared on the fly through
//! `sft-dataset`) and a `sft-model` model, and writes Hugging Face checkpoints that
//! `sft-eval` scores.

pub mod accumulate;
pub mod charts;
pub mod checkpoint;
pub mod config;
pub mod config_file;
pub mod data;
pub mod health;
pub mod hub;
pub mod job;
pub mod metrics;
pub mod optim;
pub mod output_dir;
pub mod rng;
pub mod schedule;
pub mod step;
pub mod trackio;
pub mod trainer;
pub mod window;

pub use config::{Strategy, TrainConfig};
pub use trainer::{Event, Outcome, Summary, Trainer};

use std::fmt;
use std::path::PathBuf;

/// Why a run could not go on (a non-finite loss is not an error: it is an [`Outcome`]).
#[derive(Debug)]
pub enum TrainError {
    /// The configuration is inconsistent (the caller's fault).
    Config(String),
    /// The output folder cannot be made.
    Io { path: PathBuf, message: String },
    /// A model cannot be loaded or run.
    Model(sft_model::ModelError),
    /// A step failed in the tensor code.
    Step(String),
    /// A checkpoint cannot be written or read back.
    Checkpoint(String),
    /// metrics.jsonl, Trackio or the chart cannot be written.
    Logs(String),
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::Config(m)
            | TrainError::Step(m)
            | TrainError::Checkpoint(m)
            | TrainError::Logs(m) => f.write_str(m),
            TrainError::Io { path, message } => write!(f, "{}: {message}", path.display()),
            TrainError::Model(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TrainError {}

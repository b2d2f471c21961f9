//! The trainer of `sft-train`: AdamW with transformers' decay groups, learning-rate
//! schedules, gradient accumulation weighted by trained tokens, evaluation and early
//! stopping, checkpoints that transformers loads and that resume exactly, and the run's
//! logs (metrics.jsonl, Trackio, a loss chart).
//!
//! The training stage of the flow (... -> prepare -> **train** -> evaluate): it takes token
//! rows ([`data`]: a prepared table, or any dataset prepared on the fly through
//! `sft-dataset`) and a `sft-model` model, and writes Hugging Face checkpoints that
//! `sft-eval` scores.

pub mod charts;
pub mod checkpoint;
pub mod config;
pub mod config_file;
pub mod data;
pub mod metrics;
pub mod optim;
pub mod rng;
pub mod schedule;
pub mod trackio;
pub mod trainer;

pub use config::{Strategy, TrainConfig};
pub use trainer::{Event, Outcome, Summary, Trainer};

//! The trainer of `sft-train`: AdamW with transformers' decay groups, learning-rate
//! schedules, gradient accumulation weighted by trained tokens, evaluation and early
//! stopping, checkpoints that transformers loads and that resume exactly, and the run's
//! logs (metrics.jsonl, Trackio, a loss chart).

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod logs;
pub mod optim;
pub mod rng;
pub mod schedule;
pub mod trainer;

pub use config::{Strategy, TrainConfig};
pub use trainer::{Event, Outcome, Summary, Trainer};

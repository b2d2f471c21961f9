//! Scoring checkpoints: format compliance and repetition of generated samples, and a
//! diagnosis of training curves.

pub mod compliance;
pub mod diagnosis;
pub mod prompts;
pub mod repetition;
pub mod report;

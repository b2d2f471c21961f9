//! The last stage of the flow (data -> prepare -> train -> **evaluate**): scoring
//! checkpoints. [`evaluate::evaluate`] runs held-out scoring and generation for each
//! checkpoint of a run; the samples are checked for format [`compliance`] and
//! [`repetition`]; the run's curves get a [`diagnosis`]; everything lands in one
//! [`report::Report`] (JSON, Markdown, SVG plots) whose gates a pipeline can act on.

pub mod compliance;
pub mod diagnosis;
pub mod evaluate;
pub mod outputs;
pub mod prompts;
pub mod repetition;
pub mod report;

pub use evaluate::{evaluate, EvalError, EvalEvent, EvalOptions, Gates};
pub use report::Report;

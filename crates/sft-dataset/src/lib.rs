//! Whole-dataset jobs: `check`, `convert`, `render`, `prepare` and `show`.
//!
//! The stage of the flow that runs every other data stage over whole datasets (read ->
//! detect -> validate -> convert -> render -> tokenize -> **prepare** -> train): it sits
//! on `sft-io`, `sft-formats`, `sft-template` and `sft-tokenize`, and owns the prepared
//! token table ([`prepared`]) that `sft-train` and `sft-eval` read.
//!
//! This crate runs the row-level logic of `sft-formats` over the files `sft-io` reads:
//! a reader thread stays one batch ahead, the rows of a batch are parsed, validated or
//! converted in parallel (rayon), and the results are folded in input order, so output and
//! reports are deterministic whatever the number of cores. Memory stays flat: a batch is a
//! few megabytes, and what is kept per row is a 16-byte hash entry (for duplicates) and a
//! 4-byte length (for outliers).
//!
//! ```no_run
//! use sft_dataset::check::{check, CheckOptions};
//! let files = sft_io::discover(&["train.jsonl".into()]).unwrap();
//! let report = check(&files, &CheckOptions::default());
//! print!("{}", report.summary(false, false));
//! std::process::exit(if report.passed(false) { 0 } else { 1 });
//! ```

pub mod check;
pub mod convert;
pub mod hash;
pub mod keys;
mod location;
pub mod pipeline;
pub mod prepare;
pub mod prepared;
pub mod render;
pub mod report;
pub mod show;
pub mod source;
pub mod stats;
pub mod summary;
pub mod text;

pub use location::Location;
pub use text::{counted, plural, thousands};

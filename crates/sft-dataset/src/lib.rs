//! Whole-dataset jobs: `check`, `convert` and `render`.
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
mod hash;
mod location;
pub mod pipeline;
pub mod prepare;
pub mod render;
pub mod report;
pub mod show;
pub mod stats;

pub use location::Location;
pub use report::{counted, thousands};

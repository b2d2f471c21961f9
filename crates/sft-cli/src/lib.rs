//! The command-line front of the toolkit: flags in, library calls, exit codes out.
//!
//! Each binary (`sft-data` now; `sft-train` and `sft-eval` with their stages) is a thin
//! wrapper around a module here, which parses flags with clap and calls the library crates.
//! Exit codes are the same everywhere: 0 success, 1 the data or the run has problems,
//! 2 the command itself is wrong (bad flag, missing path).

pub mod data;
pub mod eval;
mod prepared;
mod progress;
pub mod train;

/// The data or the run has problems.
pub const EXIT_PROBLEMS: i32 = 1;
/// The command line is wrong.
pub const EXIT_USAGE: i32 = 2;

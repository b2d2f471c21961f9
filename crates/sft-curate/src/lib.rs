//! Dataset operations before training: `mix`, `split`, `filter`, `dedupe`, `stats`.
//!
//! The stage of the flow where people shape their data (read -> detect -> validate ->
//! convert -> **curate** -> render -> tokenize -> prepare -> train): mix sources by
//! weight, hold out a test split that does not leak, drop what is too long or flagged,
//! remove duplicates and near-duplicates, and look at what they have. It sits on
//! `sft-dataset` (the parallel row pipeline, `check`'s duplicate definition and issue
//! codes, the spilled key tables over polars), `sft-io` (readers, atomic writers) and
//! `sft-tokenize` (token counts).
//!
//! Every operation streams: rows are read in batches, worked on in parallel, and written
//! in input order through atomic writers, so an interrupted job leaves nothing
//! half-written. What must be known about all rows at once (which rows repeat which) is a
//! key table spilled to Parquet and grouped by polars ([`groups`]); what is kept in
//! memory is a few bytes per row (a 4-byte group id, bits for sides and duplicates).
//! Nothing is lost: every input row is written, or is in the rejects file with why.
//!
//! ```no_run
//! use sft_curate::dedupe::{dedupe, DedupeJob};
//! use sft_curate::pass::Input;
//! let files = sft_io::discover(&["train.jsonl".into()]).unwrap();
//! let job = DedupeJob {
//!     input: Input { files, ..Input::default() },
//!     output: "dedup.jsonl".into(),
//!     rejects: None,
//!     threshold: Some(0.8),
//!     report: None,
//!     clusters_listed: 10_000,
//! };
//! let summary = dedupe(&job).unwrap();
//! println!("{} rows kept of {}", summary.written, summary.rows_in);
//! ```

pub mod dedupe;
pub mod expr;
pub mod filter;
pub mod groups;
pub mod minhash;
pub mod mix;
pub mod operation;
pub mod pass;
pub mod rng;
pub mod row;
pub mod script;
pub mod split;
pub mod stats;

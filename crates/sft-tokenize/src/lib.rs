//! From rows to training-ready examples: tokenization, label masks, truncation, packing.
//!
//! This is the stage after rendering (... -> render -> **tokenize -> mask -> truncate ->
//! pack** -> write / train). It reproduces TRL's data preparation token for token (see
//! [`tokenize`] for the rules per format) and adds what TRL lacks: assistant-only loss for
//! any chat template, packing over the whole dataset, and checks that protect training.

pub mod bpe;
pub mod pack;
pub mod pretokenize;
pub mod template;
pub mod tokenize;
mod tokenizer;

pub use bpe::{EncoderPath, FastBpe};
pub use pack::{pack, packing_stats, Bin, PackingFlagError, PackingStats, PackingStrategy, Piece};
pub use template::{chat_template, stop_token_ids, TemplateChoice, TemplateFlags};
pub use tokenize::{tokenize_row, Example, TokenizeError, TokenizeErrorCode, TokenizeOptions};
pub use tokenizer::{SftTokenizer, Token, TokenizerError};

//! What every architecture's forward and parameters are described by: the forward's
//! [`Mode`] and the trainable [`Param`]s with their weight-decay rule.

use candle_core::Var;

/// Whether a forward records a graph for a backward ([`Mode::Train`]: the parameters enter
/// as the `Var`s they are) or runs on detached views of the same weights ([`Mode::Infer`]:
/// no op is recorded, so each layer's activations are freed as soon as the next layer has
/// used them). Both compute the same values bit for bit.
///
/// [`Mode::Checkpoint`] is a training forward that records nothing: gradient
/// checkpointing's first pass, which keeps only each layer's input. It draws the adapters'
/// dropout masks as [`Mode::Train`] does (the recomputed forward must see the same values);
/// [`Mode::Infer`] applies no dropout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Checkpoint,
    Infer,
}

/// One trainable tensor with its Hugging Face name.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub var: Var,
    /// Whether AdamW's weight decay applies: transformers skips biases and norm weights.
    pub decay: bool,
}

/// transformers' rule for which parameters get no weight decay: biases and anything whose
/// name says it is a norm.
pub fn is_decayed(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let parts: Vec<&str> = lower.split('.').collect();
    !(lower.contains("bias")
        || lower.contains("layernorm")
        || lower.contains("rmsnorm")
        || parts.contains(&"norm")
        || parts.iter().any(|p| p.ends_with("_norm")))
}

//! What every architecture is to the rest of the toolkit: a causal LM ([`CausalLm`]) with a
//! config ([`ModelConfig`], in [`crate::config`]). The trainer, checkpoints, evaluation, LoRA and the memory plan
//! see only these two traits; the llama family ([`crate::llama`]) is their first
//! implementation, and [`crate::registry`] picks the implementation from `config.json`.
//!
//! The trait is used as an object (`Box<dyn CausalLm>`): a call dispatches once per
//! forward, backward or save; inside a forward an architecture's per-layer loops are its own
//! static code.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use crate::batch::{Batch, BatchRow};
use crate::config::ModelConfig;
use crate::kv_cache::KvCache;
use crate::lora::{AdapterFile, LoraConfig};
use crate::loss::{LossStats, TokenLoss};
use crate::mask::SoftmaxMask;
use crate::param::{Mode, Param};
use crate::{ModelError, Result};

/// What [`CausalLm::score_within`] measured, and the smallest batch it had to use to stay
/// within its memory budget (the asked batch size when nothing was split).
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub stats: LossStats,
    pub batch_size: usize,
}

/// Removes the gradient of a leaf from a store; a leaf the loss does not depend on gets
/// zeros.
pub(crate) fn take_grad(store: &mut GradStore, leaf: &Tensor) -> Result<Tensor> {
    match store.remove(leaf) {
        Some(g) => Ok(g),
        None => Ok(leaf.zeros_like()?),
    }
}

/// A trainable causal language model: the forward with a real backward, LoRA adapters, the
/// weights in and out as Hugging Face folders.
pub trait CausalLm: Send + Sync {
    /// The config it was built from.
    fn config(&self) -> &dyn ModelConfig;
    /// Where its weights live.
    fn device(&self) -> &Device;

    /// The trainable parameters in checkpoint order: every weight, or with LoRA adapters
    /// attached only the adapters' matrices (PEFT's names).
    fn params(&self) -> &[Param];
    /// The weights as transformers names them (the tied head is not written, as
    /// transformers does).
    fn state_dict(&self) -> BTreeMap<String, Tensor>;
    /// Writes `model.safetensors` and `config.json` into `dir`, each weight in the dtype it
    /// is held in (f32 after full fine-tuning; a merged LoRA model keeps its base's dtype).
    fn save(&self, dir: &Path) -> Result<()>;
    /// The output projection (the embedding when tied), as stored.
    fn lm_head_weight(&self) -> &Tensor;

    /// Whether training steps recompute each decoder layer's forward during the backward
    /// instead of keeping its activations ([`Self::loss_backward`]); off when loaded.
    fn gradient_checkpointing(&self) -> bool;
    fn set_gradient_checkpointing(&mut self, on: bool);

    /// The adapters' configuration, when attached.
    fn lora(&self) -> Option<&LoraConfig>;
    /// Attaches new LoRA adapters as PEFT initialises them (`A` Kaiming-uniform with bound
    /// `1 / sqrt(in)`, `B` zeros, so the model's outputs are unchanged), seeded, and freezes
    /// every base weight. The adapters become [`Self::params`].
    fn add_lora(&mut self, cfg: &LoraConfig, seed: u64) -> Result<()>;
    /// Attaches the adapters of a PEFT adapter folder (ours or one Python PEFT wrote),
    /// checking that every matrix fits this model.
    fn load_adapter(&mut self, adapter: &AdapterFile) -> Result<()>;
    /// Folds the adapters into the base weights (`W + s B A`, computed in f32 and stored in
    /// the weight's dtype, as PEFT's `merge_and_unload`) and removes them: the model is a
    /// plain model again, every weight trainable.
    fn merge_adapters(&mut self) -> Result<()>;
    /// The adapters' matrices by PEFT's names (what `adapter_model.safetensors` holds).
    fn adapter_state_dict(&self) -> BTreeMap<String, Tensor>;
    /// Writes the adapters as PEFT does: `adapter_config.json` (naming `base_model` as
    /// `base_model_name_or_path`) and `adapter_model.safetensors`.
    fn save_adapter(&self, dir: &Path, base_model: &str) -> Result<()>;
    /// The seed the adapters' dropout masks are drawn from in the next training forward
    /// (the trainer sets one per micro-batch, so a resumed run draws the same masks).
    fn set_dropout_seed(&self, seed: u64);
    /// The seed set by [`Self::set_dropout_seed`].
    fn dropout_seed(&self) -> u64;

    /// The decoder stack over `ids [rows, len]` with per-token positions and a mask; with a
    /// cache, keys and values of earlier calls are prepended (generation). Returns the
    /// final hidden states `[rows, len, hidden]`.
    fn forward_hidden(
        &self,
        ids: &Tensor,
        positions: &[u32],
        mask: Option<SoftmaxMask>,
        cache: Option<&mut KvCache>,
        mode: Mode,
    ) -> Result<Tensor>;
    /// Final hidden states `[rows, len, hidden]` for a batch in either mode.
    fn hidden_states_in(&self, batch: &Batch, mode: Mode) -> Result<Tensor>;
    /// Full logits `[rows, len, vocab]`, with no graph (for tests and generation; training
    /// uses [`Self::loss`]).
    fn logits(&self, batch: &Batch) -> Result<Tensor>;
    /// The summed cross-entropy over the batch's trained tokens (a scalar tensor with a
    /// backward) and the token statistics of the same pass.
    fn loss(&self, batch: &Batch) -> Result<TokenLoss>;
    /// The loss statistics of a batch without building anything for a backward.
    fn loss_stats(&self, batch: &Batch) -> Result<LossStats>;
    /// The loss statistics of a batch and the gradients of `scale` times its summed loss
    /// with respect to every parameter ([`Param::var`]); with `checkpointing`, each layer's
    /// forward is recomputed during the backward instead of kept.
    fn loss_backward(
        &self,
        batch: &Batch,
        scale: f64,
        checkpointing: bool,
    ) -> Result<(LossStats, GradStore)>;

    /// Final hidden states `[rows, len, hidden]` for a batch, recording the graph for a
    /// backward (training).
    fn hidden_states(&self, batch: &Batch) -> Result<Tensor> {
        self.hidden_states_in(batch, Mode::Train)
    }

    /// Summed loss statistics over rows, `batch_size` rows at a time, with nothing kept
    /// for a backward: held-out loss, perplexity and token accuracy come from it.
    ///
    /// Rows are batched in order of length, so that a batch's rows are padded to a
    /// similar length: the sums do not depend on the order, and on the 40 conversations of
    /// `data-samples/formats/messages.jsonl` (batches of 8) it cut the padded positions
    /// computed from 4,472 to 3,368 for 3,125 real tokens.
    ///
    /// A batch whose working set ([`crate::memory_plan::inference_plan`]) would not fit in
    /// the memory available now is scored in smaller pieces instead ([`Self::score_within`]
    /// says how small they got).
    fn score(&self, rows: &[BatchRow], batch_size: usize, pad: u32) -> Result<LossStats> {
        let budget = crate::memory_plan::mem_available();
        Ok(self.score_within(rows, batch_size, pad, budget)?.stats)
    }

    /// [`Self::score`] with at most `budget` bytes of working memory (beyond the weights)
    /// per batch: a batch of `batch_size` rows that would need more is split in halves
    /// until it fits; a single row that does not fit is an error naming its length.
    fn score_within(
        &self,
        rows: &[BatchRow],
        batch_size: usize,
        pad: u32,
        budget: Option<u64>,
    ) -> Result<Scored> {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].input_ids.len());
        let mut total = LossStats::default();
        let mut smallest = batch_size.max(1);
        let mut pending: Vec<&[usize]> = order.chunks(batch_size.max(1)).rev().collect();
        while let Some(chunk) = pending.pop() {
            let len = chunk
                .iter()
                .map(|&i| rows[i].input_ids.len())
                .max()
                .unwrap_or(0);
            let need = crate::memory_plan::inference_working_bytes(self.config(), chunk.len(), len);
            if budget.is_some_and(|b| need > b) {
                if chunk.len() == 1 {
                    return Err(ModelError::Input(format!(
                        "scoring a row of {len} tokens needs about {} of memory beyond the weights, and {} is available (truncate the rows, a shorter max_length)",
                        crate::memory_plan::gib(need),
                        crate::memory_plan::gib(budget.unwrap_or(0)),
                    )));
                }
                let (a, b) = chunk.split_at(chunk.len().div_ceil(2));
                smallest = smallest.min(a.len());
                pending.push(b);
                pending.push(a);
                continue;
            }
            let chunk: Vec<BatchRow> = chunk.iter().map(|&i| rows[i].clone()).collect();
            let batch = Batch::new(&chunk, pad, self.config().vocab_size(), self.device())?;
            total.add(&self.loss_stats(&batch)?);
        }
        Ok(Scored {
            stats: total,
            batch_size: smallest,
        })
    }
}

/// How an architecture reads config.json's contents: its config, or a refusal (a message
/// and a hint).
pub type ReadConfig = fn(Value) -> std::result::Result<Box<dyn ModelConfig>, (String, String)>;

/// One implemented architecture, as [`crate::registry`] lists it: the `model_type`s and
/// transformers classes it reads, and how to read its config and build its model.
pub struct Architecture {
    /// The family's name in messages.
    pub name: &'static str,
    /// config.json's `model_type`s it implements.
    pub model_types: &'static [&'static str],
    /// transformers' class names (config.json's `architectures`), for a config without a
    /// `model_type`.
    pub classes: &'static [&'static str],
    /// Parses config.json's contents (a message and a hint on refusal).
    pub config: ReadConfig,
    /// Loads a model folder in `dtype`.
    pub load: fn(&Path, DType, &Device) -> Result<Box<dyn CausalLm>>,
    /// Loads a model folder as a frozen LoRA base (matrices in their stored dtype).
    pub load_frozen: fn(&Path, &Device) -> Result<Box<dyn CausalLm>>,
    /// A randomly initialised model of a config, seeded.
    pub init_random: fn(Value, u64, &Device) -> Result<Box<dyn CausalLm>>,
}

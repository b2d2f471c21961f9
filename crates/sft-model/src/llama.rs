//! The llama forward pass with a real backward: every op here is one candle records a
//! gradient for (matmul, broadcast arithmetic, exp, sum, narrow, cat, index_select), or one
//! of ours with its own backward ([`crate::loss`]).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var, D};

use crate::batch::Batch;
use crate::config::LlamaConfig;
use crate::lora::{AdapterFile, LoraConfig, Matrix, Module};
use crate::loss::{token_loss, TokenLoss};
use crate::weights::{load_folder, save_safetensors};
use crate::{ModelError, Result};

/// Keys and values of earlier positions, per layer (generation only): buffers of
/// `capacity` positions written in place, so a decoding step copies only its own keys.
pub struct KvCache {
    pub(crate) layers: Vec<Option<(Tensor, Tensor)>>,
    pub(crate) len: usize,
    pub(crate) capacity: usize,
}

/// One layer's cache buffers, the positions already in them, and their capacity.
type CacheSlot<'a> = (&'a mut Option<(Tensor, Tensor)>, usize, usize);

impl KvCache {
    pub fn new(layers: usize, capacity: usize) -> Self {
        Self {
            layers: (0..layers).map(|_| None).collect(),
            len: 0,
            capacity,
        }
    }

    /// Writes positions `from..from + len` of the one-row cache `src` (every layer filled)
    /// into row `row` of this cache of `rows` rows, at positions `offset..offset + len`;
    /// the buffers are allocated (zeros) on first use. For prompts prefilled packed.
    pub fn place_row(
        &mut self,
        row: usize,
        rows: usize,
        src: &KvCache,
        from: usize,
        len: usize,
        offset: usize,
    ) -> Result<()> {
        if offset + len > self.capacity || from + len > src.len {
            return Err(crate::ModelError::Input(format!(
                "cannot place {len} positions from {from} of a KV cache of {} at {offset} of one of {}",
                src.len, self.capacity
            )));
        }
        for (slot, source) in self.layers.iter_mut().zip(&src.layers) {
            let Some((k, v)) = source else {
                return Err(crate::ModelError::Input("placing an empty KV cache".into()));
            };
            if slot.is_none() {
                let (_, nkv, _, hd) = k.dims4()?;
                let shape = (rows, nkv, self.capacity, hd);
                *slot = Some((
                    Tensor::zeros(shape, k.dtype(), k.device())?,
                    Tensor::zeros(shape, v.dtype(), v.device())?,
                ));
            }
            let (ck, cv) = slot.as_ref().expect("allocated above");
            let k = k.narrow(2, from, len)?.contiguous()?;
            let v = v.narrow(2, from, len)?.contiguous()?;
            ck.narrow(0, row, 1)?.slice_set(&k, 2, offset)?;
            cv.narrow(0, row, 1)?.slice_set(&v, 2, offset)?;
        }
        Ok(())
    }

    /// Keeps only the given batch rows (in that order), for example when the other
    /// sequences have finished.
    pub fn keep_rows(&mut self, rows: &[u32]) -> Result<()> {
        let Some(device) = self
            .layers
            .iter()
            .flatten()
            .next()
            .map(|(k, _)| k.device().clone())
        else {
            return Ok(());
        };
        let idx = Tensor::from_slice(rows, rows.len(), &device)?;
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.index_select(&idx, 0)?;
            *v = v.index_select(&idx, 0)?;
        }
        Ok(())
    }
}

/// What [`Llama::score_within`] measured, and the smallest batch it had to use to stay
/// within its memory budget (the asked batch size when nothing was split).
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub stats: crate::LossStats,
    pub batch_size: usize,
}

/// One trainable tensor with its Hugging Face name.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub var: Var,
    /// Whether AdamW's weight decay applies: transformers skips biases and norm weights.
    pub decay: bool,
}

struct Layer {
    input_norm: Var,
    q: Var,
    k: Var,
    v: Var,
    o: Var,
    q_bias: Option<Var>,
    k_bias: Option<Var>,
    v_bias: Option<Var>,
    /// Qwen3's per-head RMSNorm weights `[head_dim]` for queries and keys.
    q_norm: Option<Var>,
    k_norm: Option<Var>,
    /// Whether RoPE rotates this layer's queries and keys (not in SmolLM3's NoPE layers).
    rope: bool,
    post_norm: Var,
    gate: Var,
    up: Var,
    down: Var,
    /// LoRA adapters by [`Module::index`].
    lora: [Option<Adapter>; 7],
}

/// One LoRA adapter of a projection: `s * B (A dropout(x))` added to its output.
struct Adapter {
    a: Var,
    b: Var,
    scaling: f64,
    dropout: f64,
}

/// A llama-family causal LM with trainable parameters.
pub struct Llama {
    pub config: LlamaConfig,
    pub device: Device,
    embed: Var,
    layers: Vec<Layer>,
    norm: Var,
    lm_head: Option<Var>,
    /// Every weight, by its Hugging Face name, in checkpoint order.
    params: Vec<Param>,
    /// The LoRA matrices, by PEFT's names, when adapters are attached (then the base
    /// weights are frozen: they get no gradient and no optimizer state).
    adapters: Vec<Param>,
    lora: Option<LoraConfig>,
    /// The dtype the forward computes in (the base weights may be stored narrower).
    compute_dtype: DType,
    /// The seed of the adapters' dropout masks for the next training forward.
    dropout_seed: AtomicU64,
    inv_freq: Vec<f32>,
    /// Whether training steps recompute each decoder layer's forward during the backward
    /// instead of keeping its activations ([`Llama::loss_backward`]); off when loaded.
    pub gradient_checkpointing: bool,
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

impl Llama {
    /// Loads `config.json` and the weights of a Hugging Face model folder, cast to `dtype`.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let config = LlamaConfig::from_file(&dir.join("config.json"))?;
        let mut tensors = load_folder(dir, dtype, device)?;
        Self::from_tensors(config, &mut tensors, dir, device)
    }

    /// Builds the model from named tensors, checking every name and shape.
    pub fn from_tensors(
        config: LlamaConfig,
        tensors: &mut HashMap<String, Tensor>,
        dir: &Path,
        device: &Device,
    ) -> Result<Self> {
        let c = &config;
        let mut params = Vec::new();
        let mut take = |name: String, shape: &[usize]| -> Result<Var> {
            let t = tensors.remove(&name).ok_or_else(|| ModelError::Weights {
                path: dir.to_path_buf(),
                message: format!("tensor {name} is missing"),
                hint: "the folder's weights do not match its config.json".into(),
            })?;
            if t.dims() != shape {
                return Err(ModelError::Weights {
                    path: dir.to_path_buf(),
                    message: format!(
                        "tensor {name} has shape {:?}, config.json implies {shape:?}",
                        t.dims()
                    ),
                    hint: "the folder's weights do not match its config.json".into(),
                });
            }
            let var = Var::from_tensor(&t.contiguous()?)?;
            params.push(Param {
                decay: is_decayed(&name),
                name,
                var: var.clone(),
            });
            Ok(var)
        };
        let h = c.hidden_size;
        let qd = c.num_attention_heads * c.head_dim;
        let kvd = c.num_key_value_heads * c.head_dim;
        let embed = take("model.embed_tokens.weight".into(), &[c.vocab_size, h])?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = |s: &str| format!("model.layers.{i}.{s}");
            let input_norm = take(p("input_layernorm.weight"), &[h])?;
            let q = take(p("self_attn.q_proj.weight"), &[qd, h])?;
            let k = take(p("self_attn.k_proj.weight"), &[kvd, h])?;
            let v = take(p("self_attn.v_proj.weight"), &[kvd, h])?;
            let (q_bias, k_bias, v_bias) = if c.attention_bias {
                (
                    Some(take(p("self_attn.q_proj.bias"), &[qd])?),
                    Some(take(p("self_attn.k_proj.bias"), &[kvd])?),
                    Some(take(p("self_attn.v_proj.bias"), &[kvd])?),
                )
            } else {
                (None, None, None)
            };
            let (q_norm, k_norm) = if c.qk_norm {
                (
                    Some(take(p("self_attn.q_norm.weight"), &[c.head_dim])?),
                    Some(take(p("self_attn.k_norm.weight"), &[c.head_dim])?),
                )
            } else {
                (None, None)
            };
            let o = take(p("self_attn.o_proj.weight"), &[h, qd])?;
            let post_norm = take(p("post_attention_layernorm.weight"), &[h])?;
            let gate = take(p("mlp.gate_proj.weight"), &[c.intermediate_size, h])?;
            let up = take(p("mlp.up_proj.weight"), &[c.intermediate_size, h])?;
            let down = take(p("mlp.down_proj.weight"), &[h, c.intermediate_size])?;
            layers.push(Layer {
                input_norm,
                q,
                k,
                v,
                o,
                q_bias,
                k_bias,
                v_bias,
                q_norm,
                k_norm,
                rope: c.rope_layers[i],
                post_norm,
                gate,
                up,
                down,
                lora: Default::default(),
            });
        }
        let norm = take("model.norm.weight".into(), &[h])?;
        let norm_dtype = norm.dtype();
        let lm_head = if c.tie_word_embeddings {
            tensors.remove("lm_head.weight");
            None
        } else {
            Some(take("lm_head.weight".into(), &[c.vocab_size, h])?)
        };
        // Buffers transformers may save; anything else is a tensor we would silently drop.
        tensors.retain(|k, _| !k.ends_with("rotary_emb.inv_freq"));
        if !tensors.is_empty() {
            let mut names: Vec<_> = tensors.keys().cloned().collect();
            names.sort();
            names.truncate(5);
            return Err(ModelError::Weights {
                path: dir.to_path_buf(),
                message: format!("unexpected tensors: {}", names.join(", ")),
                hint: "the weights hold more than the llama architecture in config.json uses (LoRA adapters or another architecture?)".into(),
            });
        }
        let inv_freq = config.inv_freq();
        Ok(Self {
            config,
            device: device.clone(),
            embed,
            layers,
            norm,
            lm_head,
            params,
            adapters: Vec::new(),
            lora: None,
            compute_dtype: norm_dtype,
            dropout_seed: AtomicU64::new(0),
            inv_freq,
            gradient_checkpointing: false,
        })
    }

    /// A model with transformers' initialisation (normal(0, initializer_range) for
    /// matrices, ones for norms, zeros for biases), seeded: for benchmarks and tests.
    pub fn init_random(config: LlamaConfig, seed: u64, device: &Device) -> Result<Self> {
        let std = config
            .raw
            .get("initializer_range")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.02);
        // Two uniforms per Box-Muller pair.
        let mut rng = crate::rng::SplitMix64::new(seed);
        let mut next = move || rng.uniform();
        let c = &config;
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let (qd, kvd) = (
            c.num_attention_heads * c.head_dim,
            c.num_key_value_heads * c.head_dim,
        );
        let mut shapes: Vec<(String, Vec<usize>)> =
            vec![("model.embed_tokens.weight".into(), vec![c.vocab_size, h])];
        for l in 0..c.num_hidden_layers {
            let p = |s: &str| format!("model.layers.{l}.{s}");
            shapes.push((p("input_layernorm.weight"), vec![h]));
            shapes.push((p("self_attn.q_proj.weight"), vec![qd, h]));
            shapes.push((p("self_attn.k_proj.weight"), vec![kvd, h]));
            shapes.push((p("self_attn.v_proj.weight"), vec![kvd, h]));
            if c.attention_bias {
                shapes.push((p("self_attn.q_proj.bias"), vec![qd]));
                shapes.push((p("self_attn.k_proj.bias"), vec![kvd]));
                shapes.push((p("self_attn.v_proj.bias"), vec![kvd]));
            }
            if c.qk_norm {
                shapes.push((p("self_attn.q_norm.weight"), vec![c.head_dim]));
                shapes.push((p("self_attn.k_norm.weight"), vec![c.head_dim]));
            }
            shapes.push((p("self_attn.o_proj.weight"), vec![h, qd]));
            shapes.push((p("post_attention_layernorm.weight"), vec![h]));
            shapes.push((p("mlp.gate_proj.weight"), vec![i, h]));
            shapes.push((p("mlp.up_proj.weight"), vec![i, h]));
            shapes.push((p("mlp.down_proj.weight"), vec![h, i]));
        }
        shapes.push(("model.norm.weight".into(), vec![h]));
        if !c.tie_word_embeddings {
            shapes.push(("lm_head.weight".into(), vec![c.vocab_size, h]));
        }
        let mut tensors = HashMap::new();
        for (name, shape) in shapes {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = if name.ends_with("norm.weight") {
                vec![1.0; n]
            } else if name.ends_with(".bias") {
                vec![0.0; n]
            } else {
                (0..n)
                    .map(|_| {
                        let (u1, u2) = (next().max(1e-300), next());
                        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * std)
                            as f32
                    })
                    .collect()
            };
            tensors.insert(name, Tensor::from_vec(data, shape, device)?);
        }
        Self::from_tensors(config, &mut tensors, Path::new("(random)"), device)
    }

    /// The trainable parameters in checkpoint order: every weight, or with LoRA adapters
    /// attached only the adapters' matrices (PEFT's names).
    pub fn params(&self) -> &[Param] {
        if self.lora.is_some() {
            &self.adapters
        } else {
            &self.params
        }
    }

    /// The output projection (the embedding when tied), as stored.
    pub fn lm_head_weight(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed).as_tensor()
    }

    /// The output projection in the compute dtype, recorded for a backward only when it is
    /// trained.
    fn head(&self, mode: Mode) -> Result<Tensor> {
        self.base(self.lm_head.as_ref().unwrap_or(&self.embed), mode)
    }

    /// The adapters' configuration, when attached.
    pub fn lora(&self) -> Option<&LoraConfig> {
        self.lora.as_ref()
    }

    /// The seed the adapters' dropout masks are drawn from in the next training forward
    /// (the trainer sets one per micro-batch, so a resumed run draws the same masks).
    pub fn set_dropout_seed(&self, seed: u64) {
        self.dropout_seed.store(seed, Ordering::Relaxed);
    }

    /// The seed set by [`Self::set_dropout_seed`].
    pub fn dropout_seed(&self) -> u64 {
        self.dropout_seed.load(Ordering::Relaxed)
    }

    /// Final hidden states `[rows, len, hidden]` for a batch, recording the graph for a
    /// backward (training).
    pub fn hidden_states(&self, batch: &Batch) -> Result<Tensor> {
        self.hidden_states_in(batch, Mode::Train)
    }

    /// Final hidden states `[rows, len, hidden]` for a batch in either mode.
    pub fn hidden_states_in(&self, batch: &Batch, mode: Mode) -> Result<Tensor> {
        self.check_span(&batch.position_ids)?;
        let mask = self.batch_mask(batch)?;
        self.forward_hidden(&batch.input_ids, &batch.position_ids, mask, None, mode)
    }

    /// The attention mask a batch needs: none for one unpadded single-document row of one
    /// position, else the block-diagonal causal mask (as key ranges).
    fn batch_mask(&self, batch: &Batch) -> Result<Option<crate::ops::SoftmaxMask>> {
        Ok(if batch.needs_mask() || batch.len > 1 {
            Some(crate::ops::SoftmaxMask::from_ranges(
                batch.key_ranges()?,
                &self.device,
            )?)
        } else {
            None
        })
    }

    /// Checks a forward's input against what the model can attend to.
    fn check_span(&self, positions: &[u32]) -> Result<()> {
        let c = &self.config;
        // Positions restart at every packed document, so the largest is the longest span
        // any token attends over.
        let span = positions.iter().max().map_or(0, |&p| p as usize + 1);
        if let Some(window) = c.sliding_window.filter(|&w| span > w) {
            return Err(ModelError::Input(format!(
                "a sequence of {span} positions is longer than the model's sliding_window of {window}; this model code attends to every earlier position (use a max_length of at most {window})"
            )));
        }
        let max = c.max_position_embeddings;
        if span > max {
            return Err(ModelError::Input(format!(
                "a sequence of {span} positions is longer than the model's max_position_embeddings of {max} (use a max_length of at most {max}, or packing, whose documents restart their positions)"
            )));
        }
        Ok(())
    }

    /// What every layer of one forward shares: RoPE tables and the mask.
    fn forward_context(
        &self,
        positions: &[u32],
        b: usize,
        t: usize,
        mask: Option<crate::ops::SoftmaxMask>,
    ) -> Result<Context> {
        self.check_span(positions)?;
        let (cos, sin) = self.rope_tables(positions, b, t)?;
        Ok(Context { cos, sin, mask })
    }

    /// The token embeddings `[rows, len, hidden]` of `ids [rows, len]`.
    fn embed_tokens(&self, ids: &Tensor, mode: Mode) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let rows = if self.lora.is_some() || mode != Mode::Train {
            // Rows picked from the stored table, then widened: a frozen bf16 embedding is
            // never widened whole.
            self.embed
                .as_detached_tensor()
                .index_select(&ids.flatten_all()?, 0)?
                .to_dtype(self.compute_dtype)?
        } else {
            self.embed
                .as_tensor()
                .index_select(&ids.flatten_all()?, 0)?
        };
        Ok(rows.reshape((b, t, self.config.hidden_size))?)
    }

    /// Decoder layer `i` over `x [rows, len, hidden]`.
    fn layer_forward(
        &self,
        i: usize,
        x: &Tensor,
        ctx: &Context,
        slot: Option<CacheSlot<'_>>,
        mode: Mode,
    ) -> Result<Tensor> {
        let layer = &self.layers[i];
        let h = self.rms_norm(x, &layer.input_norm, mode)?;
        let attn = self.attention(i, layer, &h, ctx, slot, mode)?;
        let x = (x + attn)?;
        let h = self.rms_norm(&x, &layer.post_norm, mode)?;
        let gate = self.project(i, Module::Gate, &h, mode)?;
        let up = self.project(i, Module::Up, &h, mode)?;
        let mlp = self.project(i, Module::Down, &(gate.silu()? * up)?, mode)?;
        Ok((x + mlp)?)
    }

    /// The decoder stack over `ids [rows, len]` with per-token positions and a mask of
    /// `[rows, 1, len, keys]`; with a cache, keys and values of earlier calls are
    /// prepended (generation).
    pub(crate) fn forward_hidden(
        &self,
        ids: &Tensor,
        positions: &[u32],
        mask: Option<crate::ops::SoftmaxMask>,
        mut cache: Option<&mut KvCache>,
        mode: Mode,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let ctx = self.forward_context(positions, b, t, mask)?;
        let mut x = self.embed_tokens(ids, mode)?;
        for i in 0..self.layers.len() {
            let slot = cache
                .as_deref_mut()
                .map(|c| (&mut c.layers[i], c.len, c.capacity));
            x = self.layer_forward(i, &x, &ctx, slot, mode)?;
        }
        if let Some(c) = cache {
            c.len += t;
        }
        self.rms_norm(&x, &self.norm, mode)
    }

    /// Full logits `[rows, len, vocab]`, with no graph (for tests and generation; training
    /// uses [`Self::loss`]).
    pub fn logits(&self, batch: &Batch) -> Result<Tensor> {
        let hidden = self.hidden_states_in(batch, Mode::Infer)?;
        let (b, t, h) = hidden.dims3()?;
        let logits = hidden
            .reshape((b * t, h))?
            .matmul(&self.head(Mode::Infer)?.t()?)?;
        Ok(logits.reshape((b, t, self.config.vocab_size))?)
    }

    /// The summed cross-entropy over the batch's trained tokens (a scalar tensor with a
    /// backward) and the token statistics of the same pass.
    pub fn loss(&self, batch: &Batch) -> Result<TokenLoss> {
        let selected = self.trained_positions(self.hidden_states(batch)?, batch)?;
        token_loss(&selected, &self.head(Mode::Train)?, &batch.targets)
    }

    /// The loss statistics of a batch and the gradients of `scale` times its summed loss
    /// with respect to every parameter ([`Param::var`]).
    ///
    /// Without checkpointing this is [`Self::loss`] and one backward over the whole graph,
    /// which keeps every layer's activations until the end. With `checkpointing`, the
    /// decoder layers run without a graph keeping only each layer's input; the final norm
    /// and the loss are differentiated first, then the layers in reverse order: each one's
    /// forward is recomputed from its saved input (a fresh leaf) and differentiated through
    /// the surrogate `sum(out * grad_out)`, which yields its parameters' gradients and the
    /// gradient of its input. The embedding's gradient is scattered into the tied head's
    /// in the order candle's own backward adds them, so the gradients equal the
    /// non-checkpointed ones bit for bit (up to the sign of zeros; tested).
    pub fn loss_backward(
        &self,
        batch: &Batch,
        scale: f64,
        checkpointing: bool,
    ) -> Result<(crate::LossStats, GradStore)> {
        if !checkpointing {
            let loss = self.loss(batch)?;
            let store = (loss.sum * scale)?.backward()?;
            return Ok((loss.stats, store));
        }
        self.check_span(&batch.position_ids)?;
        let (b, t) = batch.input_ids.dims2()?;
        let ctx = self.forward_context(&batch.position_ids, b, t, self.batch_mask(batch)?)?;
        let mut inputs = Vec::with_capacity(self.layers.len());
        let mut x = self.embed_tokens(&batch.input_ids, Mode::Checkpoint)?;
        for i in 0..self.layers.len() {
            let next = self.layer_forward(i, &x, &ctx, None, Mode::Checkpoint)?;
            inputs.push(x);
            x = next;
        }
        // The head: final norm and loss, with the last layer's output as a leaf.
        let last = Var::from_tensor(&x)?;
        drop(x);
        let (stats, mut store, mut grad) = {
            let hidden = self.rms_norm(last.as_tensor(), &self.norm, Mode::Train)?;
            let selected = self.trained_positions(hidden, batch)?;
            let loss = token_loss(&selected, &self.head(Mode::Train)?, &batch.targets)?;
            let mut store = (loss.sum * scale)?.backward()?;
            let grad = take_grad(&mut store, last.as_tensor())?;
            (loss.stats, store, grad)
        };
        drop(last);
        let frozen = self.lora.is_some();
        for i in (0..self.layers.len()).rev() {
            let input = Var::from_tensor(&inputs.pop().expect("one input per layer"))?;
            let out = self.layer_forward(i, input.as_tensor(), &ctx, None, Mode::Train)?;
            let mut layer_store = (out * &grad)?.sum_all()?.backward()?;
            for var in self.layers[i].vars() {
                if let Some(g) = layer_store.remove(var.as_tensor()) {
                    store.insert(var.as_tensor(), g);
                }
            }
            if frozen && i == 0 {
                // A frozen embedding needs no gradient of its output.
                return Ok((stats, store));
            }
            grad = take_grad(&mut layer_store, input.as_tensor())?;
        }
        // The embedding: candle's backward of index_select adds the rows' gradients into
        // the gradient accumulated so far (the tied head's), one row after another.
        let embed = self.embed.as_tensor();
        let acc = match store.remove(embed) {
            Some(g) => g,
            None => embed.zeros_like()?,
        };
        let grad = grad.reshape((b * t, self.config.hidden_size))?;
        let merged = acc.index_add(&batch.input_ids.flatten_all()?, &grad, 0)?;
        store.insert(embed, merged);
        Ok((stats, store))
    }

    /// The loss statistics of a batch without building anything for a backward.
    pub fn loss_stats(&self, batch: &Batch) -> Result<crate::LossStats> {
        let hidden = self.hidden_states_in(batch, Mode::Infer)?;
        let selected = self.trained_positions(hidden, batch)?;
        crate::loss::token_stats(&selected, &self.head(Mode::Infer)?, &batch.targets)
    }

    /// The hidden states `[targets, hidden]` of the positions whose next token is trained.
    fn trained_positions(&self, hidden: Tensor, batch: &Batch) -> Result<Tensor> {
        let (b, t, h) = hidden.dims3()?;
        let idx = Tensor::from_slice(
            &batch.target_positions,
            batch.target_positions.len(),
            &self.device,
        )?;
        Ok(hidden.reshape((b * t, h))?.index_select(&idx, 0)?)
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
    pub fn score(
        &self,
        rows: &[crate::BatchRow],
        batch_size: usize,
        pad: u32,
    ) -> Result<crate::LossStats> {
        let budget = crate::memory_plan::mem_available();
        Ok(self.score_within(rows, batch_size, pad, budget)?.stats)
    }

    /// [`Self::score`] with at most `budget` bytes of working memory (beyond the weights)
    /// per batch: a batch of `batch_size` rows that would need more is split in halves
    /// until it fits; a single row that does not fit is an error naming its length.
    pub fn score_within(
        &self,
        rows: &[crate::BatchRow],
        batch_size: usize,
        pad: u32,
        budget: Option<u64>,
    ) -> Result<Scored> {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].input_ids.len());
        let mut total = crate::LossStats::default();
        let mut smallest = batch_size.max(1);
        let mut pending: Vec<&[usize]> = order.chunks(batch_size.max(1)).rev().collect();
        while let Some(chunk) = pending.pop() {
            let len = chunk
                .iter()
                .map(|&i| rows[i].input_ids.len())
                .max()
                .unwrap_or(0);
            let need = crate::memory_plan::inference_working_bytes(&self.config, chunk.len(), len);
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
            let chunk: Vec<crate::BatchRow> = chunk.iter().map(|&i| rows[i].clone()).collect();
            let batch = Batch::new(&chunk, pad, self.config.vocab_size, &self.device)?;
            total.add(&self.loss_stats(&batch)?);
        }
        Ok(Scored {
            stats: total,
            batch_size: smallest,
        })
    }

    fn attention(
        &self,
        index: usize,
        layer: &Layer,
        x: &Tensor,
        ctx: &Context,
        cache: Option<CacheSlot<'_>>,
        mode: Mode,
    ) -> Result<Tensor> {
        let (cos, sin) = (&ctx.cos, &ctx.sin);
        let c = &self.config;
        let (b, t, _) = x.dims3()?;
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let q = self
            .project(index, Module::Q, x, mode)?
            .reshape((b, t, nh, hd))?;
        let k = self
            .project(index, Module::K, x, mode)?
            .reshape((b, t, nkv, hd))?;
        // Qwen3 normalises each head's queries and keys before RoPE.
        let q = match &layer.q_norm {
            Some(w) => self.rms_norm(&q, w, mode)?,
            None => q,
        };
        let k = match &layer.k_norm {
            Some(w) => self.rms_norm(&k, w, mode)?,
            None => k,
        };
        let q = q.transpose(1, 2)?;
        let k = k.transpose(1, 2)?;
        let v = self
            .project(index, Module::V, x, mode)?
            .reshape((b, t, nkv, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let (q, k) = if layer.rope {
            (rope(&q, cos, sin)?, rope(&k, cos, sin)?)
        } else {
            (q.contiguous()?, k.contiguous()?)
        };
        let (k, v) = match cache {
            Some((slot, past, capacity)) => {
                if slot.is_none() {
                    let shape = (b, nkv, capacity.max(past + t), hd);
                    *slot = Some((
                        Tensor::zeros(shape, k.dtype(), k.device())?,
                        Tensor::zeros(shape, v.dtype(), v.device())?,
                    ));
                }
                let (ck, cv) = slot.as_ref().expect("allocated above");
                if past + t > ck.dim(2)? {
                    return Err(crate::ModelError::Input(format!(
                        "KV cache of {} positions is full",
                        ck.dim(2)?
                    )));
                }
                ck.slice_set(&k.contiguous()?, 2, past)?;
                cv.slice_set(&v, 2, past)?;
                (ck.narrow(2, 0, past + t)?, cv.narrow(2, 0, past + t)?)
            }
            None => (k, v),
        };
        // Fused blockwise attention on the CPU (grouped-query heads read their key head in
        // place), the unfused softmax path elsewhere.
        let scale = 1.0 / (hd as f64).sqrt();
        let out = crate::attention::attention(&q, &k, &v, scale, ctx.mask.as_ref())?;
        let out = out.transpose(1, 2)?.reshape((b, t, nh * hd))?;
        self.project(index, Module::O, &out, mode)
    }

    /// cos and sin `[rows, 1, len, head_dim / 2]` for the batch's position ids.
    fn rope_tables(&self, positions: &[u32], b: usize, t: usize) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for &f in &self.inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let dtype = self.compute_dtype;
        let cos = Tensor::from_vec(cos, (b, 1, t, half), &self.device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (b, 1, t, half), &self.device)?.to_dtype(dtype)?;
        Ok((cos, sin))
    }

    /// The weights as transformers names them (the tied head is not written, as
    /// transformers does).
    pub fn state_dict(&self) -> BTreeMap<String, Tensor> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.var.as_detached_tensor()))
            .collect()
    }

    /// Writes `model.safetensors` and `config.json` into `dir`, each weight in the dtype it
    /// is held in (f32 after full fine-tuning; a merged LoRA model keeps its base's dtype).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        // Norm weights and biases held in f32 next to bf16 matrices go back to the matrices'
        // dtype (exactly: they were widened from it).
        let stored = self.embed.dtype();
        let mut tensors = self.state_dict();
        for t in tensors.values_mut() {
            if t.dtype() != stored {
                *t = t.to_dtype(stored)?;
            }
        }
        save_safetensors(&tensors, &dir.join("model.safetensors"))?;
        let dtype = match stored {
            DType::BF16 => "bfloat16",
            DType::F16 => "float16",
            _ => "float32",
        };
        let config = self.config.to_saved_json(dtype);
        let text = serde_json::to_string_pretty(&config).expect("config serialises");
        crate::weights::write_atomic(&dir.join("config.json"), |w| {
            use std::io::Write;
            w.write_all(text.as_bytes())?;
            w.write_all(b"\n")
        })
    }

    /// Loads a model folder for LoRA training: the matrices stay in the dtype of their files
    /// (bf16 and f16 weights stay 2 bytes each; the forward widens one projection at a time
    /// to f32), the norm weights and biases are read as f32.
    pub fn load_frozen(dir: &Path, device: &Device) -> Result<Self> {
        let config = LlamaConfig::from_file(&dir.join("config.json"))?;
        let mut tensors = crate::weights::load_folder_as_stored(dir, device)?;
        for t in tensors.values_mut() {
            if t.rank() < 2 && t.dtype() != DType::F32 {
                *t = t.to_dtype(DType::F32)?;
            }
        }
        let mut model = Self::from_tensors(config, &mut tensors, dir, device)?;
        model.compute_dtype = DType::F32;
        Ok(model)
    }

    /// A model to evaluate or generate with: a model folder, or a LoRA adapter folder on
    /// its base model (`base` or the adapter's `base_model_name_or_path`, see
    /// [`crate::lora::base_model_dir`]) with the adapters merged in, in `dtype`.
    pub fn load_merged(
        dir: &Path,
        base: Option<&str>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if !crate::lora::is_adapter_dir(dir) {
            return Self::load(dir, dtype, device);
        }
        let adapter = crate::lora::read_adapter(dir)?;
        let base_dir = crate::lora::base_model_dir(&adapter, base)?;
        let mut model = Self::load(&base_dir, dtype, device)?;
        model.load_adapter(&adapter)?;
        model.merge_adapters()?;
        Ok(model)
    }

    /// Attaches new LoRA adapters as PEFT initialises them (`A` Kaiming-uniform with bound
    /// `1 / sqrt(in)`, `B` zeros, so the model's outputs are unchanged), seeded, and freezes
    /// every base weight. The adapters become [`Self::params`].
    pub fn add_lora(&mut self, cfg: &LoraConfig, seed: u64) -> Result<()> {
        cfg.validate().map_err(ModelError::Input)?;
        let mut rng = crate::rng::SplitMix64::new(seed ^ 0x4C6F_5241_0000_0000);
        let mut matrices = HashMap::new();
        for layer in 0..self.layers.len() {
            for &m in &cfg.targets {
                let (out_dim, in_dim) = self.projection(layer, m).0.dims2()?;
                let bound = 1.0 / (in_dim as f64).sqrt();
                let a: Vec<f32> = (0..cfg.r * in_dim)
                    .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
                    .collect();
                let a = Tensor::from_vec(a, (cfg.r, in_dim), &self.device)?;
                let b = Tensor::zeros((out_dim, cfg.r), DType::F32, &self.device)?;
                matrices.insert((layer, m), (a, b));
            }
        }
        self.attach(cfg.clone(), matrices)
    }

    /// Attaches the adapters of a PEFT adapter folder (ours or one Python PEFT wrote),
    /// checking that every matrix fits this model.
    pub fn load_adapter(&mut self, adapter: &AdapterFile) -> Result<()> {
        let path = adapter.dir.join(crate::lora::ADAPTER_WEIGHTS);
        for (&(layer, m), (a, b)) in &adapter.matrices {
            if layer >= self.layers.len() {
                return Err(ModelError::Weights {
                    path: path.clone(),
                    message: format!(
                        "has an adapter for layer {layer}, but the base model has {} layers",
                        self.layers.len()
                    ),
                    hint: "the adapter was trained on another base model: give the right one with --base_model".into(),
                });
            }
            let (out_dim, in_dim) = self.projection(layer, m).0.dims2()?;
            let r = adapter.config.r;
            if a.dims() != [r, in_dim] || b.dims() != [out_dim, r] {
                return Err(ModelError::Weights {
                    path: path.clone(),
                    message: format!(
                        "layer {layer} {}: lora_A is {:?} and lora_B {:?}, but the base model's projection is [{out_dim}, {in_dim}] (r = {r})",
                        m.name(),
                        a.dims(),
                        b.dims()
                    ),
                    hint: "the adapter was trained on another base model: give the right one with --base_model".into(),
                });
            }
        }
        self.attach(adapter.config.clone(), adapter.matrices.clone())
    }

    fn attach(
        &mut self,
        cfg: LoraConfig,
        matrices: HashMap<(usize, Module), (Tensor, Tensor)>,
    ) -> Result<()> {
        let scaling = cfg.scaling();
        let mut adapters = Vec::new();
        for (index, layer) in self.layers.iter_mut().enumerate() {
            layer.lora = Default::default();
            for m in Module::ALL {
                let Some((a, b)) = matrices.get(&(index, m)) else {
                    continue;
                };
                let a = Var::from_tensor(&a.to_dtype(DType::F32)?.contiguous()?)?;
                let b = Var::from_tensor(&b.to_dtype(DType::F32)?.contiguous()?)?;
                for (matrix, var) in [(Matrix::A, &a), (Matrix::B, &b)] {
                    adapters.push(Param {
                        name: crate::lora::adapter_key(index, m, matrix),
                        var: var.clone(),
                        decay: true,
                    });
                }
                layer.lora[m.index()] = Some(Adapter {
                    a,
                    b,
                    scaling,
                    dropout: cfg.dropout,
                });
            }
        }
        self.adapters = adapters;
        self.lora = Some(cfg);
        Ok(())
    }

    /// The adapters' matrices by PEFT's names (what `adapter_model.safetensors` holds).
    pub fn adapter_state_dict(&self) -> BTreeMap<String, Tensor> {
        self.adapters
            .iter()
            .map(|p| (p.name.clone(), p.var.as_detached_tensor()))
            .collect()
    }

    /// Writes the adapters as PEFT does: `adapter_config.json` (naming `base_model` as
    /// `base_model_name_or_path`) and `adapter_model.safetensors`.
    pub fn save_adapter(&self, dir: &Path, base_model: &str) -> Result<()> {
        let Some(cfg) = &self.lora else {
            return Err(ModelError::Input(
                "the model has no LoRA adapters to save".into(),
            ));
        };
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        save_safetensors(
            &self.adapter_state_dict(),
            &dir.join(crate::lora::ADAPTER_WEIGHTS),
        )?;
        let config = crate::lora::adapter_config_json(cfg, base_model);
        let text = serde_json::to_string_pretty(&config).expect("config serialises");
        crate::weights::write_atomic(&dir.join(crate::lora::ADAPTER_CONFIG), |w| {
            use std::io::Write;
            w.write_all(text.as_bytes())?;
            w.write_all(b"\n")
        })
    }

    /// Folds the adapters into the base weights (`W + s B A`, computed in f32 and stored in
    /// the weight's dtype, as PEFT's `merge_and_unload`) and removes them: the model is a
    /// plain model again, every weight trainable.
    pub fn merge_adapters(&mut self) -> Result<()> {
        if self.lora.take().is_none() {
            return Ok(());
        }
        for layer in self.layers.iter_mut() {
            for m in Module::ALL {
                let Some(ad) = layer.lora[m.index()].take() else {
                    continue;
                };
                let w = match m {
                    Module::Q => &layer.q,
                    Module::K => &layer.k,
                    Module::V => &layer.v,
                    Module::O => &layer.o,
                    Module::Gate => &layer.gate,
                    Module::Up => &layer.up,
                    Module::Down => &layer.down,
                };
                // As PEFT with f32 adapters: `W += (B A) s`, summed in f32 and rounded once
                // to the weight's dtype.
                let delta = (ad.b.as_tensor().matmul(ad.a.as_tensor())? * ad.scaling)?;
                let merged = (w.as_tensor().to_dtype(DType::F32)? + delta)?.to_dtype(w.dtype())?;
                w.set(&merged)?;
            }
        }
        self.adapters.clear();
        Ok(())
    }

    /// The stored weight and bias of a projection.
    fn projection(&self, layer: usize, m: Module) -> (&Var, Option<&Var>) {
        let l = &self.layers[layer];
        match m {
            Module::Q => (&l.q, l.q_bias.as_ref()),
            Module::K => (&l.k, l.k_bias.as_ref()),
            Module::V => (&l.v, l.v_bias.as_ref()),
            Module::O => (&l.o, None),
            Module::Gate => (&l.gate, None),
            Module::Up => (&l.up, None),
            Module::Down => (&l.down, None),
        }
    }

    /// A base weight as a forward in `mode` uses it: the `Var` itself when it is trained
    /// ([`Mode::Train`] without adapters), else a detached view, widened to the compute
    /// dtype.
    fn base(&self, v: &Var, mode: Mode) -> Result<Tensor> {
        let t = if mode == Mode::Train && self.lora.is_none() {
            v.as_tensor().clone()
        } else {
            v.as_detached_tensor()
        };
        Ok(if t.dtype() == self.compute_dtype {
            t
        } else {
            t.to_dtype(self.compute_dtype)?
        })
    }

    /// transformers' LlamaRMSNorm: `w * x / sqrt(mean(x^2) + eps)` (fused on the CPU).
    fn rms_norm(&self, x: &Tensor, w: &Var, mode: Mode) -> Result<Tensor> {
        crate::ops::rms_norm(x, &self.base(w, mode)?, self.config.rms_norm_eps)
    }

    /// Projection `m` of decoder layer `layer` over `x`, with its adapter if it has one.
    fn project(&self, layer: usize, m: Module, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let (w, bias) = self.projection(layer, m);
        let base = if self.lora.is_some() {
            crate::linear::FrozenLinear {
                weight: w.as_detached_tensor(),
                bias: bias.map(|b| b.as_detached_tensor()),
            }
            .forward(x)?
        } else {
            let bias = match bias {
                Some(b) => Some(self.base(b, mode)?),
                None => None,
            };
            crate::linear::linear(x, &self.base(w, mode)?, bias.as_ref())?
        };
        let Some(ad) = &self.layers[layer].lora[m.index()] else {
            return Ok(base);
        };
        let input = if ad.dropout > 0.0 && mode != Mode::Infer {
            let dims = x.dims();
            let cols = dims[dims.len() - 1];
            let rows = x.elem_count() / cols.max(1);
            let seed = self.dropout_seed.load(Ordering::Relaxed);
            let keep = crate::lora::dropout_mask(seed, layer, m, rows, cols, ad.dropout);
            let keep = Tensor::from_vec(keep, x.shape(), x.device())?.to_dtype(x.dtype())?;
            (x * keep)?
        } else {
            x.clone()
        };
        let (a, b) = match mode {
            Mode::Train => (ad.a.as_tensor().clone(), ad.b.as_tensor().clone()),
            Mode::Infer | Mode::Checkpoint => {
                (ad.a.as_detached_tensor(), ad.b.as_detached_tensor())
            }
        };
        let low = crate::linear::linear(&input, &a, None)?;
        let up = crate::linear::linear(&low, &b, None)?;
        Ok((base + (up * ad.scaling)?)?)
    }
}

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

/// What every layer of one forward shares.
struct Context {
    cos: Tensor,
    sin: Tensor,
    mask: Option<crate::ops::SoftmaxMask>,
}

impl Layer {
    /// The layer's parameters.
    fn vars(&self) -> Vec<&Var> {
        let mut v = vec![
            &self.input_norm,
            &self.q,
            &self.k,
            &self.v,
            &self.o,
            &self.post_norm,
            &self.gate,
            &self.up,
            &self.down,
        ];
        v.extend(
            [
                &self.q_bias,
                &self.k_bias,
                &self.v_bias,
                &self.q_norm,
                &self.k_norm,
            ]
            .into_iter()
            .flatten(),
        );
        for ad in self.lora.iter().flatten() {
            v.push(&ad.a);
            v.push(&ad.b);
        }
        v
    }
}

/// Removes the gradient of a leaf from a store; a leaf the loss does not depend on gets
/// zeros.
fn take_grad(store: &mut GradStore, leaf: &Tensor) -> Result<Tensor> {
    match store.remove(leaf) {
        Some(g) => Ok(g),
        None => Ok(leaf.zeros_like()?),
    }
}

/// Rotate-half RoPE: `x * cos + rotate_half(x) * sin`, with cos and sin per token.
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let hd = x.dim(D::Minus1)?;
    let half = hd / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let r1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let r2 = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
    Ok(Tensor::cat(&[r1, r2], D::Minus1)?)
}

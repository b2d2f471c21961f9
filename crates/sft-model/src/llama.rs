//! The llama family (llama, mistral, qwen2, qwen3, smollm3), the first implementation of
//! [`CausalLm`]: the forward pass with a real backward, where every op is one candle
//! records a gradient for (matmul, broadcast arithmetic, exp, sum, narrow, cat,
//! index_select), or one of ours with its own backward ([`crate::loss`], [`crate::norm`],
//! [`crate::attention`]). The parts shared with other architectures are in their own files:
//! [`crate::rope`], [`crate::norm`], [`crate::mlp`], [`crate::kv_cache`], the LoRA side in
//! [`crate::lora`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};

use crate::batch::Batch;
use crate::config::{LlamaConfig, ModelConfig, SUPPORTED_MODEL_TYPES};
use crate::kv_cache::{CacheSlot, KvCache};
use crate::lora::{AdapterFile, Adapters, LoraConfig, Module};
use crate::loss::{token_loss, LossStats, TokenLoss};
use crate::mask::SoftmaxMask;
use crate::model::{take_grad, Architecture, CausalLm};
use crate::param::{is_decayed, Mode, Param};
use crate::weights::{load_folder, save_safetensors};
use crate::{ModelError, Result};

/// The llama family in [`crate::registry`]: llama and the model types with its parameter
/// names and forward, with the differences of each ([`LlamaConfig`]).
pub const ARCHITECTURE: Architecture = Architecture {
    name: "llama",
    model_types: SUPPORTED_MODEL_TYPES,
    classes: &[
        "LlamaForCausalLM",
        "MistralForCausalLM",
        "Qwen2ForCausalLM",
        "Qwen3ForCausalLM",
        "SmolLM3ForCausalLM",
    ],
    config: |raw| Ok(Box::new(LlamaConfig::from_value(raw)?)),
    load: |dir, dtype, device| Ok(Box::new(Llama::load(dir, dtype, device)?)),
    load_frozen: |dir, device| Ok(Box::new(Llama::load_frozen(dir, device)?)),
    init_random: |raw, seed, device| {
        let config = LlamaConfig::from_value(raw)
            .map_err(|(message, hint)| ModelError::config(Path::new("(config)"), message, hint))?;
        Ok(Box::new(Llama::init_random(config, seed, device)?))
    },
};

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
    /// The LoRA adapters, when attached (then the base weights are frozen: they get no
    /// gradient and no optimizer state).
    lora: Adapters,
    /// The dtype the forward computes in (the base weights may be stored narrower).
    compute_dtype: DType,
    /// The seed of the adapters' dropout masks for the next training forward.
    dropout_seed: AtomicU64,
    inv_freq: Vec<f32>,
    /// Whether training steps recompute each decoder layer's forward during the backward
    /// instead of keeping its activations ([`CausalLm::loss_backward`]); off when loaded.
    pub gradient_checkpointing: bool,
}

impl Llama {
    /// Loads `config.json` and the weights of a Hugging Face model folder, cast to `dtype`.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let config = LlamaConfig::from_file(&dir.join("config.json"))?;
        let mut tensors = load_folder(dir, dtype, device)?;
        Self::from_tensors(config, &mut tensors, dir, device)
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
            lora: Adapters::default(),
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

    /// The output projection in the compute dtype, recorded for a backward only when it is
    /// trained.
    fn head(&self, mode: Mode) -> Result<Tensor> {
        self.base(self.lm_head.as_ref().unwrap_or(&self.embed), mode)
    }

    /// The attention mask a batch needs: none for one unpadded single-document row of one
    /// position, else the block-diagonal causal mask (as key ranges).
    fn batch_mask(&self, batch: &Batch) -> Result<Option<SoftmaxMask>> {
        Ok(if batch.needs_mask() || batch.len > 1 {
            Some(SoftmaxMask::from_ranges(batch.key_ranges()?, &self.device)?)
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
        mask: Option<SoftmaxMask>,
    ) -> Result<Context> {
        self.check_span(positions)?;
        let (cos, sin) = self.rope_tables(positions, b, t)?;
        Ok(Context { cos, sin, mask })
    }

    /// The token embeddings `[rows, len, hidden]` of `ids [rows, len]`.
    fn embed_tokens(&self, ids: &Tensor, mode: Mode) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let rows = if self.lora.attached() || mode != Mode::Train {
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
        let mlp = crate::mlp::gated_silu(&h, |m, x| self.project(i, m, x, mode))?;
        Ok((x + mlp)?)
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
            (
                crate::rope::rotate(&q, cos, sin)?,
                crate::rope::rotate(&k, cos, sin)?,
            )
        } else {
            (q.contiguous()?, k.contiguous()?)
        };
        let (k, v) = match cache {
            Some(slot) => crate::kv_cache::append(slot, &k, &v)?,
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
        crate::rope::tables(
            &self.inv_freq,
            positions,
            b,
            t,
            self.compute_dtype,
            &self.device,
        )
    }

    /// A base weight as a forward in `mode` uses it: the `Var` itself when it is trained
    /// ([`Mode::Train`] without adapters), else a detached view, widened to the compute
    /// dtype.
    fn base(&self, v: &Var, mode: Mode) -> Result<Tensor> {
        let t = if mode == Mode::Train && !self.lora.attached() {
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
        crate::norm::rms_norm(x, &self.base(w, mode)?, self.config.rms_norm_eps)
    }

    /// Projection `m` of decoder layer `layer` over `x`, with its adapter if it has one.
    fn project(&self, layer: usize, m: Module, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let (w, bias) = self.layers[layer].projection(m);
        let base = if self.lora.attached() {
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
        let seed = self.dropout_seed.load(Ordering::Relaxed);
        self.lora.apply(layer, m, x, base, mode, seed)
    }
}

/// The llama family as every architecture is to the toolkit.
impl CausalLm for Llama {
    fn config(&self) -> &dyn ModelConfig {
        &self.config
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn gradient_checkpointing(&self) -> bool {
        self.gradient_checkpointing
    }

    fn set_gradient_checkpointing(&mut self, on: bool) {
        self.gradient_checkpointing = on;
    }

    fn params(&self) -> &[Param] {
        if self.lora.attached() {
            self.lora.params()
        } else {
            &self.params
        }
    }

    fn state_dict(&self) -> BTreeMap<String, Tensor> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.var.as_detached_tensor()))
            .collect()
    }

    fn save(&self, dir: &Path) -> Result<()> {
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

    fn lm_head_weight(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed).as_tensor()
    }

    fn lora(&self) -> Option<&LoraConfig> {
        self.lora.config()
    }

    fn add_lora(&mut self, cfg: &LoraConfig, seed: u64) -> Result<()> {
        let layers = &self.layers;
        let matrices = Adapters::init(
            cfg,
            seed,
            layers.len(),
            |l, m| layers[l].projection(m).0,
            &self.device,
        )?;
        self.lora.attach(cfg.clone(), &matrices, self.layers.len())
    }

    fn load_adapter(&mut self, adapter: &AdapterFile) -> Result<()> {
        let layers = &self.layers;
        Adapters::check(adapter, layers.len(), |l, m| layers[l].projection(m).0)?;
        self.lora
            .attach(adapter.config.clone(), &adapter.matrices, self.layers.len())
    }

    fn merge_adapters(&mut self) -> Result<()> {
        let layers = &self.layers;
        self.lora.merge(|l, m| layers[l].projection(m).0)
    }

    fn adapter_state_dict(&self) -> BTreeMap<String, Tensor> {
        self.lora.state_dict()
    }

    fn save_adapter(&self, dir: &Path, base_model: &str) -> Result<()> {
        self.lora.save(dir, base_model)
    }

    fn set_dropout_seed(&self, seed: u64) {
        self.dropout_seed.store(seed, Ordering::Relaxed);
    }

    fn dropout_seed(&self) -> u64 {
        self.dropout_seed.load(Ordering::Relaxed)
    }

    fn forward_hidden(
        &self,
        ids: &Tensor,
        positions: &[u32],
        mask: Option<SoftmaxMask>,
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

    fn hidden_states_in(&self, batch: &Batch, mode: Mode) -> Result<Tensor> {
        self.check_span(&batch.position_ids)?;
        let mask = self.batch_mask(batch)?;
        self.forward_hidden(&batch.input_ids, &batch.position_ids, mask, None, mode)
    }

    fn logits(&self, batch: &Batch) -> Result<Tensor> {
        let hidden = self.hidden_states_in(batch, Mode::Infer)?;
        let (b, t, h) = hidden.dims3()?;
        let logits = hidden
            .reshape((b * t, h))?
            .matmul(&self.head(Mode::Infer)?.t()?)?;
        Ok(logits.reshape((b, t, self.config.vocab_size))?)
    }

    fn loss(&self, batch: &Batch) -> Result<TokenLoss> {
        let selected = self.trained_positions(self.hidden_states(batch)?, batch)?;
        token_loss(&selected, &self.head(Mode::Train)?, &batch.targets)
    }

    fn loss_stats(&self, batch: &Batch) -> Result<LossStats> {
        let hidden = self.hidden_states_in(batch, Mode::Infer)?;
        let selected = self.trained_positions(hidden, batch)?;
        crate::loss::token_stats(&selected, &self.head(Mode::Infer)?, &batch.targets)
    }

    fn loss_backward(
        &self,
        batch: &Batch,
        scale: f64,
        checkpointing: bool,
    ) -> Result<(LossStats, GradStore)> {
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
        let frozen = self.lora.attached();
        for i in (0..self.layers.len()).rev() {
            let input = Var::from_tensor(&inputs.pop().expect("one input per layer"))?;
            let out = self.layer_forward(i, input.as_tensor(), &ctx, None, Mode::Train)?;
            let mut layer_store = (out * &grad)?.sum_all()?.backward()?;
            for var in self.layers[i]
                .vars()
                .into_iter()
                .chain(self.lora.layer_vars(i))
            {
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
}

/// What every layer of one forward shares.
struct Context {
    cos: Tensor,
    sin: Tensor,
    mask: Option<SoftmaxMask>,
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
        v
    }

    /// The stored weight and bias of a projection.
    fn projection(&self, m: Module) -> (&Var, Option<&Var>) {
        match m {
            Module::Q => (&self.q, self.q_bias.as_ref()),
            Module::K => (&self.k, self.k_bias.as_ref()),
            Module::V => (&self.v, self.v_bias.as_ref()),
            Module::O => (&self.o, None),
            Module::Gate => (&self.gate, None),
            Module::Up => (&self.up, None),
            Module::Down => (&self.down, None),
        }
    }
}

//! LoRA adapters as Hugging Face PEFT defines them: `y = W x + s * B (A dropout(x))` on the
//! chosen projections, with `A [r, in]` Kaiming-uniform, `B [out, r]` zeros (so step 0 is
//! the base model), `s = alpha / r` (or `alpha / sqrt(r)` with rsLoRA), and the folder PEFT
//! writes and reads (`adapter_config.json`, `adapter_model.safetensors` with PEFT's key
//! names).
//!
//! This module owns the configuration, the names and the files, and the model side every
//! architecture shares ([`Adapters`]: attaching new or loaded adapters, their part of a
//! projection's forward, merging them into the base weights, saving them); an architecture
//! says which weight each (layer, [`Module`]) is.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use serde_json::{json, Value};

use crate::param::{Mode, Param};
use crate::weights::save_safetensors;
use crate::ModelError;

/// The projections of a decoder layer that an adapter can wrap, in PEFT's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Module {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Module {
    pub const ALL: [Module; 7] = [
        Module::Q,
        Module::K,
        Module::V,
        Module::O,
        Module::Gate,
        Module::Up,
        Module::Down,
    ];

    /// The module's name as transformers and PEFT spell it (`q_proj`).
    pub fn name(self) -> &'static str {
        match self {
            Module::Q => "q_proj",
            Module::K => "k_proj",
            Module::V => "v_proj",
            Module::O => "o_proj",
            Module::Gate => "gate_proj",
            Module::Up => "up_proj",
            Module::Down => "down_proj",
        }
    }

    /// The block it sits in (`self_attn` or `mlp`).
    pub fn block(self) -> &'static str {
        match self {
            Module::Q | Module::K | Module::V | Module::O => "self_attn",
            Module::Gate | Module::Up | Module::Down => "mlp",
        }
    }

    pub fn parse(name: &str) -> Option<Module> {
        Module::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Its index in [`Module::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// An adapter configuration: TRL's `--lora_*` flags, PEFT's `LoraConfig` fields.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Wrapped projections, in [`Module::ALL`] order.
    pub targets: Vec<Module>,
    pub use_rslora: bool,
}

impl Default for LoraConfig {
    /// TRL 1.16's `ModelConfig` defaults (r 16, alpha 32, dropout 0.05) with PEFT's llama
    /// targets (`q_proj`, `v_proj`).
    fn default() -> Self {
        Self {
            r: 16,
            alpha: 32.0,
            dropout: 0.05,
            targets: vec![Module::Q, Module::V],
            use_rslora: false,
        }
    }
}

impl LoraConfig {
    /// The factor of the adapter's output: `alpha / r`, or `alpha / sqrt(r)` with rsLoRA.
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    /// Checks the numbers a user gave (`--lora_r 0`, a dropout of 1, ...).
    pub fn validate(&self) -> Result<(), String> {
        if self.r == 0 {
            return Err("--lora_r must be at least 1".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(format!(
                "--lora_alpha {} must be a positive number",
                self.alpha
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "--lora_dropout {} must be in [0, 1) (the probability of zeroing an adapter input)",
                self.dropout
            ));
        }
        if self.targets.is_empty() {
            return Err("--lora_target_modules names no module".into());
        }
        Ok(())
    }
}

/// PEFT's default target modules for a `model_type` (its
/// `TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING`), when it has one.
pub fn peft_default_targets(model_type: &str) -> Option<Vec<Module>> {
    match model_type {
        "llama" | "mistral" | "qwen2" | "qwen3" => Some(vec![Module::Q, Module::V]),
        _ => None,
    }
}

/// What `--lora_target_modules` resolves to, and a line for the log when a default was
/// chosen without PEFT having one.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    pub modules: Vec<Module>,
    pub note: Option<String>,
}

/// Resolves `--lora_target_modules` (names, `all-linear`, or nothing for PEFT's default of
/// the model type) to modules. The output head and the embedding are refused with the
/// reason, as TRL does; an unknown name lists the modules there are.
pub fn resolve_targets(names: &[String], model_type: &str) -> Result<Targets, String> {
    let names: Vec<&str> = names
        .iter()
        .flat_map(|n| n.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(match peft_default_targets(model_type) {
            Some(modules) => Targets {
                modules,
                note: None,
            },
            None => Targets {
                modules: vec![Module::Q, Module::V],
                note: Some(format!(
                    "PEFT has no default target modules for model_type {model_type:?}; \
                     adapting q_proj and v_proj, as it does for llama (choose others with \
                     --lora_target_modules, e.g. all-linear)"
                )),
            },
        });
    }
    if names.contains(&"all-linear") {
        if names.len() > 1 {
            return Err(
                "--lora_target_modules all-linear stands alone (it names every projection)".into(),
            );
        }
        return Ok(Targets {
            modules: Module::ALL.to_vec(),
            note: None,
        });
    }
    let mut modules = Vec::new();
    for name in names {
        // PEFT also accepts the module's full path; its last part is the name.
        let short = name.rsplit('.').next().unwrap_or(name);
        match Module::parse(short) {
            Some(m) => modules.push(m),
            None if short == "lm_head" => {
                return Err("--lora_target_modules lm_head: an adapter on the output head is not supported (TRL and PEFT's all-linear leave it out: the head of a causal LM is tied to or as large as the embedding, and adapting it changes every token's logits); adapt the decoder projections".into())
            }
            None if short == "embed_tokens" => {
                return Err("--lora_target_modules embed_tokens: embedding adapters are not supported; adapt the decoder projections (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)".into())
            }
            None => {
                return Err(format!(
                    "--lora_target_modules {name}: no such module in a llama-family decoder layer; there are {} (or all-linear)",
                    Module::ALL.map(Module::name).join(", ")
                ))
            }
        }
    }
    modules.sort();
    modules.dedup();
    Ok(Targets {
        modules,
        note: None,
    })
}

/// PEFT's key of an adapter matrix in `adapter_model.safetensors`
/// (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`).
pub fn adapter_key(layer: usize, module: Module, matrix: Matrix) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.{}.{}.weight",
        module.block(),
        module.name(),
        matrix.name()
    )
}

/// The two matrices of an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matrix {
    /// `lora_A [r, in]`, the down projection.
    A,
    /// `lora_B [out, r]`, the up projection.
    B,
}

impl Matrix {
    pub fn name(self) -> &'static str {
        match self {
            Matrix::A => "lora_A",
            Matrix::B => "lora_B",
        }
    }
}

pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// Whether a folder holds a PEFT adapter (its `adapter_config.json`).
pub fn is_adapter_dir(dir: &Path) -> bool {
    dir.join(ADAPTER_CONFIG).is_file()
}

/// `adapter_config.json` as PEFT 0.21 writes it for a LoRA adapter of a causal LM.
pub fn adapter_config_json(cfg: &LoraConfig, base_model: &str) -> Value {
    json!({
        "alpha_pattern": {},
        "auto_mapping": null,
        "base_model_name_or_path": base_model,
        "bias": "none",
        "corda_config": null,
        "ensure_weight_tying": false,
        "eva_config": null,
        "exclude_modules": null,
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "layer_replication": null,
        "layers_pattern": null,
        "layers_to_transform": null,
        "loftq_config": {},
        // An integer when it is one, as TRL passes it.
        "lora_alpha": if cfg.alpha.fract() == 0.0 && cfg.alpha.abs() < 1e15 {
            json!(cfg.alpha as i64)
        } else {
            json!(cfg.alpha)
        },
        "lora_bias": false,
        "lora_dropout": cfg.dropout,
        "megatron_config": null,
        "megatron_core": "megatron.core",
        "modules_to_save": null,
        "peft_type": "LORA",
        "qalora_group_size": 16,
        "r": cfg.r,
        "rank_pattern": {},
        "revision": null,
        "target_modules": cfg.targets.iter().map(|m| m.name()).collect::<Vec<_>>(),
        "target_parameters": null,
        "task_type": "CAUSAL_LM",
        "trainable_token_indices": null,
        "use_dora": false,
        "use_qalora": false,
        "use_rslora": cfg.use_rslora,
    })
}

/// An adapter folder read back: its configuration, the base model it names, and the
/// `A`/`B` matrices by (layer, module).
pub struct AdapterFile {
    pub dir: PathBuf,
    pub config: LoraConfig,
    /// `base_model_name_or_path`: a folder or a Hub name (looked up in the local cache).
    pub base_model: Option<String>,
    pub matrices: HashMap<(usize, Module), (Tensor, Tensor)>,
}

/// Reads a PEFT LoRA adapter folder (ours or one Python PEFT/TRL wrote), refusing what this
/// model code cannot apply (DoRA, adapter biases, per-module ranks, embedding adapters)
/// with the reason. Matrices are read in f32.
pub fn read_adapter(dir: &Path) -> Result<AdapterFile, ModelError> {
    let path = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| {
        ModelError::config(
            &path,
            format!("not valid JSON: {e}"),
            "an adapter folder written by PEFT or sft-train has a JSON adapter_config.json",
        )
    })?;
    let refuse = |message: String| {
        ModelError::config(
            &path,
            message,
            "merge the adapter with PEFT (merge_and_unload) and score the merged model",
        )
    };
    let peft_type = v["peft_type"].as_str().unwrap_or("");
    if peft_type != "LORA" {
        return Err(refuse(format!(
            "peft_type is {peft_type:?}; only LoRA adapters (\"LORA\") are supported"
        )));
    }
    if v["use_dora"].as_bool() == Some(true) {
        return Err(refuse("use_dora: DoRA adapters are not supported".into()));
    }
    if v["bias"].as_str().is_some_and(|b| b != "none") || v["lora_bias"].as_bool() == Some(true) {
        return Err(refuse(
            "adapter biases (bias/lora_bias) are not supported".into(),
        ));
    }
    if v["fan_in_fan_out"].as_bool() == Some(true) {
        return Err(refuse(
            "fan_in_fan_out: true is for GPT-2's Conv1D layers, not llama projections".into(),
        ));
    }
    for key in ["rank_pattern", "alpha_pattern"] {
        if v[key].as_object().is_some_and(|m| !m.is_empty()) {
            return Err(refuse(format!(
                "{key}: per-module ranks or alphas are not supported"
            )));
        }
    }
    if !v["modules_to_save"].is_null()
        && v["modules_to_save"]
            .as_array()
            .is_none_or(|a| !a.is_empty())
    {
        return Err(refuse(
            "modules_to_save: fully trained copies of modules are not supported".into(),
        ));
    }
    let r = v["r"].as_u64().unwrap_or(8) as usize;
    let alpha = v["lora_alpha"].as_f64().unwrap_or(8.0);
    let dropout = v["lora_dropout"].as_f64().unwrap_or(0.0);
    let use_rslora = v["use_rslora"].as_bool().unwrap_or(false);
    let base_model = v["base_model_name_or_path"].as_str().map(str::to_string);

    let weights = dir.join(ADAPTER_WEIGHTS);
    if !weights.is_file() {
        let hint = if dir.join("adapter_model.bin").is_file() {
            "this adapter has only adapter_model.bin; save it again with PEFT's save_pretrained(safe_serialization=True)"
        } else {
            "an adapter folder holds adapter_model.safetensors next to adapter_config.json"
        };
        return Err(ModelError::Weights {
            path: weights,
            message: "missing".into(),
            hint: hint.into(),
        });
    }
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu).map_err(|e| {
        let why = crate::weights::safetensors_damage(&weights).unwrap_or_else(|| e.to_string());
        ModelError::weights(&weights, format!("cannot read safetensors: {why}"))
    })?;
    let mut parts: HashMap<(usize, Module), (Option<Tensor>, Option<Tensor>)> = HashMap::new();
    for (name, t) in tensors {
        let Some((layer, module, matrix)) = parse_key(&name) else {
            return Err(ModelError::Weights {
                path: weights.clone(),
                message: format!("tensor {name} is not a LoRA matrix of a decoder projection"),
                hint: "only lora_A/lora_B of q/k/v/o/gate/up/down_proj are supported (not embedding adapters or saved modules)".into(),
            });
        };
        let t = t
            .to_dtype(DType::F32)
            .map_err(|e| ModelError::weights(&weights, format!("{name}: {e}")))?;
        let slot = parts.entry((layer, module)).or_default();
        match matrix {
            Matrix::A => slot.0 = Some(t),
            Matrix::B => slot.1 = Some(t),
        }
    }
    let mut matrices = HashMap::new();
    let mut targets = Vec::new();
    for ((layer, module), (a, b)) in parts {
        let (Some(a), Some(b)) = (a, b) else {
            return Err(ModelError::weights(
                &weights,
                format!(
                    "layer {layer} {}: has only one of lora_A and lora_B",
                    module.name()
                ),
            ));
        };
        let rank = a.dim(0).map_err(ModelError::from)?;
        if rank != r || b.dims().get(1) != Some(&r) {
            return Err(ModelError::weights(
                &weights,
                format!(
                    "layer {layer} {}: lora_A is {:?} and lora_B {:?}, but adapter_config.json says r = {r}",
                    module.name(),
                    a.dims(),
                    b.dims()
                ),
            ));
        }
        targets.push(module);
        matrices.insert((layer, module), (a, b));
    }
    if matrices.is_empty() {
        return Err(ModelError::weights(
            &weights,
            "holds no LoRA matrices".into(),
        ));
    }
    targets.sort();
    targets.dedup();
    Ok(AdapterFile {
        dir: dir.to_path_buf(),
        config: LoraConfig {
            r,
            alpha,
            dropout,
            targets,
            use_rslora,
        },
        base_model,
        matrices,
    })
}

/// The base model folder of an adapter: `given` (`--base_model`) when there is one, else the
/// adapter's `base_model_name_or_path` as a folder (relative to the working directory, as
/// PEFT reads it) or a Hub model id (the cache first, then the Hub).
pub fn base_model_dir(adapter: &AdapterFile, given: Option<&str>) -> Result<PathBuf, ModelError> {
    if let Some(name) = given {
        return crate::locate::model_dir(name);
    }
    let config = adapter.dir.join(ADAPTER_CONFIG);
    let Some(name) = adapter.base_model.as_deref().filter(|n| !n.is_empty()) else {
        return Err(ModelError::config(
            &config,
            "names no base_model_name_or_path",
            "give the base model with --base_model DIR",
        ));
    };
    crate::locate::model_dir(name).map_err(|e| {
        ModelError::config(
            &config,
            format!("its base model {name:?} is not here: {e}"),
            "give the base model with --base_model DIR|OWNER/NAME (a local folder or a Hub model id)",
        )
    })
}

/// `(layer, module, matrix)` of a PEFT key, with or without the `base_model.model.` prefix
/// and the adapter name (`lora_A.default.weight`) some writers keep.
fn parse_key(name: &str) -> Option<(usize, Module, Matrix)> {
    let rest = name.strip_prefix("base_model.model.").unwrap_or(name);
    let rest = rest.strip_prefix("model.layers.")?;
    let mut parts = rest.split('.');
    let layer: usize = parts.next()?.parse().ok()?;
    let block = parts.next()?;
    let module = Module::parse(parts.next()?)?;
    if module.block() != block {
        return None;
    }
    let matrix = match parts.next()? {
        "lora_A" => Matrix::A,
        "lora_B" => Matrix::B,
        _ => return None,
    };
    match (parts.next()?, parts.next(), parts.next()) {
        ("weight", None, None) => {}
        (_, Some("weight"), None) => {}
        _ => return None,
    }
    Some((layer, module, matrix))
}

/// The dropout keep-mask of one adapter input: `rows x cols` factors that are 0 with
/// probability `p` and `1 / (1 - p)` otherwise, a pure function of `(seed, layer, module)`
/// so that a recomputed forward (gradient checkpointing) and a resumed run draw the same.
pub fn dropout_mask(
    seed: u64,
    layer: usize,
    module: Module,
    rows: usize,
    cols: usize,
    p: f64,
) -> Vec<f32> {
    use rayon::prelude::*;
    let keep = (1.0 / (1.0 - p)) as f32;
    let threshold = (p * (1u64 << 53) as f64) as u64;
    let base = seed
        ^ (layer as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ ((module.index() as u64 + 1) << 56);
    let mut out = vec![0f32; rows * cols];
    out.par_chunks_mut(cols.max(1))
        .enumerate()
        .for_each(|(row, values)| {
            let mut rng = crate::rng::SplitMix64::new(
                base ^ (row as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
            );
            // Decorrelate neighbouring seeds before drawing.
            rng.next_u64();
            for v in values.iter_mut() {
                *v = if (rng.next_u64() >> 11) < threshold {
                    0.0
                } else {
                    keep
                };
            }
        });
    out
}

/// One LoRA adapter of a projection: `s * B (A dropout(x))` added to its output.
struct Adapter {
    a: Var,
    b: Var,
    scaling: f64,
    dropout: f64,
}

/// The (new or loaded) adapters' matrices by (layer, module): `A [r, in]`, `B [out, r]`.
pub type Matrices = HashMap<(usize, Module), (Tensor, Tensor)>;

/// The LoRA adapters attached to a model, the model side every architecture shares: per
/// decoder layer one slot per [`Module`], their matrices as parameters (PEFT's names), and
/// the configuration. Empty until adapters are attached; while they are, the base weights
/// are frozen (they get no gradient and no optimizer state).
#[derive(Default)]
pub struct Adapters {
    config: Option<LoraConfig>,
    /// By layer, then [`Module::index`].
    layers: Vec<[Option<Adapter>; 7]>,
    params: Vec<Param>,
}

impl Adapters {
    /// The configuration, when adapters are attached.
    pub fn config(&self) -> Option<&LoraConfig> {
        self.config.as_ref()
    }

    /// Whether adapters are attached (the base weights are then frozen).
    pub fn attached(&self) -> bool {
        self.config.is_some()
    }

    /// The adapters' matrices, in checkpoint order.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// New adapters as PEFT initialises them (`A` Kaiming-uniform with bound `1 / sqrt(in)`,
    /// `B` zeros), seeded, for `layers` layers whose projection `m` of layer `l` has the
    /// weight `weight(l, m)` (`[out, in]`).
    pub fn init<'a>(
        cfg: &LoraConfig,
        seed: u64,
        layers: usize,
        weight: impl Fn(usize, Module) -> &'a Var,
        device: &Device,
    ) -> crate::Result<Matrices> {
        cfg.validate().map_err(ModelError::Input)?;
        let mut rng = crate::rng::SplitMix64::new(seed ^ 0x4C6F_5241_0000_0000);
        let mut matrices = HashMap::new();
        for layer in 0..layers {
            for &m in &cfg.targets {
                let (out_dim, in_dim) = weight(layer, m).dims2()?;
                let bound = 1.0 / (in_dim as f64).sqrt();
                let a: Vec<f32> = (0..cfg.r * in_dim)
                    .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
                    .collect();
                let a = Tensor::from_vec(a, (cfg.r, in_dim), device)?;
                let b = Tensor::zeros((out_dim, cfg.r), DType::F32, device)?;
                matrices.insert((layer, m), (a, b));
            }
        }
        Ok(matrices)
    }

    /// Checks that every matrix of an adapter folder fits a model of `layers` layers whose
    /// projection `m` of layer `l` has the weight `weight(l, m)`.
    pub fn check<'a>(
        adapter: &AdapterFile,
        layers: usize,
        weight: impl Fn(usize, Module) -> &'a Var,
    ) -> crate::Result<()> {
        let path = adapter.dir.join(ADAPTER_WEIGHTS);
        for (&(layer, m), (a, b)) in &adapter.matrices {
            if layer >= layers {
                return Err(ModelError::Weights {
                    path: path.clone(),
                    message: format!(
                        "has an adapter for layer {layer}, but the base model has {layers} layers"
                    ),
                    hint: "the adapter was trained on another base model: give the right one with --base_model".into(),
                });
            }
            let (out_dim, in_dim) = weight(layer, m).dims2()?;
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
        Ok(())
    }

    /// Attaches `matrices` (in f32) to a model of `layers` layers, replacing any adapters.
    pub fn attach(
        &mut self,
        cfg: LoraConfig,
        matrices: &Matrices,
        layers: usize,
    ) -> crate::Result<()> {
        let scaling = cfg.scaling();
        let mut params = Vec::new();
        let mut slots = Vec::with_capacity(layers);
        for index in 0..layers {
            let mut slot: [Option<Adapter>; 7] = Default::default();
            for m in Module::ALL {
                let Some((a, b)) = matrices.get(&(index, m)) else {
                    continue;
                };
                let a = Var::from_tensor(&a.to_dtype(DType::F32)?.contiguous()?)?;
                let b = Var::from_tensor(&b.to_dtype(DType::F32)?.contiguous()?)?;
                for (matrix, var) in [(Matrix::A, &a), (Matrix::B, &b)] {
                    params.push(Param {
                        name: adapter_key(index, m, matrix),
                        var: var.clone(),
                        decay: true,
                    });
                }
                slot[m.index()] = Some(Adapter {
                    a,
                    b,
                    scaling,
                    dropout: cfg.dropout,
                });
            }
            slots.push(slot);
        }
        self.layers = slots;
        self.params = params;
        self.config = Some(cfg);
        Ok(())
    }

    /// The matrices of layer `layer`'s adapters (`A` then `B`, by module).
    pub fn layer_vars(&self, layer: usize) -> impl Iterator<Item = &Var> {
        self.layers
            .get(layer)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|ad| [&ad.a, &ad.b])
    }

    /// Whether projection `m` of layer `layer` has an adapter.
    pub fn has(&self, layer: usize, m: Module) -> bool {
        self.layers
            .get(layer)
            .is_some_and(|slot| slot[m.index()].is_some())
    }

    /// `base + s B (A dropout(x))` for projection `m` of layer `layer` (`base` itself when
    /// it has no adapter). Dropout (training forwards only) draws its mask from `seed`
    /// ([`dropout_mask`]); [`Mode::Train`] records the adapter's graph.
    pub fn apply(
        &self,
        layer: usize,
        m: Module,
        x: &Tensor,
        base: Tensor,
        mode: Mode,
        seed: u64,
    ) -> crate::Result<Tensor> {
        let Some(ad) = self.layers.get(layer).and_then(|s| s[m.index()].as_ref()) else {
            return Ok(base);
        };
        let input = if ad.dropout > 0.0 && mode != Mode::Infer {
            let dims = x.dims();
            let cols = dims[dims.len() - 1];
            let rows = x.elem_count() / cols.max(1);
            let keep = dropout_mask(seed, layer, m, rows, cols, ad.dropout);
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

    /// Folds the adapters into the base weights (`W + s B A`, computed in f32 and stored in
    /// the weight's dtype, as PEFT's `merge_and_unload`; `weight(l, m)` is the weight of
    /// projection `m` of layer `l`) and removes them.
    pub fn merge<'a>(&mut self, weight: impl Fn(usize, Module) -> &'a Var) -> crate::Result<()> {
        if self.config.take().is_none() {
            return Ok(());
        }
        for (index, slot) in self.layers.iter_mut().enumerate() {
            for m in Module::ALL {
                let Some(ad) = slot[m.index()].take() else {
                    continue;
                };
                let w = weight(index, m);
                // As PEFT with f32 adapters: `W += (B A) s`, summed in f32 and rounded once
                // to the weight's dtype.
                let delta = (ad.b.as_tensor().matmul(ad.a.as_tensor())? * ad.scaling)?;
                let merged = (w.as_tensor().to_dtype(DType::F32)? + delta)?.to_dtype(w.dtype())?;
                w.set(&merged)?;
            }
        }
        self.params.clear();
        Ok(())
    }

    /// The adapters' matrices by PEFT's names (what `adapter_model.safetensors` holds).
    pub fn state_dict(&self) -> BTreeMap<String, Tensor> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.var.as_detached_tensor()))
            .collect()
    }

    /// Writes the adapters as PEFT does: `adapter_config.json` (naming `base_model` as
    /// `base_model_name_or_path`) and `adapter_model.safetensors`.
    pub fn save(&self, dir: &Path, base_model: &str) -> crate::Result<()> {
        let Some(cfg) = &self.config else {
            return Err(ModelError::Input(
                "the model has no LoRA adapters to save".into(),
            ));
        };
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        save_safetensors(&self.state_dict(), &dir.join(ADAPTER_WEIGHTS))?;
        let config = adapter_config_json(cfg, base_model);
        let text = serde_json::to_string_pretty(&config).expect("config serialises");
        crate::weights::write_atomic(&dir.join(ADAPTER_CONFIG), |w| {
            use std::io::Write;
            w.write_all(text.as_bytes())?;
            w.write_all(b"\n")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_peft_and_refuse_the_head() {
        let t = resolve_targets(&[], "llama").unwrap();
        assert_eq!(t.modules, vec![Module::Q, Module::V]);
        assert!(t.note.is_none());
        let t = resolve_targets(&[], "smollm3").unwrap();
        assert!(t.note.unwrap().contains("no default"));
        let t = resolve_targets(&["all-linear".into()], "qwen2").unwrap();
        assert_eq!(t.modules.len(), 7);
        let t = resolve_targets(&["v_proj,q_proj".into(), "down_proj".into()], "llama").unwrap();
        assert_eq!(t.modules, vec![Module::Q, Module::V, Module::Down]);
        let err = resolve_targets(&["q_proj".into(), "lm_head".into()], "llama").unwrap_err();
        assert!(err.contains("output head"), "{err}");
        let err = resolve_targets(&["qproj".into()], "llama").unwrap_err();
        assert!(err.contains("q_proj, k_proj"), "{err}");
    }

    #[test]
    fn keys_are_peft_names_and_parse_back() {
        let k = adapter_key(3, Module::Gate, Matrix::B);
        assert_eq!(
            k,
            "base_model.model.model.layers.3.mlp.gate_proj.lora_B.weight"
        );
        assert_eq!(parse_key(&k), Some((3, Module::Gate, Matrix::B)));
        assert_eq!(
            parse_key("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"),
            Some((0, Module::Q, Matrix::A))
        );
        assert_eq!(
            parse_key("base_model.model.model.layers.0.mlp.q_proj.lora_A.weight"),
            None
        );
        assert_eq!(parse_key("base_model.model.lm_head.lora_A.weight"), None);
    }

    #[test]
    fn scaling_and_dropout() {
        let mut c = LoraConfig::default();
        assert_eq!(c.scaling(), 2.0);
        c.use_rslora = true;
        assert_eq!(c.scaling(), 8.0);
        let m = dropout_mask(7, 1, Module::V, 64, 100, 0.25);
        let zeros = m.iter().filter(|v| **v == 0.0).count();
        assert!((1300..1900).contains(&zeros), "{zeros} of 6400 dropped");
        assert!(m.iter().all(|v| *v == 0.0 || (*v - 4.0 / 3.0).abs() < 1e-6));
        assert_eq!(m, dropout_mask(7, 1, Module::V, 64, 100, 0.25));
        assert_ne!(m, dropout_mask(8, 1, Module::V, 64, 100, 0.25));
        assert_ne!(m, dropout_mask(7, 1, Module::Q, 64, 100, 0.25));
    }
}

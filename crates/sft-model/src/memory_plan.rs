//! Will it fit? A prediction of a run's peak resident memory from the model's config and the
//! batch shape alone (before any data is loaded), itemised, with the flags that would make an
//! oversized run fit.
//!
//! The activation counts follow what this crate's forward keeps (f32 on the CPU):
//! per decoder layer and token, `6 h + 7 q + 7 kv + 4 i` floats (norm outputs, projections,
//! the RoPE temporaries, the attention output and its copy, the MLP's four `i`-wide
//! tensors, the residual stream), plus the fused attention's log-sum-exp (`heads` floats;
//! it keeps no `T x T` scores or probabilities, [`crate::attention`]); a training forward
//! keeps all of them for every layer, a
//! checkpointed one only each layer's input and one layer's worth while it is recomputed.
//! The backward's transient (the gradients of one layer's intermediates, the softmax
//! backward's copies) is counted the same way; the fixed process overhead and the ratio of
//! resident memory to counted activations were measured (peak resident set of `sft-train`
//! on the tiny model and on SmolLM2-135M, benches/MEMORY.md).

use crate::config::ModelConfig;

const F32: u64 = 4;
/// Binary, tokenizer, rayon pools, allocator slack: a 1-step run of the tiny model
/// (batch 1, max_length 16) peaks at 162 MiB, 74 MiB of it weights, gradients, moments and
/// loss chunks (benches/MEMORY.md).
pub const BASE_BYTES: u64 = 90 << 20;
/// Positions per chunk of the fused loss (as [`crate::loss`]).
const LOSS_CHUNK: u64 = 256;
/// Cached loss gradients are kept up to this many floats (as [`crate::loss`]).
const LOSS_CACHE_FLOATS: u64 = 64 << 20;

/// The shape of a training run's largest micro-batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainShape {
    /// Rows per micro-batch (`per_device_train_batch_size`).
    pub rows: usize,
    /// Tokens per row: the longest a batch can be padded to (`max_length`).
    pub max_length: usize,
    /// Micro-batches per optimizer step (`gradient_accumulation_steps`).
    pub grad_accum: usize,
    pub checkpointing: bool,
    /// Rows of the evaluation batch (`per_device_eval_batch_size`), when evaluating.
    pub eval_rows: Option<usize>,
    /// LoRA adapters on a frozen base, when training them.
    pub lora: Option<LoraShape>,
}

/// What the plan needs of a LoRA run: the rank, the wrapped projections, whether dropout
/// copies their inputs, and the bytes a base weight takes as stored (2 for bf16 files).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoraShape {
    pub r: usize,
    /// By [`crate::lora::Module::index`].
    pub targets: [bool; 7],
    pub dropout: bool,
    pub weight_bytes: u64,
}

impl LoraShape {
    pub fn new(cfg: &crate::lora::LoraConfig, weight_bytes: u64) -> Self {
        let mut targets = [false; 7];
        for m in &cfg.targets {
            targets[m.index()] = true;
        }
        Self {
            r: cfg.r,
            targets,
            dropout: cfg.dropout > 0.0,
            weight_bytes,
        }
    }

    /// `(in, out)` of each wrapped projection of one layer.
    fn projections(&self, c: &dyn ModelConfig) -> Vec<(u64, u64)> {
        let d = c.dims();
        let h = d.hidden_size as u64;
        let q = d.q_width() as u64;
        let kv = d.kv_width() as u64;
        let i = d.intermediate_size as u64;
        let all = [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)];
        all.into_iter()
            .zip(self.targets)
            .filter(|(_, on)| *on)
            .map(|(p, _)| p)
            .collect()
    }

    /// Adapter parameters over the whole model.
    pub fn params(&self, c: &dyn ModelConfig) -> u64 {
        let per_layer: u64 = self
            .projections(c)
            .iter()
            .map(|(i, o)| self.r as u64 * (i + o))
            .sum();
        per_layer * c.num_hidden_layers() as u64
    }

    /// Floats a training forward keeps per token per layer for the adapters: the dropped
    /// out input and its mask (with dropout), the rank-r product, the scaled output and the
    /// sum with the base projection.
    fn floats_per_token(&self, c: &dyn ModelConfig) -> u64 {
        self.projections(c)
            .iter()
            .map(|(i, o)| if self.dropout { 2 * i } else { 0 } + self.r as u64 + 2 * o)
            .sum()
    }
}

/// One line of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub what: &'static str,
    pub bytes: u64,
    /// Whether the item counts towards the predicted peak (alternatives shown for
    /// comparison do not).
    pub counted: bool,
}

/// A predicted peak, itemised.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPlan {
    pub items: Vec<Item>,
}

impl MemoryPlan {
    /// The predicted peak resident memory (bytes).
    pub fn peak(&self) -> u64 {
        self.items
            .iter()
            .filter(|i| i.counted)
            .map(|i| i.bytes)
            .sum()
    }

    /// One line per item and the total, for a terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for i in &self.items {
            let note = if i.counted { "" } else { "  (not counted)" };
            out.push_str(&format!("  {:<52} {:>9}{note}\n", i.what, gib(i.bytes)));
        }
        out.push_str(&format!(
            "  {:<52} {:>9}\n",
            "predicted peak",
            gib(self.peak())
        ));
        out
    }
}

/// Bytes as GiB with two decimals ("1.23 GiB"), or MiB below one GiB ("12.3 MiB").
pub fn gib(bytes: u64) -> String {
    if bytes < 1 << 30 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
    }
}

/// Measured resident memory of a training forward's kept activations over the tensors
/// counted in [`layer_floats_per_token`]: fitted (least squares) to the peak resident set
/// of two SmolLM2-135M runs without checkpointing (packed 4 x 512 and 2 x 1,024, the same
/// tokens and twice the `T x T`), where the count alone predicted 21% and 17% too little
/// (benches/MEMORY.md; fitted with the unfused attention, whose kept `T x T` scores were
/// counted exactly; with the fused attention the same factor leaves the two runs 1.6% and
/// 3.3% off). What the count misses was not profiled (allocator retention of
/// the backward's transients is the likely part: mimalloc is told never to return freed
/// memory, `sft_cli::keep_freed_memory`).
const KEPT_PER_COUNTED: f64 = 1.564;

/// Floats a training forward keeps per token per decoder layer, outside attention's
/// `T x T` tensors, as counted (see [`KEPT_PER_COUNTED`]).
fn layer_floats_per_token(c: &dyn ModelConfig) -> u64 {
    let d = c.dims();
    let h = d.hidden_size as u64;
    let q = d.q_width() as u64;
    let kv = d.kv_width() as u64;
    let i = d.intermediate_size as u64;
    6 * h + 7 * q + 7 * kv + 4 * i + d.extra_layer_floats as u64
}

/// Bytes one layer's fused attention keeps for its backward beyond its inputs and output
/// (counted in [`layer_floats_per_token`]) for `rows x len` queries: the log-sum-exp of
/// every query of every head. Nothing `T x T` is kept (its blocks are recomputed).
fn attention_bytes(c: &dyn ModelConfig, rows: usize, len: usize) -> u64 {
    (rows * len * c.dims().num_attention_heads) as u64 * F32
}

/// The fused attention backward's working set for one layer: host copies of the queries,
/// output and output gradient, the query gradient, each query head's share of the key and
/// value gradients (`6 q` floats per token), the key and value copies and their summed
/// gradients (`4 kv`); blocks of scores are recomputed in per-task tiles of a few KiB.
fn attention_backward_bytes(c: &dyn ModelConfig, rows: usize, len: usize) -> u64 {
    let d = c.dims();
    let q = d.q_width() as u64;
    let kv = d.kv_width() as u64;
    (rows * len) as u64 * (6 * q + 4 * kv) * F32
}

/// The mask shared by the layers: one key range (two u32) per query, no `[rows, 1, T, T]`
/// tensor on the CPU.
fn mask_bytes(rows: usize, len: usize) -> u64 {
    rows as u64 * len as u64 * 8
}

/// Bytes of the fused loss over `targets` positions: the chunk logits and gradients, the
/// cached gradients when they are small enough, and the hidden-state gradient.
fn loss_bytes(c: &dyn ModelConfig, targets: u64, backward: bool) -> u64 {
    let v = c.vocab_size() as u64;
    let h = c.hidden_size() as u64;
    let chunks = 3 * LOSS_CHUNK.min(targets.max(1)) * v * F32;
    if !backward {
        return chunks;
    }
    let cached = if targets * v <= LOSS_CACHE_FLOATS {
        targets * v * F32
    } else {
        0
    };
    chunks + cached + 3 * targets * h * F32 + v * h * F32
}

/// The predicted peak of an inference forward (held-out scoring) of `rows x len`: the
/// weights, one layer's working set (no graph is kept), the loss chunks.
pub fn inference_plan(c: &dyn ModelConfig, rows: usize, len: usize) -> MemoryPlan {
    let p = c.num_parameters() as u64;
    let n = (rows * len) as u64;
    let d = c.dims();
    let h = d.hidden_size as u64;
    // At the attention of a layer: the residual stream and its norm, the projections and
    // RoPE temporaries, the log-sum-exp, the output. The MLP's wide tensors (gate, up,
    // their activation and product) come after the attention's are freed; with no `T x T`
    // scores the MLP is the larger of the two.
    let q = d.q_width() as u64;
    let kv = d.kv_width() as u64;
    let i = d.intermediate_size as u64;
    let at_attention = n * (3 * h + 4 * q + 4 * kv) * F32 + attention_bytes(c, rows, len);
    let at_mlp = n * (3 * h + 4 * i) * F32;
    let working = at_attention.max(at_mlp);
    MemoryPlan {
        items: vec![
            Item {
                what: "process (binary, tokenizer, buffers)",
                bytes: BASE_BYTES,
                counted: true,
            },
            Item {
                what: "weights (f32)",
                bytes: p * F32,
                counted: true,
            },
            Item {
                what: "one layer's activations (no graph kept)",
                bytes: working,
                counted: true,
            },
            Item {
                what: "attention mask",
                bytes: mask_bytes(rows, len),
                counted: true,
            },
            Item {
                what: "loss chunks",
                bytes: loss_bytes(c, n, false),
                counted: true,
            },
        ],
    }
}

/// The memory an inference forward of `rows x len` needs beyond the weights and the
/// process itself (what must be available when it starts).
pub fn inference_working_bytes(c: &dyn ModelConfig, rows: usize, len: usize) -> u64 {
    inference_plan(c, rows, len).items[2..]
        .iter()
        .map(|i| i.bytes)
        .sum()
}

/// The predicted peak of a training run whose largest micro-batch is `s`.
pub fn train_plan(c: &dyn ModelConfig, s: &TrainShape) -> MemoryPlan {
    let p = c.num_parameters() as u64;
    let layers = c.num_hidden_layers() as u64;
    let (rows, len) = (s.rows, s.max_length);
    let n = (rows * len) as u64;
    let h = c.hidden_size() as u64;
    let i = c.dims().intermediate_size as u64;
    let adapter_floats = s.lora.map_or(0, |l| l.floats_per_token(c));
    let counted = n * (layer_floats_per_token(c) + adapter_floats) * F32;
    let per_layer = (counted as f64 * KEPT_PER_COUNTED) as u64 + attention_bytes(c, rows, len);
    // Gradients of one layer's intermediates while its backward runs: the fused
    // attention backward's working set and the residual stream's gradients.
    let transient = attention_backward_bytes(c, rows, len) + n * (4 * h + 2 * i) * F32;
    let full = layers * per_layer + n * h * F32;
    let checkpointed = layers * n * h * F32 + per_layer + n * h * F32;
    // What is trained: every weight, or the adapters only.
    let trained = s.lora.map_or(p, |l| l.params(c));
    let grads = if s.grad_accum > 1 {
        2 * trained * F32
    } else {
        trained * F32
    };
    let loss = match s.lora {
        // A frozen head gets no gradient; it is widened to f32 for the loss when stored
        // narrower.
        Some(l) => {
            let head = (c.vocab_size() * c.hidden_size()) as u64;
            loss_bytes(c, n, true) - head * F32 + if l.weight_bytes < F32 { head * F32 } else { 0 }
        }
        None => loss_bytes(c, n, true),
    };
    let item = |what: &'static str, bytes: u64| Item {
        what,
        bytes,
        counted: true,
    };
    let mut items = vec![item("process (binary, tokenizer, buffers)", BASE_BYTES)];
    match s.lora {
        None => items.push(item("weights (f32)", p * F32)),
        // The frozen base as stored, one projection widened to f32 while it runs, and the
        // adapters' own parameters.
        Some(l) => {
            let d = c.dims();
            let widest = (d.hidden_size.max(d.q_width()) * d.intermediate_size) as u64;
            let narrow = l.weight_bytes < F32;
            items.push(item(
                if narrow {
                    "frozen base weights (as stored, 2 bytes each)"
                } else {
                    "frozen base weights (f32)"
                },
                p * l.weight_bytes,
            ));
            items.push(item(
                "a projection widened to f32 while it runs",
                if narrow { widest * F32 } else { 0 },
            ));
            items.push(item("adapter parameters (f32)", trained * F32));
        }
    }
    let lora = s.lora.is_some();
    items.push(item(
        match (lora, s.grad_accum > 1) {
            (false, false) => "gradients",
            (false, true) => "gradients (+ accumulation buffers)",
            (true, false) => "adapter gradients",
            (true, true) => "adapter gradients (+ accumulation buffers)",
        },
        grads,
    ));
    items.push(item(
        if lora {
            "AdamW moments (adapters)"
        } else {
            "AdamW moments"
        },
        2 * trained * F32,
    ));
    items.push(Item {
        what: "activations, gradient checkpointing",
        bytes: checkpointed,
        counted: s.checkpointing,
    });
    items.push(Item {
        what: "activations, all layers kept",
        bytes: full,
        counted: !s.checkpointing,
    });
    items.push(item("backward working set (one layer)", transient));
    items.push(item("attention mask", mask_bytes(rows, len)));
    items.push(item(
        if lora {
            "loss chunks (frozen head, no gradient)"
        } else {
            "loss chunks and head gradients"
        },
        loss,
    ));
    push_eval(
        c,
        s,
        grads + transient + mask_bytes(rows, len) + loss,
        checkpointed,
        full,
        &mut items,
    );
    MemoryPlan { items }
}

/// Evaluation runs between steps with the gradients freed but the moments kept; it adds to
/// the peak only when it is larger than a step's activations.
fn push_eval(
    c: &dyn ModelConfig,
    s: &TrainShape,
    step_working: u64,
    checkpointed: u64,
    full: u64,
    items: &mut Vec<Item>,
) {
    if let Some(eval_rows) = s.eval_rows {
        let eval = inference_plan(c, eval_rows, s.max_length);
        let eval_extra: u64 = eval.items[2..].iter().map(|i| i.bytes).sum();
        let step_extra = step_working + if s.checkpointing { checkpointed } else { full };
        items.push(Item {
            what: "evaluation batch beyond a training step",
            bytes: eval_extra.saturating_sub(step_extra),
            counted: true,
        });
    }
}

/// Bytes a weight of the model's files takes, from config.json's `dtype` (`torch_dtype` in
/// transformers 4): 2 for bfloat16 and float16, else 4.
pub fn stored_weight_bytes(c: &dyn ModelConfig) -> u64 {
    let raw = c.raw();
    let dtype = raw
        .get("dtype")
        .or_else(|| raw.get("torch_dtype"))
        .and_then(|v| v.as_str())
        .unwrap_or("float32");
    match dtype {
        "bfloat16" | "float16" => 2,
        _ => F32,
    }
}

/// The machine's available memory (`MemAvailable` of /proc/meminfo), if known.
pub fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

fn parse_mem_available(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Changes to a training run that bring its plan under `available` bytes, as flags, the
/// first the one that keeps the most of the run as asked. Packing is never among them: a
/// packed micro-batch is always `rows x max_length`, the worst case an unpacked one is
/// planned for.
pub fn suggestions(c: &dyn ModelConfig, s: &TrainShape, available: u64) -> Vec<String> {
    let fits = |t: &TrainShape| train_plan(c, t).peak() <= available;
    let mut out = Vec::new();
    if !s.checkpointing {
        let t = TrainShape {
            checkpointing: true,
            ..*s
        };
        if fits(&t) {
            out.push("--gradient_checkpointing true".to_string());
        }
    }
    // The same examples per optimizer step in smaller micro-batches.
    let mut rows = s.rows;
    while rows > 1 {
        rows = rows.div_ceil(2);
        let t = TrainShape {
            rows,
            grad_accum: s.grad_accum * s.rows.div_ceil(rows),
            checkpointing: true,
            ..*s
        };
        if fits(&t) {
            let mut flag = format!(
                "--per_device_train_batch_size {rows} --gradient_accumulation_steps {}",
                t.grad_accum
            );
            if !s.checkpointing {
                flag.push_str(" --gradient_checkpointing true");
            }
            out.push(flag);
            break;
        }
    }
    // LoRA adapters on the frozen base instead of training every weight.
    if s.lora.is_none() {
        let cfg = crate::lora::LoraConfig::default();
        let t = TrainShape {
            lora: Some(LoraShape::new(&cfg, stored_weight_bytes(c))),
            checkpointing: true,
            ..*s
        };
        if fits(&t) {
            out.push("--use_peft (LoRA adapters on the frozen base)".to_string());
        }
    }
    let mut len = s.max_length;
    while len > 64 {
        len /= 2;
        let t = TrainShape {
            max_length: len,
            ..*s
        };
        if fits(&t) {
            out.push(format!("--max_length {len}"));
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LlamaConfig;

    fn smollm2() -> LlamaConfig {
        let json = serde_json::json!({
            "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
            "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
            "head_dim": 64, "vocab_size": 49152, "tie_word_embeddings": true,
            "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "max_position_embeddings": 8192
        });
        LlamaConfig::from_value(json).unwrap()
    }

    fn shape(rows: usize, len: usize, checkpointing: bool) -> TrainShape {
        TrainShape {
            rows,
            max_length: len,
            grad_accum: 1,
            checkpointing,
            eval_rows: None,
            lora: None,
        }
    }

    #[test]
    fn checkpointing_keeps_one_layer_of_activations() {
        let c = smollm2();
        let full = train_plan(&c, &shape(8, 1024, false));
        let ckpt = train_plan(&c, &shape(8, 1024, true));
        assert!(
            full.peak() > 3 * ckpt.peak(),
            "{}\n{}",
            full.render(),
            ckpt.render()
        );
        // Weights, gradients and moments: 16 bytes a parameter.
        let fixed: u64 = ckpt.items[1..4].iter().map(|i| i.bytes).sum();
        assert_eq!(fixed, 16 * c.num_parameters() as u64);
        // Twice the rows, about twice the activations.
        let more = train_plan(&c, &shape(16, 1024, true));
        assert!(more.peak() > ckpt.peak() + (ckpt.peak() - fixed - BASE_BYTES) / 2);
    }

    /// The peaks measured in benches/MEMORY.md (MiB, `/usr/bin/time -v`, SmolLM2-135M,
    /// fused attention): the plan is within 15% of each.
    #[test]
    fn plans_match_the_recorded_measurements() {
        let c = smollm2();
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        let cases = [
            (
                "packed 4 x 512",
                train_plan(&c, &shape(4, 512, true)).peak(),
                2793.0,
            ),
            (
                "packed 4 x 512 full",
                train_plan(&c, &shape(4, 512, false)).peak(),
                8109.0,
            ),
            (
                "packed 2 x 1024 full",
                train_plan(&c, &shape(2, 1024, false)).peak(),
                7725.0,
            ),
            (
                "packed 8 x 1024",
                train_plan(&c, &shape(8, 1024, true)).peak(),
                4501.0,
            ),
            (
                "scoring 8 x 1024",
                inference_plan(&c, 8, 1024).peak(),
                1165.0,
            ),
        ];
        for (what, plan, measured) in cases {
            let ratio = mib(plan) / measured;
            println!(
                "{what}: plan {:.0} MiB, measured {measured} MiB, ratio {ratio:.3}",
                mib(plan)
            );
            assert!((0.85..=1.15).contains(&ratio), "{what}: {ratio}");
        }
    }

    #[test]
    fn suggestions_fit_and_name_flags() {
        let c = smollm2();
        let s = shape(8, 1024, false);
        let available = 10u64 << 30;
        assert!(train_plan(&c, &s).peak() > available);
        let tips = suggestions(&c, &s, available);
        assert_eq!(tips[0], "--gradient_checkpointing true");
        assert!(tips.iter().any(|t| t.starts_with("--max_length ")));
        // Nothing fits in 1 GiB: the weights and moments alone take more.
        assert!(suggestions(&c, &s, 1 << 30).is_empty());
    }

    #[test]
    fn lora_plans_count_the_frozen_base_as_stored_and_no_base_gradients() {
        let c = smollm2();
        let cfg = crate::lora::LoraConfig::default();
        let l = LoraShape::new(&cfg, 2);
        // PEFT's count for SmolLM2-135M, r 16 on q_proj and v_proj.
        assert_eq!(l.params(&c), 921_600);
        let full = train_plan(&c, &shape(8, 1024, true));
        let lora = train_plan(
            &c,
            &TrainShape {
                lora: Some(l),
                ..shape(8, 1024, true)
            },
        );
        let p = c.num_parameters() as u64;
        let base = lora
            .items
            .iter()
            .find(|i| i.what.starts_with("frozen base"))
            .unwrap();
        assert_eq!(base.bytes, 2 * p);
        // No base gradients or moments, and half the weight bytes: at least 12 bytes a
        // parameter less.
        assert!(
            full.peak() > lora.peak() + 12 * p,
            "{}\n{}",
            full.render(),
            lora.render()
        );
    }

    #[test]
    fn reads_mem_available() {
        let text = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   22000000 kB\n";
        assert_eq!(parse_mem_available(text), Some(22_000_000 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
    }
}

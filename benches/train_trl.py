"""TRL peer of the training benchmark: PyTorch + TRL SFTTrainer training throughput on CPU
for a SmolLM2-135M-sized llama, on already tokenized synthetic rows.

    HF_HUB_OFFLINE=1 /tmp/trlvenv/bin/python benches/train_trl.py                 (random init, defaults)
    HF_HUB_OFFLINE=1 /tmp/trlvenv/bin/python benches/train_trl.py --model /tmp/smollm2-135m-instruct
    HF_HUB_OFFLINE=1 /tmp/trlvenv/bin/python benches/train_trl.py --steps 2 --seq-len 128   (smoke test)

Options: --seq-len 512 --batch-size 1 --grad-accum 4 --steps 10 --threads <all cores>
--seed 42 --gradient-checkpointing (off by default) --model DIR.

Model: by default a LlamaForCausalLM with SmolLM2-135M's config (hidden 576, intermediate 1536,
30 layers, 9 heads, 3 kv heads, head_dim 64, vocab 49152, tied embeddings, rope_theta 100000,
rms_norm_eps 1e-5, max positions 8192), randomly initialised under torch.manual_seed(seed), in
float32: 134,515,008 parameters. With `--model DIR` it loads that folder in float32 instead (e.g.
the one made by data-samples/models/smollm2_from_gguf.py). The tokenizer (only needed by
SFTTrainer's constructor; nothing is tokenized) is DIR's, or
data-samples/models/smollm2-135m-instruct-tokenizer/.

Data: steps * batch_size * grad_accum rows, each exactly seq_len random token ids in
[0, vocab) (numpy, seeded), as a `datasets.Dataset` with a single `input_ids` column. TRL 1.16's
SFTTrainer takes a dataset with `input_ids` as already processed and skips tokenization and
chat templating; it still runs three cheap `map`/`filter` passes in its constructor (labels = copy
of input_ids, truncation to max_length = seq_len, drop fully masked rows), all untimed. The script
checks that the prepared rows are the original ids unchanged. No packing (rows are already
of equal length), no padding happens, loss on every token (TRL's default for non-conversational
rows).

Training arguments (SFTConfig): learning_rate 5e-5 (linear decay, no warm-up), optimizer =
transformers' default (adamw_torch_fused with torch >= 2.8), weight decay 0, max_grad_norm 1.0,
float32 (bf16=False: TRL's SFTConfig defaults to bf16=True), gradient_checkpointing False
unless --gradient-checkpointing (TRL's SFTConfig defaults to True), use_cpu=True,
dataloader_num_workers=0, no eval, no saving, report_to none, logging every step (printed on
stderr with the step's wall time). SFTTrainer's loss path is its own: a fused LM head that
computes log-probs, entropy and top-1 accuracy in chunks, without materialising the
full [tokens, vocab] logits.

Timing: wall-clock time from the end of optimizer step 1 (warm-up: allocator, first-touch,
optimizer state creation) to the end of the last step, via a TrainerCallback (`on_step_end`).
It includes the batch collation, forward, backward, gradient clipping, optimizer step and the
per-step logging of steps 2..N; not model build, dataset build, trainer construction or step 1.
tokens = seq_len * batch_size * grad_accum * (steps - 1), the tokens in the timed micro-batches.
peak_rss_mb = the process's maximum resident set size (getrusage), over the whole run.

Output (stdout), one JSON line:
    {"tool": "trl", "tokens_per_s": ..., "seconds_per_step": ..., "seq_len": 512, "batch": 1,
     "grad_accum": 4, "steps": 10, "threads": 2, "peak_rss_mb": ..., ...}
`steps` is the number of optimizer steps run (the first one untimed). Extra keys: timed_steps,
timed_tokens, model, gradient_checkpointing, optim, loadavg_1m (before, after), versions.

Run it on an otherwise idle machine: with `threads` = all cores, any other busy process makes
torch's OpenMP threads wait for each other, and the time per step can grow by 10x (seen on a
2-core machine while rustc was compiling: one 128-token forward+backward took 2.1 s with 1
thread and 25.6 s with 2). `loadavg_1m` in the output shows whether that happened.

Setup (Python 3.11, a throwaway virtualenv, PyPI only, CPU torch), as benches/prepare_trl.py:

    python3 -m venv /tmp/trlvenv
    /tmp/trlvenv/bin/pip install trl==1.16.0 transformers==5.24.0 torch==2.15.0 \
        datasets==5.2.0 tokenizers==0.23.3 accelerate==1.15.0 jinja2==3.1.6
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
TOKENIZER_DIR = REPO / "data-samples" / "models" / "smollm2-135m-instruct-tokenizer"

SMOLLM2_135M = dict(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    head_dim=64,
    hidden_act="silu",
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    rope_theta=100000.0,
    tie_word_embeddings=True,
    attention_bias=False,
    mlp_bias=False,
    initializer_range=0.041666666666666664,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=2,
    use_cache=False,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="Hugging Face model folder (default: random SmolLM2-135M-sized llama)")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--grad-accum", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10, help="optimizer steps; the first is not timed")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--gradient-checkpointing", action="store_true")
    args = ap.parse_args()
    if args.steps < 2:
        sys.exit("--steps must be >= 2 (the first step is warm-up and not timed)")

    import numpy as np
    import torch

    loadavg = os.getloadavg()
    torch.set_num_threads(args.threads)

    import datasets
    import transformers
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from transformers import PrinterCallback, ProgressCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    datasets.disable_caching()
    datasets.disable_progress_bars()

    # Model
    if args.model:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
        tok_dir = args.model
    else:
        torch.manual_seed(args.seed)
        config = LlamaConfig(**SMOLLM2_135M)
        model = LlamaForCausalLM(config).to(torch.float32)
        tok_dir = str(TOKENIZER_DIR)
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    model.config.use_cache = False
    n_params = sum(p.numel() for p in model.parameters())
    vocab = model.config.vocab_size

    # Data: already tokenized rows of exactly seq_len tokens.
    rows = args.steps * args.batch_size * args.grad_accum
    rng = np.random.default_rng(args.seed)
    ids = rng.integers(0, vocab, size=(rows, args.seq_len), dtype=np.int64)
    ds = datasets.Dataset.from_dict({"input_ids": ids.tolist()})

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, a, state, control, **kw):
            self.ends.append(time.perf_counter())

        def on_log(self, a, state, control, logs=None, **kw):
            logs = {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in (logs or {}).items()}
            if "loss" not in logs:  # the end-of-training summary
                print(f"train summary: {logs}", file=sys.stderr, flush=True)
                return
            dt = self.ends[-1] - self.ends[-2] if len(self.ends) >= 2 else float("nan")
            print(f"step {state.global_step}: {dt:.2f} s since previous step end, {logs}",
                  file=sys.stderr, flush=True)

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out_dir:
        cfg = SFTConfig(
            output_dir=out_dir,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            gradient_accumulation_steps=args.grad_accum,
            learning_rate=5e-5,
            lr_scheduler_type="linear",
            warmup_steps=0,
            weight_decay=0.0,
            max_grad_norm=1.0,
            bf16=False,
            fp16=False,
            # transformers 5.24 renamed gradient_checkpointing (TRL's default: True) to
            # activation_checkpointing; setting the new name overrides TRL's default, no warning.
            activation_checkpointing=args.gradient_checkpointing,
            use_cpu=True,
            dataloader_num_workers=0,
            packing=False,
            max_length=args.seq_len,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="steps",
            logging_steps=1,
            report_to="none",
            disable_tqdm=True,
            seed=args.seed,
            dataset_num_proc=None,
        )
        trainer = SFTTrainer(
            model=model, args=cfg, train_dataset=ds, processing_class=tokenizer,
            callbacks=[timer],
        )
        trainer.remove_callback(PrinterCallback)
        assert cfg.gradient_checkpointing == args.gradient_checkpointing and not cfg.bf16
        optim = getattr(cfg.optim, "value", cfg.optim)
        trainer.remove_callback(ProgressCallback)

        # TRL must have taken the rows as already tokenized: same ids, labels = ids, no new rows.
        prepared = trainer.train_dataset
        assert set(prepared.column_names) == {"input_ids", "labels"}, prepared.column_names
        assert len(prepared) == rows, len(prepared)
        assert prepared[0]["input_ids"] == ds[0]["input_ids"] == prepared[0]["labels"]
        assert prepared[rows - 1]["input_ids"] == ds[rows - 1]["input_ids"]

        print(
            f"trl {trl.__version__}, transformers {transformers.__version__}, torch {torch.__version__}, "
            f"model {'random init' if not args.model else args.model} ({n_params:,} params, float32), "
            f"optim {optim}, gradient_checkpointing {cfg.gradient_checkpointing}, "
            f"threads {torch.get_num_threads()}, {rows} rows x {args.seq_len} tokens, "
            f"load average {loadavg[0]:.2f} on {os.cpu_count()} cores",
            file=sys.stderr, flush=True,
        )
        trainer.train()
        # the Trainer switches checkpointing on inside train()
        m = trainer.model
        on = getattr(m, "is_activation_checkpointing", None)
        on = m.is_gradient_checkpointing if on is None else on
        assert on == args.gradient_checkpointing, on
    loadavg_after = os.getloadavg()

    assert len(timer.ends) == args.steps, timer.ends
    timed_steps = args.steps - 1
    seconds = timer.ends[-1] - timer.ends[0]
    tokens = args.seq_len * args.batch_size * args.grad_accum * timed_steps
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "tool": "trl",
        "tokens_per_s": round(tokens / seconds, 2),
        "seconds_per_step": round(seconds / timed_steps, 4),
        "seq_len": args.seq_len,
        "batch": args.batch_size,
        "grad_accum": args.grad_accum,
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "timed_steps": timed_steps,
        "timed_tokens": tokens,
        "model": args.model or "random-init",
        "gradient_checkpointing": bool(cfg.gradient_checkpointing),
        "optim": optim,
        # 1-minute load average before and after: other work on the machine makes the numbers
        # meaningless (OpenMP threads fight for the cores), so check these are ~0 and ~threads.
        "loadavg_1m": [round(loadavg[0], 2), round(loadavg_after[0], 2)],
        "versions": {"trl": trl.__version__, "transformers": transformers.__version__,
                     "torch": torch.__version__},
    }), flush=True)


if __name__ == "__main__":
    main()

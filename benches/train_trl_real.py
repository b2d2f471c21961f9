"""TRL peer of the real-length memory benchmark (benches/memory.sh): SFTTrainer at its own
defaults on a conversational JSON-lines file, on the CPU in float32.

    HF_HUB_OFFLINE=1 /tmp/trlvenv/bin/python benches/train_trl_real.py --model DIR \\
        --dataset FILE.jsonl [--steps 2] [--batch-size 8] [--max-length 1024] \\
        [--no-gradient-checkpointing] [--packing] [--peft [--lora-targets all-linear]]

What is set: per_device_train_batch_size, max_length, max_steps, packing (default False, as
TRL), gradient checkpointing (default on, as TRL 1.16; transformers 5.24 calls it
activation_checkpointing), bf16=False (the CPU runs float32 here, as sft-train), use_cpu,
no eval, no saving, logging every step. Everything else is SFTConfig's default
(learning_rate 2e-5, linear schedule, AdamW, max_grad_norm 1.0, the chat template of the
model's tokenizer, loss on every token of a conversation).

With --peft: LoRA adapters as `trl sft --use_peft` makes them (peft's LoraConfig with TRL
1.16's ModelConfig defaults: r 16, alpha 32, dropout 0.05, task CAUSAL_LM, PEFT's default
target modules for the model type unless --lora-targets), the base frozen in float32.

Prints one JSON line: peak_rss_mb (getrusage, the whole process), seconds of train(),
the tokens trained, versions. `/usr/bin/time -v` around it gives the same peak.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--no-gradient-checkpointing", action="store_true")
    ap.add_argument("--packing", action="store_true")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--peft", action="store_true")
    ap.add_argument("--lora-targets", default=None)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import datasets
    import transformers
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, ProgressCallback
    from trl import SFTConfig, SFTTrainer

    datasets.disable_caching()
    datasets.disable_progress_bars()
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    ds = datasets.load_dataset("json", data_files=args.dataset, split="train")
    ckpt = not args.no_gradient_checkpointing
    with tempfile.TemporaryDirectory() as out_dir:
        cfg = SFTConfig(
            output_dir=out_dir,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            max_length=args.max_length,
            packing=args.packing,
            activation_checkpointing=ckpt,
            bf16=False,
            fp16=False,
            use_cpu=True,
            dataloader_num_workers=0,
            eval_strategy="no",
            save_strategy="no",
            logging_steps=1,
            report_to="none",
            disable_tqdm=True,
            include_num_input_tokens_seen="non_padding",
        )
        peft_config = None
        if args.peft:
            from peft import LoraConfig

            peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
                                     target_modules=args.lora_targets)
        trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tokenizer,
                             peft_config=peft_config)
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        assert cfg.gradient_checkpointing == ckpt
        started = time.perf_counter()
        out = trainer.train()
        seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "tool": "trl",
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "train_seconds": round(seconds, 1),
        "train_loss": out.training_loss,
        "tokens_seen": int(trainer.state.num_input_tokens_seen),
        "peft": args.peft,
        "steps": args.steps,
        "batch": args.batch_size,
        "max_length": args.max_length,
        "packing": args.packing,
        "gradient_checkpointing": ckpt,
        "threads": torch.get_num_threads(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "versions": {"trl": trl.__version__, "transformers": transformers.__version__,
                     "torch": torch.__version__},
    }), flush=True)


if __name__ == "__main__":
    main()

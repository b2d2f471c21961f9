"""A seeded random llama model shaped like a published one, written as a Hugging Face folder
in bfloat16 (as the Hub's SmolLM2 files are), with a tokenizer copied from another folder:
for benchmarks of sizes this repository cannot ship (LoRA on a 1.7B-shaped model).

    /tmp/trlvenv/bin/python benches/make_random_model.py OUT_DIR [--shape smollm2-1.7b] \\
        [--tokenizer data-samples/models/smollm2-135m-instruct-tokenizer] [--seed 0]

Shapes are the config.json values of the published models (architecture only; the weights
are transformers' own initialisation, normal(0, 0.02), seeded).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

SHAPES = {
    # HuggingFaceTB/SmolLM2-1.7B-Instruct's config.json
    "smollm2-1.7b": dict(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
        num_key_value_heads=32, vocab_size=49152, max_position_embeddings=8192,
        rope_theta=130000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
        bos_token_id=1, eos_token_id=2, pad_token_id=2,
    ),
    # HuggingFaceTB/SmolLM2-360M-Instruct's config.json
    "smollm2-360m": dict(
        hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15,
        num_key_value_heads=5, vocab_size=49152, max_position_embeddings=8192,
        rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
        bos_token_id=1, eos_token_id=2, pad_token_id=2,
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--shape", default="smollm2-1.7b", choices=sorted(SHAPES))
    ap.add_argument("--tokenizer", default="data-samples/models/smollm2-135m-instruct-tokenizer")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(args.seed)
    config = LlamaConfig(**SHAPES[args.shape])
    with torch.device("cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    out = Path(args.out)
    model.save_pretrained(out, safe_serialization=True)
    for f in Path(args.tokenizer).iterdir():
        if f.is_file():
            shutil.copy(f, out / f.name)
    n = sum(p.numel() for p in model.parameters())
    print(f"{out}: {args.shape}, {n / 1e9:.3f} B parameters, bfloat16")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Training throughput on CPU for a SmolLM2-135M-sized llama: this project against PyTorch + TRL's
# SFTTrainer, same shapes (pre-tokenized rows of --seq-len random ids, --batch-size rows per
# micro-batch, --grad-accum micro-batches per optimizer step, --steps optimizer steps, the
# first untimed), float32, all cores. Each side prints one JSON line
# ({"tool": ..., "tokens_per_s": ..., "seconds_per_step": ..., "peak_rss_mb": ..., ...}).
#
#     bash benches/train.sh [--seq-len 512] [--batch-size 1] [--grad-accum 4] [--steps 10] [--model DIR]
#     PYTHON=/path/to/venv/bin/python bash benches/train.sh ...     (default /tmp/trlvenv/bin/python)
#
# Run it on an idle machine (see benches/train_trl.py: with all cores in use, any other busy
# process makes the step time swing by up to 10x). The real model folder for --model comes from
# data-samples/models/smollm2_from_gguf.py (default /tmp/smollm2-135m-instruct).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/tmp/trlvenv/bin/python}

cargo build --release --quiet -p sft-benches --bin train-bench
echo "== sft (candle) $*" >&2
target/release/train-bench "$@"

echo "== TRL (PyTorch) $*" >&2
HF_HUB_OFFLINE=1 "$PYTHON" benches/train_trl.py "$@"

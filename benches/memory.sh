#!/usr/bin/env bash
# Peak memory at real lengths (issue 11): sft-train and sft-eval on conversations whose token
# lengths follow real SFT data (benches/gen_real_lengths.py: median ~380, p90 ~730, ~2-3%
# over the 1,024 cap), SmolLM2-135M-Instruct, float32, all cores; optionally TRL's
# SFTTrainer and transformers' scoring on the same files.
#
#     bash benches/memory.sh [MODEL_DIR] [CONFIGS...]
#     (default /tmp/smollm2-135m-instruct, every config below)
#     PYTHON=/path/to/venv/bin/python STEPS=2 TRL=1 bash benches/memory.sh ...
#
# Configs (each one process under /usr/bin/time -v; one at a time, never in parallel):
#   defaults        sft-train at TRL's defaults: batch 8, max_length 1024, unpacked,
#                   gradient checkpointing on (batches are padded to their longest row)
#   defaults-full   the same with --gradient_checkpointing false (TRL's defaults otherwise)
#   packed-8x1024   batch 8, max_length 1024, packed (bfd), checkpointing on
#   packed-2x1024-full  batch 2, max_length 1024, packed, checkpointing off
#   packed-4x512    batch 4, max_length 512, packed, checkpointing on
#   packed-4x512-full   the same, checkpointing off
#   plan-full       --dry_run of the defaults with checkpointing off (the plan only: the run
#                   would not fit in 24 GB, and sft-train refuses it)
#   eval            sft-eval held-out scoring at batch 8 on 64 rows (no generation)
#   trl-defaults    TRL 1.16 at its defaults (benches/train_trl_real.py; needs the venv)
#   trl-packed-4x512 / trl-packed-4x512-full   TRL packed 4 x 512 with / without checkpointing
#   hf-eval         transformers scoring at batch 8 (benches/eval_transformers.py)
# Packed micro-batches are exactly batch x max_length tokens, the shape the memory plan
# predicts for; unpacked ones are as long as their longest row, at most max_length.
# Each prints one line: config, exit status, peak RSS (MiB, "Maximum resident set size"),
# wall time, training seconds, tokens and tokens/s (sft-train and TRL), and for sft-train the
# memory plan's predicted peak (the last plan printed: for an unpacked run, the one at the
# data's largest micro-batch).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/tmp/trlvenv/bin/python}
STEPS=${STEPS:-2}
model=${1:-/tmp/smollm2-135m-instruct}
shift || true
configs=("$@")
if [ ${#configs[@]} -eq 0 ]; then
  configs=(defaults packed-8x1024 packed-2x1024-full packed-4x512 packed-4x512-full plan-full eval)
  if [ "${TRL:-0}" = 1 ]; then
    configs+=(trl-defaults trl-packed-4x512 trl-packed-4x512-full hf-eval)
  fi
fi

cargo build --release -q -p sft-cli --bin sft-train --bin sft-eval
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
# 64 rows (27k tokens): enough for 2 steps of 8 packed rows of 1,024.
"$PYTHON" benches/gen_real_lengths.py "$work/train.jsonl" 64 --seed 0 >&2
"$PYTHON" benches/gen_real_lengths.py "$work/heldout.jsonl" 64 --seed 1 >&2

# measure NAME CMD...: one line per config (benches/measure.sh).
source benches/measure.sh

train() {
  local name=$1
  shift
  measure "$name" target/release/sft-train --model_name_or_path "$model" \
    --dataset_name "$work/train.jsonl" --output_dir "$work/out-$name" \
    --max_steps "$STEPS" --save_strategy no --logging_steps 1 "$@"
}

for c in "${configs[@]}"; do
  case $c in
    defaults) train defaults ;;
    # The plan assumes every batch at max_length (an upper bound unpacked) and would refuse.
    defaults-full) train defaults-full --gradient_checkpointing false --memory_check false ;;
    packed-8x1024) train packed-8x1024 --packing ;;
    packed-2x1024-full) train packed-2x1024-full --per_device_train_batch_size 2 --packing \
      --gradient_checkpointing false ;;
    packed-4x512) train packed-4x512 --per_device_train_batch_size 4 --max_length 512 --packing ;;
    packed-4x512-full) train packed-4x512-full --per_device_train_batch_size 4 --max_length 512 \
      --packing --gradient_checkpointing false ;;
    plan-full) measure plan-full target/release/sft-train --model_name_or_path "$model" \
      --gradient_checkpointing false --dry_run ;;
    eval) measure eval target/release/sft-eval --checkpoint "$model" \
      --dataset "$work/heldout.jsonl" --batch-size 8 --max-samples 0 --report "$work/eval.json" ;;
    trl-defaults) measure trl-defaults "$PYTHON" benches/train_trl_real.py --model "$model" \
      --dataset "$work/train.jsonl" --steps "$STEPS" ;;
    trl-packed-4x512) measure trl-packed-4x512 "$PYTHON" benches/train_trl_real.py --model "$model" \
      --dataset "$work/train.jsonl" --steps "$STEPS" --batch-size 4 --max-length 512 --packing ;;
    trl-packed-4x512-full) measure trl-packed-4x512-full "$PYTHON" benches/train_trl_real.py --model "$model" \
      --dataset "$work/train.jsonl" --steps "$STEPS" --batch-size 4 --max-length 512 --packing \
      --no-gradient-checkpointing ;;
    hf-eval) measure hf-eval "$PYTHON" benches/eval_transformers.py --model "$model" \
      --dataset "$work/heldout.jsonl" --max-samples 0 --batch-size 8 ;;
    *) echo "unknown config $c" >&2; exit 2 ;;
  esac
done
echo "logs in $work" >&2

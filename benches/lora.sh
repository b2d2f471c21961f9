#!/usr/bin/env bash
# LoRA side by side (issue 13): sft-train --use_peft and TRL 1.16 + PEFT 0.21 (SFTTrainer with
# peft_config) on the same real-length conversations (benches/gen_real_lengths.py), the same
# model and batch shape, r 16 / alpha 32 / dropout 0.05 on q_proj and v_proj (TRL's and
# PEFT's defaults), float32 compute, all cores; then LoRA steps on a seeded random model
# shaped like SmolLM2-1.7B (bf16 weights on disk, benches/make_random_model.py) with its
# memory plan next to the measured peak, and the plan of a full fine-tune of it (refused).
#
#     bash benches/lora.sh [MODEL_DIR] [CONFIGS...]      (default /tmp/smollm2-135m-instruct)
#     PYTHON=/path/to/venv/bin/python STEPS=4 bash benches/lora.sh
#
# Configs, each one process under /usr/bin/time -v, one at a time:
#   ours-defaults / trl-defaults   batch 8, max_length 1024, unpacked, checkpointing on
#   ours-packed / trl-packed       batch 4, max_length 512, packed (bfd), checkpointing on
#   big-lora    the 1.7B-shaped model, batch 1 x 1024 packed, checkpointing on, 1 step
#   big-full-plan   --dry_run of a full fine-tune of the 1.7B-shaped model at 1 x 1024
# Prints per config: exit status, peak RSS (MiB), train seconds, tokens, tokens/s, the plan.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/tmp/trlvenv/bin/python}
STEPS=${STEPS:-4}
model=${1:-/tmp/smollm2-135m-instruct}
shift || true
configs=("$@")
if [ ${#configs[@]} -eq 0 ]; then
  configs=(ours-defaults trl-defaults ours-packed trl-packed big-full-plan big-lora)
fi
big=${BIG:-/tmp/random-smollm2-1.7b}

cargo build --release -q -p sft-cli --bin sft-train
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
"$PYTHON" benches/gen_real_lengths.py "$work/train.jsonl" 64 --seed 0 >&2

# measure NAME CMD...: one line per config (benches/measure.sh).
source benches/measure.sh

ours() {
  local name=$1 m=$2
  shift 2
  measure "$name" target/release/sft-train --model_name_or_path "$m" --use_peft \
    --dataset_name "$work/train.jsonl" --output_dir "$work/out-$name" \
    --max_steps "$STEPS" --save_strategy no --logging_steps 1 "$@"
}

trl() {
  local name=$1
  shift
  measure "$name" "$PYTHON" benches/train_trl_real.py --model "$model" --peft \
    --dataset "$work/train.jsonl" --steps "$STEPS" "$@"
}

for c in "${configs[@]}"; do
  case $c in
    ours-defaults) ours ours-defaults "$model" ;;
    trl-defaults) trl trl-defaults ;;
    ours-packed) ours ours-packed "$model" --per_device_train_batch_size 4 --max_length 512 --packing ;;
    trl-packed) trl trl-packed --batch-size 4 --max-length 512 --packing ;;
    big-lora)
      [ -d "$big" ] || "$PYTHON" benches/make_random_model.py "$big" >&2
      STEPS=${BIG_STEPS:-1} ours big-lora "$big" --per_device_train_batch_size 1 --packing ;;
    big-full-plan)
      [ -d "$big" ] || "$PYTHON" benches/make_random_model.py "$big" >&2
      measure big-full-plan target/release/sft-train --model_name_or_path "$big" \
        --per_device_train_batch_size 1 --packing --dry_run ;;
    *) echo "unknown config $c" >&2; exit 2 ;;
  esac
done
echo "logs in $work" >&2

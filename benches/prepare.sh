#!/usr/bin/env bash
# `sft-data prepare` against TRL's dataset preparation on the same conversations, the same
# SmolLM2 tokenizer and the same 2 cores: wall time and peak memory (GNU time).
#
#     bash benches/prepare.sh [ROWS]                  (this project only)
#     PYTHON=/path/to/venv/bin/python bash benches/prepare.sh [ROWS]   (and TRL: pip install trl)
set -euo pipefail
rows=${1:-20000}
cargo build --release --quiet -p sft-cli -p sft-benches
mkdir -p target/bench-data
data=target/bench-data/chat-notools-100mb.jsonl
[ -f "$data" ] || target/release/gen-conversations "$data" 100 --no-tools
sample=target/bench-data/chat-notools-${rows}.jsonl
head -n "$rows" "$data" > "$sample"
tok=data-samples/models/smollm2-135m-instruct-tokenizer
for packing in none bfd; do
  echo "== sft-data prepare, $rows rows, packing $packing"
  /usr/bin/time -f '%e s %M KB' target/release/sft-data prepare "$sample" --tokenizer "$tok" \
    --max-length 1024 --packing "$packing" -o target/bench-data/prepared-$packing.parquet --quiet
  if [ -n "${PYTHON:-}" ]; then
    echo "== TRL, $rows rows, packing $packing"
    args=(); [ "$packing" = bfd ] && args=(--packing bfd)
    /usr/bin/time -f '%e s %M KB' "$PYTHON" benches/prepare_trl.py "$sample" "$rows" "${args[@]}" --num-proc 2 2>&1 | grep -v PyTorch
  fi
done

#!/usr/bin/env bash
# Chat-template rendering on one core: this project against Python transformers, same
# conversations (20,000 generated ones), same templates.
#
#     pip install transformers jinja2 && bash benches/render.sh [ROWS]
set -euo pipefail
rows=${1:-20000}
cargo build --release --quiet -p sft-benches
data=target/bench-data/conversations-500mb.jsonl
mkdir -p target/bench-data
[ -f "$data" ] || target/release/gen-conversations "$data" 500
python=${PYTHON:-python3}
for template in qwen2.5 llama3.2 smollm3 qwen3 chatml; do
  taskset -c 0 target/release/render-bench "$data" "$template" "$rows"
  taskset -c 0 "$python" benches/render_transformers.py "$data" "$template" "$rows" 2>&1 | grep -v PyTorch
done

#!/usr/bin/env bash
# Evaluation throughput on CPU: `sft-eval` (this project, candle) against PyTorch + transformers
# (benches/eval_transformers.py), same checkpoint, same held-out file, float32, all cores.
#
#     bash benches/eval.sh [MODEL_DIR] [DATASET] [N] [M] [B]
#     (defaults: /tmp/smollm2-135m-instruct data-samples/formats/messages.jsonl 16 64 8)
#     PYTHON=/path/to/venv/bin/python bash benches/eval.sh ...   (default /tmp/trlvenv/bin/python)
#
# Both sides do the same two timed jobs:
#  - held-out scoring: every row of DATASET ("messages" rows rendered with the model's chat
#    template and tokenized as TRL does, loss on every token, truncated to 1024 tokens), B rows
#    per forward pass, right-padded; loss = token-weighted mean cross-entropy.
#    scoring_tokens_per_s = input tokens (padding not counted) / seconds of scoring.
#  - generation: the first N rows with a prompt (the conversation before its last assistant
#    message, rendered with add_generation_prompt=True), B prompts per batch, left-padded,
#    greedy, at most M new tokens, stop at EOS id 2, KV cache.
#    generation_new_tokens_per_s = new tokens (up to and including EOS) / seconds of generation.
# sft-eval: target/release/sft-eval --checkpoint MODEL_DIR --dataset DATASET --max-samples N
#   --max-new-tokens M --batch-size B --report OUT.json; its line is read from the report
#   (checkpoints[0].heldout and .generation; scoring_tokens = heldout.tokens_per_second *
#   heldout.seconds, loss_tokens = heldout.tokens).
# transformers: benches/eval_transformers.py (model(input_ids, attention_mask) under no_grad
#   for scoring, model.generate(do_sample=False, ...) for generation; see its docstring).
# Neither side times model loading, rendering or tokenization, and neither warms up. Each side
# prints one JSON line with the same keys:
#   {"tool": "sft"|"transformers", "scoring_tokens_per_s", "scoring_seconds", "scoring_tokens",
#    "generation_new_tokens_per_s", "generation_seconds", "new_tokens", "loss", "loss_tokens",
#    "rows", "samples", ...}
# loss and loss_tokens should agree between the two lines (same rows, same model), and
# new_tokens nearly always (greedy decoding can part ways on near-ties of float32 logits).
#
# Each side runs under /usr/bin/time -v; its peak RSS ("Maximum resident set size", the whole
# process: model, data, scoring and generation) is added to its line as peak_rss_mb.
#
# Run it on an idle machine: both sides use every core, and any other busy process (a compile,
# another benchmark) makes their threads wait for each other and the times swing widely.
# The real model folder comes from data-samples/models/smollm2_from_gguf.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/tmp/trlvenv/bin/python}
model=${1:-/tmp/smollm2-135m-instruct}
dataset=${2:-data-samples/formats/messages.jsonl}
n=${3:-16}
m=${4:-64}
b=${5:-8}

cargo build --release -q -p sft-cli --bin sft-eval

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== sft-eval (candle) $model $dataset N=$n M=$m B=$b" >&2
/usr/bin/time -v -o "$tmp/sft.time" target/release/sft-eval --checkpoint "$model" \
  --dataset "$dataset" --max-samples "$n" \
  --max-new-tokens "$m" --batch-size "$b" --report "$tmp/report.json" -q || status=$?
if [ ! -s "$tmp/report.json" ]; then
  echo "sft-eval wrote no report (exit ${status:-0})" >&2
  exit 1
fi
python3 -c '
import json, os, sys
c = json.load(open(sys.argv[1]))["checkpoints"][0]
h = c.get("heldout") or {}
g = c.get("generation") or {}
tps, secs = h.get("tokens_per_second"), h.get("seconds")
print(json.dumps({
    "tool": "sft",
    "scoring_tokens_per_s": tps,
    "scoring_seconds": secs,
    "scoring_tokens": round(tps * secs) if tps is not None and secs is not None else None,
    "generation_new_tokens_per_s": g.get("tokens_per_second"),
    "generation_seconds": g.get("seconds"),
    "new_tokens": g.get("new_tokens"),
    "loss": h.get("loss"),
    "loss_tokens": h.get("tokens"),
    "rows": h.get("rows"),
    "samples": g.get("samples"),
    "batch_size": int(sys.argv[2]),
    "max_new_tokens": int(sys.argv[3]),
    "loadavg_1m": os.getloadavg()[0],
    "peak_rss_mb": round(int(next(l for l in open(sys.argv[4]) if "Maximum resident" in l).split(":")[1]) / 1024),
}))
' "$tmp/report.json" "$b" "$m" "$tmp/sft.time"

echo "== transformers (PyTorch) $model $dataset N=$n M=$m B=$b" >&2
HF_HUB_OFFLINE=1 /usr/bin/time -v -o "$tmp/hf.time" "$PYTHON" benches/eval_transformers.py \
  --model "$model" --dataset "$dataset" \
  --max-samples "$n" --max-new-tokens "$m" --batch-size "$b" >"$tmp/hf.json"
python3 -c '
import json, sys
line = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
line["peak_rss_mb"] = round(int(next(l for l in open(sys.argv[2]) if "Maximum resident" in l).split(":")[1]) / 1024)
print(json.dumps(line))
' "$tmp/hf.json" "$tmp/hf.time"

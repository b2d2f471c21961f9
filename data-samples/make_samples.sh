#!/usr/bin/env bash
# Regenerates data-samples/formats/ (small datasets in each of the four formats) from the
# real published files in data-samples/real/, with the project's own converter.
# The broken files in data-samples/broken/ are written by make_broken.py.
# Run from the repository root: bash data-samples/make_samples.sh
set -euo pipefail
cargo build --quiet --bin sft-data
sft=target/debug/sft-data
out=data-samples/formats
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"

# Slices of the real files, so the samples stay small.
python3 - "$tmp" <<'PY'
import json, sys
tmp = sys.argv[1]
alpaca = json.load(open("data-samples/real/alpaca_en_demo.json"))
json.dump(alpaca[:40], open(f"{tmp}/alpaca.json", "w"), ensure_ascii=False, indent=1)
sharegpt = json.load(open("data-samples/real/sharegpt_fastchat_dummy_conversation.json"))
json.dump(sharegpt[100:140], open(f"{tmp}/sharegpt.json", "w"), ensure_ascii=False, indent=1)
glaive = json.load(open("data-samples/real/glaive_toolcall_en_demo.json"))
json.dump(glaive[:20], open(f"{tmp}/glaive.json", "w"), ensure_ascii=False, indent=1)
PY

$sft convert "$tmp/alpaca.json" --to prompt-completion -o "$out/prompt_completion.jsonl" -q
$sft convert "$tmp/sharegpt.json" --to messages -o "$out/messages.jsonl" -q
$sft convert "$tmp/glaive.json" --from sharegpt --to messages -o "$out/messages_tools.jsonl" -q
$sft convert "$tmp/sharegpt.json" --to conversational-prompt-completion -o "$out/conversational_prompt_completion.jsonl" -q
$sft convert data-samples/real/rawtext_tinystories_sample.txt --text-split '<|endoftext|>' --to text -o "$out/text.jsonl" -q
$sft convert "$tmp/alpaca.json" --to messages -o "$out/messages.parquet" -q

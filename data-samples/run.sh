#!/usr/bin/env bash
# The main job on the bundled samples, end to end, no download and no GPU:
#   1. check every sample dataset (the four formats, the real published files),
#   2. convert the real Alpaca, ShareGPT, tool-calling and OpenAI files to training formats,
#   3. check what was written, with a JSON report,
#   4. tokenize, mask and pack the Alpaca conversations for training; show an example,
#   5. fine-tune the tiny seeded llama in data-samples/models on them (CPU, f32),
#   6. evaluate its checkpoints (held-out loss, generated samples, loss-curve diagnosis),
#   7. show what check says about a deliberately broken dataset.
# Run from the repository root: bash data-samples/run.sh   (outputs go to target/samples/)
set -uo pipefail
cargo build --release --quiet --bin sft-data || exit 1
sft=target/release/sft-data
out=target/samples
mkdir -p "$out"
status=0
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "check the samples in the four formats"
$sft check data-samples/formats --color never --quiet --report "$out/formats-report.json"
echo "data-samples/formats: exit $? (mixed formats across files, so 1 is expected); report: $out/formats-report.json"
for f in data-samples/formats/*.jsonl; do
  $sft check "$f" --quiet && echo "ok  $f" || { echo "FAILED $f"; status=1; }
done

step "convert the real files"
$sft convert data-samples/real/alpaca_en_demo.json --to messages -o "$out/alpaca.jsonl" || status=1
$sft convert data-samples/real/sharegpt_fastchat_dummy_conversation.json --to conversational-prompt-completion -o "$out/sharegpt.parquet" || status=1
$sft convert data-samples/real/glaive_toolcall_en_demo.json --from sharegpt --to messages -o "$out/glaive.jsonl" || status=1
$sft convert data-samples/real/openai_toy_chat_fine_tuning.jsonl --to prompt-completion -o "$out/openai.jsonl" || status=1
$sft convert data-samples/real/rawtext_tinystories_sample.txt --text-split '<|endoftext|>' --to text -o "$out/tinystories.jsonl" || status=1

step "check the converted data"
$sft check "$out/alpaca.jsonl" "$out/glaive.jsonl" --report "$out/converted-report.json" --color never || status=1

step "tokenize, mask and pack for training (SmolLM2 tokenizer), and look at one example"
tok=data-samples/models/smollm2-135m-instruct-tokenizer
$sft check "$out/alpaca.jsonl" --tokenizer $tok --max-length 512 --quiet --report "$out/alpaca-tokens-report.json" || status=1
$sft prepare "$out/alpaca.jsonl" --tokenizer $tok --max-length 512 --packing bfd -o "$out/alpaca-train.parquet" || status=1
$sft show "$out/alpaca.jsonl" --tokenizer $tok --rows 0 --color never || status=1
$sft show "$out/alpaca.jsonl" --tokenizer $tok --html "$out/alpaca.html" || status=1

step "fine-tune the tiny llama on the packed Alpaca rows (CPU, under a minute; loss falls from 10.8)"
cargo build --release --quiet --bin sft-train --bin sft-eval || exit 1
rm -rf "$out/tiny-sft"
target/release/sft-train --model_name_or_path data-samples/models/tiny-llama \
  --dataset_name "$out/alpaca-train.parquet" --output_dir "$out/tiny-sft" \
  --eval_dataset data-samples/formats/messages.jsonl --eval_strategy steps --eval_steps 10 \
  --save_steps 10 --per_device_train_batch_size 2 --learning_rate 3e-3 \
  --lr_scheduler_type cosine --warmup_steps 3 --max_steps 40 --logging_steps 5 || status=1
echo "model, checkpoints, metrics.jsonl and loss.svg: $out/tiny-sft"

step "evaluate every checkpoint: held-out loss, generated samples, loss-curve diagnosis"
target/release/sft-eval --run "$out/tiny-sft" --dataset data-samples/formats/messages.jsonl \
  --max-samples 4 --max-new-tokens 24 --report "$out/eval-report.json" \
  --markdown "$out/eval-report.md" --plots "$out/eval-plots" -q
echo "sft-eval: exit $? (no gates given); report: $out/eval-report.json, $out/eval-report.md"
python3 - "$out/eval-report.json" <<'PY' 2>/dev/null || sed -n '1,12p' "$out/eval-report.md"
import json, sys
r = json.load(open(sys.argv[1]))
for c in r["checkpoints"]:
    h, g = c["heldout"], c["generation"]
    print(f'{"*" if c["best"] else " "} {c["path"]:<40} step {c["step"]!s:>4}  loss {h["loss"]:.4f}  ppl {h["perplexity"]:9.1f}  compliance {g["compliance_rate"]:.2f}  repetitive {g["repetition"]["repetitive_share"]:.2f}')
for f in r["diagnosis"]["findings"]:
    print(f'diagnosis: {f["kind"]}: {f["message"]}')
PY

step "check a deliberately broken dataset (exit 1 expected)"
$sft check data-samples/broken --color never --report "$out/broken-report.json"
[ $? -eq 1 ] || status=1
exit $status

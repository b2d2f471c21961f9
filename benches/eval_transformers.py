"""transformers peer of the `sft-eval` throughput benchmark: held-out scoring and greedy
generation with PyTorch + transformers on CPU, float32, the same rows and shapes as
`sft-eval --checkpoint DIR --dataset FILE --max-samples N --max-new-tokens M --batch-size B`.

    HF_HUB_OFFLINE=1 /tmp/trlvenv/bin/python benches/eval_transformers.py \
        --model /tmp/smollm2-135m-instruct --dataset data-samples/formats/messages.jsonl \
        --max-samples 16 --max-new-tokens 64 --batch-size 8
    HF_HUB_OFFLINE=1 /tmp/trlvenv/bin/python benches/eval_transformers.py \
        --max-samples 2 --max-new-tokens 4 --batch-size 2          (smoke test, tiny-llama)

Options: --model DIR (default data-samples/models/tiny-llama), --dataset FILE.jsonl (default
data-samples/formats/messages.jsonl), --max-samples 16, --max-new-tokens 64, --batch-size 8,
--max-length 1024, --eos-id 2, --threads <all cores>. benches/eval.sh runs this and sft-eval
side by side.

Data: FILE is JSON lines of conversational rows ({"messages": [...]}, any other keys ignored);
other row shapes are an error.

Scoring (as sft-eval's held-out loss, i.e. as TRL prepares `messages` rows: loss on every
token): each row is rendered with the model's chat template and tokenized
(`apply_chat_template(messages, tokenize=True)`: no extra special tokens beyond what the
template writes), truncated to --max-length keeping the start. Rows go in batches of B, in file
order, right-padded with tokenizer.pad_token_id (falling back to config.pad_token_id, then 0)
with attention_mask 0 on the padding; `model(input_ids=..., attention_mask=...)` under
torch.no_grad(); loss = sum of cross-entropy of logits[:, t] against input_ids[:, t+1] over the
positions where t+1 is not padding, divided by the number of such positions over all batches
(token-weighted mean; `loss_tokens` = that number = sum(len - 1), sft-eval's heldout.tokens).
`scoring_tokens` = the input tokens of the rows, padding not counted (sum(len));
`scoring_tokens_per_s` = scoring_tokens / scoring_seconds, as sft-eval's heldout.tokens_per_second.

Generation (as sft-eval): the first N rows with a prompt, the prompt being the conversation
cut before its last assistant message (the whole conversation when it has none; rows with no
messages are skipped), rendered with add_generation_prompt=True, tokenized without added
special tokens, and, as sft-eval does, cut to its last (max_length - max_new_tokens) tokens if
longer. Batches of B prompts, left-padded (tokenizer.padding_side = "left"), then
`model.generate(input_ids, attention_mask, do_sample=False, max_new_tokens=M, eos_token_id=2,
pad_token_id=2)` (greedy, KV cache: transformers' default DynamicCache). `new_tokens` counts per
prompt the tokens generated up to and including the first EOS (all M when none), as sft-eval
counts them; tokens generated for an already finished row of the batch (padding) are not
counted. `generation_new_tokens_per_s` = new_tokens / generation_seconds.

Timing (time.perf_counter): only the scoring loop (padding of each batch to tensors, forward,
loss) and only the generation loop (the generate calls and counting; the left-padded batches
are built before). Not timed: imports, model load, chat template rendering, tokenization. No
warm-up on either side (sft-eval has none). Attention is transformers' default for the model
(sdpa for llama).

Output (stdout), one JSON line:
    {"tool": "transformers", "scoring_tokens_per_s": ..., "scoring_seconds": ...,
     "scoring_tokens": ..., "generation_new_tokens_per_s": ..., "generation_seconds": ...,
     "new_tokens": ..., "loss": ..., "loss_tokens": ..., "rows": ..., "samples": ..., ...}
Extra keys: batch_size, max_new_tokens, threads, model, loadavg_1m (before, after), versions.

Run it on an otherwise idle machine: torch uses all cores, and any other busy process makes its
OpenMP threads wait for each other (see benches/train_trl.py); loadavg_1m shows whether that
happened.

Setup: the virtualenv of benches/train_trl.py (/tmp/trlvenv: torch 2.15, transformers 5.24).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent


def all_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(REPO / "data-samples" / "models" / "tiny-llama"))
    p.add_argument("--dataset", default=str(REPO / "data-samples" / "formats" / "messages.jsonl"))
    p.add_argument("--max-samples", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--eos-id", type=int, default=2)
    p.add_argument("--threads", type=int, default=all_cores())
    return p.parse_args()


def loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def read_rows(path: str) -> list[list[dict]]:
    conversations = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            messages = row.get("messages") if isinstance(row, dict) else None
            if not isinstance(messages, list):
                sys.exit(f"{path}:{n}: not a conversational row (no \"messages\" list)")
            conversations.append(messages)
    return conversations


def prompt_messages(messages: list[dict]) -> list[dict]:
    """The conversation before its last assistant message (all of it when there is none)."""
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    return messages if last is None else messages[:last]


def as_ids(x) -> list[int]:
    # apply_chat_template(tokenize=True) returns a list, or a BatchEncoding / dict in v5.
    if isinstance(x, dict) or hasattr(x, "keys"):
        x = x["input_ids"]
    return list(x)


def main() -> None:
    args = parse_args()
    import torch
    import torch.nn.functional as F
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    B = max(1, args.batch_size)

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.to("cpu").eval()
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0

    conversations = read_rows(args.dataset)

    # Held-out rows: rendered + tokenized as TRL does for `messages`, truncated (keep start).
    rows = [
        as_ids(tokenizer.apply_chat_template(m, tokenize=True))[: args.max_length]
        for m in conversations
    ]
    rows = [r for r in rows if r]

    # Prompts: the first N rows with one, left-padded into batches before timing.
    prompts: list[list[int]] = []
    keep = max(1, args.max_length - args.max_new_tokens)
    for m in conversations:
        if len(prompts) >= args.max_samples:
            break
        pm = prompt_messages(m)
        if not pm:
            continue
        text = tokenizer.apply_chat_template(pm, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        prompts.append(ids[-keep:])
    tokenizer.padding_side = "left"
    gen_batches = [
        tokenizer.pad({"input_ids": prompts[i : i + B]}, padding=True, return_tensors="pt")
        for i in range(0, len(prompts), B)
    ]

    load_before = loadavg()

    # Scoring.
    loss_sum = 0.0
    loss_tokens = 0
    input_tokens = sum(len(r) for r in rows)
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(rows), B):
            chunk = rows[i : i + B]
            width = max(len(r) for r in chunk)
            input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for j, r in enumerate(chunk):
                input_ids[j, : len(r)] = torch.tensor(r, dtype=torch.long)
                mask[j, : len(r)] = 1
            logits = model(input_ids=input_ids, attention_mask=mask).logits
            labels = input_ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            loss_sum += F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)).float(),
                labels.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            ).item()
            loss_tokens += int((labels != -100).sum())
    scoring_seconds = time.perf_counter() - t0

    # Generation.
    new_tokens = 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for batch in gen_batches:
            out = model.generate(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                do_sample=False,
                max_new_tokens=args.max_new_tokens,
                eos_token_id=args.eos_id,
                pad_token_id=args.eos_id,
            )
            gen = out[:, batch["input_ids"].shape[1] :]
            for row in gen.tolist():
                n = row.index(args.eos_id) + 1 if args.eos_id in row else len(row)
                new_tokens += n
    generation_seconds = time.perf_counter() - t0

    print(
        json.dumps(
            {
                "tool": "transformers",
                "scoring_tokens_per_s": input_tokens / max(scoring_seconds, 1e-9),
                "scoring_seconds": scoring_seconds,
                "scoring_tokens": input_tokens,
                "generation_new_tokens_per_s": new_tokens / max(generation_seconds, 1e-9),
                "generation_seconds": generation_seconds,
                "new_tokens": new_tokens,
                "loss": loss_sum / max(loss_tokens, 1),
                "loss_tokens": loss_tokens,
                "rows": len(rows),
                "samples": len(prompts),
                "batch_size": B,
                "max_new_tokens": args.max_new_tokens,
                "threads": torch.get_num_threads(),
                "model": args.model,
                "loadavg_1m": [load_before, loadavg()],
                "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()

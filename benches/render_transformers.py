#!/usr/bin/env python3
"""Peer of render_bench.rs: Python transformers' apply_chat_template on the same file.

    pip install transformers jinja2
    python3 benches/render_transformers.py CONVERSATIONS.jsonl TEMPLATE [ROWS]

TEMPLATE is a bundled template name of this repository (templates/*.jinja, names as in
sft-template's source.rs) and is read from templates/ with its special tokens. The timed
loop calls PreTrainedTokenizerBase.apply_chat_template(tokenize=False) on a minimal
stand-in tokenizer (the same path transformers takes for a real one when tokenize=False),
one conversation at a time, on one core, after a warm-up of 100.
"""
import json
import os
import sys
import time

from transformers.tokenization_utils_base import PreTrainedTokenizerBase

FILES = {
    "chatml": "chatml_openhermes", "smollm2": "smollm2", "smollm3": "smollm3",
    "llama3": "llama3_instruct", "llama3.2": "llama3_2_instruct", "qwen2.5": "qwen2_5_instruct",
    "qwen3": "qwen3", "mistral": "mistral_7b_instruct_v0_1", "gemma3": "gemma3_it",
    "phi3.5": "phi3_5_mini_instruct", "zephyr": "zephyr_7b_beta", "deepseek-r1": "deepseek_r1_distill_qwen",
}


class StandIn:
    def __init__(self, chat_template, special_tokens_map):
        self.chat_template = chat_template
        self.special_tokens_map = dict(special_tokens_map)

    get_chat_template = PreTrainedTokenizerBase.get_chat_template


def main():
    path, name = sys.argv[1], sys.argv[2]
    limit = int(sys.argv[3]) if len(sys.argv) > 3 else None
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "templates")
    stem = FILES[name]
    template = open(os.path.join(root, stem + ".jinja"), encoding="utf-8", newline="").read()
    tokens = json.load(open(os.path.join(root, "special_tokens.json"))).get(stem, {})
    conversations = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if limit is not None and i >= limit:
                break
            conversations.append(json.loads(line)["messages"])
    tok = StandIn(template, tokens)
    def render(c):
        return PreTrainedTokenizerBase.apply_chat_template(tok, c, tokenize=False)

    for c in conversations[:100]:
        try:
            render(c)
        except Exception:
            pass
    # Rows the template rejects count, as errors, on both sides.
    started = time.perf_counter()
    total = errors = 0
    for c in conversations:
        try:
            total += len(render(c).encode())
        except Exception:
            errors += 1
    secs = time.perf_counter() - started
    print(f"python transformers {name:<8} {len(conversations)} conversations ({errors} rejected) in {secs:.2f} s: "
          f"{len(conversations) / secs:.0f} conversations/s, {total / 1e6 / secs:.1f} MB/s of text")


if __name__ == "__main__":
    main()

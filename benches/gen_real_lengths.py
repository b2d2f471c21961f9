"""Conversations whose token lengths follow real SFT data, for the memory benchmarks.

    /tmp/trlvenv/bin/python benches/gen_real_lengths.py OUT.jsonl [ROWS] [--seed 0]
        [--tokenizer data-samples/models/smollm2-135m-instruct-tokenizer]

Real chat SFT data tokenized with SmolLM2's tokenizer has a median near 380 tokens, a p90
near 730 and a few percent above the 1,024-token cap. Each row here gets a target length
drawn from the log-normal with exactly that median and p90 (mu = ln 380,
sigma = ln(730 / 380) / 1.2816 = 0.509, so 2.6% are above 1,024 and get truncated at the
default max_length), then a system prompt, one to three user/assistant exchanges and words
until the rendered conversation (ChatML, SmolLM2's template: `<|im_start|>role\\ncontent
<|im_end|>\\n` per message) has that many tokens by the tokenizer. The script prints the
realised median, p90 and share above 1,024. Deterministic for a seed.
"""

import argparse
import json
import math
import random
import statistics

from tokenizers import Tokenizer

WORDS = (
    "the model learns from examples and a dataset of instructions is used to train it with "
    "care when you write code in Rust or Python each function should return value that makes "
    "sense for user who asked question about weather history science river mountain city "
    "because however therefore example answer explain step first second finally result "
    "number table list summary detail important consider approach problem solution memory "
    "batch length token training evaluation loss gradient optimizer schedule warmup rate "
    "über café naïve 東京 данные"
).split()

MEDIAN, P90, CAP = 380, 730, 1024
SIGMA = math.log(P90 / MEDIAN) / 1.2815515655446004


def text_of(rng, n_words):
    words = []
    for i in range(n_words):
        w = rng.choice(WORDS)
        if i % 17 == 16:
            w += "."
        elif i % 11 == 10:
            w += ","
        words.append(w)
    return " ".join(words)


def rendered_len(tok, messages):
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return len(tok.encode(text, add_special_tokens=False).ids)


def conversation(rng, tok, target):
    exchanges = 1 + rng.randrange(3)
    messages = [{"role": "system", "content": text_of(rng, 8 + rng.randrange(20))}]
    for _ in range(exchanges):
        messages.append({"role": "user", "content": ""})
        messages.append({"role": "assistant", "content": ""})
    # Words per message, scaled until the rendered length reaches the target.
    shares = [0.3 if m["role"] == "user" else 1.0 for m in messages[1:]]
    words = max(1, int(target / 1.3))
    for _ in range(30):
        total = sum(shares)
        for m, s in zip(messages[1:], shares):
            m["content"] = text_of(rng, max(1, int(words * s / total)))
        n = rendered_len(tok, messages)
        if abs(n - target) <= 3:
            break
        words = max(1, int(words * target / max(n, 1)))
    return messages


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("rows", nargs="?", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", default="data-samples/models/smollm2-135m-instruct-tokenizer")
    a = ap.parse_args()
    tok = Tokenizer.from_file(f"{a.tokenizer}/tokenizer.json")
    rng = random.Random(a.seed)
    lengths = []
    with open(a.out, "w") as f:
        for i in range(a.rows):
            target = max(64, int(round(math.exp(rng.gauss(math.log(MEDIAN), SIGMA)))))
            messages = conversation(rng, tok, target)
            lengths.append(rendered_len(tok, messages))
            f.write(json.dumps({"id": i, "messages": messages}, ensure_ascii=False) + "\n")
    lengths.sort()
    p90 = lengths[min(len(lengths) - 1, int(0.9 * len(lengths)))]
    over = sum(n > CAP for n in lengths) / len(lengths)
    print(json.dumps({"rows": len(lengths), "median": statistics.median(lengths), "p90": p90,
                      "share_over_1024": round(over, 3), "max": lengths[-1],
                      "tokens_capped": sum(min(n, CAP) for n in lengths)}))


if __name__ == "__main__":
    main()

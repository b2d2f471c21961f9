"""Generates JSON-lines conversations for the scale runs of `sft-data mix | split |
dedupe | stats` (benches/ops.sh): ~500 bytes a row, with planted exact duplicates (2%),
near-duplicates (2%: one word of the reply changed) and rows that share a prompt (2%).

    python3 benches/gen_ops_data.py OUT_PREFIX ROWS [SOURCES]

writes OUT_PREFIX-0.jsonl ... one file per source (rows split 50/30/20 over three
sources), each row {"id", "messages": [user, assistant]}.
"""

import random
import sys

prefix, total = sys.argv[1], int(sys.argv[2])
shares = [0.5, 0.3, 0.2]
rng = random.Random(15)
vocab = [f"w{i}" for i in range(20000)]


def text(n):
    return " ".join(rng.choices(vocab, k=n))


row_id = 0
for s, share in enumerate(shares):
    n = int(total * share) if s < len(shares) - 1 else total - row_id
    recent = []
    with open(f"{prefix}-{s}.jsonl", "w", buffering=1 << 20) as f:
        for i in range(n):
            r = rng.random()
            if recent and r < 0.02:
                q, a = rng.choice(recent)
            elif recent and r < 0.04:
                q, a = rng.choice(recent)
                w = a.split(" ")
                w[rng.randrange(len(w))] = "changed"
                a = " ".join(w)
            elif recent and r < 0.06:
                q, _ = rng.choice(recent)
                a = text(60)
            else:
                q, a = text(12), text(60)
                if len(recent) < 1000:
                    recent.append((q, a))
                else:
                    recent[rng.randrange(1000)] = (q, a)
            f.write('{"id": %d, "messages": [{"role": "user", "content": "%s"}, '
                    '{"role": "assistant", "content": "%s"}]}\n' % (row_id, q, a))
            row_id += 1

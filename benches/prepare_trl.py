"""TRL peer of the `sft-data prepare` benchmark: how long TRL's SFTTrainer takes to prepare
a conversational JSON-lines dataset (chat template rendering, tokenization, label building,
truncation to max_length, and optionally BFD packing).

    python benches/prepare_trl.py DATA.jsonl ROWS [--packing bfd] [--max-length 1024] [--num-proc 2]

What it measures: ONLY the construction of
`SFTTrainer(model=<tiny random LlamaForCausalLM>, args=SFTConfig(...), train_dataset=ds,
processing_class=<SmolLM2 tokenizer>)`, which is where TRL prepares the dataset
(`SFTTrainer._prepare_dataset`: ChatML check, `apply_chat_template` + tokenize map, labels map,
truncate map + filter of fully masked rows, or, with `--packing bfd`, select input_ids/labels +
`pack_dataset`). Not timed: Python/library imports, reading the first ROWS lines of DATA.jsonl
(with `json`, into an in-memory `datasets.Dataset.from_list`), loading the tokenizer, building the
model (vocab 49152, hidden 16, 1 layer: a few MB, its construction is a fraction of a second).
The constructor also does a little non-data work (Accelerator, model placement on CPU, collator):
milliseconds next to the preparation; the time spent inside `_prepare_dataset` alone is printed
on stderr for comparison.

Caching: `datasets.disable_caching()` is called, and the input dataset is built in memory
(`Dataset.from_list`, no cache files), so every `.map()` result stays in memory and nothing is
reused between runs: reruns are not free. The SFTConfig uses shuffle_dataset=False (TRL's
default), seed 42, truncation_mode keep_start, completion_only_loss default (no effect for
`messages` rows), assistant_only_loss False: loss on every token, as TRL does by default for
conversational language-modeling rows.

Output (stdout), one line:
    trl 1.16.0 prepare: 20000 rows -> 20000 rows, 12,345,678 tokens in 53.2 s (232,000 tokens/s), num_proc 2, packing none
tokens = sum of len(input_ids) over the prepared dataset (after truncation / packing).

Peak memory is measured from outside with GNU time:
    HF_HUB_OFFLINE=1 /usr/bin/time -f '%e s %M KB' python benches/prepare_trl.py DATA.jsonl 20000 --num-proc 2
Note that with num_proc > 1, `datasets` forks worker processes for each map, and `%M` (max
resident set size) reports the largest SINGLE process (the parent or the biggest child, whichever
peaked higher), not the sum over parent + workers; the true machine-wide peak can be higher.
%e includes imports, loading and the model build, so it is larger than the timed part.

Setup (Python 3.11, a throwaway virtualenv, PyPI only, CPU torch), same as
tests/fixtures/trl/make_trl_fixtures.py:

    python3 -m venv /tmp/trlvenv
    /tmp/trlvenv/bin/pip install trl==1.16.0 transformers==5.24.0 torch==2.15.0 \
        datasets==5.2.0 tokenizers==0.23.3 accelerate==1.15.0 jinja2==3.1.6

Needs `data-samples/models/smollm2-135m-instruct-tokenizer/` (made by
`data-samples/models/make_smollm2_tokenizer.py`). Runs offline (HF_HUB_OFFLINE=1 is set here
if not already set).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# The tokenizer is called per row inside datasets' map workers; keep Rust-side threads off so
# that num_proc alone sets the parallelism (and no fork-after-threads warnings).
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("WANDB_DISABLED", "true")

REPO = Path(__file__).resolve().parents[1]
TOKENIZER_DIR = REPO / "data-samples" / "models" / "smollm2-135m-instruct-tokenizer"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="JSON-lines file of {'id':..., 'messages':[...]} rows")
    p.add_argument("rows", type=int, help="use the first ROWS lines")
    p.add_argument("--packing", choices=["none", "bfd", "bfd_split", "wrapped"], default="none")
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--num-proc", type=int, default=2)
    return p.parse_args()


def load_rows(path: str, n: int) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if len(rows) >= n:
                break
            if line.strip():
                rows.append(json.loads(line))
    if len(rows) < n:
        print(f"warning: {path} has only {len(rows)} rows (asked for {n})", file=sys.stderr)
    return rows


def tiny_model():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=49152, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, intermediate_size=32, max_position_embeddings=2048,
        bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )
    return LlamaForCausalLM(cfg)


def main():
    a = parse_args()

    import datasets
    import transformers
    import trl
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    datasets.disable_caching()
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)  # gradient_checkpointing rename noise

    # Not timed: loading the rows, the tokenizer and the model.
    ds = datasets.Dataset.from_list(load_rows(a.data, a.rows))
    rows_in = len(ds)
    tok = AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))
    model = tiny_model()

    # Time _prepare_dataset on its own as well (reported on stderr).
    prep_secs = []
    orig_prepare = SFTTrainer._prepare_dataset

    def timed_prepare(self, *args, **kwargs):
        t = time.perf_counter()
        out = orig_prepare(self, *args, **kwargs)
        prep_secs.append(time.perf_counter() - t)
        return out

    SFTTrainer._prepare_dataset = timed_prepare

    packing = a.packing != "none"
    out_dir = tempfile.mkdtemp(prefix="prepare_trl_")
    try:
        args = SFTConfig(
            output_dir=out_dir, report_to=[], use_cpu=True, save_strategy="no", logging_strategy="no",
            dataset_num_proc=a.num_proc, max_length=a.max_length, packing=packing,
            packing_strategy=a.packing if packing else "bfd", shuffle_dataset=False, seed=42,
        )
        t0 = time.perf_counter()
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
        secs = time.perf_counter() - t0
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)

    tds = trainer.train_dataset
    rows_out = len(tds)
    # Sum of lengths, read column-wise from Arrow (not timed). with_format("arrow")[:] honours the
    # indices mapping left by TRL's filter of fully masked rows.
    import pyarrow.compute as pc

    col = tds.with_format("arrow")[:]["input_ids"]
    tokens = int(pc.sum(pc.list_value_length(col)).as_py() or 0)

    print(
        f"trl {trl.__version__} prepare: {rows_in} rows -> {rows_out} rows, {tokens:,} tokens in {secs:.1f} s "
        f"({tokens / secs:,.0f} tokens/s), num_proc {a.num_proc}, packing {a.packing}",
        flush=True,
    )
    print(
        f"  (of which _prepare_dataset {sum(prep_secs):.2f} s; max_length {a.max_length}; "
        f"output columns {tds.column_names}; transformers {transformers.__version__}, "
        f"datasets {datasets.__version__})",
        file=sys.stderr, flush=True,
    )


if __name__ == "__main__":
    main()

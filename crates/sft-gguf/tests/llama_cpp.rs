//! Our GGUF files against llama.cpp's own: `tests/fixtures/gguf/reference.json` describes
//! the files llama.cpp's `convert_hf_to_gguf.py` (`--outtype f32/f16/bf16`) and
//! `llama-quantize` (from the F32 conversion) made of the same models, and
//! `llama_cpp_runs.json` what llama.cpp computed with our files and with its own
//! (both made by `tests/fixtures/gguf/make_fixtures.sh`; no llama.cpp or Python is needed
//! here).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sft_gguf::{export, read_info, read_tensor_bytes, ExportOptions, GgufType, MetaValue};
use sha2::{Digest, Sha256};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> Value {
    let path = repo().join("tests/fixtures/gguf").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Keys we write that llama.cpp's converter does not, and why they may differ.
const OURS_ONLY: &[(&str, &str)] = &[
    ("general.basename", "provenance: the model's file-name stem"),
    ("general.quantized_by", "provenance: names this exporter and its version"),
    (
        "tokenizer.ggml.add_bos_token",
        "explicit false where the tokenizer does not say; the converter leaves it out and llama.cpp falls back to its default for the pre-tokenizer (false for smollm, qwen2, gpt-2)",
    ),
    (
        "tokenizer.ggml.add_eos_token",
        "explicit false where the tokenizer does not add EOS, as above",
    ),
];

/// A GGUF file described as `describe.py` describes it.
fn describe(path: &Path) -> Value {
    let info = read_info(path).unwrap();
    let mut metadata = serde_json::Map::new();
    for (key, value) in &info.metadata {
        let v = match value {
            MetaValue::Array(items) if items.len() > 16 => {
                let mut h = Sha256::new();
                for item in items {
                    h.update(item.encoded());
                }
                json!({"len": items.len(), "sha256": format!("{:x}", h.finalize())})
            }
            other => other.to_json(),
        };
        metadata.insert(key.clone(), json!({"type": value.type_name(), "value": v}));
    }
    let tensors: Vec<Value> = info
        .tensors
        .iter()
        .map(|t| {
            let bytes = read_tensor_bytes(path, &info, t).unwrap();
            json!({
                "name": t.name,
                "type": t.ttype.name(),
                "dims": t.dims,
                "sha256": format!("{:x}", Sha256::digest(&bytes)),
            })
        })
        .collect();
    json!({"metadata": metadata, "tensors": tensors})
}

/// One hash of all tensors of a description (names, types and bytes, in file order).
fn tensors_hash(description: &Value) -> String {
    let mut h = Sha256::new();
    for t in description["tensors"].as_array().unwrap() {
        h.update(format!(
            "{} {} {}\n",
            t["name"].as_str().unwrap(),
            t["type"].as_str().unwrap(),
            t["sha256"].as_str().unwrap()
        ));
    }
    format!("{:x}", h.finalize())
}

/// The model folder of a fixture entry: a folder of the repository, or (for the
/// architecture fixtures, whose vocabulary is 256 tokens) their weights and config with
/// the 256-token tokenizer, assembled in `scratch`.
fn model_folder(entry: &Value, scratch: &Path) -> PathBuf {
    let source = repo().join(entry["source"].as_str().unwrap());
    let Some(tokenizer) = entry["tokenizer"].as_str() else {
        return source;
    };
    let dir = scratch.join(source.file_name().unwrap());
    std::fs::create_dir_all(&dir).unwrap();
    for from in [source.clone(), repo().join(tokenizer)] {
        for e in std::fs::read_dir(&from).unwrap().flatten() {
            let name = e.file_name();
            if name != "logits.json" {
                std::fs::copy(e.path(), dir.join(name)).unwrap();
            }
        }
    }
    if entry["synthetic_weights"] == json!(true) {
        write_synthetic_weights(&dir);
    }
    dir
}

/// The weights of `tests/fixtures/gguf/kquant` (see its README.md): every tensor of the
/// config, in sorted name order, from one 64-bit LCG stream, as F32 safetensors.
fn write_synthetic_weights(dir: &Path) {
    let c: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let n = |k: &str| c[k].as_u64().unwrap() as usize;
    let (h, i, v, hd) = (
        n("hidden_size"),
        n("intermediate_size"),
        n("vocab_size"),
        n("head_dim"),
    );
    let (q, kv) = (n("num_attention_heads") * hd, n("num_key_value_heads") * hd);
    let mut shapes: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    shapes.insert("model.embed_tokens.weight".into(), vec![v, h]);
    shapes.insert("lm_head.weight".into(), vec![v, h]);
    shapes.insert("model.norm.weight".into(), vec![h]);
    for l in 0..n("num_hidden_layers") {
        for (part, shape) in [
            ("input_layernorm.weight", vec![h]),
            ("post_attention_layernorm.weight", vec![h]),
            ("self_attn.q_proj.weight", vec![q, h]),
            ("self_attn.k_proj.weight", vec![kv, h]),
            ("self_attn.v_proj.weight", vec![kv, h]),
            ("self_attn.o_proj.weight", vec![h, q]),
            ("mlp.gate_proj.weight", vec![i, h]),
            ("mlp.up_proj.weight", vec![i, h]),
            ("mlp.down_proj.weight", vec![h, i]),
        ] {
            shapes.insert(format!("model.layers.{l}.{part}"), shape);
        }
    }
    let mut state: u64 = 42;
    let mut header = serde_json::Map::new();
    let mut data: Vec<u8> = Vec::new();
    for (name, shape) in &shapes {
        let start = data.len();
        for _ in 0..shape.iter().product::<usize>() {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 40) as f32 / 16777216.0 - 0.5;
            data.extend_from_slice(&(u * 0.2f32).to_le_bytes());
        }
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut header = serde_json::to_vec(&Value::Object(header)).unwrap();
    header.resize(header.len().div_ceil(8) * 8, b' ');
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&header);
    file.extend_from_slice(&data);
    std::fs::write(dir.join("model.safetensors"), file).unwrap();
}

/// Exports every model and type of the reference and describes our files.
fn ours() -> BTreeMap<(String, String), Value> {
    let reference = fixture("reference.json");
    let scratch = tempfile::tempdir().unwrap();
    let mut out = BTreeMap::new();
    for (model, entry) in reference["models"].as_object().unwrap() {
        let dir = model_folder(entry, scratch.path());
        let files = entry["files"].as_object().unwrap();
        let types: Vec<GgufType> = files.keys().map(|t| t.parse().unwrap()).collect();
        let options = ExportOptions {
            name: Some(model.clone()),
            tokenizer_pre: entry["tokenizer_pre"].as_str().map(str::to_string),
            ..ExportOptions::default()
        };
        let target = scratch.path().join(format!("out-{model}"));
        for f in export(&dir, &target, &types, &options).unwrap() {
            out.insert(
                (model.clone(), f.gguf_type.name().to_string()),
                describe(&f.path),
            );
        }
    }
    out
}

#[test]
fn our_files_hold_llama_cpp_s_tensors_and_metadata() {
    let reference = fixture("reference.json");
    let ours = ours();
    let mut problems = Vec::new();
    for (model, entry) in reference["models"].as_object().unwrap() {
        for (t, theirs) in entry["files"].as_object().unwrap() {
            let mine = &ours[&(model.clone(), t.clone())];
            let at = format!("{model} {t}");
            // Tensors: the same names, types, dims and bytes (in any order).
            let by_name = |d: &Value| -> BTreeMap<String, Value> {
                d["tensors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| (t["name"].as_str().unwrap().to_string(), t.clone()))
                    .collect()
            };
            let (a, b) = (by_name(theirs), by_name(mine));
            for name in a
                .keys()
                .chain(b.keys())
                .collect::<std::collections::BTreeSet<_>>()
            {
                if a.get(name) != b.get(name) {
                    problems.push(format!(
                        "{at}: tensor {name}: llama.cpp {:?}, ours {:?}",
                        a.get(name),
                        b.get(name)
                    ));
                }
            }
            // Metadata: the same keys, types and values, but for provenance keys.
            let (a, b) = (
                theirs["metadata"].as_object().unwrap(),
                mine["metadata"].as_object().unwrap(),
            );
            for key in a
                .keys()
                .chain(b.keys())
                .collect::<std::collections::BTreeSet<_>>()
            {
                let (x, y) = (a.get(key), b.get(key));
                if x == y
                    || key == "general.name" && x.is_some() && y.is_some() && model != "tiny-llama"
                {
                    continue;
                }
                let ours_only = OURS_ONLY.iter().any(|(k, _)| k == key) && x.is_none();
                let explicit_flag = key.starts_with("tokenizer.ggml.add_");
                let explicit_false = y.is_some_and(|y| y["value"] == json!(false));
                if ours_only && (!explicit_flag || explicit_false) {
                    continue;
                }
                problems.push(format!("{at}: key {key}: llama.cpp {x:?}, ours {y:?}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn llama_cpp_ran_our_files_as_they_are_now() {
    let runs = fixture("llama_cpp_runs.json");
    let ours = ours();
    let mut checked = 0;
    for (model, types) in runs["runs"].as_object().unwrap() {
        for (t, run) in types.as_object().unwrap() {
            let mine = &ours[&(model.clone(), t.clone())];
            assert_eq!(
                tensors_hash(mine),
                run["ours_tensors_sha256"].as_str().unwrap(),
                "{model} {t}: our export's tensors changed since llama.cpp ran them; rerun tests/fixtures/gguf/make_fixtures.sh"
            );
            // llama.cpp's own file, run the same way, gave exactly these numbers.
            let ours_ppl = run["ours_ppl"].as_f64().unwrap();
            let control = run["reference_ppl_same_mode"].as_f64().unwrap();
            assert_eq!(
                ours_ppl, control,
                "{model} {t}: llama.cpp's perplexity with our file vs its own"
            );
            assert_eq!(
                run["same_top_p_percent"], run["reference_same_top_p_percent"],
                "{model} {t}"
            );
            // And against its own file's base run: within llama.cpp's batching noise.
            let base = run["reference_ppl"].as_f64().unwrap();
            assert!(
                (ours_ppl / base - 1.0).abs() < 0.005,
                "{model} {t}: {ours_ppl} vs {base}"
            );
            assert!(run["mean_kld"].as_f64().unwrap() < 1e-5, "{model} {t}");
            checked += 1;
        }
    }
    assert!(
        checked >= 21,
        "runs for every model and type of the reference"
    );
}

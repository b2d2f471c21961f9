//! What a user of the export sees: the files and Modelfile it writes, and a clear error
//! (the file, the tensor or key, what to do) for every model it cannot export right.

use std::path::{Path, PathBuf};

use sft_gguf::{export, read_info, ExportOptions, GgufError, GgufType, MetaValue};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tiny_llama() -> PathBuf {
    repo().join("data-samples/models/tiny-llama")
}

/// A copy of `from` (and, for the architecture fixtures, the 256-token tokenizer) in `to`.
fn copy_model(from: &Path, to: &Path, tokenizer256: bool) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    let mut sources = vec![from.to_path_buf()];
    if tokenizer256 {
        sources.push(repo().join("tests/fixtures/gguf/tokenizer256"));
    }
    for dir in sources {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.path().is_file() && e.file_name() != "logits.json" {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
    to.to_path_buf()
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn err(source: &Path, out: &Path, options: &ExportOptions) -> String {
    export(source, out, &[GgufType::F16], options)
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

fn file_hashes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn writes_each_type_and_a_modelfile_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("gguf");
    let before = file_hashes(&tiny_llama());
    let types = GgufType::parse_list("q4_k_m,F16").unwrap();
    let written = export(&tiny_llama(), &out, &types, &ExportOptions::default()).unwrap();
    assert_eq!(
        file_hashes(&tiny_llama()),
        before,
        "the model folder is never written"
    );
    assert_eq!(written.len(), 2);
    assert_eq!(written[0].path, out.join("tiny-llama-Q4_K_M.gguf"));
    assert_eq!(written[1].path, out.join("tiny-llama-F16.gguf"));
    for f in &written {
        assert_eq!(std::fs::metadata(&f.path).unwrap().len(), f.bytes);
        let info = read_info(&f.path).unwrap();
        assert_eq!(
            info.get("general.file_type"),
            Some(&MetaValue::U32(f.gguf_type.file_type()))
        );
        assert_eq!(
            info.get("tokenizer.ggml.pre").and_then(|v| v.as_str()),
            Some("smollm")
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["Modelfile", "tiny-llama-F16.gguf", "tiny-llama-Q4_K_M.gguf"],
        "no temporary file is left"
    );
    let modelfile = std::fs::read_to_string(out.join("Modelfile")).unwrap();
    assert!(
        modelfile.contains("FROM ./tiny-llama-Q4_K_M.gguf\n"),
        "{modelfile}"
    );
    assert!(
        modelfile.contains("PARAMETER stop \"<|im_end|>\"\n"),
        "{modelfile}"
    );
    assert!(
        modelfile.contains("PARAMETER num_ctx 2048\n"),
        "{modelfile}"
    );

    // Exporting again replaces the files in place.
    let again = export(
        &tiny_llama(),
        &out,
        &[GgufType::F16],
        &ExportOptions {
            name: Some("my model".into()),
            base_model: Some("HuggingFaceTB/SmolLM2-135M".into()),
            no_modelfile: true,
            ..ExportOptions::default()
        },
    )
    .unwrap();
    assert_eq!(again[0].path, out.join("my-model-F16.gguf"));
    let info = read_info(&again[0].path).unwrap();
    assert_eq!(
        info.get("general.base_model.0.repo_url")
            .and_then(|v| v.as_str()),
        Some("https://huggingface.co/HuggingFaceTB/SmolLM2-135M")
    );
}

#[test]
fn refuses_to_write_into_the_model_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let model = copy_model(&tiny_llama(), &tmp.path().join("m"), false);
    let before = file_hashes(&model);
    for out in [model.clone(), model.join("gguf")] {
        let e = err(&model, &out, &ExportOptions::default());
        assert!(
            e.contains("model folder being exported") && e.contains("hint:"),
            "{e}"
        );
    }
    assert_eq!(file_hashes(&model), before);
}

#[test]
fn unsupported_models_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");

    let m = copy_model(&tiny_llama(), &tmp.path().join("gemma"), false);
    edit_json(&m.join("config.json"), |c| c["model_type"] = "gemma".into());
    let e = err(&m, &out, &ExportOptions::default());
    assert!(e.contains("config.json") && e.contains("gemma"), "{e}");

    // SmolLM3 whose NoPE layers are not llama.cpp's hard-coded every-4th pattern.
    let m = copy_model(
        &repo().join("tests/fixtures/arch/smollm3"),
        &tmp.path().join("smollm3"),
        true,
    );
    edit_json(&m.join("config.json"), |c| {
        c["no_rope_layers"] = serde_json::json!([1, 0, 1, 1])
    });
    let options = ExportOptions {
        tokenizer_pre: Some("smollm".into()),
        ..ExportOptions::default()
    };
    let e = err(&m, &out, &options);
    assert!(e.contains("smollm3") && e.contains("NoPE"), "{e}");

    // A tokenizer whose pre-tokenizer llama.cpp does not know by its fingerprint.
    let m = copy_model(
        &repo().join("tests/fixtures/arch/qwen2"),
        &tmp.path().join("qwen2"),
        true,
    );
    let e = err(&m, &out, &ExportOptions::default());
    assert!(
        e.contains("tokenizer.json") && e.contains("fingerprint") && e.contains("tokenizer_pre"),
        "{e}"
    );
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none());
}

#[test]
fn broken_folders_are_errors_that_name_the_file_and_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let options = ExportOptions {
        tokenizer_pre: Some("smollm".into()),
        ..ExportOptions::default()
    };
    let fresh = |name: &str| {
        copy_model(
            &repo().join("tests/fixtures/arch/qwen2"),
            &tmp.path().join(name),
            true,
        )
    };

    let m = fresh("no-tokenizer");
    std::fs::remove_file(m.join("tokenizer.json")).unwrap();
    let e = err(&m, &out, &options);
    assert!(e.contains("tokenizer.json") && e.contains("missing"), "{e}");

    let m = fresh("truncated");
    let weights = m.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let e = err(&m, &out, &options);
    assert!(
        e.contains("model.safetensors") && e.contains("tensor"),
        "{e}"
    );

    let m = fresh("nan");
    let weights = m.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let start = header["model.norm.weight"]["data_offsets"][0]
        .as_u64()
        .unwrap() as usize;
    bytes[8 + header_len + start..8 + header_len + start + 4]
        .copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&weights, bytes).unwrap();
    let e = err(&m, &out, &options);
    assert!(e.contains("model.norm.weight") && e.contains("NaN"), "{e}");

    let m = fresh("small-vocab");
    edit_json(&m.join("config.json"), |c| c["vocab_size"] = 100.into());
    let e = err(&m, &out, &options);
    assert!(
        e.contains("model.embed_tokens.weight") && e.contains("config.json implies"),
        "{e}"
    );

    let m = fresh("missing-tensor");
    edit_json(&m.join("config.json"), |c| {
        c["num_hidden_layers"] = 3.into()
    });
    let e = err(&m, &out, &options);
    assert!(
        e.contains("model.layers.2.") && e.contains("missing"),
        "{e}"
    );

    let e = export(&tiny_llama(), &out, &[], &ExportOptions::default()).unwrap_err();
    assert!(matches!(e, GgufError::Output { .. }), "{e}");
}

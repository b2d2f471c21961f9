//! `sft-train --export_gguf`: a model folder exported without training, the final model of
//! a full and of a LoRA run exported at the end, and the model folder never written. The
//! files themselves are held to llama.cpp's own conversion in `crates/sft-gguf/tests`.

mod common;

use std::path::Path;

use common::sft_train;

fn info(path: &Path) -> sft_gguf::GgufInfo {
    sft_gguf::read_info(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn architecture(path: &Path) -> String {
    match info(path).get("general.architecture") {
        Some(sft_gguf::MetaValue::Str(s)) => s.clone(),
        other => panic!("{}: general.architecture is {other:?}", path.display()),
    }
}

#[test]
fn a_model_folder_is_exported_without_training() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("gguf");
    let r = sft_train(&[
        "--model_name_or_path",
        "data-samples/models/tiny-llama",
        "--output_dir",
        out.to_str().unwrap(),
        "--export_gguf",
        "f16,Q8_0",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for name in ["tiny-llama-F16.gguf", "tiny-llama-Q8_0.gguf"] {
        assert_eq!(architecture(&out.join(name)), "llama", "{name}");
        assert!(r.stderr.contains(name), "{}", r.stderr);
    }
    let modelfile = std::fs::read_to_string(out.join("Modelfile")).unwrap();
    assert!(modelfile.contains("FROM ./tiny-llama-"), "{modelfile}");
    assert!(modelfile.contains("<|im_end|>"), "{modelfile}");
    // An unknown type is a usage error naming it.
    let r = sft_train(&[
        "--model_name_or_path",
        "data-samples/models/tiny-llama",
        "--output_dir",
        out.to_str().unwrap(),
        "--export_gguf",
        "q3_x",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.to_lowercase().contains("q3_x"), "{}", r.stderr);
}

#[test]
fn the_model_folder_is_never_written() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for entry in std::fs::read_dir(common::root().join("data-samples/models/tiny-llama")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, model.join(p.file_name().unwrap())).unwrap();
    }
    let before: Vec<_> = std::fs::read_dir(&model)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let r = sft_train(&[
        "--model_name_or_path",
        model.to_str().unwrap(),
        "--output_dir",
        model.to_str().unwrap(),
        "--export_gguf",
        "f16",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let after: Vec<_> = std::fs::read_dir(&model)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(before.len(), after.len(), "{}", r.stderr);
}

#[test]
fn the_final_model_of_a_run_and_of_a_lora_run_is_exported() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, lora) in [("full", false), ("lora", true)] {
        let out = tmp.path().join(name);
        let mut args = vec![
            "--model_name_or_path",
            "data-samples/models/tiny-llama",
            "--dataset_name",
            "data-samples/formats/messages.jsonl",
            "--output_dir",
            out.to_str().unwrap(),
            "--max_steps",
            "2",
            "--per_device_train_batch_size",
            "4",
            "--max_length",
            "128",
            "--export_gguf",
            "q8_0",
        ];
        if lora {
            args.extend(["--use_peft", "--lora_r", "4"]);
        }
        let r = sft_train(&args);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        let file = out.join(format!("{name}-Q8_0.gguf"));
        assert_eq!(architecture(&file), "llama", "{name}: {}", r.stderr);
        assert!(out.join("Modelfile").is_file());
        // No merged copy is left behind.
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".sft-merged-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

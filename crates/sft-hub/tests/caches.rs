//! One cache for Python and us: a cache `huggingface_hub` 2.5 wrote (the fixture made by
//! tests/fixtures/hub/check_standin.py --write-fixtures) read offline by our resolver. The
//! other direction (Python reading a cache we wrote, `scan_cache_dir` clean) is checked by
//! the same script; its findings are in tests/fixtures/hub/python_reads_our_cache.json.

use std::path::PathBuf;

use sft_hub::{resolve_dataset, resolve_model, DatasetRequest, HubClient, HubSettings};

fn python_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hub/python-cache")
}

fn offline_client() -> HubClient {
    HubClient::new(HubSettings {
        // Nothing listens there; offline mode must not ask anyway.
        endpoint: "http://127.0.0.1:9".into(),
        token: None,
        cache_dir: python_cache(),
        offline: true,
        progress: false,
    })
    .unwrap()
}

#[test]
fn a_cache_python_wrote_is_read_offline() {
    let before = sft_hub::cache::list_files(&python_cache());
    let c = offline_client();
    let dir = resolve_model(&c, "fixture/tiny-cache", None).unwrap();
    let sha = std::fs::read_to_string(python_cache().join("models--fixture--tiny-cache/refs/main"))
        .unwrap();
    assert!(dir.ends_with(format!("snapshots/{sha}")));
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    assert!(config.contains("\"hidden_size\": 2"), "{config}");
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    assert_eq!(weights.len(), 8 + header_len + 16);

    let data = resolve_dataset(
        &c,
        &DatasetRequest {
            id: "user/convs".into(),
            splits: vec!["train".into(), "test".into()],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(data.config, "default");
    let train = std::fs::read_to_string(&data.splits["train"][0]).unwrap();
    assert!(train.contains("\"assistant\""), "{train}");
    assert!(data.splits["test"][0].ends_with("data/test.jsonl"));
    // Read only: the fixture is as it was.
    assert_eq!(sft_hub::cache::list_files(&python_cache()), before);
}

#[test]
fn what_python_found_in_our_cache() {
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(python_cache().join("../python_reads_our_cache.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["scan_cache_dir_warnings"], serde_json::json!([]));
    assert_eq!(
        report["scan_cache_dir_repos"]["user/tiny"]["refs"],
        serde_json::json!(["main", "v1"])
    );
    assert_eq!(report["tag_v1_config_matches"], true);
}

//! Datasets by id against the Hub stand-in: a card with `configs:`, only split-named
//! files, only a Parquet conversion; each then offline from the cache.

use std::path::Path;

use hub_standin::{Hub, Kind, StandIn};
use sft_hub::{resolve_dataset, DatasetRequest, HubClient, HubError, HubSettings};

fn client(server: &StandIn, cache: &Path, offline: bool) -> HubClient {
    HubClient::new(HubSettings {
        endpoint: server.url(),
        token: None,
        cache_dir: cache.to_path_buf(),
        offline,
        progress: false,
    })
    .unwrap()
}

fn rows(n: usize, tag: &str) -> Vec<u8> {
    (0..n)
        .map(|i| format!("{{\"messages\": [{{\"role\": \"user\", \"content\": \"{tag} {i}\"}}, {{\"role\": \"assistant\", \"content\": \"ok\"}}]}}\n"))
        .collect::<String>()
        .into_bytes()
}

fn request(id: &str, config: Option<&str>, splits: &[&str]) -> DatasetRequest {
    DatasetRequest {
        id: id.into(),
        revision: None,
        config: config.map(str::to_string),
        splits: splits.iter().map(|s| s.to_string()).collect(),
    }
}

fn names(files: &[std::path::PathBuf]) -> Vec<String> {
    files
        .iter()
        .map(|p| {
            let s = p.to_string_lossy();
            s[s.find("/snapshots/").unwrap() + 52..].to_string()
        })
        .collect()
}

#[test]
fn a_card_with_configs_picks_the_files_of_each_split() {
    let card = "---\nlicense: apache-2.0\nconfigs:\n- config_name: everyday\n  data_files:\n  - split: train\n    path: everyday/train-*.jsonl\n  - split: test\n    path: everyday/test.jsonl\n  default: true\n- config_name: other\n  data_files: other/*.jsonl\n---\n# A dataset\n";
    let mut hub = Hub::new();
    hub.create_repo(Kind::Dataset, "o/convs", false);
    hub.commit_bytes(
        Kind::Dataset,
        "o/convs",
        "main",
        vec![
            ("README.md".into(), card.as_bytes().to_vec()),
            ("everyday/train-0.jsonl".into(), rows(3, "a")),
            ("everyday/train-1.jsonl".into(), rows(2, "b")),
            ("everyday/test.jsonl".into(), rows(1, "c")),
            ("other/x.jsonl".into(), rows(5, "d")),
        ],
        "add data",
    );
    let server = StandIn::start(hub).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let files = resolve_dataset(
        &client(&server, cache.path(), false),
        &request("o/convs", None, &["train", "test"]),
    )
    .unwrap();
    assert_eq!(files.config, "everyday");
    assert_eq!(
        names(&files.splits["train"]),
        ["everyday/train-0.jsonl", "everyday/train-1.jsonl"]
    );
    assert_eq!(names(&files.splits["test"]), ["everyday/test.jsonl"]);
    assert_eq!(
        std::fs::read(&files.splits["test"][0]).unwrap(),
        rows(1, "c")
    );
    // The other config's files were not downloaded.
    assert!(!server
        .requests()
        .iter()
        .any(|r| r.contains("other/x.jsonl")));

    let other = resolve_dataset(
        &client(&server, cache.path(), false),
        &request("o/convs", Some("other"), &[]),
    )
    .unwrap();
    assert_eq!(names(&other.splits["train"]), ["other/x.jsonl"]);

    // Offline from the cache.
    let offline = resolve_dataset(
        &client(&server, cache.path(), true),
        &request("o/convs", None, &["train", "test"]),
    )
    .unwrap();
    assert_eq!(offline.splits, files.splits);
    // A split the config does not have.
    let err = resolve_dataset(
        &client(&server, cache.path(), false),
        &request("o/convs", None, &["validation"]),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("no split \"validation\"")
            && err.to_string().contains("--dataset_train_split"),
        "{err}"
    );
}

#[test]
fn split_named_files_without_a_card() {
    let mut hub = Hub::new();
    hub.create_repo(Kind::Dataset, "o/plain", false);
    hub.commit_bytes(
        Kind::Dataset,
        "o/plain",
        "main",
        vec![
            ("data/train-00000-of-00002.jsonl".into(), rows(2, "a")),
            ("data/train-00001-of-00002.jsonl".into(), rows(2, "b")),
            ("data/test-00000-of-00001.jsonl".into(), rows(1, "c")),
        ],
        "add data",
    );
    hub.create_repo(Kind::Dataset, "o/named", false);
    hub.commit_bytes(
        Kind::Dataset,
        "o/named",
        "main",
        vec![
            ("train.jsonl".into(), rows(2, "a")),
            ("test.jsonl".into(), rows(1, "b")),
        ],
        "add data",
    );
    let server = StandIn::start(hub).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let c = client(&server, cache.path(), false);
    let files = resolve_dataset(&c, &request("o/plain", None, &[])).unwrap();
    assert_eq!(files.config, "default");
    assert_eq!(files.splits["train"].len(), 2);
    assert_eq!(
        names(&files.splits["test"]),
        ["data/test-00000-of-00001.jsonl"]
    );
    let files = resolve_dataset(&c, &request("o/named", None, &["train"])).unwrap();
    assert_eq!(names(&files.splits["train"]), ["train.jsonl"]);
    assert!(!files.splits.contains_key("test"));
    let offline = resolve_dataset(
        &client(&server, cache.path(), true),
        &request("o/named", None, &["train"]),
    )
    .unwrap();
    assert_eq!(offline.splits, files.splits);
}

#[test]
fn only_a_parquet_conversion() {
    let mut hub = Hub::new();
    hub.create_repo(Kind::Dataset, "o/converted", false);
    hub.commit_bytes(
        Kind::Dataset,
        "o/converted",
        "main",
        vec![("README.md".into(), b"# made by a script\n".to_vec())],
        "card",
    );
    hub.commit_bytes(
        Kind::Dataset,
        "o/converted",
        "refs/convert/parquet",
        vec![
            (
                "default/train/0000.parquet".into(),
                b"PAR1 train 0".to_vec(),
            ),
            (
                "default/train/0001.parquet".into(),
                b"PAR1 train 1".to_vec(),
            ),
            ("default/test/0000.parquet".into(), b"PAR1 test".to_vec()),
        ],
        "convert",
    );
    let server = StandIn::start(hub).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let files = resolve_dataset(
        &client(&server, cache.path(), false),
        &request("o/converted", None, &["train"]),
    )
    .unwrap();
    assert_eq!(
        names(&files.splits["train"]),
        ["default/train/0000.parquet", "default/train/0001.parquet"]
    );
    assert_eq!(
        std::fs::read(&files.splits["train"][1]).unwrap(),
        b"PAR1 train 1"
    );
    // The revision was asked for URL-encoded, and its ref is where Python keeps it.
    assert!(server
        .requests()
        .iter()
        .any(|r| r.contains("/revision/refs%2Fconvert%2Fparquet")));
    assert!(cache
        .path()
        .join("datasets--o--converted/refs/refs/convert/parquet")
        .is_file());
    let offline = resolve_dataset(
        &client(&server, cache.path(), true),
        &request("o/converted", None, &["train"]),
    )
    .unwrap();
    assert_eq!(offline.splits, files.splits);
}

#[test]
fn a_dataset_never_downloaded_offline_says_so() {
    let server = StandIn::start(Hub::new()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let err = resolve_dataset(
        &client(&server, cache.path(), true),
        &request("o/none", None, &[]),
    )
    .unwrap_err();
    assert!(matches!(err, HubError::Offline { .. }), "{err}");
    assert!(err.to_string().contains("offline mode is on"), "{err}");
}

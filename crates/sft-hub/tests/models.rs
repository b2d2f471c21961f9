//! Models by id against the Hub stand-in on 127.0.0.1: into an empty cache, then offline
//! from it; a tag; private and gated repos; a download cut short and resumed.

use std::path::{Path, PathBuf};

use hub_standin::{Hub, Kind, StandIn};
use sft_hub::{resolve_model, HubClient, HubError, HubSettings, Missing};

const TOKEN: &str = "hf_standin_user";

fn tiny_llama() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data-samples/models/tiny-llama")
}

fn tiny_llama_files() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(tiny_llama()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.push((name, std::fs::read(&path).unwrap()));
    }
    // Weights the job must not download when safetensors exist.
    files.push(("pytorch_model.bin".into(), vec![7u8; 1000]));
    files
}

fn hub_with(id: &str, private: bool) -> Hub {
    let mut hub = Hub::new();
    hub.add_token(TOKEN, "user");
    hub.create_repo(Kind::Model, id, private);
    hub.commit_bytes(Kind::Model, id, "main", tiny_llama_files(), "add model");
    hub
}

fn settings(server: &StandIn, cache: &Path, token: Option<&str>, offline: bool) -> HubSettings {
    HubSettings {
        endpoint: server.url(),
        token: token.map(str::to_string),
        cache_dir: cache.to_path_buf(),
        offline,
        progress: false,
    }
}

fn client(server: &StandIn, cache: &Path, token: Option<&str>, offline: bool) -> HubClient {
    HubClient::new(settings(server, cache, token, offline)).unwrap()
}

#[test]
fn model_by_id_into_an_empty_cache_then_offline_from_it() {
    let server = StandIn::start(hub_with("HuggingFaceTB/SmolLM3-3B-Base", false)).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let c = client(&server, cache.path(), None, false);
    let dir = resolve_model(&c, "HuggingFaceTB/SmolLM3-3B-Base", None).unwrap();

    let repo = cache.path().join("models--HuggingFaceTB--SmolLM3-3B-Base");
    let sha = std::fs::read_to_string(repo.join("refs/main")).unwrap();
    assert_eq!(dir, repo.join("snapshots").join(&sha));
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "chat_template.jinja",
    ] {
        assert_eq!(
            std::fs::read(dir.join(f)).unwrap(),
            std::fs::read(tiny_llama().join(f)).unwrap(),
            "{f}"
        );
        // A relative symlink into blobs/, as huggingface_hub makes them.
        let link = std::fs::read_link(dir.join(f)).unwrap();
        assert!(link.starts_with("../../blobs"), "{}", link.display());
    }
    assert!(!dir.join("pytorch_model.bin").exists());
    assert!(!dir.join("README.md").exists());
    // The safetensors blob is named by its sha256 (the LFS etag).
    let safetensors_target = std::fs::read_link(dir.join("model.safetensors")).unwrap();
    assert_eq!(safetensors_target.file_name().unwrap().len(), 64);

    // Offline: the same folder, without a request.
    drop(server);
    let offline_server = StandIn::start(Hub::new()).unwrap();
    let c = client(&offline_server, cache.path(), None, true);
    assert_eq!(
        resolve_model(&c, "HuggingFaceTB/SmolLM3-3B-Base", None).unwrap(),
        dir
    );
    assert!(offline_server.requests().is_empty());
    // Offline, something never downloaded: the error says offline mode and what is missing.
    let err = resolve_model(&c, "HuggingFaceTB/other", None).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HubError::Offline { .. }), "{text}");
    assert!(
        text.contains("offline mode is on") && text.contains("refs/main"),
        "{text}"
    );
    assert!(text.contains("HF_HUB_OFFLINE"), "{text}");
}

#[test]
fn a_second_resolve_downloads_nothing() {
    let server = StandIn::start(hub_with("o/m", false)).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let c = client(&server, cache.path(), None, false);
    resolve_model(&c, "o/m", None).unwrap();
    let before = server.requests().len();
    resolve_model(&c, "o/m", None).unwrap();
    let after = server.requests();
    assert_eq!(after.len(), before + 1, "only the repo info: {after:?}");
    assert!(after
        .last()
        .unwrap()
        .starts_with("GET /api/models/o/m/revision/main"));
}

#[test]
fn a_revision_pinned_by_tag_and_by_commit() {
    let mut hub = hub_with("o/m", false);
    hub.tag(Kind::Model, "o/m", "v1.0", "main").unwrap();
    let v1 = hub.repos[&(Kind::Model, "o/m".to_string())].tags["v1.0"].clone();
    hub.commit_bytes(
        Kind::Model,
        "o/m",
        "main",
        vec![("config.json".into(), b"{\"changed\": true}".to_vec())],
        "change config",
    );
    let server = StandIn::start(hub).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let c = client(&server, cache.path(), None, false);
    let tagged = resolve_model(&c, "o/m", Some("v1.0")).unwrap();
    let main = resolve_model(&c, "o/m", None).unwrap();
    assert!(tagged.ends_with(&v1));
    assert_ne!(tagged, main);
    assert_eq!(
        std::fs::read(tagged.join("config.json")).unwrap(),
        std::fs::read(tiny_llama().join("config.json")).unwrap()
    );
    assert_eq!(
        std::fs::read(main.join("config.json")).unwrap(),
        b"{\"changed\": true}"
    );
    let repo = cache.path().join("models--o--m");
    assert_eq!(std::fs::read_to_string(repo.join("refs/v1.0")).unwrap(), v1);
    // The unchanged weights are one blob shared by both snapshots.
    let blobs = std::fs::read_dir(repo.join("blobs")).unwrap().count();
    assert_eq!(blobs, 7, "6 files at v1.0 + the new config");
    // A commit sha resolves offline straight to its snapshot.
    let c = client(&server, cache.path(), None, true);
    assert_eq!(resolve_model(&c, "o/m", Some(&v1)).unwrap(), tagged);
    // A tag that does not exist.
    let c = client(&server, cache.path(), None, false);
    let err = resolve_model(&c, "o/m", Some("v9")).unwrap_err();
    assert!(
        matches!(&err, HubError::NotFound { what: Missing::Revision(r), .. } if r == "v9"),
        "{err}"
    );
    assert!(err.to_string().contains("check the revision"), "{err}");
}

#[test]
fn a_private_repo_needs_the_token() {
    let server = StandIn::start(hub_with("user/private-model", true)).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let err = resolve_model(
        &client(&server, cache.path(), None, false),
        "user/private-model",
        None,
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("HF_TOKEN") && text.contains("--hub_token"),
        "{text}"
    );
    assert!(text.contains("private"), "{text}");
    let dir = resolve_model(
        &client(&server, cache.path(), Some(TOKEN), false),
        "user/private-model",
        None,
    )
    .unwrap();
    assert!(dir.join("model.safetensors").is_file());
    // A wrong token is named as such.
    let err = resolve_model(
        &client(&server, cache.path(), Some("hf_wrong"), false),
        "user/private-model",
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("token was refused"), "{err}");
    // A repo that does not exist, asked with a token: 404, check the id.
    let err = resolve_model(
        &client(&server, cache.path(), Some(TOKEN), false),
        "user/nope",
        None,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            HubError::NotFound {
                what: Missing::Repo,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("check the id"), "{err}");
}

#[test]
fn a_gated_repo_says_to_accept_the_licence() {
    let mut hub = hub_with("meta/gated", false);
    hub.repo_mut(Kind::Model, "meta/gated").unwrap().gated = true;
    let server = StandIn::start(hub).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let err = resolve_model(
        &client(&server, cache.path(), Some(TOKEN), false),
        "meta/gated",
        None,
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HubError::Gated { .. }), "{text}");
    assert!(text.contains("accept the model's licence"), "{text}");
    assert!(
        text.contains(&format!("{}/meta/gated", server.url())),
        "{text}"
    );
    server
        .hub()
        .repo_mut(Kind::Model, "meta/gated")
        .unwrap()
        .accepted
        .insert("user".into());
    resolve_model(
        &client(&server, cache.path(), Some(TOKEN), false),
        "meta/gated",
        None,
    )
    .unwrap();
}

#[test]
fn an_interrupted_download_is_resumed_with_a_range_request() {
    let server = StandIn::start(hub_with("o/m", false)).unwrap();
    server.cut_next_download("model.safetensors", 1_000_000);
    let cache = tempfile::tempdir().unwrap();
    let dir = resolve_model(&client(&server, cache.path(), None, false), "o/m", None).unwrap();
    assert_eq!(
        std::fs::read(dir.join("model.safetensors")).unwrap(),
        std::fs::read(tiny_llama().join("model.safetensors")).unwrap()
    );
    let log = server.requests();
    assert!(
        log.iter()
            .any(|l| l.starts_with("GET /lfs-cdn/") && l.ends_with("Range: bytes=1000000-")),
        "{log:#?}"
    );
    // No partial file left behind.
    let blobs: Vec<String> = std::fs::read_dir(cache.path().join("models--o--m/blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        blobs.iter().all(|b| !b.ends_with(".incomplete")),
        "{blobs:?}"
    );
}

#[test]
fn a_partial_file_from_an_earlier_run_is_resumed() {
    let server = StandIn::start(hub_with("o/m", false)).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let weights = std::fs::read(tiny_llama().join("model.safetensors")).unwrap();
    let sha = {
        use sha2::Digest;
        sha2::Sha256::digest(&weights)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let blobs = cache.path().join("models--o--m/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(format!("{sha}.incomplete")), &weights[..4096]).unwrap();
    let dir = resolve_model(&client(&server, cache.path(), None, false), "o/m", None).unwrap();
    assert_eq!(
        std::fs::read(dir.join("model.safetensors")).unwrap(),
        weights
    );
    assert!(server
        .requests()
        .iter()
        .any(|l| l.ends_with("Range: bytes=4096-")));
}

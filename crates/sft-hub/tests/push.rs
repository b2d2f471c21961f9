//! Pushing a folder to the Hub stand-in, then downloading it back.

use std::path::Path;

use hub_standin::{Hub, Kind, StandIn};
use sft_hub::{push_folder, resolve_model, HubClient, HubError, HubSettings, PushRequest};

const TOKEN: &str = "hf_standin_user";

fn client(server: &StandIn, cache: &Path, token: Option<&str>) -> HubClient {
    HubClient::new(HubSettings {
        endpoint: server.url(),
        token: token.map(str::to_string),
        cache_dir: cache.to_path_buf(),
        offline: false,
        progress: false,
    })
    .unwrap()
}

fn request(folder: &Path, repo: &str) -> PushRequest {
    PushRequest {
        repo_id: repo.into(),
        folder: folder.to_path_buf(),
        path_in_repo: String::new(),
        revision: None,
        private: false,
        message: "Upload model".into(),
        exclude: vec!["checkpoint-*".into(), "checkpoint-*/**".into()],
        retry: "rerun the push".into(),
    }
}

fn model_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data-samples/models/tiny-llama");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(tiny.join(f), dir.path().join(f)).unwrap();
    }
    // An LFS-sized file (the Hub sends files of 10 MB and more through LFS whatever their name).
    let big: Vec<u8> = (0..11 * 1024 * 1024u32)
        .map(|i| (i % 251) as u8 + 1)
        .collect();
    std::fs::write(dir.path().join("big.txt"), &big).unwrap();
    std::fs::write(
        dir.path().join("README.md"),
        "---\nlibrary_name: transformers\n---\n# card\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("checkpoint-1")).unwrap();
    std::fs::write(dir.path().join("checkpoint-1/config.json"), "{}").unwrap();
    dir
}

#[test]
fn a_pushed_folder_downloads_back_byte_for_byte() {
    let mut hub = Hub::new();
    hub.add_token(TOKEN, "user");
    let server = StandIn::start(hub).unwrap();
    let folder = model_folder();
    let before: Vec<(String, Vec<u8>)> = sft_hub::cache::list_files(folder.path())
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(folder.path().join(&f)).unwrap();
            (f, bytes)
        })
        .collect();
    let cache = tempfile::tempdir().unwrap();
    let c = client(&server, cache.path(), Some(TOKEN));
    let pushed = push_folder(&c, &request(folder.path(), "user/pushed")).unwrap();
    assert_eq!(pushed.files, 6, "the checkpoint folder is excluded");
    assert_eq!(pushed.lfs_files, 2, "model.safetensors and the 11 MB file");
    let log = server.requests();
    for expected in [
        "POST /api/repos/create",
        "POST /api/models/user/pushed/preupload/main",
        "POST /user/pushed.git/info/lfs/objects/batch",
        "PUT /lfs-upload/",
        "POST /api/models/user/pushed/commit/main",
    ] {
        assert!(
            log.iter().any(|l| l.starts_with(expected)),
            "{expected}: {log:#?}"
        );
    }
    {
        let hub = server.hub();
        let repo = &hub.repos[&(Kind::Model, "user/pushed".to_string())];
        let commit = &repo.commits[&repo.branches["main"]];
        assert_eq!(repo.branches["main"], pushed.commit);
        assert!(commit.files["model.safetensors"].lfs && commit.files["big.txt"].lfs);
        assert!(!commit.files["config.json"].lfs);
    }

    // Back down, through the model resolver, into another cache: the same bytes.
    let cache2 = tempfile::tempdir().unwrap();
    let dir = resolve_model(&client(&server, cache2.path(), None), "user/pushed", None).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert_eq!(
            std::fs::read(dir.join(f)).unwrap(),
            std::fs::read(folder.path().join(f)).unwrap()
        );
    }
    let big = sft_hub::fetch_hub_path(
        &client(&server, cache2.path(), None),
        &sft_hub::HubPath::parse("hf://user/pushed/big.txt")
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(big).unwrap(),
        std::fs::read(folder.path().join("big.txt")).unwrap()
    );

    // A second push of the same files sends no LFS object again; the repo exists already.
    let puts = server
        .requests()
        .iter()
        .filter(|l| l.starts_with("PUT "))
        .count();
    push_folder(&c, &request(folder.path(), "user/pushed")).unwrap();
    assert_eq!(
        server
            .requests()
            .iter()
            .filter(|l| l.starts_with("PUT "))
            .count(),
        puts
    );

    // The local folder is as it was.
    for (f, bytes) in before {
        assert_eq!(std::fs::read(folder.path().join(&f)).unwrap(), bytes, "{f}");
    }
}

#[test]
fn a_push_to_a_branch_and_into_a_subfolder() {
    let mut hub = Hub::new();
    hub.add_token(TOKEN, "user");
    let server = StandIn::start(hub).unwrap();
    let folder = model_folder();
    let cache = tempfile::tempdir().unwrap();
    let c = client(&server, cache.path(), Some(TOKEN));
    let mut r = request(folder.path(), "user/branched");
    r.revision = Some("dev".into());
    r.path_in_repo = "checkpoint-7".into();
    r.private = true;
    push_folder(&c, &r).unwrap();
    let hub = server.hub();
    let repo = &hub.repos[&(Kind::Model, "user/branched".to_string())];
    assert!(repo.private);
    let commit = &repo.commits[&repo.branches["dev"]];
    assert!(commit.files.contains_key("checkpoint-7/model.safetensors"));
    assert!(repo.commits[&repo.branches["main"]].files.is_empty());
}

#[test]
fn a_failed_push_says_where_and_how_to_retry_and_leaves_the_folder() {
    let mut hub = Hub::new();
    hub.add_token(TOKEN, "user");
    let server = StandIn::start(hub).unwrap();
    let folder = model_folder();
    let cache = tempfile::tempdir().unwrap();
    // No token: the Hub refuses to create the repo.
    let err = push_folder(
        &client(&server, cache.path(), None),
        &request(folder.path(), "user/x"),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            HubError::Upload {
                stage: "creating the repo",
                ..
            }
        ),
        "{text}"
    );
    assert!(
        text.contains("the local folder is untouched") && text.contains("rerun the push"),
        "{text}"
    );
    // Someone else's namespace.
    let err = push_folder(
        &client(&server, cache.path(), Some(TOKEN)),
        &request(folder.path(), "other/x"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("write access"), "{err}");
    assert!(folder.path().join("model.safetensors").is_file());
}

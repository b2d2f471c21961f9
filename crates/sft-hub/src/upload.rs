//! A local folder to a Hub repo, as `huggingface_hub.upload_folder` does it: create the
//! repo (an existing one is fine), ask `preupload` which files go to LFS, hand those to the
//! LFS batch API and `PUT` each where it says, then one NDJSON commit naming every file.
//! The local folder is only read; a failure says at which stage and how to retry (files
//! already uploaded are not sent again).

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::cache::list_files;
use crate::client::HubClient;
use crate::repo::encode_revision;
use crate::{HubError, RepoId};

/// How many files one preupload or LFS batch request names (as `huggingface_hub`).
const BATCH: usize = 256;

#[derive(Debug, Clone)]
pub struct PushRequest {
    /// `OWNER/NAME` of a model repo.
    pub repo_id: String,
    pub folder: PathBuf,
    /// Where the folder goes in the repo: `""` for the root, `checkpoint-200` for a subfolder.
    pub path_in_repo: String,
    /// The branch to commit to (created from `main` if missing); `main` when `None`.
    pub revision: Option<String>,
    /// Make the repo private if this push creates it.
    pub private: bool,
    pub message: String,
    /// Glob patterns of folder paths not to push (`checkpoint-*/**`).
    pub exclude: Vec<String>,
    /// What the user runs to try again, shown when the push fails.
    pub retry: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedCommit {
    pub commit: String,
    pub url: String,
    /// Files committed, and how many of them went through LFS.
    pub files: usize,
    pub lfs_files: usize,
}

/// A file to push: where it is, where it goes, what the Hub needs to know about it.
struct Upload {
    local: PathBuf,
    path: String,
    size: u64,
    sha256: String,
    sample: Vec<u8>,
    lfs: bool,
}

/// `POST /api/repos/create`; a repo that already exists is fine. Returns the repo's URL.
pub fn create_repo(client: &HubClient, repo: &RepoId, private: bool) -> Result<String, HubError> {
    let (organization, name) = match repo.id().split_once('/') {
        Some((o, n)) => (Some(o), n),
        None => (None, repo.id()),
    };
    let url = format!("{}/api/repos/create", client.endpoint());
    let body = json!({
        "name": name,
        "organization": organization,
        "type": repo.repo_type.singular(),
        "private": private,
    });
    match client.post_json(repo, &url, &body, "application/json") {
        Ok(v) => Ok(v["url"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| repo.page(client.endpoint()))),
        Err(HubError::Http { status: 409, .. }) => Ok(repo.page(client.endpoint())),
        Err(e) => Err(e),
    }
}

/// `POST /api/{type}s/ID/branch/NAME` from `main`; an existing branch is fine.
fn create_branch(client: &HubClient, repo: &RepoId, branch: &str) -> Result<(), HubError> {
    let url = format!(
        "{}/api/{}/{}/branch/{}",
        client.endpoint(),
        repo.repo_type.plural(),
        repo.id(),
        encode_revision(branch)
    );
    match client.post_json(repo, &url, &json!({}), "application/json") {
        Ok(_) | Err(HubError::Http { status: 409, .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

fn describe(path: &Path) -> Result<(u64, String, Vec<u8>), HubError> {
    let mut file = std::fs::File::open(path).map_err(|e| HubError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut sample = Vec::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| HubError::io(path, e))?;
        if n == 0 {
            break;
        }
        if sample.len() < 512 {
            let take = (512 - sample.len()).min(n);
            sample.extend_from_slice(&buf[..take]);
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let sha = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, sha, sample))
}

/// Pushes a folder in one commit.
pub fn push_folder(client: &HubClient, request: &PushRequest) -> Result<PushedCommit, HubError> {
    let repo = RepoId::model(&request.repo_id)?;
    let fail = |stage: &'static str, e: HubError| HubError::Upload {
        repo: repo.id().to_string(),
        folder: request.folder.clone(),
        stage,
        source: Box::new(e),
        retry: request.retry.clone(),
    };
    if client.settings().offline {
        return Err(fail(
            "starting",
            HubError::Offline {
                repo: repo.to_string(),
                revision: request.revision.clone().unwrap_or_else(|| "main".into()),
                missing: "the network (a push always needs the Hub)".into(),
                cache: client.settings().cache_dir.clone(),
            },
        ));
    }
    let revision = request.revision.as_deref().unwrap_or("main");
    let uploads = collect(request).map_err(|e| fail("reading the folder", e))?;
    if uploads.is_empty() {
        return Err(fail(
            "reading the folder",
            HubError::io(
                &request.folder,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no files to push"),
            ),
        ));
    }
    let page =
        create_repo(client, &repo, request.private).map_err(|e| fail("creating the repo", e))?;
    if revision != "main" {
        create_branch(client, &repo, revision).map_err(|e| fail("creating the branch", e))?;
    }
    let mut uploads = uploads;
    preupload(client, &repo, revision, &mut uploads)
        .map_err(|e| fail("asking which files go to LFS", e))?;
    upload_lfs(client, &repo, revision, &uploads)
        .map_err(|e| fail("uploading large files (LFS)", e))?;
    let commit = commit(client, &repo, revision, &request.message, &uploads)
        .map_err(|e| fail("committing", e))?;
    Ok(PushedCommit {
        commit,
        url: page,
        files: uploads.len(),
        lfs_files: uploads.iter().filter(|u| u.lfs).count(),
    })
}

fn collect(request: &PushRequest) -> Result<Vec<Upload>, HubError> {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: false,
        require_literal_leading_dot: false,
    };
    let exclude: Vec<glob::Pattern> = request
        .exclude
        .iter()
        .filter_map(|p| glob::Pattern::new(p).ok())
        .collect();
    if !request.folder.is_dir() {
        return Err(HubError::io(
            &request.folder,
            std::io::Error::new(std::io::ErrorKind::NotFound, "not a folder"),
        ));
    }
    let prefix = request.path_in_repo.trim_matches('/');
    let mut out = Vec::new();
    for rel in list_files(&request.folder) {
        let hidden = rel.split('/').any(|p| p.starts_with('.'));
        if hidden || exclude.iter().any(|p| p.matches_with(&rel, options)) {
            continue;
        }
        let local = request.folder.join(&rel);
        let (size, sha256, sample) = describe(&local)?;
        out.push(Upload {
            local,
            path: if prefix.is_empty() {
                rel
            } else {
                format!("{prefix}/{rel}")
            },
            size,
            sha256,
            sample,
            lfs: false,
        });
    }
    Ok(out)
}

fn preupload(
    client: &HubClient,
    repo: &RepoId,
    revision: &str,
    uploads: &mut [Upload],
) -> Result<(), HubError> {
    let url = format!(
        "{}/api/{}/{}/preupload/{}",
        client.endpoint(),
        repo.repo_type.plural(),
        repo.id(),
        encode_revision(revision)
    );
    for chunk in uploads.chunks_mut(BATCH) {
        let files: Vec<Value> = chunk
            .iter()
            .map(|u| {
                json!({
                    "path": u.path,
                    "sample": base64::engine::general_purpose::STANDARD.encode(&u.sample),
                    "size": u.size,
                })
            })
            .collect();
        let answer =
            client.post_json(repo, &url, &json!({ "files": files }), "application/json")?;
        let modes = answer["files"]
            .as_array()
            .ok_or_else(|| HubError::BadResponse {
                url: url.clone(),
                message: "no \"files\" in the preupload answer".into(),
            })?;
        for u in chunk.iter_mut() {
            let mode = modes
                .iter()
                .find(|m| m["path"].as_str() == Some(u.path.as_str()))
                .and_then(|m| m["uploadMode"].as_str());
            // Empty files cannot go through LFS (as in huggingface_hub).
            u.lfs = mode == Some("lfs") && u.size > 0;
        }
    }
    Ok(())
}

fn upload_lfs(
    client: &HubClient,
    repo: &RepoId,
    revision: &str,
    uploads: &[Upload],
) -> Result<(), HubError> {
    let lfs: Vec<&Upload> = uploads.iter().filter(|u| u.lfs).collect();
    let url = format!(
        "{}/{}.git/info/lfs/objects/batch",
        client.endpoint(),
        repo.url_path()
    );
    for chunk in lfs.chunks(BATCH) {
        let body = json!({
            "operation": "upload",
            "transfers": ["basic"],
            "objects": chunk.iter().map(|u| json!({"oid": u.sha256, "size": u.size})).collect::<Vec<_>>(),
            "hash_algo": "sha256",
            "ref": {"name": revision},
        });
        let answer = client.block_on(
            client.json(
                repo,
                client
                    .request(Method::POST, &url)
                    .header("Accept", "application/vnd.git-lfs+json")
                    .header(CONTENT_TYPE, "application/vnd.git-lfs+json")
                    .body(serde_json::to_vec(&body).unwrap_or_default()),
            ),
        )?;
        let objects = answer["objects"]
            .as_array()
            .ok_or_else(|| HubError::BadResponse {
                url: url.clone(),
                message: "no \"objects\" in the LFS batch answer".into(),
            })?;
        for object in objects {
            let oid = object["oid"].as_str().unwrap_or_default();
            if let Some(error) = object.get("error") {
                return Err(HubError::Http {
                    url: url.clone(),
                    status: error["code"].as_u64().unwrap_or(0) as u16,
                    message: format!(
                        "LFS object {oid}: {}",
                        error["message"].as_str().unwrap_or("refused")
                    ),
                });
            }
            // No actions: the Hub already has this object.
            let Some(upload) = object["actions"].get("upload") else {
                continue;
            };
            let Some(u) = chunk.iter().find(|u| u.sha256 == oid) else {
                continue;
            };
            if upload["header"].get("chunk_size").is_some() {
                return Err(HubError::BadResponse {
                    url: url.clone(),
                    message: format!(
                        "{} ({} bytes) was offered only a multipart upload, which this client does not do",
                        u.path, u.size
                    ),
                });
            }
            let href = upload["href"]
                .as_str()
                .ok_or_else(|| HubError::BadResponse {
                    url: url.clone(),
                    message: "an LFS upload action without href".into(),
                })?;
            let headers: Vec<(String, String)> = upload["header"]
                .as_object()
                .map(|h| {
                    h.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            client.put_file(repo, href, &headers, &u.local, u.size)?;
            if let Some(verify) = object["actions"].get("verify") {
                if let Some(href) = verify["href"].as_str() {
                    client.post_json(
                        repo,
                        href,
                        &json!({"oid": u.sha256, "size": u.size}),
                        "application/vnd.git-lfs+json",
                    )?;
                }
            }
        }
    }
    Ok(())
}

fn commit(
    client: &HubClient,
    repo: &RepoId,
    revision: &str,
    message: &str,
    uploads: &[Upload],
) -> Result<String, HubError> {
    let mut body = Vec::new();
    let mut line = |v: Value| {
        body.extend(serde_json::to_vec(&v).unwrap_or_default());
        body.push(b'\n');
    };
    line(json!({"key": "header", "value": {"summary": message, "description": ""}}));
    for u in uploads {
        if u.lfs {
            line(
                json!({"key": "lfsFile", "value": {"path": u.path, "algo": "sha256", "oid": u.sha256, "size": u.size}}),
            );
        } else {
            let bytes = std::fs::read(&u.local).map_err(|e| HubError::io(&u.local, e))?;
            line(json!({"key": "file", "value": {
                "content": base64::engine::general_purpose::STANDARD.encode(&bytes),
                "path": u.path,
                "encoding": "base64",
            }}));
        }
    }
    let url = format!(
        "{}/api/{}/{}/commit/{}",
        client.endpoint(),
        repo.repo_type.plural(),
        repo.id(),
        encode_revision(revision)
    );
    let answer = client.block_on(
        client.json(
            repo,
            client
                .request(Method::POST, &url)
                .header(CONTENT_TYPE, "application/x-ndjson")
                .body(body),
        ),
    )?;
    answer["commitOid"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| HubError::BadResponse {
            url,
            message: "no \"commitOid\" in the commit answer".into(),
        })
}

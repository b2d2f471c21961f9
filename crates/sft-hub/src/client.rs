//! The HTTP side: a blocking client over reqwest (driven by a current-thread tokio
//! runtime), the Hub's statuses turned into [`HubError`]s, repo info, and resumable
//! downloads into the cache.

use std::io::Write;
use std::path::Path;

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RANGE};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::cache::RepoCache;
use crate::error::Missing;
use crate::repo::{encode_path, encode_revision};
use crate::{HubError, HubSettings, RepoId};

/// One file of a repo at a commit, as `GET /api/.../revision/REV?blobs=true` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoFile {
    pub path: String,
    pub size: Option<u64>,
    /// The blob's name in the cache: the LFS sha256, else the git blob id.
    pub etag: Option<String>,
}

/// A repo at one commit.
#[derive(Debug, Clone)]
pub struct RepoInfo {
    pub sha: String,
    pub files: Vec<RepoFile>,
    pub private: bool,
}

/// How many times a download is retried (resuming where it stopped) before giving up.
const DOWNLOAD_ATTEMPTS: usize = 4;

pub struct HubClient {
    settings: HubSettings,
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl HubClient {
    pub fn new(settings: HubSettings) -> Result<Self, HubError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| HubError::io("tokio runtime", e))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!(
                "sft-rs/",
                env!("CARGO_PKG_VERSION"),
                "; hf-hub-rust"
            ))
            .connect_timeout(std::time::Duration::from_secs(30))
            .read_timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| HubError::Network {
                url: settings.endpoint.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            settings,
            runtime,
            http,
        })
    }

    pub fn from_env() -> Result<Self, HubError> {
        Self::new(HubSettings::from_env())
    }

    pub fn settings(&self) -> &HubSettings {
        &self.settings
    }

    pub fn endpoint(&self) -> &str {
        &self.settings.endpoint
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    pub(crate) fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, url);
        if let Some(token) = &self.settings.token {
            r = r.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        r
    }

    /// Sends, and turns any non-success status into the error a user can act on.
    pub(crate) async fn send(
        &self,
        repo: &RepoId,
        builder: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, HubError> {
        let request = builder.build().map_err(|e| HubError::Network {
            url: self.settings.endpoint.clone(),
            message: e.to_string(),
        })?;
        let url = request.url().to_string();
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| network_error(&url, &e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        Err(self.status_error(repo, &url, status, &headers, &body))
    }

    fn status_error(
        &self,
        repo: &RepoId,
        url: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &str,
    ) -> HubError {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let message = header("x-error-message")
            .or_else(|| {
                serde_json::from_str::<Value>(body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
            })
            .unwrap_or_else(|| body.chars().take(300).collect());
        let had_token = self.settings.token.is_some();
        let name = repo.to_string();
        match header("x-error-code").as_deref() {
            Some("GatedRepo") => {
                return HubError::Gated {
                    repo: name,
                    page: repo.page(&self.settings.endpoint),
                    had_token,
                }
            }
            Some("RevisionNotFound") => {
                let rev = url
                    .split("/revision/")
                    .nth(1)
                    .or_else(|| url.split("/resolve/").nth(1))
                    .map(|r| r.split(['/', '?']).next().unwrap_or(r))
                    .map(|r| {
                        percent_encoding::percent_decode_str(r)
                            .decode_utf8_lossy()
                            .into_owned()
                    })
                    .unwrap_or_default();
                return HubError::NotFound {
                    repo: name,
                    what: Missing::Revision(rev),
                    had_token,
                };
            }
            Some("EntryNotFound") => {
                let file = url
                    .split("/resolve/")
                    .nth(1)
                    .and_then(|r| r.split_once('/'))
                    .map(|(_, f)| f.to_string())
                    .unwrap_or_default();
                return HubError::NotFound {
                    repo: name,
                    what: Missing::File(file),
                    had_token,
                };
            }
            Some("RepoNotFound") => {
                return HubError::NotFound {
                    repo: name,
                    what: Missing::Repo,
                    had_token,
                }
            }
            _ => {}
        }
        match status.as_u16() {
            401 => HubError::Unauthorized {
                repo: name,
                had_token: had_token && message.contains("Invalid credentials"),
                message,
            },
            403 => HubError::Forbidden {
                repo: name,
                message,
            },
            404 => HubError::NotFound {
                repo: name,
                what: Missing::Repo,
                had_token,
            },
            code => HubError::Http {
                url: url.to_string(),
                status: code,
                message,
            },
        }
    }

    pub(crate) async fn json(
        &self,
        repo: &RepoId,
        builder: reqwest::RequestBuilder,
    ) -> Result<Value, HubError> {
        let response = self.send(repo, builder).await?;
        let url = response.url().to_string();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| network_error(&url, &e))?;
        serde_json::from_slice(&bytes).map_err(|e| HubError::BadResponse {
            url,
            message: format!("not JSON: {e}"),
        })
    }

    /// `GET /api/{models,datasets}/ID/revision/REV?blobs=true`: the commit and its files.
    pub fn repo_info(&self, repo: &RepoId, revision: &str) -> Result<RepoInfo, HubError> {
        let url = format!(
            "{}/api/{}/{}/revision/{}?blobs=true",
            self.settings.endpoint,
            repo.repo_type.plural(),
            repo.id(),
            encode_revision(revision)
        );
        let value = self.block_on(self.json(repo, self.request(Method::GET, &url)))?;
        let bad = |message: &str| HubError::BadResponse {
            url: url.clone(),
            message: message.to_string(),
        };
        let sha = value["sha"]
            .as_str()
            .ok_or_else(|| bad("no \"sha\" in the repo info"))?
            .to_string();
        let files = value["siblings"]
            .as_array()
            .ok_or_else(|| bad("no \"siblings\" in the repo info"))?
            .iter()
            .filter_map(|s| {
                let path = s["rfilename"].as_str()?.to_string();
                let etag = s["lfs"]["sha256"]
                    .as_str()
                    .or_else(|| s["blobId"].as_str())
                    .map(str::to_string);
                Some(RepoFile {
                    path,
                    size: s["size"].as_u64(),
                    etag,
                })
            })
            .collect();
        Ok(RepoInfo {
            sha,
            files,
            private: value["private"].as_bool().unwrap_or(false),
        })
    }

    /// Puts `files` of `repo` at `commit` into the cache (only those not there yet) and
    /// returns the snapshot folder.
    pub fn fetch_files(
        &self,
        repo: &RepoId,
        commit: &str,
        files: &[RepoFile],
    ) -> Result<std::path::PathBuf, HubError> {
        let cache = RepoCache::new(&self.settings.cache_dir, repo);
        for file in files {
            if cache.has_file(commit, &file.path) {
                continue;
            }
            let etag = file.etag.clone().ok_or_else(|| HubError::BadResponse {
                url: format!(
                    "{}/api/{}/{}",
                    self.endpoint(),
                    repo.repo_type.plural(),
                    repo.id()
                ),
                message: format!(
                    "no blob id for {} (the repo info lacks \"blobId\")",
                    file.path
                ),
            })?;
            let blob = cache.blob_path(&etag);
            if !blob.is_file() {
                let url = format!(
                    "{}/{}/resolve/{}/{}",
                    self.settings.endpoint,
                    repo.url_path(),
                    commit,
                    encode_path(&file.path)
                );
                let incomplete = blob.with_file_name(format!("{etag}.incomplete"));
                self.download(repo, &url, &incomplete, file.size, &file.path)?;
                std::fs::rename(&incomplete, &blob).map_err(|e| HubError::io(&blob, e))?;
            }
            cache.link(commit, &file.path, &etag)?;
        }
        Ok(cache.snapshot_dir(commit))
    }

    /// Downloads `url` into `incomplete`, resuming from what is already there with a
    /// `Range` request, and retrying a dropped connection the same way.
    pub fn download(
        &self,
        repo: &RepoId,
        url: &str,
        incomplete: &Path,
        expected: Option<u64>,
        label: &str,
    ) -> Result<(), HubError> {
        if let Some(parent) = incomplete.parent() {
            std::fs::create_dir_all(parent).map_err(|e| HubError::io(parent, e))?;
        }
        let bar = self.progress_bar(label, expected);
        let mut last_error = None;
        for _ in 0..DOWNLOAD_ATTEMPTS {
            let have = std::fs::metadata(incomplete).map(|m| m.len()).unwrap_or(0);
            if expected == Some(have) && have > 0 {
                last_error = None;
                break;
            }
            match self.block_on(self.download_once(repo, url, incomplete, have, &bar)) {
                Ok(()) => {
                    last_error = None;
                    break;
                }
                Err(e @ HubError::Network { .. }) => last_error = Some(e),
                Err(e) => {
                    bar.abandon();
                    return Err(e);
                }
            }
        }
        bar.finish_and_clear();
        if let Some(e) = last_error {
            return Err(e);
        }
        let have = std::fs::metadata(incomplete).map(|m| m.len()).unwrap_or(0);
        if let Some(expected) = expected {
            if have != expected {
                return Err(HubError::BadResponse {
                    url: url.to_string(),
                    message: format!(
                        "got {have} bytes of {label}, the repo info says {expected}; rerun to resume from {}",
                        incomplete.display()
                    ),
                });
            }
        }
        Ok(())
    }

    async fn download_once(
        &self,
        repo: &RepoId,
        url: &str,
        incomplete: &Path,
        have: u64,
        bar: &indicatif::ProgressBar,
    ) -> Result<(), HubError> {
        let mut builder = self.request(Method::GET, url);
        if have > 0 {
            builder = builder.header(RANGE, format!("bytes={have}-"));
        }
        let mut response = match self.send(repo, builder).await {
            Err(HubError::Http { status: 416, .. }) if have > 0 => {
                // Nothing left to send from there: start again from the beginning.
                std::fs::remove_file(incomplete).map_err(|e| HubError::io(incomplete, e))?;
                return Err(HubError::Network {
                    url: url.to_string(),
                    message: "the partial download did not match; starting again".into(),
                });
            }
            other => other?,
        };
        let resumed = response.status() == StatusCode::PARTIAL_CONTENT;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(resumed)
            .write(true)
            .truncate(!resumed)
            .open(incomplete)
            .map_err(|e| HubError::io(incomplete, e))?;
        bar.set_position(if resumed { have } else { 0 });
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    file.write_all(&chunk)
                        .map_err(|e| HubError::io(incomplete, e))?;
                    bar.inc(chunk.len() as u64);
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = file.flush();
                    return Err(network_error(url, &e));
                }
            }
        }
        file.flush().map_err(|e| HubError::io(incomplete, e))?;
        Ok(())
    }

    fn progress_bar(&self, label: &str, len: Option<u64>) -> indicatif::ProgressBar {
        if !self.settings.progress {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new(len.unwrap_or(0));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:30!} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(label.to_string());
        bar
    }

    /// `POST` a JSON body.
    pub(crate) fn post_json(
        &self,
        repo: &RepoId,
        url: &str,
        body: &Value,
        content_type: &str,
    ) -> Result<Value, HubError> {
        let builder = self
            .request(Method::POST, url)
            .header(CONTENT_TYPE, content_type)
            .body(serde_json::to_vec(body).unwrap_or_default());
        self.block_on(self.json(repo, builder))
    }

    pub(crate) fn put_file(
        &self,
        repo: &RepoId,
        url: &str,
        headers: &[(String, String)],
        path: &Path,
        size: u64,
    ) -> Result<(), HubError> {
        self.block_on(async {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|e| HubError::io(path, e))?;
            // An upload URL is presigned; our token is not sent there.
            let mut builder = self
                .http
                .request(Method::PUT, url)
                .header(CONTENT_LENGTH, size)
                .body(reqwest::Body::from(file));
            for (k, v) in headers {
                builder = builder.header(k.as_str(), v.as_str());
            }
            self.send(repo, builder).await.map(|_| ())
        })
    }
}

pub(crate) fn network_error(url: &str, e: &reqwest::Error) -> HubError {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    HubError::Network {
        url: url.to_string(),
        message,
    }
}

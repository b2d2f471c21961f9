//! What can go wrong between us and the Hub, each with what failed and what to do.

use std::path::PathBuf;

/// Which thing the Hub said it does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    Repo,
    Revision(String),
    File(String),
}

#[derive(Debug)]
pub enum HubError {
    /// Not a repo id, a revision or an `hf://` path.
    InvalidId { input: String, reason: String },
    /// `HF_HUB_OFFLINE` is on and the cache lacks something the job needs.
    Offline {
        repo: String,
        revision: String,
        missing: String,
        cache: PathBuf,
    },
    /// 401 without a repo-specific code: private (or missing) and we sent no valid token.
    Unauthorized {
        repo: String,
        had_token: bool,
        message: String,
    },
    /// The repo is gated and this account has not accepted its conditions.
    Gated {
        repo: String,
        page: String,
        had_token: bool,
    },
    /// 403 on a write: the token cannot write there.
    Forbidden { repo: String, message: String },
    /// 404: no such repo (or one we may not see), revision or file.
    NotFound {
        repo: String,
        what: Missing,
        had_token: bool,
    },
    /// Any other HTTP status.
    Http {
        url: String,
        status: u16,
        message: String,
    },
    /// No answer at all (connection refused, DNS, TLS, a dropped connection).
    Network { url: String, message: String },
    /// An answer we cannot read.
    BadResponse { url: String, message: String },
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A dataset repo whose files make no config/split we can use.
    Dataset {
        repo: String,
        message: String,
        hint: String,
    },
    /// A push that failed at `stage`; the local folder is untouched.
    Upload {
        repo: String,
        folder: PathBuf,
        stage: &'static str,
        source: Box<HubError>,
        retry: String,
    },
}

impl HubError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    fn hint(&self) -> Option<String> {
        let token_hint = "set HF_TOKEN (or pass --hub_token, or log in with a token saved at $HF_HOME/token) to a token of an account that can read it";
        Some(match self {
            Self::InvalidId { .. } => {
                "a Hub id is OWNER/NAME (letters, digits, '-', '_', '.'), optionally hf://datasets/OWNER/NAME@REVISION/PATH; a local path must exist".into()
            }
            Self::Offline { repo, .. } => format!(
                "HF_HUB_OFFLINE is set, so only the local cache is read: unset it to download {repo}, or point HF_HUB_CACHE/HF_HOME at a cache that has it"
            ),
            Self::Unauthorized { had_token: false, .. } => format!(
                "the repo is private or does not exist: check the id, and if it is private {token_hint}"
            ),
            Self::Unauthorized { had_token: true, .. } => {
                "the token was refused: check HF_TOKEN / --hub_token (a token from https://huggingface.co/settings/tokens)".into()
            }
            Self::Gated { page, had_token, .. } => {
                if *had_token {
                    format!("accept the model's licence and conditions on {page} with the account of your token, then retry")
                } else {
                    format!("accept the licence and conditions on {page}, then set HF_TOKEN (or --hub_token) to a token of that account")
                }
            }
            Self::Forbidden { .. } => {
                "use a token with write access to that namespace (a \"write\" token), or push to a repo under your own user name".into()
            }
            Self::NotFound { what: Missing::Repo, had_token, .. } => {
                if *had_token {
                    "check the id (OWNER/NAME, as on its page), and that your token's account can see it if it is private".into()
                } else {
                    format!("check the id (OWNER/NAME, as on its page); if it is private, {token_hint}")
                }
            }
            Self::NotFound { what: Missing::Revision(_), .. } => {
                "check the revision: a branch, a tag or a full 40-character commit sha of that repo".into()
            }
            Self::NotFound { what: Missing::File(_), .. } => {
                "check the file name and the revision; the repo's file list is on its page under \"Files\"".into()
            }
            Self::Http { status, .. } if *status == 429 => {
                "the Hub rate-limited this client: wait a minute and retry, or set HF_TOKEN (logged-in limits are higher)".into()
            }
            Self::Http { .. } => "retry; if it persists, check HF_ENDPOINT and https://status.huggingface.co".into(),
            Self::Network { .. } => {
                "check the connection, a proxy (HTTPS_PROXY) and HF_ENDPOINT; to work from the local cache only, set HF_HUB_OFFLINE=1".into()
            }
            Self::BadResponse { .. } => "check that HF_ENDPOINT points at a Hugging Face Hub".into(),
            Self::Io { .. } => "check that the folder exists, is writable and the disk has room".into(),
            Self::Dataset { hint, .. } => hint.clone(),
            Self::Upload { retry, .. } => retry.clone(),
        })
    }
}

impl std::fmt::Display for HubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidId { input, reason } => write!(f, "{input:?}: {reason}")?,
            Self::Offline {
                repo,
                revision,
                missing,
                cache,
            } => write!(
                f,
                "{repo} (revision {revision}): offline mode is on (HF_HUB_OFFLINE) and the cache {} lacks {missing}",
                cache.display()
            )?,
            Self::Unauthorized { repo, message, .. } => {
                write!(f, "{repo}: not authorised (401): {message}")?
            }
            Self::Gated { repo, .. } => write!(
                f,
                "{repo} is a gated repo: its files are given only to accounts that accepted its conditions"
            )?,
            Self::Forbidden { repo, message } => write!(f, "{repo}: forbidden (403): {message}")?,
            Self::NotFound { repo, what, .. } => match what {
                Missing::Repo => write!(f, "{repo}: repository not found")?,
                Missing::Revision(r) => write!(f, "{repo}: no revision {r:?}")?,
                Missing::File(p) => write!(f, "{repo}: no file {p:?} at that revision")?,
            },
            Self::Http {
                url,
                status,
                message,
            } => write!(f, "{url}: HTTP {status}: {message}")?,
            Self::Network { url, message } => write!(f, "{url}: no answer: {message}")?,
            Self::BadResponse { url, message } => write!(f, "{url}: unexpected answer: {message}")?,
            Self::Io { path, source } => write!(f, "{}: {source}", path.display())?,
            Self::Dataset { repo, message, .. } => write!(f, "dataset {repo}: {message}")?,
            Self::Upload {
                repo,
                folder,
                stage,
                source,
                ..
            } => {
                // The inner error's own hint is kept; the retry hint comes last.
                write!(
                    f,
                    "push of {} to {repo} failed while {stage} (the local folder is untouched): {source}",
                    folder.display()
                )?;
            }
        }
        if let Some(hint) = self.hint() {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for HubError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Upload { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

//! Where the Hub is, who we are, and where the cache lives: the environment variables
//! `huggingface_hub` reads, resolved the same way, so both share one cache and one login.

use std::path::{Path, PathBuf};

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSettings {
    /// `HF_ENDPOINT`, without a trailing slash.
    pub endpoint: String,
    /// `--hub_token`, else `HF_TOKEN`, else the token file (`HF_TOKEN_PATH`, `$HF_HOME/token`).
    pub token: Option<String>,
    /// `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
    pub cache_dir: PathBuf,
    /// `HF_HUB_OFFLINE=1` (or `TRANSFORMERS_OFFLINE=1`): the cache only, no request.
    pub offline: bool,
    /// A progress bar per download, when stderr is a terminal and
    /// `HF_HUB_DISABLE_PROGRESS_BARS` is not set.
    pub progress: bool,
}

/// `huggingface_hub`'s true values: `1`, `ON`, `YES`, `TRUE`, any case.
fn is_true(value: Option<String>) -> bool {
    value.is_some_and(|v| matches!(v.to_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE"))
}

fn expand_home(path: &str, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

impl HubSettings {
    /// From this process's environment.
    pub fn from_env() -> Self {
        let mut settings = Self::from_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
        settings.progress =
            settings.progress && std::io::IsTerminal::is_terminal(&std::io::stderr());
        settings
    }

    /// From any source of variables (tests pass a map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let home = var("HOME").map(PathBuf::from);
        let home = home.as_deref();
        let hf_home = var("HF_HOME")
            .map(|h| expand_home(&h, home))
            .or_else(|| var("XDG_CACHE_HOME").map(|x| expand_home(&x, home).join("huggingface")))
            .or_else(|| home.map(|h| h.join(".cache").join("huggingface")))
            .unwrap_or_else(|| PathBuf::from(".cache/huggingface"));
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(|c| expand_home(&c, home))
            .unwrap_or_else(|| hf_home.join("hub"));
        let token_path = var("HF_TOKEN_PATH")
            .map(|p| expand_home(&p, home))
            .unwrap_or_else(|| hf_home.join("token"));
        let token = var("HF_TOKEN")
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| std::fs::read_to_string(&token_path).ok())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let endpoint = var("HF_ENDPOINT")
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
            .trim_end_matches('/')
            .to_string();
        Self {
            endpoint,
            token,
            cache_dir,
            offline: is_true(var("HF_HUB_OFFLINE")) || is_true(var("TRANSFORMERS_OFFLINE")),
            progress: !is_true(var("HF_HUB_DISABLE_PROGRESS_BARS")),
        }
    }

    /// A token given on the command line wins over the environment and the token file.
    pub fn with_token(mut self, token: Option<&str>) -> Self {
        if let Some(t) = token.map(str::trim).filter(|t| !t.is_empty()) {
            self.token = Some(t.to_string());
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> HubSettings {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubSettings::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_huggingface_hub() {
        let s = settings(&[("HOME", "/home/u")]);
        assert_eq!(s.endpoint, "https://huggingface.co");
        assert_eq!(s.cache_dir, PathBuf::from("/home/u/.cache/huggingface/hub"));
        assert!(!s.offline);
        assert_eq!(s.token, None);
    }

    #[test]
    fn hf_home_cache_endpoint_offline_and_token_precedence() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "hf_from_file\n").unwrap();
        let home = dir.path().to_str().unwrap();
        let s = settings(&[
            ("HF_HOME", home),
            ("HF_ENDPOINT", "http://127.0.0.1:9/"),
            ("HF_HUB_OFFLINE", "1"),
        ]);
        assert_eq!(s.cache_dir, dir.path().join("hub"));
        assert_eq!(s.endpoint, "http://127.0.0.1:9");
        assert!(s.offline);
        assert_eq!(s.token.as_deref(), Some("hf_from_file"));
        let s = settings(&[
            ("HF_HOME", home),
            ("HF_TOKEN", "hf_env"),
            ("HF_HUB_CACHE", "/c"),
        ]);
        assert_eq!(s.token.as_deref(), Some("hf_env"));
        assert_eq!(s.cache_dir, PathBuf::from("/c"));
        let s = s.with_token(Some("hf_flag"));
        assert_eq!(s.token.as_deref(), Some("hf_flag"));
        let s = settings(&[("HF_TOKEN_PATH", "/nonexistent/token"), ("HOME", home)]);
        assert_eq!(s.token, None);
    }
}

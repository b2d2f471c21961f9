//! `--config FILE.yaml`: a flat YAML file of `name: value` lines (as TRL's `trl sft
//! --config` takes) read as flags, which the command line then overrides.

use std::fmt;
use std::path::{Path, PathBuf};

/// A config file that cannot be read, with the line at fault.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFileError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(n) => write!(f, "{}:{n}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigFileError {}

/// `name: value` lines of a YAML config as flags. Lists (`[a, b]` or `- a` lines) become
/// comma-joined values; nested mappings are refused with the line that holds them.
pub fn yaml_flags(path: &Path) -> Result<Vec<String>, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigFileError {
        path: path.to_path_buf(),
        line: None,
        message: e.to_string(),
    })?;
    let mut flags: Vec<(String, Vec<String>)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = strip_comment(raw);
        if line.trim().is_empty() || line.trim() == "---" {
            continue;
        }
        let at = |message: &str| ConfigFileError {
            path: path.to_path_buf(),
            line: Some(n + 1),
            message: message.to_string(),
        };
        if let Some(item) = line.trim_start().strip_prefix("- ") {
            let Some(last) = flags.last_mut() else {
                return Err(at("a list item with no key above it"));
            };
            last.1.push(unquote(item.trim()));
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            return Err(at(
                "nested settings are not supported; write `name: value` at the top level",
            ));
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(at("expected `name: value`"));
        };
        let key = key.trim().replace('-', "_");
        let value = value.trim();
        let values = if let Some(list) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            list.split(',')
                .map(|v| unquote(v.trim()))
                .filter(|v| !v.is_empty())
                .collect()
        } else if value.is_empty() {
            Vec::new()
        } else {
            vec![unquote(value)]
        };
        flags.push((key, values));
    }
    let mut out = Vec::new();
    for (key, values) in flags {
        if values.is_empty() || values.iter().all(|v| v == "null" || v == "~") {
            continue;
        }
        out.push(format!("--{key}={}", values.join(",")));
    }
    Ok(out)
}

fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if i == 0 || line[..i].ends_with(' ') => return &line[..i],
            _ => {}
        }
    }
    line
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_string();
        }
    }
    match v {
        "True" | "yes" | "on" => "true".into(),
        "False" | "no" | "off" => "false".into(),
        _ => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_settings_and_lists_become_flags_and_nesting_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "# run\nlearning-rate: 1e-4   # comment\nmodel_name_or_path: \"a/b # c\"\nreport_to:\n  - trackio\n  - none\npacking: True\nwarmup_ratio: null\n",
        )
        .unwrap();
        assert_eq!(
            yaml_flags(&path).unwrap(),
            [
                "--learning_rate=1e-4",
                "--model_name_or_path=a/b # c",
                "--report_to=trackio,none",
                "--packing=true"
            ]
        );
        std::fs::write(&path, "a: 1\nnested:\n  b: 2\n").unwrap();
        let err = yaml_flags(&path).unwrap_err();
        assert_eq!(err.line, Some(3));
        assert!(
            err.to_string().contains("c.yaml:3: nested settings"),
            "{err}"
        );
    }
}

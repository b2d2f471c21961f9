//! The Hub at both ends of a run: a dataset id (`--dataset_name OWNER/NAME`,
//! `hf://datasets/...`) to the local files of a split, and `--push_to_hub` with TRL's
//! `--hub_strategy`:
//!
//! - `end`: the final model (and its card) when training ends;
//! - `every_save`: also the model of each checkpoint, to the repo's root, when it is saved;
//! - `checkpoint`: as `every_save`, plus the whole latest checkpoint in `last-checkpoint/`
//!   (to resume elsewhere);
//! - `all_checkpoints`: as `every_save`, plus each checkpoint in its own `checkpoint-N/`.
//!
//! The repo is created when the run starts, so a missing token or a namespace the token
//! cannot write to stops the run before it trains. A push only reads the output folder.

use std::path::{Path, PathBuf};

use sft_hub::{HubClient, HubError, ModelCard, PushRequest, PushedCommit, RepoId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubStrategy {
    End,
    EverySave,
    Checkpoint,
    AllCheckpoints,
}

impl HubStrategy {
    pub const NAMES: [&'static str; 4] = ["end", "every_save", "checkpoint", "all_checkpoints"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "end" => Some(Self::End),
            "every_save" => Some(Self::EverySave),
            "checkpoint" => Some(Self::Checkpoint),
            "all_checkpoints" => Some(Self::AllCheckpoints),
            _ => None,
        }
    }
}

pub use sft_hub::{dataset_split_files, is_hub_dataset};

/// TRL's push flags, checked.
#[derive(Debug, Clone)]
pub struct HubTarget {
    pub model_id: String,
    pub private: bool,
    pub strategy: HubStrategy,
    /// The branch pushed to (`--hub_revision`); `main` when `None`.
    pub revision: Option<String>,
    /// `--hub_token`, which wins over `HF_TOKEN` and the token file.
    pub token: Option<String>,
}

/// A run's pushes to one repo.
pub struct HubPush {
    client: HubClient,
    target: HubTarget,
    output_dir: PathBuf,
    /// The repo's page.
    pub url: String,
}

/// Files of a checkpoint that only resuming needs; the model pushed at each save leaves
/// them out (its full copy goes to `last-checkpoint/` or `checkpoint-N/`).
const RESUME_ONLY: [&str; 3] = [
    "optimizer.safetensors",
    "optimizer.json",
    "training_state.json",
];

impl HubPush {
    /// Creates the repo (an existing one is fine): a wrong token or namespace fails here,
    /// before any training.
    pub fn start(target: HubTarget, output_dir: &Path) -> Result<Self, HubError> {
        let settings = sft_hub::HubSettings::from_env().with_token(target.token.as_deref());
        let client = HubClient::new(settings)?;
        let repo = RepoId::model(&target.model_id)?;
        if client.settings().token.is_none() {
            return Err(HubError::Unauthorized {
                repo: repo.to_string(),
                had_token: false,
                message: "pushing needs a token with write access".into(),
            });
        }
        let url = sft_hub::create_repo(&client, &repo, target.private)?;
        Ok(Self {
            client,
            target,
            output_dir: output_dir.to_path_buf(),
            url,
        })
    }

    /// What the user runs to push the finished output folder again.
    pub fn retry_command(&self) -> String {
        let mut cmd = format!(
            "sft-train --push_only --output_dir {} --hub_model_id {}",
            self.output_dir.display(),
            self.target.model_id
        );
        if let Some(r) = &self.target.revision {
            cmd.push_str(&format!(" --hub_revision {r}"));
        }
        format!("push the output folder again with `{cmd}`; files already on the Hub are not sent twice")
    }

    fn push(
        &self,
        folder: &Path,
        path_in_repo: &str,
        message: String,
        exclude: &[&str],
    ) -> Result<PushedCommit, HubError> {
        sft_hub::push_folder(
            &self.client,
            &PushRequest {
                repo_id: self.target.model_id.clone(),
                folder: folder.to_path_buf(),
                path_in_repo: path_in_repo.to_string(),
                revision: self.target.revision.clone(),
                private: self.target.private,
                message,
                exclude: exclude.iter().map(|s| s.to_string()).collect(),
                retry: self.retry_command(),
            },
        )
    }

    /// After a checkpoint is saved: what the strategy pushes of it (nothing for `end`).
    pub fn after_save(&self, checkpoint: &Path) -> Result<Vec<PushedCommit>, HubError> {
        if self.target.strategy == HubStrategy::End {
            return Ok(Vec::new());
        }
        let name = checkpoint
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let step = name
            .strip_prefix("checkpoint-")
            .unwrap_or(&name)
            .to_string();
        let mut pushed = vec![self.push(
            checkpoint,
            "",
            format!("Training in progress, step {step}"),
            &RESUME_ONLY,
        )?];
        let whole = match self.target.strategy {
            HubStrategy::Checkpoint => Some("last-checkpoint".to_string()),
            HubStrategy::AllCheckpoints => Some(name.clone()),
            _ => None,
        };
        if let Some(dest) = whole {
            pushed.push(self.push(
                checkpoint,
                &dest,
                format!("Training in progress, {name}"),
                &[],
            )?);
        }
        Ok(pushed)
    }

    /// At the end: the card written into the output folder as `README.md`, then the
    /// folder pushed (without checkpoints, the prepared-data cache or hidden files).
    pub fn at_end(&self, card: &ModelCard) -> Result<PushedCommit, HubError> {
        write_card(&self.output_dir, card)?;
        push_output(self, "End of training")
    }
}

/// Writes `README.md` into `output_dir` (atomically).
pub fn write_card(output_dir: &Path, card: &ModelCard) -> Result<(), HubError> {
    sft_hub::cache::write_atomic(&output_dir.join("README.md"), card.render().as_bytes())
}

fn push_output(push: &HubPush, message: &str) -> Result<PushedCommit, HubError> {
    push.push(
        &push.output_dir,
        "",
        message.to_string(),
        &["checkpoint-*", "checkpoint-*/**", "data", "data/**"],
    )
}

/// `--push_only`: pushes a finished output folder (as the end of a run does), writing a card
/// only when the folder has none.
pub fn push_only(
    target: HubTarget,
    output_dir: &Path,
    card: &ModelCard,
) -> Result<PushedCommit, HubError> {
    let push = HubPush::start(target, output_dir)?;
    if !output_dir.join("README.md").is_file() {
        write_card(output_dir, card)?;
    }
    push_output(&push, "Upload model")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_and_what_names_a_hub_dataset() {
        for name in HubStrategy::NAMES {
            assert!(HubStrategy::parse(name).is_some(), "{name}");
        }
        assert_eq!(HubStrategy::parse("sometimes"), None);
        assert!(is_hub_dataset(
            "HuggingFaceTB/smoltalk2_everyday_convs_think"
        ));
        assert!(is_hub_dataset("hf://datasets/o/n@v1/data/train.jsonl"));
        // Mistyped local paths stay local paths (their error names the missing file).
        assert!(!is_hub_dataset("runs/train.jsonl"));
        assert!(!is_hub_dataset("a/b/c"));
        assert!(!is_hub_dataset("train"));
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("o");
        std::fs::create_dir_all(local.join("n")).unwrap();
        assert!(!is_hub_dataset(local.join("n").to_str().unwrap()));
    }
}

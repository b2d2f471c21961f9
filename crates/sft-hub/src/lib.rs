//! The Hugging Face Hub in and out: the one crate that knows the Hub.
//!
//! Where it sits in the flow: before everything, it turns a model id (`--model_name_or_path
//! OWNER/NAME`, `--model_revision`) or a dataset id (`--dataset_name OWNER/NAME`,
//! `hf://datasets/...`) into local files; after training, it pushes the output folder
//! (`--push_to_hub`) with a model card. Every other crate sees only local paths.
//!
//! - [`HubSettings`]: `HF_ENDPOINT`, `HF_TOKEN` / the token file, `HF_HOME`, `HF_HUB_CACHE`,
//!   `HF_HUB_OFFLINE`, read as `huggingface_hub` reads them.
//! - [`resolve_model`]: cache first, then only the files a job reads (config, safetensors
//!   shards and index, tokenizer, chat template, adapter), into the cache layout Python
//!   uses, so both share one cache both ways; resumable downloads.
//! - [`resolve_dataset`]: which files make each config and split, by `datasets`' rules
//!   (the card's `configs:`, else split names in file names, else `refs/convert/parquet`).
//! - [`upload_folder`]: create the repo, preupload, LFS batch + PUT, the NDJSON commit; a
//!   [`ModelCard`] for its `README.md`.
//!
//! The client is blocking for its callers; inside, reqwest (already compiled for polars'
//! object_store) runs on a current-thread tokio runtime.
//!
//! ```no_run
//! let client = sft_hub::HubClient::from_env()?;
//! let dir = sft_hub::resolve_model(&client, "HuggingFaceTB/SmolLM2-135M-Instruct", None)?;
//! println!("{}", dir.display());
//! # Ok::<(), sft_hub::HubError>(())
//! ```

pub mod cache;
mod card;
mod client;
mod dataset;
mod error;
mod model;
mod repo;
mod settings;
mod upload;

pub use card::ModelCard;
pub use client::{HubClient, RepoFile, RepoInfo};
pub use dataset::{
    card_configs, convert_configs, dataset_split_files, fetch_hub_path, infer_splits,
    is_hub_dataset, plan_from_files, resolve_dataset, CardConfig, DatasetFiles, DatasetRequest,
    SplitFiles, CONVERT_REVISION,
};
pub use error::{HubError, Missing};
pub use model::{resolve_model, wanted_model_files};
pub use repo::{encode_revision, is_commit_sha, HubPath, RepoId, RepoType};
pub use settings::{HubSettings, DEFAULT_ENDPOINT};
pub use upload::{create_repo, push_folder, PushRequest, PushedCommit};

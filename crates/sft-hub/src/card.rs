//! The model card (`README.md`) pushed with a model: the metadata TRL's card carries
//! (`base_model`, `datasets`, `library_name`, `model_name`, `tags` with `sft` and `trl`),
//! then how to use it, the training flags and the final losses, all given by the caller.

use serde_yaml::{Mapping, Value};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelCard {
    /// `OWNER/NAME` of the pushed repo.
    pub model_id: String,
    /// The model fine-tuned: a Hub id (linked) or a local folder name.
    pub base_model: Option<String>,
    /// Hub ids of the training data (local files are named in the flags instead).
    pub datasets: Vec<String>,
    /// `transformers` for a full model, `peft` for an adapter.
    pub library_name: String,
    /// Tags besides the ones every card gets (`generated_from_trainer`, `sft`, `trl`, `sft-rs`).
    pub extra_tags: Vec<String>,
    /// The training flags as given (`--learning_rate` -> `5e-05`), in order.
    pub training_args: Vec<(String, String)>,
    /// Final metrics: `train_loss`, `eval_loss`, `global_step`, ...
    pub results: Vec<(String, f64)>,
}

fn is_hub_id(s: &str) -> bool {
    crate::RepoId::model(s).is_ok() && s.contains('/') && !std::path::Path::new(s).exists()
}

impl ModelCard {
    /// The card's text: YAML front matter, then Markdown.
    pub fn render(&self) -> String {
        let mut meta = Mapping::new();
        let base = self.base_model.as_deref().filter(|b| is_hub_id(b));
        if let Some(b) = base {
            meta.insert("base_model".into(), b.into());
        }
        if !self.datasets.is_empty() {
            meta.insert(
                "datasets".into(),
                Value::Sequence(self.datasets.iter().map(|d| d.as_str().into()).collect()),
            );
        }
        meta.insert("library_name".into(), self.library_name.as_str().into());
        let name = self.model_id.rsplit('/').next().unwrap_or(&self.model_id);
        meta.insert("model_name".into(), name.into());
        let mut tags: Vec<String> = ["generated_from_trainer", "sft", "trl", "sft-rs"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if self.library_name == "peft" {
            tags.push("lora".into());
            if let Some(b) = base {
                tags.push(format!("base_model:adapter:{b}"));
            }
        }
        for t in &self.extra_tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        meta.insert(
            "tags".into(),
            Value::Sequence(tags.iter().map(|t| t.as_str().into()).collect()),
        );
        meta.insert("pipeline_tag".into(), "text-generation".into());
        let yaml = serde_yaml::to_string(&meta).unwrap_or_default();

        let mut md = format!("---\n{yaml}---\n\n# Model Card for {name}\n\n");
        let base_text = match (base, self.base_model.as_deref()) {
            (Some(b), _) => format!("[{b}](https://huggingface.co/{b})"),
            (None, Some(local)) => format!("`{local}`"),
            (None, None) => "a base model".into(),
        };
        md.push_str(&format!(
            "This model is a fine-tuned version of {base_text}"
        ));
        if !self.datasets.is_empty() {
            let links: Vec<String> = self
                .datasets
                .iter()
                .map(|d| format!("[{d}](https://huggingface.co/datasets/{d})"))
                .collect();
            md.push_str(&format!(" on {}", links.join(", ")));
        }
        md.push_str(".\nIt was trained with supervised fine-tuning (SFT) by sft-rs, a Rust counterpart of [TRL](https://github.com/huggingface/trl)'s `SFTTrainer` on candle; the weights load with `transformers`");
        if self.library_name == "peft" {
            md.push_str(" and `peft` (a LoRA adapter)");
        }
        md.push_str(".\n\n## Quick start\n\n```python\nfrom transformers import pipeline\n\n");
        md.push_str(&format!(
            "generator = pipeline(\"text-generation\", model=\"{}\")\nquestion = \"If you had a time machine, but could only go to the past or the future once and never return, which would you choose and why?\"\noutput = generator([{{\"role\": \"user\", \"content\": question}}], max_new_tokens=128, return_full_text=False)[0]\nprint(output[\"generated_text\"])\n```\n\n",
            self.model_id
        ));
        md.push_str("## Training procedure\n\nThis model was trained with SFT.\n\n");
        if !self.training_args.is_empty() {
            md.push_str("### Training flags\n\n| flag | value |\n|---|---|\n");
            for (k, v) in &self.training_args {
                md.push_str(&format!(
                    "| `{}` | `{}` |\n",
                    k.replace('|', "\\|"),
                    v.replace('|', "\\|")
                ));
            }
            md.push('\n');
        }
        if !self.results.is_empty() {
            md.push_str("### Results\n\n| metric | value |\n|---|---|\n");
            for (k, v) in &self.results {
                md.push_str(&format!("| {k} | {v:.4} |\n"));
            }
            md.push('\n');
        }
        md.push_str(&format!(
            "### Framework versions\n\n- sft-rs: {}\n",
            env!("CARGO_PKG_VERSION")
        ));
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_parses_back_and_carries_what_trl_carries() {
        let card = ModelCard {
            model_id: "user/smollm3-custom".into(),
            base_model: Some("HuggingFaceTB/SmolLM3-3B-Base".into()),
            datasets: vec!["HuggingFaceTB/smoltalk2_everyday_convs_think".into()],
            library_name: "transformers".into(),
            extra_tags: vec![],
            training_args: vec![
                ("learning_rate".into(), "5e-05".into()),
                ("max_steps".into(), "2".into()),
            ],
            results: vec![("train_loss".into(), 1.23456)],
        };
        let text = card.render();
        let front = text
            .strip_prefix("---\n")
            .unwrap()
            .split("\n---\n")
            .next()
            .unwrap();
        let meta: serde_yaml::Value = serde_yaml::from_str(front).unwrap();
        assert_eq!(meta["base_model"], "HuggingFaceTB/SmolLM3-3B-Base");
        assert_eq!(
            meta["datasets"][0],
            "HuggingFaceTB/smoltalk2_everyday_convs_think"
        );
        assert_eq!(meta["library_name"], "transformers");
        assert_eq!(meta["model_name"], "smollm3-custom");
        let tags: Vec<&str> = meta["tags"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|t| t.as_str())
            .collect();
        assert!(tags.contains(&"sft") && tags.contains(&"trl"));
        assert!(text.contains("| `learning_rate` | `5e-05` |"));
        assert!(text.contains("| train_loss | 1.2346 |"));
        assert!(text.contains("model=\"user/smollm3-custom\""));
    }
}

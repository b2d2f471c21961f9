//! An Ollama `Modelfile` beside the GGUF files, so that `ollama create NAME -f Modelfile`
//! imports the model. Ollama reads the chat template from the GGUF file itself
//! (`tokenizer.chat_template`), so no TEMPLATE is written; what it cannot know is where a
//! turn ends (the stop words) and how long a context to give the model.

/// Turn-ending tokens of the chat templates of the families the trainer handles.
const END_OF_TURN: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "</s>",
];

/// Ollama's context is allocated whole; a model that claims 128k positions would take
/// gigabytes of KV cache for every chat.
pub const MAX_NUM_CTX: usize = 8192;

/// The stop words: the turn-ending tokens the chat template writes, else the EOS token.
pub(crate) fn stop_words(chat_template: Option<&str>, eos: Option<&str>) -> Vec<String> {
    let mut stops: Vec<String> = match chat_template {
        Some(t) => END_OF_TURN
            .iter()
            .filter(|s| t.contains(*s))
            .map(|s| s.to_string())
            .collect(),
        None => Vec::new(),
    };
    if stops.is_empty() {
        stops.extend(eos.map(str::to_string));
    }
    stops
}

/// The Modelfile's text. `from`: the GGUF file's name, relative to the Modelfile.
pub(crate) fn modelfile(from: &str, stops: &[String], context_length: usize) -> String {
    let mut text = format!(
        "# Ollama Modelfile written by sft-gguf {}: ollama create NAME -f Modelfile\n\
         # The chat template is read from the GGUF file (tokenizer.chat_template).\n\
         FROM ./{from}\n",
        env!("CARGO_PKG_VERSION")
    );
    for stop in stops {
        text.push_str(&format!("PARAMETER stop {}\n", quote(stop)));
    }
    text.push_str(&format!(
        "PARAMETER num_ctx {}\n",
        context_length.clamp(1, MAX_NUM_CTX)
    ));
    text
}

/// A Modelfile string argument in double quotes (as Ollama parses them).
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_come_from_the_template() {
        let chatml = "{{'<|im_start|>' + m + '<|im_end|>'}}";
        assert_eq!(
            stop_words(Some(chatml), Some("<|endoftext|>")),
            vec!["<|im_end|>"]
        );
        assert_eq!(stop_words(None, Some("</s>")), vec!["</s>"]);
        let text = modelfile("m-Q4_K_M.gguf", &["<|im_end|>".into()], 131072);
        assert!(text.contains("FROM ./m-Q4_K_M.gguf\n"));
        assert!(text.contains("PARAMETER stop \"<|im_end|>\"\n"));
        assert!(text.contains("PARAMETER num_ctx 8192\n"));
    }
}

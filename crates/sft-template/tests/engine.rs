//! The engine's guarantees beyond the conformance corpus: limits on untrusted templates,
//! generation-prompt options, normalisation, and every place a template comes from.

use std::time::Instant;

use serde_json::{json, Value};
use sft_template::{
    normalize_messages, ChatTemplate, RenderOptions, SpecialTokens, TemplateSource,
};

fn msgs(v: Value) -> Vec<Value> {
    v.as_array().unwrap().clone()
}

fn hello() -> Vec<Value> {
    msgs(
        json!([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}]),
    )
}

#[test]
fn a_runaway_template_ends_in_an_error() {
    let started = Instant::now();
    let t = ChatTemplate::new(
        "loop",
        "{% for i in range(10000) %}{% for j in range(10000) %}{{ j }}{% endfor %}{% endfor %}",
        SpecialTokens::default(),
    )
    .unwrap();
    let err = t.render(&hello(), &RenderOptions::training()).unwrap_err();
    assert!(err.message.to_lowercase().contains("fuel"), "{err}");
    // A real template on a row too large for the work limit says so.
    let chatml = ChatTemplate::new(
        "chatml",
        &TemplateSource::resolve("chatml", None).unwrap().source,
        SpecialTokens::default(),
    )
    .unwrap();
    let huge: Vec<Value> = (0..400_000)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": "x"}))
        .collect();
    let err = chatml
        .render(&huge, &RenderOptions::training())
        .unwrap_err();
    assert!(err.message.contains("the row is too large"), "{err}");
    let big = ChatTemplate::new(
        "big",
        "{% for i in range(200) %}{{ 'x' * 1000000 }}{% endfor %}",
        SpecialTokens::default(),
    )
    .unwrap();
    let err = big
        .render(&hello(), &RenderOptions::training())
        .unwrap_err();
    assert!(err.message.contains("more than"), "{err}");
    assert!(
        started.elapsed().as_secs() < 20,
        "limits stop the work early"
    );
}

#[test]
fn raise_exception_gives_the_templates_own_message() {
    let t = ChatTemplate::bundled("mistral").unwrap();
    let err = t
        .render(
            &msgs(json!([{"role": "system", "content": "x"}, {"role": "user", "content": "Hi"}])),
            &RenderOptions::training(),
        )
        .unwrap_err();
    assert!(
        err.message
            .starts_with("Conversation roles must alternate user/assistant/user/assistant"),
        "{err}"
    );
}

#[test]
fn generation_prompt_and_continue_final_message() {
    let t = ChatTemplate::bundled("smollm2").unwrap();
    let train = t.render(&hello(), &RenderOptions::training()).unwrap().text;
    assert!(train.ends_with("Hello there<|im_end|>\n"));
    let prompt = t
        .render(&hello()[..1], &RenderOptions::generation())
        .unwrap()
        .text;
    assert!(prompt.ends_with("<|im_start|>assistant\n"));
    let cont = RenderOptions {
        continue_final_message: true,
        ..RenderOptions::default()
    };
    let prefilled = t.render(&hello(), &cont).unwrap().text;
    assert!(
        prefilled.ends_with("<|im_start|>assistant\nHello there"),
        "{prefilled:?}"
    );
    let both = RenderOptions {
        continue_final_message: true,
        add_generation_prompt: true,
        ..RenderOptions::default()
    };
    assert!(t
        .render(&hello(), &both)
        .unwrap_err()
        .message
        .contains("not compatible"));
    assert!(t
        .render(&[], &RenderOptions::training())
        .unwrap_err()
        .message
        .contains("empty conversation"));
}

#[test]
fn messages_are_normalised_as_transformers_does() {
    let m = normalize_messages(&msgs(json!([
        {"role": "assistant", "content": "4", "name": null, "reasoning": "2+2"}
    ])))
    .unwrap();
    assert_eq!(
        serde_json::to_string(&m[0]).unwrap(),
        r#"{"thinking":"2+2","role":"assistant","content":"4","reasoning":"2+2","reasoning_content":"2+2"}"#
    );
    // Templates see `tools` and `documents` as defined (null) and the special tokens.
    let t = ChatTemplate::new(
        "probe",
        "{{ tools is none }} {{ documents is none }} {{ bos_token }} {{ messages[0].name is defined }}",
        SpecialTokens::new([("bos_token".to_string(), "<s>".to_string())]),
    )
    .unwrap();
    let out = t
        .render(
            &msgs(json!([{"role": "user", "content": "x", "name": null}])),
            &RenderOptions::training(),
        )
        .unwrap();
    // Booleans print as Python prints them.
    assert_eq!(out.text, "True True <s> False");
}

#[test]
fn bundled_templates_by_name_and_alias() {
    for name in sft_template::source::BUNDLED {
        let t = ChatTemplate::bundled(name).unwrap();
        assert!(
            t.render(&hello(), &RenderOptions::training()).is_ok(),
            "{name}"
        );
    }
    assert_eq!(ChatTemplate::bundled("Qwen2_5").unwrap().name(), "qwen2.5");
    assert_eq!(
        ChatTemplate::bundled("llama3")
            .unwrap()
            .special_tokens()
            .get("bos_token"),
        Some("<|begin_of_text|>")
    );
    let err = ChatTemplate::bundled("vicuna").unwrap_err();
    assert!(err.message.contains("bundled: chatml, smollm2"), "{err}");
}

#[test]
fn templates_from_model_folders() {
    let dir = tempfile::tempdir().unwrap();
    // transformers 4: the template inside tokenizer_config.json, tokens as {"content": ...}.
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        json!({
            "bos_token": {"content": "<s>", "lstrip": false},
            "eos_token": "</s>",
            "chat_template": [
                {"name": "default", "template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"},
                {"name": "tool_use", "template": "TOOLS {{ tools | length }}"}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let spec = dir.path().to_str().unwrap();
    let source = TemplateSource::resolve(spec, None).unwrap();
    let t = ChatTemplate::new(&source.name, &source.source, source.special_tokens).unwrap();
    assert_eq!(
        t.render(&hello(), &RenderOptions::training()).unwrap().text,
        "<s>Hi</s>Hello there</s>"
    );
    let tool_use = TemplateSource::resolve(spec, Some("tool_use")).unwrap();
    assert_eq!(tool_use.source, "TOOLS {{ tools | length }}");
    let missing = TemplateSource::resolve(spec, Some("rag")).unwrap_err();
    assert!(
        missing.message.contains("has default, tool_use"),
        "{missing}"
    );
    // transformers 5: chat_template.jinja beside the config wins.
    std::fs::write(dir.path().join("chat_template.jinja"), "{{ eos_token }}!").unwrap();
    let source = TemplateSource::resolve(spec, None).unwrap();
    assert_eq!(source.source, "{{ eos_token }}!");
    assert_eq!(source.special_tokens.get("bos_token"), Some("<s>"));
    // A folder without any template says what to do.
    let empty = tempfile::tempdir().unwrap();
    let err = TemplateSource::resolve(empty.path().to_str().unwrap(), None).unwrap_err();
    assert!(err.message.contains("has no chat template"), "{err}");
    assert!(TemplateSource::resolve("no-such-template", None)
        .unwrap_err()
        .message
        .contains("not a file, a model folder or a bundled template"));
}

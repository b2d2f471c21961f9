//! Assistant spans on real templates: found for any prefix-preserving template, in
//! agreement with `{% generation %}` blocks where a template has both (SmolLM3), and
//! refused plainly where a template rewrites earlier turns (Qwen 3 with reasoning).

use serde_json::{json, Value};
use sft_template::{ChatTemplate, RenderOptions, SpanMethod};

fn conversation() -> Vec<Value> {
    json!([
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "6."}
    ])
    .as_array()
    .unwrap()
    .clone()
}

fn span_texts(template: &str, messages: &[Value]) -> (Vec<String>, SpanMethod) {
    let t = ChatTemplate::bundled(template).unwrap();
    let spans = t
        .assistant_spans(messages, &RenderOptions::training())
        .unwrap();
    let texts = spans
        .spans
        .iter()
        .map(|s| spans.text[s.range.clone()].to_string())
        .collect();
    (texts, spans.method)
}

#[test]
fn spans_cover_the_reply_and_its_end_of_turn_token() {
    let messages = conversation();
    assert_eq!(
        span_texts("smollm2", &messages),
        (
            vec!["4.<|im_end|>\n".to_string(), "6.<|im_end|>\n".to_string()],
            SpanMethod::Prefix
        )
    );
    assert_eq!(
        span_texts("llama3", &messages).0,
        vec!["4.<|eot_id|>".to_string(), "6.<|eot_id|>".to_string()]
    );
    assert_eq!(
        span_texts("zephyr", &messages).0,
        vec!["4.</s>\n".to_string(), "6.</s>\n".to_string()]
    );
    assert_eq!(
        span_texts("qwen2.5", &messages).0,
        vec!["4.<|im_end|>\n".to_string(), "6.<|im_end|>\n".to_string()]
    );
}

#[test]
fn spans_index_their_messages_and_tile_the_render() {
    let t = ChatTemplate::bundled("chatml").unwrap();
    let messages = conversation();
    let spans = t
        .assistant_spans(&messages, &RenderOptions::training())
        .unwrap();
    assert_eq!(
        spans.spans.iter().map(|s| s.message).collect::<Vec<_>>(),
        vec![2, 4]
    );
    assert_eq!(spans.spans.last().unwrap().range.end, spans.text.len());
    let full = t.render(&messages, &RenderOptions::training()).unwrap();
    assert_eq!(spans.text, full.text);
}

#[test]
fn smollm3_generation_blocks_agree_with_prefix_spans() {
    let t = ChatTemplate::bundled("smollm3").unwrap();
    assert!(t.has_generation_tags());
    let messages = conversation();
    let no_think = RenderOptions {
        kwargs: json!({"enable_thinking": false})
            .as_object()
            .unwrap()
            .clone(),
        ..RenderOptions::training()
    };
    for (options, prompt) in [
        (RenderOptions::training(), "<|im_start|>assistant\n"),
        (no_think, "<|im_start|>assistant\n<think>\n\n</think>\n"),
    ] {
        let spans = t.assistant_spans(&messages, &options).unwrap();
        assert_eq!(spans.method, SpanMethod::Prefix);
        assert_eq!(spans.generation_tag_spans.len(), 2);
        assert_eq!(t.generation_prompt(&options).as_deref(), Some(prompt));
        spans.agree_with_generation_tags(prompt).unwrap();
        assert_eq!(&spans.text[spans.spans[1].range.clone()], "6.<|im_end|>\n");
    }
}

#[test]
fn qwen3_with_reasoning_is_not_prefix_preserving() {
    let t = ChatTemplate::bundled("qwen3").unwrap();
    let messages: Vec<Value> = json!([
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4.", "reasoning_content": "Two plus two is four."},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "6.", "reasoning_content": "Three plus three is six."}
    ])
    .as_array()
    .unwrap()
    .clone();
    let err = t
        .assistant_spans(&messages, &RenderOptions::training())
        .unwrap_err();
    assert!(err.message.contains("not prefix-preserving"), "{err}");
    assert!(err.message.contains("no {% generation %} blocks"), "{err}");
    // The last turn alone is still found: its reasoning is kept.
    let spans = t
        .assistant_spans(&messages[..2], &RenderOptions::training())
        .unwrap();
    assert!(spans.text[spans.spans[0].range.clone()].contains("Two plus two is four."));
}

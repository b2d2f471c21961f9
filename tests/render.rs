//! `sft-data render` and `check --chat-template` end to end.

mod common;

use common::{read_jsonl, sft_data};
use serde_json::{json, Value};

fn write_rows(dir: &std::path::Path, name: &str, rows: &[Value]) -> String {
    let path = dir.join(name);
    let text: String = rows.iter().map(|r| r.to_string() + "\n").collect();
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn render_writes_one_line_per_row_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_rows(
        dir.path(),
        "in.jsonl",
        &[
            json!({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}),
            json!({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]}),
            json!({"prompt": "not", "completion": "a conversation"}),
            json!({"prompt": [{"role": "user", "content": "2+2?"}], "completion": [{"role": "assistant", "content": "4"}]}),
        ],
    );
    let out = dir.path().join("out.jsonl");
    let run = sft_data(&[
        "render",
        &input,
        "--chat-template",
        "mistral",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "two rows are errors: {}", run.stdout);
    let lines = read_jsonl(&out);
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0], json!({"text": "<s>[INST] Hi [/INST]Hello</s> "}));
    assert!(
        lines[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("Conversation roles must alternate"),
        "{}",
        lines[1]
    );
    assert!(lines[2]["error"]
        .as_str()
        .unwrap()
        .contains("not a conversation"));
    assert_eq!(lines[3], json!({"text": "<s>[INST] 2+2? [/INST]4</s> "}));
    assert!(
        run.stdout.contains("rendered 2 of 4 rows with mistral"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("in.jsonl:2: Conversation roles must alternate"),
        "{}",
        run.stdout
    );
}

#[test]
fn generation_prompt_tools_kwargs_and_clock() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_rows(
        dir.path(),
        "in.jsonl",
        &[json!({
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {}}}]"
        })],
    );
    let out = dir.path().join("out.jsonl");
    let run = sft_data(&[
        "render",
        &input,
        "--chat-template",
        "smollm3",
        "--add-generation-prompt",
        "--template-kwargs",
        "{\"enable_thinking\": false}",
        "--now",
        "2025-03-07T09:05:00",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let text = read_jsonl(&out)[0]["text"].as_str().unwrap().to_string();
    assert!(text.contains("Today Date: 07 March 2025"), "{text}");
    assert!(
        text.contains("get_weather"),
        "the tools JSON string is parsed: {text}"
    );
    assert!(
        text.ends_with("<|im_start|>assistant\n<think>\n\n</think>\n"),
        "{text:?}"
    );

    let cont = dir.path().join("cont.jsonl");
    let prefilled = write_rows(
        dir.path(),
        "p.jsonl",
        &[
            json!({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Well,"}]}),
        ],
    );
    let run = sft_data(&[
        "render",
        &prefilled,
        "--chat-template",
        "chatml",
        "--continue-final-message",
        "-o",
        cont.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0);
    assert!(read_jsonl(&cont)[0]["text"]
        .as_str()
        .unwrap()
        .ends_with("<|im_start|>assistant\nWell,"));
    let both = sft_data(&[
        "render",
        &prefilled,
        "--chat-template",
        "chatml",
        "--continue-final-message",
        "--add-generation-prompt",
        "-o",
        cont.to_str().unwrap(),
    ]);
    assert_eq!(both.code, 2);
}

#[test]
fn template_from_a_model_folder_with_special_tokens_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(model.join("tokenizer_config.json"), json!({"eos_token": "</s>", "chat_template": "{% for m in messages %}{{ m.role }}: {{ m.content }}{{ eos_token }}\n{% endfor %}"}).to_string()).unwrap();
    let tokens = dir.path().join("tokens.json");
    std::fs::write(
        &tokens,
        json!({"eos_token": {"content": "<|end|>"}}).to_string(),
    )
    .unwrap();
    let input = write_rows(
        dir.path(),
        "in.jsonl",
        &[
            json!({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}),
        ],
    );
    let out = dir.path().join("out.jsonl");
    let run = sft_data(&[
        "render",
        &input,
        "--chat-template",
        model.to_str().unwrap(),
        "--special-tokens",
        tokens.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        read_jsonl(&out)[0]["text"],
        "user: Hi<|end|>\nassistant: Yo<|end|>\n"
    );
}

#[test]
fn bad_template_flags_are_usage_errors() {
    let input = "data-samples/formats/messages.jsonl";
    let unknown = sft_data(&[
        "render",
        input,
        "--chat-template",
        "vicuna",
        "-o",
        "/tmp/x.jsonl",
    ]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("bundled: chatml, smollm2"),
        "{}",
        unknown.stderr
    );
    let kwargs = sft_data(&[
        "render",
        input,
        "--chat-template",
        "qwen3",
        "--template-kwargs",
        "[1]",
        "-o",
        "/tmp/x.jsonl",
    ]);
    assert_eq!(kwargs.code, 2);
    assert!(kwargs.stderr.contains("expected a JSON object"));
    let now = sft_data(&[
        "render",
        input,
        "--chat-template",
        "qwen3",
        "--now",
        "yesterday",
        "-o",
        "/tmp/x.jsonl",
    ]);
    assert_eq!(now.code, 2);
    let missing = sft_data(&["render", input, "-o", "/tmp/x.jsonl"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("--chat-template"));
    let orphan = sft_data(&["check", input, "--template-kwargs", "{}"]);
    assert_eq!(orphan.code, 2);
    assert!(orphan
        .stderr
        .contains("--template-kwargs needs --chat-template"));
}

fn report(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.json");
    let mut all = args.to_vec();
    let p = path.to_str().unwrap().to_string();
    all.extend(["--report", &p]);
    let run = sft_data(&all);
    assert!(path.exists(), "{}{}", run.stdout, run.stderr);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn codes(report: &Value, code: &str) -> Vec<Value> {
    report["issues"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["code"] == code)
        .cloned()
        .collect()
}

#[test]
fn check_with_a_template_reports_rows_it_rejects() {
    let r = report(&[
        "check",
        "data-samples/broken/broken.jsonl",
        "--chat-template",
        "gemma3",
    ]);
    let rejected = codes(&r, "template_error");
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert_eq!(rejected[0]["line"], 13);
    assert!(rejected[0]["message"]
        .as_str()
        .unwrap()
        .contains("Conversation roles must alternate"));
    assert_eq!(r["chat_template"], "gemma3");
    // The same data passes a template that accepts any order of roles.
    let r = report(&[
        "check",
        "data-samples/formats/messages_tools.jsonl",
        "--chat-template",
        "qwen2.5",
    ]);
    assert!(codes(&r, "template_error").is_empty());
}

#[test]
fn check_with_a_template_finds_generation_prompts_and_broken_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_rows(
        dir.path(),
        "rows.jsonl",
        &[
            // Asks the template for a generation prompt in training data.
            json!({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
                   "chat_template_kwargs": {"add_generation_prompt": true}}),
            // DeepSeek-R1 opens the reply with <think> in the prompt but not in the render.
            json!({"prompt": [{"role": "user", "content": "2+2?"}], "completion": [{"role": "assistant", "content": "4"}]}),
        ],
    );
    let r = report(&["check", &input, "--chat-template", "smollm2"]);
    let awaits = codes(&r, "render_awaits_assistant");
    assert_eq!(awaits.len(), 1);
    assert_eq!(awaits[0]["line"], 1);
    let r = report(&["check", &input, "--chat-template", "deepseek-r1"]);
    let prefix = codes(&r, "prompt_not_prefix");
    assert_eq!(prefix.len(), 1, "{}", r["issues"]);
    assert_eq!(prefix[0]["line"], 2);
    assert_eq!(prefix[0]["path"], "prompt");
}

use serde_json::{json, Value};
use sft_eval::compliance::*;
use sft_eval::diagnosis::*;
use sft_eval::repetition::*;

fn sample(text: &str) -> Sample<'_> {
    Sample {
        text,
        stopped_by: StopReason::EndOfTurn,
        reference: None,
        new_tokens: 10,
    }
}

fn chatml() -> ComplianceOptions {
    ComplianceOptions {
        special_tokens: ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
            .map(String::from)
            .to_vec(),
        template_markers: vec!["\nuser\n".into()],
        ..Default::default()
    }
}

/// The result of check `name`, which must have run.
fn check(results: &[CheckResult], name: &str) -> CheckResult {
    results
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("{name} did not run: {results:?}"))
        .clone()
}

fn ran(results: &[CheckResult], name: &str) -> bool {
    results.iter().any(|r| r.name == name)
}

#[test]
fn stopped() {
    let r = check_sample(&sample("hi"), &chatml());
    assert!(check(&r, "stopped").passed);
    let s = Sample {
        stopped_by: StopReason::MaxNewTokens,
        new_tokens: 256,
        ..sample("hi")
    };
    let c = check(&check_sample(&s, &chatml()), "stopped");
    assert!(!c.passed);
    assert_eq!(c.detail.as_deref(), Some("hit max_new_tokens (256 tokens)"));
    assert_eq!(
        serde_json::to_value(StopReason::MaxNewTokens).unwrap(),
        json!("max_new_tokens")
    );
}

#[test]
fn special_tokens() {
    let opts = chatml();
    // The stop token ending the text is not a leak.
    assert!(
        check(
            &check_sample(&sample("Hello!<|im_end|>\n"), &opts),
            "no_special_tokens"
        )
        .passed
    );
    // ...unless generation ran out of tokens.
    let s = Sample {
        stopped_by: StopReason::MaxNewTokens,
        ..sample("Hello!<|im_end|>")
    };
    assert!(!check(&check_sample(&s, &opts), "no_special_tokens").passed);
    let c = check(
        &check_sample(
            &sample("Hi<|im_end|>\n<|im_start|>user\nmore<|im_end|>"),
            &opts,
        ),
        "no_special_tokens",
    );
    assert!(!c.passed);
    assert_eq!(c.detail.as_deref(), Some("\"<|im_end|>\" at byte 2"));
    let c = check(
        &check_sample(&sample("Sure.\nuser\nAnd now?"), &opts),
        "no_special_tokens",
    );
    assert_eq!(c.detail.as_deref(), Some("\"\\nuser\\n\" at byte 5"));
    assert!(
        check(
            &check_sample(&sample("plain text"), &opts),
            "no_special_tokens"
        )
        .passed
    );
}

#[test]
fn think_balanced() {
    let opts = chatml();
    assert!(!ran(
        &check_sample(&sample("no thinking"), &opts),
        "think_balanced"
    ));
    let ok = "<think>plan</think>answer<think>again</think>done";
    assert!(check(&check_sample(&sample(ok), &opts), "think_balanced").passed);
    for (text, detail) in [
        ("<think>never closed", "<think> at byte 0 is never closed"),
        ("answer</think>", "</think> at byte 6 without <think>"),
        (
            "<think>a<think>b</think></think>",
            "<think> at byte 8 inside <think> at byte 0",
        ),
        ("</think><think>", "</think> at byte 0 without <think>"),
    ] {
        let c = check(&check_sample(&sample(text), &opts), "think_balanced");
        assert!(!c.passed, "{text}");
        assert_eq!(c.detail.as_deref(), Some(detail), "{text}");
    }
}

#[test]
fn json() {
    let opts = ComplianceOptions {
        expect_json: true,
        ..chatml()
    };
    let passes = [
        "  {\"a\": 1}  ",
        "[1, 2]",
        "```json\n{\"a\": [1, 2]}\n```",
        "Here you go:\n```\n{\"a\": 1}\n```\nDone.",
        "{\"a\": 1}<|im_end|>",
    ];
    for text in passes {
        assert!(
            check(&check_sample(&sample(text), &opts), "json").passed,
            "{text}"
        );
    }
    let c = check(
        &check_sample(&sample("{\"a\": 1,\n \"b\": }"), &opts),
        "json",
    );
    assert!(!c.passed);
    assert!(
        c.detail.as_deref().unwrap().contains("line 2 column"),
        "{c:?}"
    );
    assert!(
        !check(
            &check_sample(&sample("```python\n{\"a\": 1}\n```"), &opts),
            "json"
        )
        .passed
    );
    // Not expected: runs only when the reference is a JSON object or array.
    assert!(!ran(&check_sample(&sample("{}"), &chatml()), "json"));
    let with_ref = |reference| Sample {
        reference: Some(reference),
        ..sample("not json")
    };
    assert!(!check(&check_sample(&with_ref("{\"x\": 1}"), &chatml()), "json").passed);
    assert!(!ran(&check_sample(&with_ref("42"), &chatml()), "json"));
}

#[test]
fn json_schema() {
    let schema = json!({
        "type": "object",
        "required": ["title", "steps"],
        "additionalProperties": false,
        "properties": {
            "title": {"type": "string", "minLength": 3, "maxLength": 20},
            "score": {"type": ["number", "null"], "minimum": 0, "maximum": 10},
            "kind": {"enum": ["a", "b"]},
            "version": {"const": 2},
            "count": {"type": "integer"},
            "steps": {
                "type": "array", "minItems": 1, "maxItems": 3,
                "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
            },
            "meta": {"type": "object", "additionalProperties": {"type": "boolean"}}
        }
    });
    let good = json!({"title": "Tea", "score": null, "kind": "a", "version": 2, "count": 3.0,
                      "steps": [{"name": "boil"}], "meta": {"hot": true}});
    assert_eq!(validate_schema(&good, &schema), Ok(()));
    let cases = [
        (
            json!({"title": "Tea", "steps": [{"name": "a"}, {"name": "b"}, {"name": 3}]}),
            "$.steps[2].name: expected string, got integer",
        ),
        (
            json!({"title": "Tea"}),
            "$: missing required property \"steps\"",
        ),
        (
            json!({"title": "Tea", "steps": [{"name": "a"}], "extra": 1}),
            "$: unexpected property \"extra\"",
        ),
        (
            json!({"title": "Te", "steps": [{"name": "a"}]}),
            "$.title: length 2 is less than minLength 3",
        ),
        (
            json!({"title": "Tea", "steps": []}),
            "$.steps: 0 items, fewer than minItems 1",
        ),
        (
            json!({"title": "Tea", "steps": [{}, {}, {}, {}]}),
            "$.steps: 4 items, more than maxItems 3",
        ),
        (
            json!({"title": "Tea", "steps": [{}]}),
            "$.steps[0]: missing required property \"name\"",
        ),
        (
            json!({"title": "Tea", "steps": [{"name": "a"}], "score": 11}),
            "$.score: 11 is more than maximum 10",
        ),
        (
            json!({"title": "Tea", "steps": [{"name": "a"}], "score": -1}),
            "$.score: -1 is less than minimum 0",
        ),
        (
            json!({"title": "Tea", "steps": [{"name": "a"}], "score": "9"}),
            "$.score: expected number or null, got string",
        ),
        (
            json!({"title": "Tea", "steps": [{"name": "a"}], "kind": "c"}),
            "$.kind: \"c\" is not one of \"a\", \"b\"",
        ),
        (
            json!({"title": "Tea", "steps": [{"name": "a"}], "version": 3}),
            "$.version: expected 2, got 3",
        ),
        (
            json!({"title": "Tea", "steps": [{"name": "a"}], "count": 1.5}),
            "$.count: expected integer, got number",
        ),
        (
            json!({"title": "Tea", "steps": [{"name": "a"}], "meta": {"odd key": 1}}),
            "$.meta[\"odd key\"]: expected boolean, got integer",
        ),
        (json!([1]), "$: expected object, got array"),
    ];
    for (value, error) in cases {
        assert_eq!(
            validate_schema(&value, &schema),
            Err(error.to_string()),
            "{value}"
        );
    }

    let opts = ComplianceOptions {
        json_schema: Some(schema),
        ..chatml()
    };
    let r = check_sample(
        &sample("{\"title\": \"Tea\", \"steps\": [{\"name\": \"boil\"}]}"),
        &opts,
    );
    assert!(check(&r, "json").passed && check(&r, "json_schema").passed);
    let r = check_sample(
        &sample("{\"title\": 5, \"steps\": [{\"name\": \"boil\"}]}"),
        &opts,
    );
    let c = check(&r, "json_schema");
    assert_eq!(
        c.detail.as_deref(),
        Some("$.title: expected string, got integer")
    );
    let r = check_sample(&sample("oops"), &opts);
    assert!(!check(&r, "json").passed && !check(&r, "json_schema").passed);
}

#[test]
fn patterns() {
    let m = |p: &str, t: &str| {
        Pattern::new(p)
            .unwrap_or_else(|e| panic!("{e}"))
            .is_match(t)
    };
    // Literals, search semantics and anchors.
    assert!(m("cat", "concatenate"));
    assert!(!m("^cat", "concatenate"));
    assert!(m("^con", "concatenate") && m("ate$", "concatenate") && !m("^ate$", "concatenate"));
    assert!(m("^$", "") && !m("^$", "x") && m("", "anything"));
    // Dot, quantifiers.
    assert!(m("^a.c$", "abc") && !m("^a.c$", "a\nc") && !m("^a.c$", "ac"));
    assert!(m("^ab*c$", "ac") && m("^ab*c$", "abbbc") && !m("^ab+c$", "ac") && m("^ab+c$", "abbc"));
    assert!(m("^colou?r$", "color") && m("^colou?r$", "colour") && !m("^colou?r$", "colouur"));
    assert!(m("^\\d{4}-\\d{2}$", "2024-06") && !m("^\\d{4}$", "123") && !m("^\\d{2,3}$", "1234"));
    assert!(
        m("^a{2,}$", "aaaa")
            && !m("^a{2,}$", "a")
            && m("^(ab){0,2}$", "abab")
            && !m("^(ab){0,2}$", "ababab")
    );
    assert!(m("^a.*?b$", "axxb") && m("^(a|ab)*c$", "ababac"));
    // Classes and escapes.
    assert!(m("^[a-z0-9_]+$", "snake_case_2") && !m("^[a-z0-9_]+$", "Camel"));
    assert!(m("^[^0-9]+$", "abc") && !m("^[^0-9]+$", "a1c"));
    assert!(m("^[]x]+$", "]x]") && m("^[a-]+$", "a-a") && m("[\\d.]", "."));
    assert!(m("^\\w+\\s\\w+$", "hello wörld") && !m("\\S\\s\\S", "ab"));
    assert!(m("^\\$\\d+\\.\\d\\d$", "$12.50") && !m("^\\d+\\.\\d\\d$", "12x50"));
    assert!(m("\\bcat\\b", "a cat.") && !m("\\bcat\\b", "concat") && m("\\Bcat", "concat"));
    assert!(m("^\\(\\*\\)\\\\$", "(*)\\") && m("a\\tb\\n", "a\tb\n"));
    // Groups and alternation.
    assert!(m("^(yes|no)$", "no") && !m("^(yes|no)$", "maybe") && !m("^yes|no$", "maybe"));
    assert!(m("^yes|no$", "yes sir") && m("^(?:ab|cd)+$", "abcdab") && !m("^(ab|cd)+$", "abc"));
    assert!(m("^Answer: (A|B|C|D)\\.?$", "Answer: C."));
    assert!(m("^(a|)$", "") && m("^(a*)*$", "aaa") && !m("^(a*)*b$", &"a".repeat(5000)));
    // Long texts are fine (no recursion).
    assert!(m("^.*end$", &format!("{}end", "x".repeat(100_000))));

    for bad in [
        "(ab", "ab)", "[a-", "[z-a]", "*a", "a{2", "a{3,1}", "\\q", "^*", "a\\",
    ] {
        assert!(validate_pattern(bad).is_err(), "{bad} should be invalid");
    }
    assert!(validate_pattern("^\\{\"a\": \\d+\\}$").is_ok());

    let opts = |p: &str| ComplianceOptions {
        expect_pattern: Some(p.into()),
        ..chatml()
    };
    assert!(
        check(
            &check_sample(&sample("The answer is 42."), &opts("\\d+")),
            "pattern"
        )
        .passed
    );
    let c = check(
        &check_sample(&sample("The answer is x."), &opts("\\d+")),
        "pattern",
    );
    assert_eq!(c.detail.as_deref(), Some("no match for \"\\\\d+\""));
    let c = check(&check_sample(&sample("x"), &opts("(")), "pattern");
    assert!(!c.passed && c.detail.unwrap().starts_with("invalid pattern"));
}

#[test]
fn length() {
    let opts = ComplianceOptions {
        min_chars: Some(3),
        max_chars: Some(5),
        ..chatml()
    };
    assert!(!ran(&check_sample(&sample("x"), &chatml()), "length"));
    // Characters, not bytes; the stop token does not count.
    assert!(check(&check_sample(&sample("héllo<|im_end|>"), &opts), "length").passed);
    let c = check(&check_sample(&sample("hé"), &opts), "length");
    assert_eq!(c.detail.as_deref(), Some("2 chars, fewer than 3"));
    let c = check(&check_sample(&sample("hello!"), &opts), "length");
    assert_eq!(c.detail.as_deref(), Some("6 chars, more than 5"));
    let only_max = ComplianceOptions {
        max_chars: Some(2),
        ..chatml()
    };
    assert!(check(&check_sample(&sample("ok"), &only_max), "length").passed);
}

#[test]
fn rates() {
    let opts = ComplianceOptions {
        expect_json: true,
        ..chatml()
    };
    let texts = ["{}", "[]", "nope", "<think>{}"];
    let results: Vec<Vec<CheckResult>> = texts
        .iter()
        .map(|t| check_sample(&sample(t), &opts))
        .collect();
    let rates = pass_rates(&results);
    let expect = [
        ("stopped", 4, 4),
        ("no_special_tokens", 4, 4),
        ("think_balanced", 1, 0),
        ("json", 4, 2),
    ];
    let expect: Vec<(String, usize, usize)> = expect
        .iter()
        .map(|&(n, a, p)| (n.to_string(), a, p))
        .collect();
    assert_eq!(rates, expect);
    assert_eq!(compliance_rate(&results), 0.5);
    assert_eq!(compliance_rate(&[]), 0.0);
    assert_eq!(
        serde_json::to_value(&results[0][0]).unwrap(),
        json!({"name": "stopped", "passed": true, "detail": null})
    );
}

#[test]
fn repetition_stats() {
    let w = words("a b a b a b a b");
    assert_eq!(w.len(), 8);
    let s = repetition(&w);
    assert_eq!(s.tokens, 8);
    assert_eq!(
        s.looping,
        Some(Loop {
            unit: 2,
            repeats: 4,
            start: 0
        })
    );
    assert_eq!(s.distinct[0], 2.0 / 8.0);
    assert_eq!(s.distinct[1], 2.0 / 7.0);
    assert_eq!(s.repeated_ngram_share[0], 6.0 / 8.0);
    assert_eq!(s.repeated_ngram_share[3], 3.0 / 5.0);
    assert_eq!(s.longest_repeated_span, 6);
    assert!(is_repetitive(&s, None));

    let s = repetition(&words("the quick brown fox jumps over the lazy dog"));
    assert_eq!(s.looping, None);
    assert_eq!(s.distinct, [8.0 / 9.0, 1.0, 1.0, 1.0]);
    assert_eq!(s.repeated_ngram_share, [1.0 / 9.0, 0.0, 0.0, 0.0]);
    assert_eq!(s.longest_repeated_span, 1);
    assert!(!is_repetitive(&s, None));

    let empty = repetition::<u32>(&[]);
    assert_eq!(
        (empty.tokens, empty.distinct, empty.longest_repeated_span),
        (0, [1.0; 4], 0)
    );
    assert_eq!(empty.repeated_ngram_share, [0.0; 4]);

    // Token ids: an answer that ends in a loop of 3 tokens.
    let mut ids: Vec<u32> = (100..140).collect();
    for _ in 0..5 {
        ids.extend([7, 8, 9]);
    }
    let s = repetition(&ids);
    assert_eq!(
        s.looping,
        Some(Loop {
            unit: 3,
            repeats: 5,
            start: 40
        })
    );
    assert_eq!(s.longest_repeated_span, 12);
    // A single token repeated: unit 1 wins over unit 2.
    assert_eq!(
        find_loop(&[1u32; 10]),
        Some(Loop {
            unit: 1,
            repeats: 10,
            start: 0
        })
    );
    // Too few repeats or too few units covered: no loop.
    assert_eq!(find_loop(&[1u32, 2, 1, 2, 1, 2, 3]), None);
    assert_eq!(find_loop(&[5u32, 5, 5, 5, 6]), None);
    // The longest repeat, not the first: "x y z" twice, overlapping "q q q".
    assert_eq!(longest_repeated_span(&words("x y z w x y z q q q")), 3);
    assert_eq!(longest_repeated_span(&words("q q q q")), 3);
    let mut long: Vec<u32> = (0..5000).map(|i| (i * 7919 % 10007) as u32).collect();
    long.extend_from_within(1000..1300);
    assert_eq!(longest_repeated_span(&long), 300);

    // A repetitive share, judged against a reference.
    let text: Vec<&str> =
        words("one two three four one two three four one two three five one two three six");
    let s = repetition(&text);
    assert!(s.looping.is_none() && s.repeated_ngram_share[3] > 0.3);
    assert!(is_repetitive(&s, None));
    assert!(!is_repetitive(&s, Some(&s)));
    let reference = repetition(&words("a b c d e f g h"));
    assert!(is_repetitive(&s, Some(&reference)));
    let json = serde_json::to_value(repetition(&w)).unwrap();
    assert_eq!(
        json["looping"],
        json!({"unit": 2, "repeats": 4, "start": 0})
    );
}

#[test]
fn lines_and_words() {
    assert_eq!(words(" a\tb\u{3000}c\n d "), ["a", "b", "c", "d"]);
    let text = "Sure!\n  I can help.\n\nI can help.\nOther\nI can help.  \nOther\nOther\nOther\n";
    assert_eq!(line_loop(text), Some(("Other".to_string(), 4)));
    assert_eq!(line_loop("a\nb\na\nb\na\nb\n"), Some(("a".to_string(), 3)));
    assert_eq!(line_loop("a\n\n\n\nb\na\n"), None);
}

// ---- diagnosis ----

fn train(step: usize, loss: f64) -> Value {
    json!({"loss": loss, "grad_norm": 1.0, "learning_rate": 1e-4, "epoch": step as f64 / 1000.0, "step": step})
}

fn eval(step: usize, loss: f64) -> Value {
    json!({"eval_loss": loss, "eval_runtime": 1.8, "epoch": step as f64 / 1000.0, "step": step})
}

/// Training points every 10 steps up to `last`, `f(step)` the loss; evals every 100 steps.
fn history(last: usize, f: impl Fn(usize) -> f64, e: impl Fn(usize) -> f64) -> Vec<Value> {
    let mut h = Vec::new();
    for step in (10..=last).step_by(10) {
        h.push(train(step, f(step)));
        if step % 100 == 0 {
            h.push(eval(step, e(step)));
        }
    }
    h.push(json!({"train_runtime": 100.0, "train_loss": 1.0, "step": last}));
    h
}

/// Deterministic noise in [-1, 1].
fn noise(step: usize) -> f64 {
    ((step * 7919 % 101) as f64 / 50.0) - 1.0
}

fn kinds(d: &Diagnosis) -> Vec<FindingKind> {
    d.findings.iter().map(|f| f.kind).collect()
}

#[test]
fn healthy() {
    let h = history(
        500,
        |s| 2.0 * (-(s as f64) / 300.0).exp() + 0.8 + 0.02 * noise(s),
        |s| 1.0 + 1.5 * (-(s as f64) / 300.0).exp(),
    );
    let d = diagnose(&h, &DiagnosisThresholds::default());
    assert_eq!(kinds(&d), [FindingKind::Healthy], "{d:#?}");
    assert_eq!(d.findings[0].severity, Severity::Info);
    assert_eq!(
        (d.train_points, d.eval_points, d.best_step),
        (50, 5, Some(500))
    );
    assert!(d.findings[0].message.starts_with("training loss fell from"));
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["findings"][0]["kind"], "healthy");
    assert_eq!(json["findings"][0]["severity"], "info");
}

#[test]
fn overfitting() {
    // Training falls to 0.3; eval bottoms out at 1.0 at step 300 and rises 20% by step 500.
    let evals = |s: usize| match s {
        100 => 1.5,
        200 => 1.1,
        300 => 1.0,
        400 => 1.1,
        _ => 1.2,
    };
    let h = history(500, |s| 0.3 + 1.7 * (1.0 - s as f64 / 500.0), evals);
    let d = diagnose(&h, &DiagnosisThresholds::default());
    assert_eq!(kinds(&d), [FindingKind::Overfitting], "{d:#?}");
    let f = &d.findings[0];
    assert_eq!(f.steps, [300, 500]);
    assert_eq!(f.values, [1.0, 1.2]);
    assert_eq!(f.message, "eval loss rose from 1.0000 (step 300) to 1.2000 (step 500) while training loss fell from 0.9800 to 0.3000");
    assert_eq!((d.best_step, d.best_eval_loss), (Some(300), Some(1.0)));
    // One eval above the minimum is not enough.
    let h = history(400, |s| 0.3 + 1.7 * (1.0 - s as f64 / 500.0), evals);
    assert!(
        !kinds(&diagnose(&h, &DiagnosisThresholds::default())).contains(&FindingKind::Overfitting)
    );
}

#[test]
fn memorisation() {
    let h = history(
        500,
        |s| {
            if s < 100 {
                1.5 - s as f64 / 100.0
            } else {
                0.02
            }
        },
        |s| if s == 100 { 2.0 } else { 2.5 },
    );
    let d = diagnose(&h, &DiagnosisThresholds::default());
    assert!(kinds(&d).contains(&FindingKind::Memorisation), "{d:#?}");
    assert!(!kinds(&d).contains(&FindingKind::Divergence));
    let f = d
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::Memorisation)
        .unwrap();
    assert_eq!(f.values, [0.02, 2.5]);
    assert_eq!(f.steps, [500, 500]);
    // Without eval, near-zero training loss alone is a warning.
    let no_eval: Vec<Value> = h
        .iter()
        .filter(|e| e.get("eval_loss").is_none())
        .cloned()
        .collect();
    let d = diagnose(&no_eval, &DiagnosisThresholds::default());
    assert_eq!(kinds(&d), [FindingKind::Memorisation], "{d:#?}");
    assert!(d.findings[0].message.contains("no eval loss"));
}

#[test]
fn underfitting() {
    let h = history(500, |s| 2.0 + 0.05 * noise(s), |_| 2.1);
    let d = diagnose(&h, &DiagnosisThresholds::default());
    assert_eq!(kinds(&d), [FindingKind::Underfitting], "{d:#?}");
    assert!(d.findings[0].message.contains("eval loss improved only"));
    // Training falls but eval does not move.
    let h = history(500, |s| 2.0 - s as f64 / 500.0, |_| 2.1);
    let d = diagnose(&h, &DiagnosisThresholds::default());
    assert_eq!(kinds(&d), [FindingKind::Underfitting], "{d:#?}");
    assert!(d.findings[0].message.starts_with("eval loss improved only"));
}

#[test]
fn spike() {
    let h = history(
        500,
        |s| {
            if s == 250 {
                4.0
            } else {
                2.0 - s as f64 / 500.0
            }
        },
        |s| 2.0 - s as f64 / 600.0,
    );
    let d = diagnose(&h, &DiagnosisThresholds::default());
    assert_eq!(kinds(&d), [FindingKind::Instability], "{d:#?}");
    assert_eq!(d.findings[0].steps, [250]);
    assert_eq!(d.findings[0].values, [4.0]);
    assert_eq!(d.findings[0].severity, Severity::Warning);
}

#[test]
fn divergence() {
    // Non-finite values, as numbers turned null, strings or Python's bare NaN.
    let mut h = history(100, |s| 2.0 - s as f64 / 100.0, |_| 1.5);
    h.push(json!({"loss": null, "step": 110}));
    h.push(json!({"loss": "NaN", "step": 120}));
    h.push(json!({"eval_loss": "Infinity", "step": 120}));
    let d = diagnose(&h, &DiagnosisThresholds::default());
    assert_eq!(d.findings[0].kind, FindingKind::Divergence);
    assert_eq!(d.findings[0].severity, Severity::Error);
    assert_eq!(d.findings[0].steps, [110, 120, 120]);
    assert_eq!(d.train_points, 10);
    // A loss that ends far above its minimum.
    let h = history(
        300,
        |s| {
            if s <= 150 {
                2.0 - s as f64 / 100.0
            } else {
                0.5 + (s - 150) as f64 / 50.0
            }
        },
        |_| 1.5,
    );
    let d = diagnose(&h, &DiagnosisThresholds::default());
    assert_eq!(d.findings[0].kind, FindingKind::Divergence, "{d:#?}");
    assert_eq!(d.findings[0].steps[1], 300);
    assert!(d.findings[0].message.starts_with("training loss ended at"));
}

#[test]
fn too_few_points() {
    let h = vec![train(1, 2.0), train(2, 1.9), eval(2, 2.0)];
    let d = diagnose(&h, &DiagnosisThresholds::default());
    assert_eq!(kinds(&d), [FindingKind::TooFewPoints]);
    assert_eq!(
        (d.train_points, d.eval_points, d.best_step),
        (2, 1, Some(2))
    );
    assert_eq!(
        kinds(&diagnose(&[], &DiagnosisThresholds::default())),
        [FindingKind::TooFewPoints]
    );
    // Thresholds read from partial JSON keep their defaults.
    let t: DiagnosisThresholds = serde_json::from_value(json!({"min_train_points": 2})).unwrap();
    assert_eq!(t.min_train_points, 2);
    assert_eq!(t.overfit_rise, 0.05);
    assert!(!kinds(&diagnose(&h, &t)).contains(&FindingKind::TooFewPoints));
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sft-eval-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn read_histories() {
    let dir = temp_dir("history");
    let state = "{\"global_step\": 4, \"log_history\": [\n  {\"loss\": 2.5, \"step\": 2},\n  {\"loss\": NaN, \"step\": 4, \"note\": \"NaN in a string\"},\n  {\"eval_loss\": -Infinity, \"step\": 4}\n]}";
    std::fs::write(dir.join("trainer_state.json"), state).unwrap();
    std::fs::write(
        dir.join("metrics.jsonl"),
        "{\"loss\":10.0642,\"grad_norm\":6.57,\"step\":2}\n\n{\"eval_loss\":10.38,\"step\":2}\n",
    )
    .unwrap();
    let h = read_history(&dir.join("trainer_state.json")).unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(h[1]["loss"], "NaN");
    assert_eq!(h[1]["note"], "NaN in a string");
    assert_eq!(h[2]["eval_loss"], "-Infinity");
    // A folder prefers trainer_state.json.
    assert_eq!(read_history(&dir).unwrap(), h);
    let m = read_history(&dir.join("metrics.jsonl")).unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[1]["eval_loss"], 10.38);
    std::fs::remove_file(dir.join("trainer_state.json")).unwrap();
    assert_eq!(read_history(&dir).unwrap(), m);

    std::fs::write(
        dir.join("bad.jsonl"),
        "{\"loss\": 1.0, \"step\": 1}\n{\"loss\": 0.9, \"step\": 2\n",
    )
    .unwrap();
    let e = read_history(&dir.join("bad.jsonl")).unwrap_err();
    assert!(e.contains("bad.jsonl:2: "), "{e}");
    std::fs::write(dir.join("x.json"), "{\"no\": []}").unwrap();
    assert!(read_history(&dir.join("x.json"))
        .unwrap_err()
        .contains("no log_history"));

    // Only a checkpoint's trainer_state.json: the latest checkpoint's is read.
    let run = temp_dir("run");
    for n in [5, 20, 10] {
        let ckpt = run.join(format!("checkpoint-{n}"));
        std::fs::create_dir_all(&ckpt).unwrap();
        std::fs::write(
            ckpt.join("trainer_state.json"),
            format!("{{\"log_history\": [{{\"loss\": 1.0, \"step\": {n}}}]}}"),
        )
        .unwrap();
    }
    assert_eq!(read_history(&run).unwrap()[0]["step"], 20);
    assert!(read_history(&temp_dir("empty"))
        .unwrap_err()
        .contains("no trainer_state.json or metrics.jsonl"));
    for d in [dir, run, temp_dir("empty")] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

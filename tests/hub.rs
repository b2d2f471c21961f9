//! The course's command, with `sft-train` in place of `trl sft`, against the Hub stand-in
//! on 127.0.0.1: the model and the dataset by id, training, `--push_to_hub`, and the pushed
//! model downloaded back. Then offline from the same cache, the push strategies, and the
//! push flags' errors.

mod common;

use std::path::Path;
use std::process::Command;

use common::{root, Run};
use hub_standin::{Hub, Kind, StandIn};

const TOKEN: &str = "hf_standin_user";
const MODEL_ID: &str = "HuggingFaceTB/SmolLM3-3B-Base";
const DATASET_ID: &str = "HuggingFaceTB/smoltalk2_everyday_convs_think";
const CSV_DATASET_ID: &str = "someone/csv-prompts";

/// The stand-in serving the tiny model under the course's model id and a small
/// conversations dataset under its dataset id.
fn course_hub() -> StandIn {
    let mut hub = Hub::new();
    hub.add_token(TOKEN, "user");
    hub.create_repo(Kind::Model, MODEL_ID, false);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root().join("data-samples/models/tiny-llama")).unwrap() {
        let path = entry.unwrap().path();
        files.push((
            path.file_name().unwrap().to_string_lossy().into_owned(),
            std::fs::read(&path).unwrap(),
        ));
    }
    hub.commit_bytes(Kind::Model, MODEL_ID, "main", files, "add model");
    hub.create_repo(Kind::Dataset, DATASET_ID, false);
    let card = "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n---\n# Everyday conversations\n";
    hub.commit_bytes(
        Kind::Dataset,
        DATASET_ID,
        "main",
        vec![
            ("README.md".into(), card.as_bytes().to_vec()),
            (
                "data/train-00000-of-00001.jsonl".into(),
                std::fs::read(root().join("data-samples/formats/messages.jsonl")).unwrap(),
            ),
        ],
        "add data",
    );
    // A dataset of CSV files only (the split from the file name).
    hub.create_repo(Kind::Dataset, CSV_DATASET_ID, false);
    hub.commit_bytes(
        Kind::Dataset,
        CSV_DATASET_ID,
        "main",
        vec![(
            "train.csv".into(),
            b"prompt,completion\n\"What is 2+2, exactly?\",4\nName a colour.,\"Blue, like the sky.\"\n"
                .to_vec(),
        )],
        "add csv",
    );
    StandIn::start(hub).unwrap()
}

/// `sft-train` with the Hub settings in its environment only.
fn sft_train(server: &StandIn, home: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    hub_run(env!("CARGO_BIN_EXE_sft-train"), server, home, env, args)
}

/// One of the binaries with the stand-in's Hub settings (and `env`) in its environment.
fn hub_run(bin: &str, server: &StandIn, home: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .env("HF_ENDPOINT", server.url())
        .env("HF_HOME", home)
        .env("HF_HUB_CACHE", home.join("hub"))
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_TOKEN_PATH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn course_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--model_name_or_path",
        MODEL_ID,
        "--dataset_name",
        DATASET_ID,
        "--output_dir",
        out,
        "--per_device_train_batch_size",
        "4",
        "--learning_rate",
        "5e-5",
        "--max_steps",
        "2",
        "--logging_steps",
        "1",
        "--save_steps",
        "1",
        "--report_to",
        "none",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn the_course_command_trains_from_the_hub_and_pushes() {
    let server = course_hub();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf");
    let out = tmp.path().join("sft-model");
    let out_s = out.to_str().unwrap();
    let r = sft_train(
        &server,
        &home,
        &[("HF_TOKEN", TOKEN)],
        &course_args(
            out_s,
            &["--push_to_hub", "--hub_model_id", "user/smollm3-custom"],
        ),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("pushed"), "{}", r.stderr);

    // The model and the dataset came into the shared cache layout.
    let model_repo = home.join("hub/models--HuggingFaceTB--SmolLM3-3B-Base");
    assert!(model_repo.join("refs/main").is_file());
    assert!(home
        .join("hub/datasets--HuggingFaceTB--smoltalk2_everyday_convs_think/refs/main")
        .is_file());

    // What the Hub now holds: the final model, its card; no checkpoint, no prepared data.
    {
        let hub = server.hub();
        let repo = &hub.repos[&(Kind::Model, "user/smollm3-custom".to_string())];
        let files = &repo.commits[&repo.branches["main"]].files;
        assert!(files["model.safetensors"].lfs);
        for f in [
            "config.json",
            "tokenizer.json",
            "README.md",
            "trainer_state.json",
        ] {
            assert!(files.contains_key(f), "{f}: {:?}", files.keys());
        }
        assert!(!files
            .keys()
            .any(|f| f.starts_with("checkpoint-") || f.starts_with("data/")));
        let card = String::from_utf8(files["README.md"].data.to_vec()).unwrap();
        assert!(
            card.contains("base_model: HuggingFaceTB/SmolLM3-3B-Base"),
            "{card}"
        );
        assert!(card.contains(DATASET_ID), "{card}");
        assert!(card.contains("- sft") && card.contains("- trl"), "{card}");
        assert!(card.contains("train_loss"), "{card}");
    }

    // Downloaded back: the bytes the run wrote.
    let back = tempfile::tempdir().unwrap();
    let client = sft_hub::HubClient::new(sft_hub::HubSettings {
        endpoint: server.url(),
        token: None,
        cache_dir: back.path().to_path_buf(),
        offline: false,
        progress: false,
    })
    .unwrap();
    let dir = sft_hub::resolve_model(&client, "user/smollm3-custom", None).unwrap();
    for f in ["model.safetensors", "config.json", "tokenizer.json"] {
        assert_eq!(
            std::fs::read(dir.join(f)).unwrap(),
            std::fs::read(out.join(f)).unwrap(),
            "{f}"
        );
    }

    // Offline, from the same cache, with no Hub at all: the same command trains.
    drop(server);
    let dead = StandIn::start(Hub::new()).unwrap();
    let out2 = tmp.path().join("offline");
    let r = sft_train(
        &dead,
        &home,
        &[("HF_HUB_OFFLINE", "1")],
        &course_args(out2.to_str().unwrap(), &[]),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(dead.requests().is_empty(), "{:?}", dead.requests());
}

#[test]
fn every_save_and_checkpoint_strategies_push_during_the_run() {
    let server = course_hub();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf");
    for (strategy, repo_id) in [
        ("every_save", "user/every"),
        ("checkpoint", "user/last"),
        ("all_checkpoints", "user/all"),
    ] {
        let out = tmp.path().join(strategy);
        let r = sft_train(
            &server,
            &home,
            &[],
            &course_args(
                out.to_str().unwrap(),
                &[
                    "--push_to_hub",
                    "--hub_model_id",
                    repo_id,
                    "--hub_strategy",
                    strategy,
                    "--hub_token",
                    TOKEN,
                    "--quiet",
                ],
            ),
        );
        assert_eq!(r.code, 0, "{strategy}: {}", r.stderr);
        let hub = server.hub();
        let repo = &hub.repos[&(Kind::Model, repo_id.to_string())];
        let messages: Vec<&str> = repo.commits.values().map(|c| c.message.as_str()).collect();
        assert!(
            messages.contains(&"Training in progress, step 1"),
            "{strategy}: {messages:?}"
        );
        assert!(
            messages.contains(&"End of training"),
            "{strategy}: {messages:?}"
        );
        let files = &repo.commits[&repo.branches["main"]].files;
        assert!(files.contains_key("model.safetensors"));
        assert!(
            !files.contains_key("optimizer.safetensors"),
            "resume states stay in checkpoints"
        );
        match strategy {
            "checkpoint" => assert!(files.contains_key("last-checkpoint/optimizer.safetensors")),
            "all_checkpoints" => {
                assert!(files.contains_key("checkpoint-1/model.safetensors"));
                assert!(files.contains_key("checkpoint-2/training_state.json"));
            }
            _ => assert!(!files.keys().any(|f| f.contains("checkpoint"))),
        }
    }
}

#[test]
fn push_flags_are_checked_before_training() {
    let server = course_hub();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf");
    let out = tmp.path().join("out");
    let out_s = out.to_str().unwrap();
    // A push setting without --push_to_hub is not silently ignored.
    let r = sft_train(
        &server,
        &home,
        &[],
        &course_args(out_s, &["--hub_strategy", "every_save"]),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("add --push_to_hub"), "{}", r.stderr);
    let r = sft_train(&server, &home, &[], &course_args(out_s, &["--push_to_hub"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--hub_model_id"), "{}", r.stderr);
    let r = sft_train(
        &server,
        &home,
        &[("HF_TOKEN", TOKEN)],
        &course_args(
            out_s,
            &[
                "--push_to_hub",
                "--hub_model_id",
                "user/x",
                "--hub_strategy",
                "sometimes",
            ],
        ),
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("every_save"), "{}", r.stderr);
    // No token: stops before training, says how to give one.
    let r = sft_train(
        &server,
        &home,
        &[],
        &course_args(out_s, &["--push_to_hub", "--hub_model_id", "user/x"]),
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("HF_TOKEN") && r.stderr.contains("--hub_token"),
        "{}",
        r.stderr
    );
    assert!(!out.join("checkpoint-1").exists());
    // A model id that is not on the Hub: named, with what to check.
    let r = sft_train(
        &server,
        &home,
        &[],
        &[
            "--model_name_or_path",
            "nobody/nothing",
            "--dataset_name",
            DATASET_ID,
            "--output_dir",
            out_s,
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("nobody/nothing") && r.stderr.contains("check the id"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.to_lowercase().contains("no network"),
        "{}",
        r.stderr
    );
}

/// `sft-eval --checkpoint OWNER/NAME` scores a Hub model: downloaded into the shared cache,
/// then scored again offline from it.
#[test]
fn sft_eval_scores_a_model_by_id_then_offline() {
    let server = course_hub();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf");
    let eval = |offline: bool, report: &Path| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sft-eval"));
        cmd.args([
            "--checkpoint",
            MODEL_ID,
            "--dataset",
            "data-samples/formats/messages.jsonl",
            "--max-samples",
            "0",
            "--report",
            report.to_str().unwrap(),
            "-q",
        ])
        .current_dir(root())
        .env("HF_ENDPOINT", server.url())
        .env("HF_HOME", &home)
        .env("HF_HUB_CACHE", home.join("hub"))
        .env_remove("HF_TOKEN")
        .env_remove("HF_TOKEN_PATH");
        if offline {
            cmd.env("HF_HUB_OFFLINE", "1");
        } else {
            cmd.env_remove("HF_HUB_OFFLINE");
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let online = tmp.path().join("online.json");
    let (code, stderr) = eval(false, &online);
    assert_eq!(code, 0, "{stderr}");
    assert!(home
        .join("hub/models--HuggingFaceTB--SmolLM3-3B-Base/refs/main")
        .is_file());
    let offline = tmp.path().join("offline.json");
    let (code, stderr) = eval(true, &offline);
    assert_eq!(code, 0, "{stderr}");
    let loss = |p: &Path| -> f64 {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        v["checkpoints"][0]["heldout"]["loss"].as_f64().unwrap()
    };
    assert_eq!(loss(&online), loss(&offline));
    // A model id the Hub does not have: a usage error that names it.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sft-eval"));
    let out = cmd
        .args([
            "--checkpoint",
            "nobody/nothing",
            "--dataset",
            "data-samples/formats/messages.jsonl",
        ])
        .current_dir(root())
        .env("HF_ENDPOINT", server.url())
        .env("HF_HOME", &home)
        .env("HF_HUB_CACHE", home.join("hub"))
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nobody/nothing"), "{stderr}");
}

/// One of the binaries against the stand-in, offline from the cache when told.
fn hub_command(bin: &str, server: &StandIn, home: &Path, offline: bool, args: &[&str]) -> Run {
    let env: &[(&str, &str)] = if offline {
        &[("HF_HUB_OFFLINE", "1")]
    } else {
        &[]
    };
    hub_run(bin, server, home, env, args)
}

/// `sft-data` commands and `sft-eval --dataset` take Hub dataset ids, and `--tokenizer` a
/// Hub model id: the files come into the shared cache once, then offline from it; the rows
/// are those of the local file the stand-in serves.
#[test]
fn data_commands_and_eval_read_hub_datasets_and_tokenizers() {
    let server = course_hub();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf");
    let data = env!("CARGO_BIN_EXE_sft-data");
    let local = hub_command(
        data,
        &server,
        &home,
        true,
        &["check", "data-samples/formats/messages.jsonl"],
    );
    assert_eq!(local.code, 0, "{}", local.stderr);
    let online = hub_command(data, &server, &home, false, &["check", DATASET_ID]);
    assert_eq!(online.code, 0, "{}", online.stderr);
    assert!(home
        .join("hub/datasets--HuggingFaceTB--smoltalk2_everyday_convs_think/refs/main")
        .is_file());
    // The same rows as the local file: the summary's row count line is the same.
    let rows = |s: &str| s.lines().find(|l| l.contains("rows")).map(str::to_string);
    assert!(rows(&local.stdout).is_some(), "{}", local.stdout);
    let first_number = |s: Option<String>| {
        s.unwrap()
            .split_whitespace()
            .find(|w| w.chars().all(|c| c.is_ascii_digit() || c == ','))
            .map(str::to_string)
    };
    assert_eq!(
        first_number(rows(&online.stdout)),
        first_number(rows(&local.stdout)),
        "{}\n{}",
        online.stdout,
        local.stdout
    );
    // Offline, from the cache: prepare with the model id's tokenizer.
    let out = tmp.path().join("prepared.parquet");
    let prepared = hub_command(
        data,
        &server,
        &home,
        true,
        &[
            "prepare",
            DATASET_ID,
            "--tokenizer",
            MODEL_ID,
            "-o",
            out.to_str().unwrap(),
        ],
    );
    // The model is not in the cache yet: offline mode says so and names it.
    assert_eq!(prepared.code, 2, "{}", prepared.stderr);
    assert!(prepared.stderr.contains(MODEL_ID), "{}", prepared.stderr);
    let prepared = hub_command(
        data,
        &server,
        &home,
        false,
        &[
            "prepare",
            DATASET_ID,
            "--tokenizer",
            MODEL_ID,
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(prepared.code, 0, "{}", prepared.stderr);
    assert!(out.is_file());
    let stats = hub_command(data, &server, &home, true, &["stats", DATASET_ID]);
    assert_eq!(stats.code, 0, "{}", stats.stderr);
    // A dataset of CSV files: two prompt-completion rows.
    let csv = hub_command(data, &server, &home, false, &["check", CSV_DATASET_ID]);
    assert_eq!(csv.code, 0, "{}", csv.stderr);
    assert!(csv.stdout.contains("prompt-completion 2"), "{}", csv.stdout);
    // A split the dataset does not have: a usage error that names it.
    let missing = hub_command(
        data,
        &server,
        &home,
        true,
        &["check", DATASET_ID, "--split", "nope"],
    );
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(missing.stderr.contains("nope"), "{}", missing.stderr);
    // sft-eval scores the Hub dataset's train split with the Hub model, offline.
    let report = tmp.path().join("report.json");
    let scored = hub_command(
        env!("CARGO_BIN_EXE_sft-eval"),
        &server,
        &home,
        true,
        &[
            "--checkpoint",
            MODEL_ID,
            "--dataset",
            DATASET_ID,
            "--dataset-split",
            "train",
            "--max-samples",
            "0",
            "--report",
            report.to_str().unwrap(),
            "-q",
        ],
    );
    assert_eq!(scored.code, 0, "{}", scored.stderr);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(v["checkpoints"][0]["heldout"]["loss"].as_f64().unwrap() > 0.0);
}

/// `--use_peft --push_to_hub`: the adapter (not a full model) goes up with a card that says
/// `library_name: peft` and names the base by its Hub id; downloaded back byte for byte, it
/// scores with `sft-eval` against its base from the same cache.
#[test]
fn a_lora_adapter_is_pushed_and_comes_back() {
    let server = course_hub();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf");
    let out = tmp.path().join("adapter-run");
    let r = sft_train(
        &server,
        &home,
        &[("HF_TOKEN", TOKEN)],
        &course_args(
            out.to_str().unwrap(),
            &[
                "--use_peft",
                "--lora_r",
                "4",
                "--push_to_hub",
                "--hub_model_id",
                "user/smollm3-lora",
                "--hub_strategy",
                "end",
            ],
        ),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    {
        let hub = server.hub();
        let repo = &hub.repos[&(Kind::Model, "user/smollm3-lora".to_string())];
        let files = &repo.commits[&repo.branches["main"]].files;
        for f in [
            "adapter_config.json",
            "adapter_model.safetensors",
            "README.md",
        ] {
            assert!(files.contains_key(f), "{f}: {:?}", files.keys());
        }
        assert!(
            !files.contains_key("model.safetensors"),
            "{:?}",
            files.keys()
        );
        let card = String::from_utf8(files["README.md"].data.to_vec()).unwrap();
        assert!(card.contains("library_name: peft"), "{card}");
        assert!(
            card.contains("base_model: HuggingFaceTB/SmolLM3-3B-Base"),
            "{card}"
        );
        let config: serde_json::Value =
            serde_json::from_slice(&files["adapter_config.json"].data).unwrap();
        assert_eq!(config["r"], 4);
    }
    let back = tempfile::tempdir().unwrap();
    let client = sft_hub::HubClient::new(sft_hub::HubSettings {
        endpoint: server.url(),
        token: None,
        cache_dir: back.path().to_path_buf(),
        offline: false,
        progress: false,
    })
    .unwrap();
    let dir = sft_hub::resolve_model(&client, "user/smollm3-lora", None).unwrap();
    for f in ["adapter_model.safetensors", "adapter_config.json"] {
        assert_eq!(
            std::fs::read(dir.join(f)).unwrap(),
            std::fs::read(out.join(f)).unwrap(),
            "{f}"
        );
    }
    // The pushed adapter, by id, scored on its base (found by id in the same cache).
    let report = tmp.path().join("report.json");
    let scored = hub_command(
        env!("CARGO_BIN_EXE_sft-eval"),
        &server,
        &home,
        false,
        &[
            "--checkpoint",
            "user/smollm3-lora",
            "--dataset",
            "data-samples/formats/messages.jsonl",
            "--max-samples",
            "0",
            "--report",
            report.to_str().unwrap(),
            "-q",
        ],
    );
    assert_eq!(scored.code, 0, "{}", scored.stderr);
}

/// What Python found when it loaded our pushes through the stand-in
/// (`tests/fixtures/hub/check_pushed_models.py --write-fixtures`): a checked-in record that
/// the last run of the script passed every check, so a regression shows when it is rerun.
#[test]
fn python_loaded_what_we_pushed() {
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/hub/python_loads_our_pushes.json"))
            .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let checks = v["checks"].as_object().unwrap();
    assert_eq!(checks.len(), 4, "{text}");
    assert!(checks.values().all(|c| c == true), "{text}");
    assert_eq!(v["adapter_base_model_name_or_path"], "user/tiny");
    assert_eq!(v["peft_merge_vs_our_merge_max_abs_diff"], 0.0);
}

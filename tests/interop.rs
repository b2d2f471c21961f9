//! Files written by Python `datasets` / pyarrow (tests/fixtures/interop, made by
//! make_interop.py there) read back as Python reads them.

mod common;

use common::{read_jsonl, read_rows, sample, strip_nulls};

/// Arrow gives every missing struct field a null; the reader drops null keys (as
/// transformers does for messages), so the comparison is on rows without nulls.
fn assert_reads_as_python(data: &str, expected: &str) {
    let dir = sample("tests/fixtures/interop");
    let ours = read_rows(&dir.join(data));
    let python: Vec<_> = read_jsonl(&dir.join(expected))
        .iter()
        .map(strip_nulls)
        .collect();
    assert_eq!(ours.len(), python.len(), "{data}: row count");
    for (i, (a, b)) in ours.iter().zip(&python).enumerate() {
        assert_eq!(a, b, "{data} row {i}");
    }
}

#[test]
fn parquet_written_by_datasets() {
    assert_reads_as_python("messages.parquet", "messages.expected.jsonl");
    assert_reads_as_python(
        "conversational_pc.parquet",
        "conversational_pc.expected.jsonl",
    );
    assert_reads_as_python("tools.parquet", "tools.expected.jsonl");
}

#[test]
fn parquet_written_by_pandas_with_zstd_and_large_strings() {
    assert_reads_as_python(
        "prompt_completion.parquet",
        "prompt_completion.expected.jsonl",
    );
}

#[test]
fn save_to_disk_folder_and_dataset_dict() {
    assert_reads_as_python("saved_dataset", "saved_dataset.expected.jsonl");
    let dir = sample("tests/fixtures/interop");
    let rows = read_rows(&dir.join("dataset_dict"));
    let mut expected = read_jsonl(&dir.join("dataset_dict.train.expected.jsonl"));
    expected.extend(read_jsonl(&dir.join("dataset_dict.test.expected.jsonl")));
    assert_eq!(
        rows, expected,
        "splits in dataset_dict.json order: train, then test"
    );
}

/// Fields whose rows hold different JSON types: datasets 5.2 stores them as the arrow.json
/// extension type (JSON text), read as the values, not as strings.
#[test]
fn arrow_json_fields_written_by_datasets_read_as_values() {
    assert_reads_as_python("mixed_types.parquet", "mixed_types.expected.jsonl");
    let r = common::sft_data(&["check", "tests/fixtures/interop/mixed_types.parquet"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}

/// `convert` writes such rows to Parquet (a mixed field as arrow.json text, with a note),
/// and they read back as the same values.
#[test]
fn convert_writes_fields_of_mixed_types_to_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mixed.parquet");
    let r = common::sft_data(&[
        "convert",
        "tests/fixtures/interop/mixed_types.jsonl",
        "--to",
        "messages",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("messages[].tool_calls[].function.arguments") && all.contains("arrow.json"),
        "no note on the fields stored as JSON text: {all}"
    );
    let ours: Vec<_> = read_rows(&out).iter().map(strip_nulls).collect();
    let python: Vec<_> = read_jsonl(&sample("tests/fixtures/interop/mixed_types.expected.jsonl"))
        .iter()
        .map(strip_nulls)
        .collect();
    assert_eq!(ours, python);
}

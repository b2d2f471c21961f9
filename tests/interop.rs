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

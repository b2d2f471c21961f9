//! Training rows from a prepared token table (`sft-data prepare` output).

use std::path::Path;

use sft_model::BatchRow;

/// Reads `input_ids`, `labels` (or `completion_mask`) and `seq_lengths` of a prepared
/// Parquet file into rows; with `vocab_size`, every id must be below it. Errors name the
/// file and the row.
pub fn load_prepared(path: &Path, vocab_size: Option<usize>) -> Result<Vec<BatchRow>, String> {
    let columns = sft_io::tokens::read_token_table(path)?;
    let col = |name: &str| {
        columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, rows)| rows)
    };
    let ids = col("input_ids").ok_or_else(|| {
        format!(
            "{}: no input_ids column; is this a table written by `sft-data prepare`?",
            path.display()
        )
    })?;
    let labels = col("labels");
    let mask = col("completion_mask");
    let seq = col("seq_lengths");
    let mut rows = Vec::with_capacity(ids.len());
    for (r, input) in ids.iter().enumerate() {
        let where_ = || format!("{}: row {r}", path.display());
        if input.iter().any(|&x| x < 0) {
            return Err(format!("{}: input_ids holds a negative id", where_()));
        }
        if let Some(v) = vocab_size {
            if let Some(bad) = input.iter().find(|&&x| x as usize >= v) {
                return Err(format!(
                    "{}: token id {bad} is outside the model's vocabulary of {v}\n  hint: was it prepared with another tokenizer? prepare it again with the model's",
                    where_()
                ));
            }
        }
        let input_ids: Vec<u32> = input.iter().map(|&x| x as u32).collect();
        let labels: Vec<i64> = match (labels, mask) {
            (Some(l), _) => l[r].iter().map(|&x| x as i64).collect(),
            (None, Some(m)) => m[r]
                .iter()
                .zip(input)
                .map(|(&m, &id)| if m == 1 { id as i64 } else { -100 })
                .collect(),
            (None, None) => input.iter().map(|&x| x as i64).collect(),
        };
        if labels.len() != input_ids.len() {
            return Err(format!(
                "{}: {} labels for {} input_ids",
                where_(),
                labels.len(),
                input_ids.len()
            ));
        }
        let seq_lengths = match seq {
            Some(s) => s[r].iter().map(|&x| x.max(0) as usize).collect(),
            None => vec![input_ids.len()],
        };
        if seq_lengths.iter().sum::<usize>() != input_ids.len() {
            return Err(format!(
                "{}: seq_lengths do not add up to the row length",
                where_()
            ));
        }
        rows.push(BatchRow {
            input_ids,
            labels,
            seq_lengths,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_outside_the_vocabulary_are_reported_with_their_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let mut w = sft_io::tokens::TokenTableWriter::create(&path, &["input_ids"]).unwrap();
        w.write(&[&[5, 6, 7]]).unwrap();
        w.write(&[&[5, 60000]]).unwrap();
        w.finish().unwrap();
        assert_eq!(load_prepared(&path, None).unwrap().len(), 2);
        let err = load_prepared(&path, Some(49152)).unwrap_err();
        assert!(
            err.contains("row 1") && err.contains("60000") && err.contains("49152"),
            "{err}"
        );
    }
}

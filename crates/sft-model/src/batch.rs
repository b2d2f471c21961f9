//! A micro-batch as the model sees it: rows right-padded to one length, per-token position
//! ids that restart at every packed document, a block-diagonal causal mask, and the
//! positions whose next token is trained.

use candle_core::{Device, Tensor};

use crate::{ModelError, Result};

/// One training row: token ids, labels (`-100` where no loss is taken, as in transformers;
/// `labels[t]` is the target of position `t - 1`) and the lengths of the documents packed
/// into it (one length for an unpacked row).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRow {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
    pub seq_lengths: Vec<usize>,
}

impl BatchRow {
    /// An unpacked row.
    pub fn single(input_ids: Vec<u32>, labels: Vec<i64>) -> Self {
        let n = input_ids.len();
        Self {
            input_ids,
            labels,
            seq_lengths: vec![n],
        }
    }

    /// Label tokens that count in the loss (after the shift).
    pub fn trained_tokens(&self) -> usize {
        self.labels.iter().skip(1).filter(|&&l| l != -100).count()
    }
}

/// A padded micro-batch ready for the forward pass.
#[derive(Debug)]
pub struct Batch {
    pub rows: usize,
    pub len: usize,
    /// `[rows, len]` u32.
    pub input_ids: Tensor,
    /// Position id of every token, `rows * len`, restarting per document (0 for padding).
    pub position_ids: Vec<u32>,
    /// Document of every token (`u32::MAX` for padding).
    pub doc_ids: Vec<u32>,
    /// Flat indices `row * len + t` of the positions whose next token is trained.
    pub target_positions: Vec<u32>,
    /// The trained token at each of those positions.
    pub targets: Vec<u32>,
    /// Real (non-padding) tokens.
    pub real_tokens: usize,
}

/// Padding is never attended to by real tokens; a padding query attends only to itself so
/// that its softmax row is defined.
pub const PAD_DOC: u32 = u32::MAX;

impl Batch {
    pub fn new(rows: &[BatchRow], pad_id: u32, vocab_size: usize, device: &Device) -> Result<Self> {
        if rows.is_empty() {
            return Err(ModelError::Input("a batch needs at least one row".into()));
        }
        let len = rows.iter().map(|r| r.input_ids.len()).max().unwrap_or(0);
        if len == 0 {
            return Err(ModelError::Input("a batch of empty rows".into()));
        }
        let mut ids = Vec::with_capacity(rows.len() * len);
        let mut position_ids = Vec::with_capacity(rows.len() * len);
        let mut doc_ids = Vec::with_capacity(rows.len() * len);
        let mut target_positions = Vec::new();
        let mut targets = Vec::new();
        let mut real_tokens = 0;
        for (r, row) in rows.iter().enumerate() {
            let n = row.input_ids.len();
            if row.labels.len() != n {
                return Err(ModelError::Input(format!(
                    "row {r}: {} labels for {n} tokens",
                    row.labels.len()
                )));
            }
            if row.seq_lengths.iter().sum::<usize>() != n {
                return Err(ModelError::Input(format!(
                    "row {r}: seq_lengths sum to {} but the row has {n} tokens",
                    row.seq_lengths.iter().sum::<usize>()
                )));
            }
            if let Some(bad) = row.input_ids.iter().find(|&&id| id as usize >= vocab_size) {
                return Err(ModelError::Input(format!(
                    "row {r}: token id {bad} is outside the model's vocabulary of {vocab_size}; \
                     was the data prepared with another tokenizer?"
                )));
            }
            ids.extend_from_slice(&row.input_ids);
            ids.extend(std::iter::repeat_n(pad_id, len - n));
            for (d, &l) in row.seq_lengths.iter().enumerate() {
                position_ids.extend(0..l as u32);
                doc_ids.extend(std::iter::repeat_n(d as u32, l));
            }
            position_ids.extend(std::iter::repeat_n(0, len - n));
            doc_ids.extend(std::iter::repeat_n(PAD_DOC, len - n));
            real_tokens += n;
            for t in 1..n {
                let label = row.labels[t];
                if label == -100 {
                    continue;
                }
                if label < 0 || label as usize >= vocab_size {
                    return Err(ModelError::Input(format!(
                        "row {r}: label {label} at position {t} is outside the vocabulary"
                    )));
                }
                target_positions.push((r * len + t - 1) as u32);
                targets.push(label as u32);
            }
        }
        let input_ids = Tensor::from_vec(ids, (rows.len(), len), device)?;
        Ok(Self {
            rows: rows.len(),
            len,
            input_ids,
            position_ids,
            doc_ids,
            target_positions,
            targets,
            real_tokens,
        })
    }

    /// Whether any row holds padding or more than one document, i.e. a plain causal mask is
    /// not enough.
    pub fn needs_mask(&self) -> bool {
        self.doc_ids.iter().any(|&d| d != 0)
    }

    /// The key range every query attends to (its document's earlier tokens and itself; a
    /// padding query only itself): the mask of [`Self::attention_mask`] without the
    /// `len x len` tensor.
    pub fn key_ranges(&self) -> Result<crate::mask::KeyRanges> {
        crate::mask::KeyRanges::from_doc_ids(self.rows, self.len, &self.doc_ids, PAD_DOC)
    }

    /// The additive attention mask `[rows, 1, len, len]`: 0 where a query may attend to a
    /// key (same document, not later), -inf elsewhere.
    pub fn attention_mask(&self, device: &Device) -> Result<Tensor> {
        let (b, t) = (self.rows, self.len);
        let mut mask = vec![f32::NEG_INFINITY; b * t * t];
        for r in 0..b {
            let docs = &self.doc_ids[r * t..(r + 1) * t];
            for i in 0..t {
                let row = &mut mask[(r * t + i) * t..(r * t + i + 1) * t];
                if docs[i] == PAD_DOC {
                    row[i] = 0.0;
                    continue;
                }
                for j in (0..=i).rev() {
                    if docs[j] != docs[i] {
                        break;
                    }
                    row[j] = 0.0;
                }
            }
        }
        Ok(Tensor::from_vec(mask, (b, 1, t, t), device)?)
    }
}

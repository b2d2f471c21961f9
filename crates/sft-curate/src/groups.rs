//! Which rows belong together: exact duplicates (as `check` defines them), near-duplicates
//! (MinHash LSH) and, for `split`, rows that share their prompt.
//!
//! One pass computes each row's keys in parallel and spills them to a key table
//! (`sft_dataset::keys`, polars over Parquet); the group-bys over it give, for each key,
//! every row that repeats an earlier row's key; a union-find over those links (4 bytes per
//! row) gives each row its group, whose first row is the group's representative.

use serde_json::Value;
use sft_dataset::keys::KeyTable;
use sft_formats::detect_row;

use crate::minhash::{LshParams, MinHasher};
use crate::pass::{each_row, BadRow, Input, OpError, RowAt};
use crate::row::{prompt_hash, row_text};

/// What makes rows belong together.
#[derive(Debug, Clone)]
pub struct GroupBy {
    /// Near-duplicates above this Jaccard similarity; `None` for exact duplicates only.
    pub near: Option<LshParams>,
    /// Rows that share their prompt.
    pub prompt: bool,
}

/// The groups of a dataset's rows.
pub struct Groups {
    /// Each row's representative (the first row of its group); bad rows are their own.
    parent: Vec<u32>,
    /// Rows that are an exact duplicate of an earlier row.
    exact: Vec<u64>,
    /// Rows that could not be parsed (they are rejected, not grouped).
    bad: Vec<u64>,
    /// Rows whose group has more than one row, as a bit set.
    grouped: Vec<u64>,
    pub rows: u64,
    pub bad_rows: u64,
    pub exact_links: u64,
    pub prompt_links: u64,
    pub near_links: u64,
}

fn bit(set: &[u64], i: u64) -> bool {
    set[(i / 64) as usize] >> (i % 64) & 1 == 1
}

fn set_bit(set: &mut [u64], i: u64) {
    set[(i / 64) as usize] |= 1 << (i % 64);
}

impl Groups {
    /// The first row of `row`'s group.
    pub fn representative(&self, row: u64) -> u64 {
        self.parent[row as usize] as u64
    }

    pub fn is_exact_duplicate(&self, row: u64) -> bool {
        bit(&self.exact, row)
    }

    pub fn is_bad(&self, row: u64) -> bool {
        bit(&self.bad, row)
    }

    /// Whether the row's group has other rows.
    pub fn in_group(&self, row: u64) -> bool {
        bit(&self.grouped, row)
    }

    pub fn good_rows(&self) -> u64 {
        self.rows - self.bad_rows
    }
}

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let next = parent[x as usize];
        parent[x as usize] = parent[next as usize];
        x = next;
    }
    x
}

/// Joins two groups, the one with the smaller first row absorbing the other, so the
/// representative is always the group's first row.
fn union(parent: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent[hi as usize] = lo;
    }
}

/// The keys of one row.
struct RowKeys {
    exact: u64,
    prompt: Option<u64>,
    bands: Option<Vec<u64>>,
}

/// Reads the input once and groups its rows. `extra` sees every row (and its bad-row
/// problem, if any) in order, for what a job gathers on the same pass (strata, counts).
pub fn group_rows(
    input: &Input,
    by: &GroupBy,
    mut extra: impl FnMut(&RowAt<'_>, Option<&Value>),
) -> Result<Groups, OpError> {
    let hasher = by.near.map(MinHasher::new);
    let bands = hasher.as_ref().map_or(0, |h| h.params().bands);
    let mut names: Vec<String> = vec!["exact".into(), "prompt".into()];
    names.extend((0..bands).map(|b| format!("band{b}")));
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut table = KeyTable::create(&name_refs, None).map_err(OpError::Data)?;
    let mut bad = Vec::new();
    let mut bad_rows = 0u64;
    let mut keys_buf: Vec<Option<u64>> = Vec::with_capacity(names.len());
    let rows = each_row(
        input,
        |_, value| {
            let kind = detect_row(&value);
            let keys = RowKeys {
                exact: sft_dataset::hash::content_hash(&value, kind),
                prompt: if by.prompt {
                    prompt_hash(&value, kind)
                } else {
                    None
                },
                bands: hasher
                    .as_ref()
                    .and_then(|h| h.bands(&row_text(&value, kind))),
            };
            (keys, value)
        },
        |at, result: Result<(RowKeys, Value), Box<BadRow>>| {
            if at.seq >= u32::MAX as u64 {
                return Err(OpError::Data(format!(
                    "{}: more than {} rows; split the input into parts first",
                    at.location(),
                    u32::MAX
                )));
            }
            if bad.len() * 64 <= at.seq as usize {
                bad.push(0u64);
            }
            match result {
                Ok((keys, value)) => {
                    extra(&at, Some(&value));
                    keys_buf.clear();
                    keys_buf.push(Some(keys.exact));
                    keys_buf.push(keys.prompt);
                    match keys.bands {
                        Some(b) => keys_buf.extend(b.into_iter().map(Some)),
                        None => keys_buf.extend(std::iter::repeat_n(None, bands)),
                    }
                    table.push(at.seq, &keys_buf, 0).map_err(OpError::Data)?;
                }
                Err(_) => {
                    extra(&at, None);
                    set_bit(&mut bad, at.seq);
                    bad_rows += 1;
                }
            }
            Ok(())
        },
    )?;
    let spilled = table.finish().map_err(OpError::Data)?;
    let words = (rows as usize).div_ceil(64);
    bad.resize(words, 0);
    let mut parent: Vec<u32> = (0..rows as u32).collect();
    let mut exact = vec![0u64; words];
    let mut groups = Groups {
        parent: Vec::new(),
        exact: Vec::new(),
        bad,
        grouped: vec![0u64; words],
        rows,
        bad_rows,
        exact_links: 0,
        prompt_links: 0,
        near_links: 0,
    };
    for repeat in spilled.repeats("exact").map_err(OpError::Data)? {
        set_bit(&mut exact, repeat.row);
        union(&mut parent, repeat.row as u32, repeat.first as u32);
        groups.exact_links += 1;
    }
    if by.prompt {
        for repeat in spilled.repeats("prompt").map_err(OpError::Data)? {
            union(&mut parent, repeat.row as u32, repeat.first as u32);
            groups.prompt_links += 1;
        }
    }
    for name in names.iter().skip(2) {
        for repeat in spilled.repeats(name).map_err(OpError::Data)? {
            if !bit(&exact, repeat.row) {
                groups.near_links += 1;
            }
            union(&mut parent, repeat.row as u32, repeat.first as u32);
        }
    }
    for row in 0..rows as u32 {
        let root = find(&mut parent, row);
        parent[row as usize] = root;
        if root != row {
            set_bit(&mut groups.grouped, row as u64);
            set_bit(&mut groups.grouped, root as u64);
        }
    }
    groups.parent = parent;
    groups.exact = exact;
    Ok(groups)
}

//! Packing: many short examples into few rows of at most `capacity` tokens.
//!
//! - `bfd`: best-fit decreasing over the whole dataset (TRL forms bins inside 1000-row
//!   chunks; packing globally needs fewer rows). Examples longer than the capacity are
//!   truncated to it.
//! - `bfd_split`: the same, but an overlong example is split into capacity-sized pieces
//!   rather than truncated.
//! - `wrapped`: everything concatenated in order and cut every `capacity` tokens; documents
//!   may straddle rows.
//!
//! Every packed row records the length of each document in it (`seq_lengths`), so
//! attention and position ids can restart per document.

use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackingStrategy {
    Bfd,
    BfdSplit,
    Wrapped,
}

impl std::str::FromStr for PackingStrategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bfd" => Ok(PackingStrategy::Bfd),
            "bfd_split" | "bfd-split" => Ok(PackingStrategy::BfdSplit),
            "wrapped" => Ok(PackingStrategy::Wrapped),
            other => Err(format!(
                "unknown packing strategy `{other}`: expected bfd, bfd_split or wrapped"
            )),
        }
    }
}

impl PackingStrategy {
    /// The name TRL gives the strategy (`--packing_strategy`).
    pub fn name(self) -> &'static str {
        match self {
            PackingStrategy::Bfd => "bfd",
            PackingStrategy::BfdSplit => "bfd_split",
            PackingStrategy::Wrapped => "wrapped",
        }
    }

    /// Packing from the two ways of asking for it: TRL's `--packing [true|false]` with
    /// `--packing_strategy NAME`, or `--packing NAME` (`none` for none). Returns whether to
    /// pack and the strategy (`bfd` unless named), which is checked even when not packing.
    pub fn from_flags(
        packing: Option<&str>,
        strategy: Option<&str>,
    ) -> Result<(bool, PackingStrategy), PackingFlagError> {
        let named: Option<PackingStrategy> = strategy
            .map(|s| s.parse().map_err(PackingFlagError::UnknownStrategy))
            .transpose()?;
        let (pack, from_packing) = match packing.map(str::to_ascii_lowercase).as_deref() {
            None | Some("false") | Some("none") | Some("no") => (false, None),
            Some("true") | Some("yes") | Some("") => (true, None),
            Some(other) => match other.parse::<PackingStrategy>() {
                Ok(s) => (true, Some(s)),
                Err(_) => return Err(PackingFlagError::BadPacking(other.to_string())),
            },
        };
        match (from_packing, named) {
            (Some(a), Some(b)) if a != b => Err(PackingFlagError::Disagree(a, b)),
            (a, b) => Ok((pack, a.or(b).unwrap_or(PackingStrategy::Bfd))),
        }
    }
}

/// Why the packing flags cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackingFlagError {
    /// `--packing_strategy` names no strategy (the parser's message).
    UnknownStrategy(String),
    /// `--packing` is neither a yes/no nor a strategy.
    BadPacking(String),
    /// `--packing STRATEGY` and `--packing_strategy` name different strategies.
    Disagree(PackingStrategy, PackingStrategy),
}

impl PackingFlagError {
    /// The message with the flags spelled with `separator` between their words: `_` as TRL
    /// spells them (`--packing_strategy`), `-` as the data commands do.
    pub fn message(&self, separator: char) -> String {
        let strategy_flag = format!("--packing{separator}strategy");
        match self {
            PackingFlagError::UnknownStrategy(e) => format!("{strategy_flag}: {e}"),
            PackingFlagError::BadPacking(v) => format!(
                "--packing {v}: expected true, false, none or a strategy (bfd, bfd_split, wrapped)"
            ),
            PackingFlagError::Disagree(a, b) => format!(
                "--packing {} and {strategy_flag} {} disagree; give one of them",
                a.name(),
                b.name()
            ),
        }
    }
}

impl std::fmt::Display for PackingFlagError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message('_'))
    }
}

impl std::error::Error for PackingFlagError {}

/// A piece of an example placed in a packed row: tokens `start..end` of example `example`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub example: usize,
    pub start: usize,
    pub end: usize,
}

impl Piece {
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// One packed row: its pieces, in order.
pub type Bin = Vec<Piece>;

/// Places examples of the given lengths into rows of at most `capacity` tokens.
pub fn pack(lengths: &[usize], capacity: usize, strategy: PackingStrategy) -> Vec<Bin> {
    assert!(capacity > 0, "the packing capacity must be positive");
    match strategy {
        PackingStrategy::Wrapped => wrapped(lengths, capacity),
        PackingStrategy::Bfd | PackingStrategy::BfdSplit => {
            let mut pieces = Vec::with_capacity(lengths.len());
            for (example, &len) in lengths.iter().enumerate() {
                if len == 0 {
                    continue;
                }
                if len <= capacity || strategy == PackingStrategy::Bfd {
                    pieces.push(Piece {
                        example,
                        start: 0,
                        end: len.min(capacity),
                    });
                } else {
                    let mut start = 0;
                    while start < len {
                        let end = (start + capacity).min(len);
                        pieces.push(Piece {
                            example,
                            start,
                            end,
                        });
                        start = end;
                    }
                }
            }
            best_fit_decreasing(pieces, capacity)
        }
    }
}

/// Best-fit decreasing: longest pieces first, each into the row with the least free space
/// it still fits in; among rows with equal free space, the one that reached it first (TRL's
/// order, so packed rows match TRL's row for row on datasets within one of its chunks).
/// Free space is kept in an ordered set of (free, when, row): each placement is O(log rows).
fn best_fit_decreasing(mut pieces: Vec<Piece>, capacity: usize) -> Vec<Bin> {
    // Longest first; among equals, input order, so the result is deterministic.
    pieces.sort_by(|a, b| {
        b.len()
            .cmp(&a.len())
            .then(a.example.cmp(&b.example))
            .then(a.start.cmp(&b.start))
    });
    let mut bins: Vec<Bin> = Vec::new();
    let mut free_rows: BTreeSet<(usize, u64, usize)> = BTreeSet::new();
    let mut clock: u64 = 0;
    for piece in pieces {
        let need = piece.len();
        let (free, id) = match free_rows.range((need, 0, 0)..).next().copied() {
            Some(slot) => {
                free_rows.remove(&slot);
                (slot.0, slot.2)
            }
            None => {
                bins.push(Vec::new());
                (capacity, bins.len() - 1)
            }
        };
        bins[id].push(piece);
        if free > need {
            clock += 1;
            free_rows.insert((free - need, clock, id));
        }
    }
    bins
}

fn wrapped(lengths: &[usize], capacity: usize) -> Vec<Bin> {
    let mut bins: Vec<Bin> = Vec::new();
    let mut current: Bin = Vec::new();
    let mut used = 0;
    for (example, &len) in lengths.iter().enumerate() {
        let mut start = 0;
        while start < len {
            let take = (capacity - used).min(len - start);
            current.push(Piece {
                example,
                start,
                end: start + take,
            });
            used += take;
            start += take;
            if used == capacity {
                bins.push(std::mem::take(&mut current));
                used = 0;
            }
        }
    }
    if !current.is_empty() {
        bins.push(current);
    }
    bins
}

/// How well rows are filled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PackingStats {
    pub tokens: u64,
    pub rows: u64,
    /// ceil(tokens / capacity): no packing can use fewer rows.
    pub lower_bound_rows: u64,
    /// tokens / (rows * capacity).
    pub efficiency: f64,
}

pub fn packing_stats(bins: &[Bin], capacity: usize) -> PackingStats {
    let tokens: u64 = bins.iter().flatten().map(|p| p.len() as u64).sum();
    let rows = bins.len() as u64;
    PackingStats {
        tokens,
        rows,
        lower_bound_rows: tokens.div_ceil(capacity as u64),
        efficiency: if rows == 0 {
            0.0
        } else {
            tokens as f64 / (rows * capacity as u64) as f64
        },
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn packing_flags_say_the_same_thing_both_ways() {
        let p = |a: Option<&str>, b: Option<&str>| PackingStrategy::from_flags(a, b);
        assert_eq!(p(None, None), Ok((false, PackingStrategy::Bfd)));
        assert_eq!(p(Some("true"), None), Ok((true, PackingStrategy::Bfd)));
        assert_eq!(
            p(Some("true"), Some("wrapped")),
            Ok((true, PackingStrategy::Wrapped))
        );
        assert_eq!(
            p(Some("wrapped"), None),
            Ok((true, PackingStrategy::Wrapped))
        );
        assert_eq!(
            p(Some("bfd-split"), Some("bfd_split")),
            Ok((true, PackingStrategy::BfdSplit))
        );
        assert_eq!(
            p(Some("none"), Some("wrapped")),
            Ok((false, PackingStrategy::Wrapped))
        );
        assert!(p(Some("bfd"), Some("wrapped"))
            .unwrap_err()
            .to_string()
            .contains("disagree"));
        assert!(p(Some("maybe"), None)
            .unwrap_err()
            .to_string()
            .contains("--packing maybe"));
        assert!(p(None, Some("first_fit"))
            .unwrap_err()
            .to_string()
            .contains("--packing_strategy"));
        for s in [
            PackingStrategy::Bfd,
            PackingStrategy::BfdSplit,
            PackingStrategy::Wrapped,
        ] {
            assert_eq!(s.name().parse::<PackingStrategy>(), Ok(s));
        }
    }

    use super::*;

    fn sizes(bins: &[Bin]) -> Vec<usize> {
        bins.iter()
            .map(|b| b.iter().map(Piece::len).sum())
            .collect()
    }

    #[test]
    fn best_fit_fills_rows() {
        let bins = pack(&[5, 3, 7, 2, 8, 1, 4], 10, PackingStrategy::Bfd);
        // 8+2, 7+3, 5+4+1
        assert_eq!(sizes(&bins), vec![10, 10, 10]);
        assert_eq!(
            bins[0],
            vec![
                Piece {
                    example: 4,
                    start: 0,
                    end: 8
                },
                Piece {
                    example: 3,
                    start: 0,
                    end: 2
                }
            ]
        );
        let stats = packing_stats(&bins, 10);
        assert_eq!(
            (stats.rows, stats.lower_bound_rows, stats.tokens),
            (3, 3, 30)
        );
    }

    #[test]
    fn overlong_examples_truncate_or_split() {
        let truncated = pack(&[25, 3], 10, PackingStrategy::Bfd);
        assert_eq!(sizes(&truncated), vec![10, 3]);
        let split = pack(&[25, 3], 10, PackingStrategy::BfdSplit);
        assert_eq!(sizes(&split), vec![10, 10, 8]);
        let pieces: Vec<Piece> = split
            .iter()
            .flatten()
            .copied()
            .filter(|p| p.example == 0)
            .collect();
        assert_eq!(pieces.iter().map(Piece::len).sum::<usize>(), 25);
    }

    #[test]
    fn wrapped_cuts_the_stream() {
        let bins = pack(&[4, 9, 2], 5, PackingStrategy::Wrapped);
        assert_eq!(sizes(&bins), vec![5, 5, 5]);
        assert_eq!(
            bins[0],
            vec![
                Piece {
                    example: 0,
                    start: 0,
                    end: 4
                },
                Piece {
                    example: 1,
                    start: 0,
                    end: 1
                }
            ]
        );
    }

    #[test]
    fn near_the_lower_bound_on_many_rows() {
        // Deterministic pseudo-random lengths, as real token counts spread.
        let mut x: u64 = 7;
        let lengths: Vec<usize> = (0..20_000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                16 + (x >> 33) as usize % 900
            })
            .collect();
        let bins = pack(&lengths, 2048, PackingStrategy::Bfd);
        let stats = packing_stats(&bins, 2048);
        assert_eq!(stats.tokens, lengths.iter().sum::<usize>() as u64);
        assert!(
            (stats.rows as f64) <= stats.lower_bound_rows as f64 * 1.001,
            "{} rows against a lower bound of {}",
            stats.rows,
            stats.lower_bound_rows
        );
    }
}

//! Repetition in generated text: repeated and distinct n-grams, the longest repeated span
//! and loops (a block repeated back to back), on token ids or on words alike.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, RandomState};

use serde::Serialize;

/// How repetitive one sequence of units (token ids or words) is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepetitionStats {
    /// Number of units.
    pub tokens: usize,
    /// For n = 1..=4: the share of n-gram positions whose n-gram occurred earlier in the
    /// sequence (0.0 when there is no n-gram).
    pub repeated_ngram_share: [f64; 4],
    /// For n = 1..=4: distinct-n, unique n-grams / n-grams (1.0 when there is no n-gram).
    pub distinct: [f64; 4],
    /// Length in units of the longest span that occurs at least twice (occurrences may
    /// overlap).
    pub longest_repeated_span: usize,
    /// The loop that covers the most units, if any (see [`find_loop`]).
    pub looping: Option<Loop>,
}

/// A block of `unit` units repeated back to back `repeats` times from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Loop {
    /// Period length in units.
    pub unit: usize,
    /// Number of complete consecutive copies of the block.
    pub repeats: usize,
    /// Index of the first unit of the first copy.
    pub start: usize,
}

/// Longest period [`find_loop`] looks for.
pub const MAX_LOOP_UNIT: usize = 64;
/// Fewest consecutive copies that make a loop.
pub const MIN_LOOP_REPEATS: usize = 4;
/// Fewest units a loop must cover (`unit * repeats`).
pub const MIN_LOOP_COVER: usize = 8;

/// Computes every statistic of [`RepetitionStats`] for `units`.
pub fn repetition<T: Eq + Hash + Clone>(units: &[T]) -> RepetitionStats {
    let mut repeated_ngram_share = [0.0; 4];
    let mut distinct = [1.0; 4];
    for n in 1..=4 {
        if units.len() < n {
            continue;
        }
        let mut seen: HashSet<&[T]> = HashSet::new();
        let total = units.len() - n + 1;
        let repeats = units.windows(n).filter(|w| !seen.insert(w)).count();
        repeated_ngram_share[n - 1] = repeats as f64 / total as f64;
        distinct[n - 1] = seen.len() as f64 / total as f64;
    }
    RepetitionStats {
        tokens: units.len(),
        repeated_ngram_share,
        distinct,
        longest_repeated_span: longest_repeated_span(units),
        looping: find_loop(units),
    }
}

/// Length of the longest span occurring at least twice: a binary search on the length,
/// each length tested with a polynomial rolling hash (mod 2^61 - 1) whose equal hashes are
/// verified by comparing the spans, so the answer is exact. O(n log n) expected.
pub fn longest_repeated_span<T: Eq + Hash>(units: &[T]) -> usize {
    let state = RandomState::new();
    let h: Vec<u64> = units.iter().map(|u| state.hash_one(u) % MOD).collect();
    let (mut lo, mut hi) = (0, units.len().saturating_sub(1));
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if has_repeat(units, &h, mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

const MOD: u64 = (1 << 61) - 1;
const BASE: u64 = 1_000_003;

fn mul_mod(a: u64, b: u64) -> u64 {
    ((a as u128 * b as u128) % MOD as u128) as u64
}

/// Whether some span of length `len` occurs twice in `units` (`h`: per-unit hashes).
fn has_repeat<T: Eq>(units: &[T], h: &[u64], len: usize) -> bool {
    if len == 0 || len >= units.len() {
        return len == 0;
    }
    let top = (1..len).fold(1, |p, _| mul_mod(p, BASE)); // BASE^(len-1)
    let mut seen: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut hash = 0;
    for i in 0..units.len() {
        if i >= len {
            hash = (hash + MOD - mul_mod(h[i - len], top)) % MOD;
        }
        hash = (mul_mod(hash, BASE) + h[i]) % MOD;
        if i + 1 >= len {
            let start = i + 1 - len;
            let span = &units[start..=i];
            let starts = seen.entry(hash).or_default();
            if starts.iter().any(|&s| &units[s..s + len] == span) {
                return true;
            }
            starts.push(start);
        }
    }
    false
}

/// The loop covering the most units: a block of 1..=[`MAX_LOOP_UNIT`] units repeated back
/// to back at least [`MIN_LOOP_REPEATS`] times and covering at least [`MIN_LOOP_COVER`]
/// units, anywhere in the sequence. Ties go to the shorter block, then the earlier one.
pub fn find_loop<T: Eq>(units: &[T]) -> Option<Loop> {
    let mut best: Option<Loop> = None;
    for p in 1..=MAX_LOOP_UNIT.min(units.len() / 2) {
        // A run of i with units[i] == units[i + p] from `s` for `r` positions is a
        // p-periodic stretch of r + p units.
        let mut i = 0;
        while i + p < units.len() {
            if units[i] != units[i + p] {
                i += 1;
                continue;
            }
            let s = i;
            while i + p < units.len() && units[i] == units[i + p] {
                i += 1;
            }
            let repeats = (i - s + p) / p;
            let covered = repeats * p;
            if repeats >= MIN_LOOP_REPEATS
                && covered >= MIN_LOOP_COVER
                && best.is_none_or(|b| covered > b.unit * b.repeats)
            {
                best = Some(Loop {
                    unit: p,
                    repeats,
                    start: s,
                });
            }
        }
    }
    best
}

/// The most repeated non-empty line (trimmed) and its count, when it appears at least 3
/// times; ties go to the line seen first.
pub fn line_loop(text: &str) -> Option<(String, usize)> {
    let mut counts: HashMap<&str, (usize, usize)> = HashMap::new();
    for (i, line) in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        counts.entry(line).or_insert((0, i)).0 += 1;
    }
    counts
        .into_iter()
        .filter(|(_, (n, _))| *n >= 3)
        .max_by_key(|&(_, (n, first))| (n, std::cmp::Reverse(first)))
        .map(|(line, (n, _))| (line.to_string(), n))
}

/// Words of `text`, split on Unicode whitespace.
pub fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

/// Whether a sample is repetitive: it loops, or more than 30% of its 4-grams are repeats
/// and (when a reference is given, e.g. the reference answer) that share exceeds the
/// reference's by more than 0.2.
pub fn is_repetitive(stats: &RepetitionStats, reference: Option<&RepetitionStats>) -> bool {
    let share = stats.repeated_ngram_share[3];
    stats.looping.is_some()
        || (share > 0.3 && reference.is_none_or(|r| share > r.repeated_ngram_share[3] + 0.2))
}

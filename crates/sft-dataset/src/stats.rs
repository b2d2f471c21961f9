//! Length distributions of a dataset.

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Characters of text per row.
    pub chars: Option<LengthStats>,
    /// Turns per conversation (conversational rows only).
    pub turns: Option<LengthStats>,
    pub duplicate_rows: u64,
    pub long_outliers: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_threshold_chars: Option<u64>,
}

/// What `check` saw of one source (the rows' `source` field, or their file's name).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceStats {
    pub source: String,
    pub rows: u64,
    /// Rows with at least one error (they would not be trained).
    pub rows_with_errors: u64,
    /// Characters of text per row.
    pub chars: Option<LengthStats>,
    /// Turns per conversation.
    pub turns: Option<LengthStats>,
    /// Tokens per row before truncation, with a tokenizer.
    pub tokens: Option<LengthStats>,
    /// Tokens trained after truncation, with a tokenizer.
    pub trained_tokens: u64,
}

/// A source's tallies while rows pass; [`SourceTally::stats`] at the end. Memory is
/// bounded by the distinct lengths, not the rows.
#[derive(Debug, Clone, Default)]
pub struct SourceTally {
    pub rows: u64,
    pub rows_with_errors: u64,
    pub chars: LengthCounts,
    pub turns: LengthCounts,
    pub tokens: LengthCounts,
    pub trained_tokens: u64,
}

impl SourceTally {
    pub fn stats(&self, source: String) -> SourceStats {
        SourceStats {
            source,
            rows: self.rows,
            rows_with_errors: self.rows_with_errors,
            chars: self.chars.stats(),
            turns: self.turns.stats(),
            tokens: self.tokens.stats(),
            trained_tokens: self.trained_tokens,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LengthStats {
    pub count: u64,
    pub mean: f64,
    pub min: u64,
    pub p25: u64,
    pub p50: u64,
    pub p75: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl LengthStats {
    /// Percentiles by the nearest-rank method. Sorts `values`.
    pub fn of(values: &mut [u32]) -> Option<LengthStats> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let n = values.len();
        let rank = |p: f64| values[((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1] as u64;
        let sum: u64 = values.iter().map(|&v| v as u64).sum();
        Some(LengthStats {
            count: n as u64,
            mean: sum as f64 / n as f64,
            min: values[0] as u64,
            p25: rank(25.0),
            p50: rank(50.0),
            p75: rank(75.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: values[n - 1] as u64,
        })
    }
}

/// A length distribution kept as the count of each distinct value: the same nearest-rank
/// percentiles as [`LengthStats::of`] over the values, in memory bounded by the number of
/// distinct lengths rather than the number of rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LengthCounts(std::collections::BTreeMap<u64, u64>);

impl LengthCounts {
    pub fn add(&mut self, value: u64) {
        *self.0.entry(value).or_default() += 1;
    }

    pub fn merge(&mut self, other: &LengthCounts) {
        for (v, n) in &other.0 {
            *self.0.entry(*v).or_default() += n;
        }
    }

    pub fn count(&self) -> u64 {
        self.0.values().sum()
    }

    /// How many values are above `threshold`.
    pub fn above(&self, threshold: u64) -> u64 {
        self.0
            .range(threshold.saturating_add(1)..)
            .map(|(_, n)| n)
            .sum()
    }

    /// Nearest-rank percentiles; `None` when empty.
    pub fn stats(&self) -> Option<LengthStats> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = |p: f64| {
            let k = ((p / 100.0 * n as f64).ceil() as u64).clamp(1, n);
            let mut seen = 0;
            for (v, c) in &self.0 {
                seen += c;
                if seen >= k {
                    return *v;
                }
            }
            unreachable!("k <= n")
        };
        let sum: f64 = self.0.iter().map(|(v, c)| *v as f64 * *c as f64).sum();
        Some(LengthStats {
            count: n,
            mean: sum / n as f64,
            min: *self.0.keys().next().expect("not empty"),
            p25: rank(25.0),
            p50: rank(50.0),
            p75: rank(75.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: *self.0.keys().next_back().expect("not empty"),
        })
    }

    /// Values per power-of-two bin, as (bin start, count): 0, 1, 2-3, 4-7, ...
    pub fn log2_bins(&self) -> std::collections::BTreeMap<u64, u64> {
        let mut bins = std::collections::BTreeMap::new();
        for (v, c) in &self.0 {
            let start = if *v == 0 {
                0
            } else {
                1u64 << (63 - v.leading_zeros())
            };
            *bins.entry(start).or_default() += c;
        }
        bins
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_give_the_percentiles_of_the_values() {
        let values: Vec<u32> = (0..1000u32).map(|i| (i * 7919) % 613).collect();
        let mut counts = LengthCounts::default();
        for &v in &values {
            counts.add(v as u64);
        }
        let mut sorted = values.clone();
        assert_eq!(counts.stats(), LengthStats::of(&mut sorted));
        let above = values.iter().filter(|&&v| v > 300).count() as u64;
        assert_eq!(counts.above(300), above);
        assert_eq!(counts.log2_bins().values().sum::<u64>(), 1000);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<u32> = (1..=100).rev().collect();
        let s = LengthStats::of(&mut v).unwrap();
        assert_eq!(
            (s.min, s.p25, s.p50, s.p90, s.p99, s.max),
            (1, 25, 50, 90, 99, 100)
        );
        assert_eq!(s.mean, 50.5);
        assert!(LengthStats::of(&mut []).is_none());
    }
}

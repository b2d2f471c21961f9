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

#[cfg(test)]
mod tests {
    use super::*;

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

//! `dedupe`: exact duplicates (as `check` defines them) and near-duplicates (MinHash LSH)
//! removed, the first row of each cluster kept, every removed row in the rejects file
//! with the row it duplicates, and a report of the clusters.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use sft_dataset::Location;
use sft_io::write::DatasetWriter;

use crate::groups::{group_rows, GroupBy};
use crate::minhash::{LshParams, MinHasher};
use crate::pass::{each_row, record, Input, OpError, Rejects};
use crate::row::row_text;

pub struct DedupeJob {
    pub input: Input,
    pub output: PathBuf,
    pub rejects: Option<PathBuf>,
    /// Near-duplicates above this Jaccard similarity of word shingles; `None`: exact only.
    pub threshold: Option<f64>,
    /// Where the cluster report goes.
    pub report: Option<PathBuf>,
    /// Clusters listed in the report at most (all are counted).
    pub clusters_listed: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterMember {
    #[serde(flatten)]
    pub location: Location,
    /// An exact duplicate (else a near-duplicate).
    pub exact: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    pub kept: Location,
    pub dropped: Vec<ClusterMember>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DedupeSummary {
    pub rows_in: u64,
    pub written: u64,
    pub exact_duplicates: u64,
    pub near_duplicates: u64,
    /// LSH candidates whose signature, compared with their cluster's kept row, estimates a
    /// similarity under the threshold: they are kept.
    pub candidates_not_confirmed: u64,
    /// Rows that could not be parsed (in the rejects file too).
    pub bad_rows: u64,
    pub clusters: u64,
    pub threshold: Option<f64>,
    pub bands: Option<usize>,
    pub rows_per_band: Option<usize>,
    pub output: PathBuf,
    pub rejects_file: Option<PathBuf>,
    pub seconds: f64,
    /// The first clusters (by their kept row), for the report.
    #[serde(skip)]
    pub listed: Vec<Cluster>,
}

pub fn dedupe(job: &DedupeJob) -> Result<DedupeSummary, OpError> {
    let started = Instant::now();
    let near = job.threshold.map(LshParams::for_threshold);
    let groups = group_rows(
        &job.input,
        &GroupBy {
            near,
            prompt: false,
        },
        |_, _| {},
    )?;
    let rejects_path = job
        .rejects
        .clone()
        .unwrap_or_else(|| crate::pass::default_rejects_path(&job.output));
    let mut writer = DatasetWriter::create(&job.output)?;
    let mut rejects = Rejects::new(&rejects_path, job.rejects.is_some())?;
    let mut summary = DedupeSummary {
        rows_in: groups.rows,
        written: 0,
        exact_duplicates: 0,
        near_duplicates: 0,
        candidates_not_confirmed: 0,
        bad_rows: groups.bad_rows,
        clusters: 0,
        threshold: job.threshold,
        bands: near.map(|p| p.bands),
        rows_per_band: near.map(|p| p.rows_per_band),
        output: job.output.clone(),
        rejects_file: None,
        seconds: 0.0,
        listed: Vec::new(),
    };
    // Each cluster's kept row, from the row itself to the end of the input.
    let mut clusters: HashMap<u64, KeptRow> = HashMap::new();
    let hasher = near.map(MinHasher::new);
    let signature = |value: &serde_json::Value| {
        let h = hasher.as_ref()?;
        h.signature(&row_text(value, sft_formats::detect_row(value)))
            .map(|s| truncated(&s))
    };
    each_row(
        &job.input,
        |_, value| value,
        |at, result| {
            let value = match result {
                Ok(v) => v,
                Err(bad) => return rejects.bad_row(&at, *bad),
            };
            let first = groups.representative(at.seq);
            if first == at.seq {
                if groups.in_group(at.seq) {
                    clusters.insert(
                        at.seq,
                        KeptRow {
                            location: at.location(),
                            signature: signature(&value),
                            counted: None,
                        },
                    );
                }
                summary.written += 1;
                return Ok(writer.write(&value)?);
            }
            let exact = groups.is_exact_duplicate(at.seq);
            let kept = clusters.get_mut(&first);
            // A near-duplicate candidate (rows that agree on a band) is dropped only when
            // its signature agrees with the kept row's about as often as the threshold says;
            // otherwise it is a distinct row, and kept.
            if !exact {
                let kept_signature = kept.as_ref().and_then(|k| k.signature.as_ref());
                let confirmed = match (kept_signature, signature(&value), job.threshold) {
                    (Some(k), Some(s), Some(t)) => truncated_similarity(k, &s) >= t,
                    _ => false,
                };
                if !confirmed {
                    summary.candidates_not_confirmed += 1;
                    summary.written += 1;
                    return Ok(writer.write(&value)?);
                }
            }
            // (Every grouped row's kept row comes first; "?" would mean a bug, not lost data.)
            let mut missing;
            let kept = match kept {
                Some(k) => k,
                None => {
                    missing = KeptRow {
                        location: Location::file("?"),
                        signature: None,
                        counted: None,
                    };
                    &mut missing
                }
            };
            let (code, reason) = if exact {
                summary.exact_duplicates += 1;
                (
                    "duplicate_row",
                    format!(
                        "the same example as a row of the cluster kept at {}",
                        kept.location
                    ),
                )
            } else {
                summary.near_duplicates += 1;
                (
                    "near_duplicate",
                    format!(
                        "a near-duplicate (Jaccard similarity of word shingles above {}) of the cluster kept at {}",
                        job.threshold.unwrap_or(1.0),
                        kept.location
                    ),
                )
            };
            // A cluster is counted (and listed) at its first dropped row: candidates that
            // were not confirmed make none.
            let index = *kept.counted.get_or_insert_with(|| {
                summary.clusters += 1;
                (summary.listed.len() < job.clusters_listed).then(|| {
                    summary.listed.push(Cluster {
                        kept: kept.location.clone(),
                        dropped: Vec::new(),
                    });
                    summary.listed.len() - 1
                })
            });
            if let Some(i) = index {
                summary.listed[i].dropped.push(ClusterMember {
                    location: at.location(),
                    exact,
                });
            }
            rejects.add(&at.location(), code, &reason, record(value))
        },
    )?;
    summary.written = writer.finish()?;
    summary.rejects_file = rejects.finish()?;
    summary.seconds = started.elapsed().as_secs_f64();
    if let Some(path) = &job.report {
        let mut report = serde_json::to_value(&summary).unwrap_or_default();
        report["clusters_listed"] = summary.listed.len().into();
        report["cluster_list"] = serde_json::to_value(&summary.listed).unwrap_or_default();
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        sft_io::write::write_atomic(path, text.as_bytes())?;
    }
    Ok(summary)
}

/// The kept row of a cluster, while the cluster's rows pass.
struct KeptRow {
    location: Location,
    /// Its signature cut to 8 bits a hash ([`truncated`]), with near-duplicates.
    signature: Option<Vec<u8>>,
    /// Set at the cluster's first dropped row: its place among the listed clusters, if it
    /// is listed.
    counted: Option<Option<usize>>,
}

/// A signature cut to its low 8 bits a value: 1 byte a hash function for the kept rows of
/// clusters, at the cost of chance agreements (1 in 256), which
/// [`truncated_similarity`] takes out.
fn truncated(signature: &[u32]) -> Vec<u8> {
    signature.iter().map(|&v| v as u8).collect()
}

/// The Jaccard similarity two truncated signatures estimate: the share of equal values,
/// less the agreements of unequal values by chance (`p = s + (1 - s) / 256`).
fn truncated_similarity(a: &[u8], b: &[u8]) -> f64 {
    let equal = a.iter().zip(b).filter(|(x, y)| x == y).count() as f64;
    let p = equal / a.len().max(1) as f64;
    ((p - 1.0 / 256.0) / (1.0 - 1.0 / 256.0)).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::minhash::{jaccard, MinHasher};

    #[test]
    fn truncated_signatures_estimate_the_similarity() {
        let hasher = MinHasher::new(LshParams::for_threshold(0.8));
        let words = |seed: u64, n: usize| {
            let mut rng = crate::rng::Rng::new(seed);
            (0..n)
                .map(|_| format!("w{}", rng.below(5000)))
                .collect::<Vec<_>>()
        };
        let a = words(1, 400);
        let mut b = a.clone();
        for i in (0..400).step_by(100) {
            b[i] = "changed".into();
        }
        let (a, b) = (a.join(" "), b.join(" "));
        let c = words(2, 400).join(" ");
        let sig = |t: &str| truncated(&hasher.signature(t).unwrap());
        let near = truncated_similarity(&sig(&a), &sig(&b));
        assert!(
            (near - jaccard(&a, &b)).abs() < 0.1,
            "{near} vs {}",
            jaccard(&a, &b)
        );
        assert!(truncated_similarity(&sig(&a), &sig(&c)) < 0.05);
        assert_eq!(truncated_similarity(&sig(&a), &sig(&a)), 1.0);
    }
}

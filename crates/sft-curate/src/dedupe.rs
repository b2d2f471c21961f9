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
use crate::minhash::LshParams;
use crate::pass::{each_row, record, Input, OpError, Rejects};

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
    // Where each kept row of a cluster is, until the cluster's last row has been seen.
    let mut kept_at: HashMap<u64, Location> = HashMap::new();
    let mut listed: HashMap<u64, usize> = HashMap::new();
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
                    summary.clusters += 1;
                    kept_at.insert(at.seq, at.location());
                    if summary.listed.len() < job.clusters_listed {
                        listed.insert(at.seq, summary.listed.len());
                        summary.listed.push(Cluster {
                            kept: at.location(),
                            dropped: Vec::new(),
                        });
                    }
                }
                summary.written += 1;
                return Ok(writer.write(&value)?);
            }
            let kept = kept_at
                .get(&first)
                .cloned()
                .unwrap_or_else(|| Location::file("?"));
            let exact = groups.is_exact_duplicate(at.seq);
            let (code, reason) = if exact {
                summary.exact_duplicates += 1;
                (
                    "duplicate_row",
                    format!("the same example as a row of the cluster kept at {kept}"),
                )
            } else {
                summary.near_duplicates += 1;
                (
                    "near_duplicate",
                    format!(
                        "a near-duplicate (Jaccard similarity of word shingles above {}) of the cluster kept at {kept}",
                        job.threshold.unwrap_or(1.0)
                    ),
                )
            };
            if let Some(&i) = listed.get(&first) {
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

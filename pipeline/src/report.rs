//! The run report (`report.json`): what went in, what came out, what failed and why, how fast.
//!
//! Item-level content is sorted by manifest order and carries no timing, so two runs of the same
//! spec on the same inputs give the same `items` whatever the worker or process count; timings
//! and queue peaks live in separate fields.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::chain::Completion;
use crate::engine::ClusterOptions;
use crate::provenance::Provenance;
use crate::spec::LoadedSpec;

/// Queue peak of one stage in one chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagePeak {
    pub stage: String,
    pub capacity: usize,
    pub peak_queued: usize,
}

/// End-of-run summary of one worker's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainSummary {
    pub worker: usize,
    pub stages: Vec<StagePeak>,
    pub peak_records_alive: usize,
    pub error: Option<String>,
}

/// Totals of one stage over the whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageTotals {
    pub stage: String,
    pub records_in: u64,
    pub records_out: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Summed over the stage's threads.
    pub busy_seconds: f64,
    /// Records in per busy second (per thread).
    pub records_per_busy_second: f64,
    /// Largest queue depth in front of this stage in any chain, against its capacity.
    pub peak_queued: usize,
    pub capacity: usize,
}

/// One failed item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedItem {
    pub item: String,
    pub stage: String,
    pub reason: String,
}

/// Per-item outcome (deterministic: no timings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemOutcome {
    pub id: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, u64>,
    /// Per stage: records in, out, skipped (with the first reasons).
    pub stages: Vec<ItemStage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemStage {
    pub stage: String,
    pub records_in: u64,
    pub records_out: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip_reasons: Vec<String>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
    pub not_started: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub workers_per_process: usize,
    pub processes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub provenance: Provenance,
    pub spec_path: String,
    /// `completed` or `interrupted` (Ctrl-C).
    pub status: String,
    pub started_at: String,
    pub wall_seconds: f64,
    pub cluster: ClusterInfo,
    pub counts: Counts,
    pub stages: Vec<StageTotals>,
    pub failed: Vec<FailedItem>,
    pub not_started: Vec<String>,
    pub peak_records_alive: usize,
    pub chain_errors: Vec<String>,
    pub items: Vec<ItemOutcome>,
    /// What an incremental run added, redid, retired and kept (absent for plain runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<crate::incremental::Summary>,
}

impl RunReport {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn assemble(
        spec: &LoadedSpec,
        provenance: Provenance,
        cluster: &ClusterOptions,
        stage_names: &[String],
        mut items: Vec<Completion>,
        mut not_started: Vec<(u64, String)>,
        chains: Vec<ChainSummary>,
        started_at: String,
        wall: Duration,
        interrupted: bool,
    ) -> Self {
        items.sort_by_key(|c| c.ordinal);
        not_started.sort();
        let mut stages: Vec<StageTotals> = stage_names
            .iter()
            .map(|n| StageTotals {
                stage: n.clone(),
                ..Default::default()
            })
            .collect();
        let mut failed = Vec::new();
        let mut outcomes = Vec::new();
        let mut busy_ns = vec![0u64; stages.len()];
        for c in &items {
            for (i, s) in c.stages.iter().enumerate().take(stages.len()) {
                let t = &mut stages[i];
                t.records_in += s.records_in;
                t.records_out += s.records_out;
                t.failed += s.failed;
                t.skipped += s.skipped;
                busy_ns[i] += s.busy_ns;
            }
            for f in &c.failures {
                failed.push(FailedItem {
                    item: c.id.clone(),
                    stage: f.stage.clone(),
                    reason: f.reason.clone(),
                });
            }
            outcomes.push(ItemOutcome {
                id: c.id.clone(),
                status: if c.failed() { "failed" } else { "ok" }.into(),
                counters: c.counters.clone(),
                stages: c
                    .stages
                    .iter()
                    .zip(stage_names)
                    .map(|(s, n)| ItemStage {
                        stage: n.clone(),
                        records_in: s.records_in,
                        records_out: s.records_out,
                        skipped: s.skipped,
                        skip_reasons: s.skip_reasons.clone(),
                    })
                    .collect(),
            });
        }
        for (i, t) in stages.iter_mut().enumerate() {
            t.busy_seconds = busy_ns[i] as f64 * 1e-9;
            t.records_per_busy_second = if t.busy_seconds > 0.0 {
                t.records_in as f64 / t.busy_seconds
            } else {
                0.0
            };
            for ch in &chains {
                if let Some(p) = ch.stages.get(i) {
                    t.peak_queued = t.peak_queued.max(p.peak_queued);
                    t.capacity = p.capacity;
                }
            }
        }
        let nfailed = items.iter().filter(|c| c.failed()).count() as u64;
        Self {
            provenance,
            spec_path: spec.path.display().to_string(),
            status: if interrupted {
                "interrupted"
            } else {
                "completed"
            }
            .into(),
            started_at,
            wall_seconds: wall.as_secs_f64(),
            cluster: ClusterInfo {
                workers_per_process: cluster.workers,
                processes: cluster.processes,
            },
            counts: Counts {
                total: items.len() as u64 + not_started.len() as u64,
                completed: items.len() as u64 - nfailed,
                failed: nfailed,
                not_started: not_started.len() as u64,
            },
            stages,
            failed,
            not_started: not_started.into_iter().map(|(_, id)| id).collect(),
            peak_records_alive: chains
                .iter()
                .map(|c| c.peak_records_alive)
                .max()
                .unwrap_or(0),
            chain_errors: chains.iter().filter_map(|c| c.error.clone()).collect(),
            items: outcomes,
            incremental: None,
        }
    }

    /// The report of a run that had no items to process.
    pub(crate) fn empty(spec: &LoadedSpec, cluster: &ClusterOptions) -> Self {
        let provenance = Provenance::new(&spec.spec.name, &spec.hash, spec.spec.seed);
        let names: Vec<String> = spec
            .spec
            .stages
            .iter()
            .chain(std::iter::once(&spec.spec.sink))
            .map(|s| s.kind.clone())
            .collect();
        Self::assemble(
            spec,
            provenance,
            cluster,
            &names,
            Vec::new(),
            Vec::new(),
            Vec::new(),
            now_rfc3339(),
            Duration::ZERO,
            false,
        )
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::atomic_file::write_atomic(path, &bytes)
    }

    pub fn read(path: &Path) -> std::io::Result<Self> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }
}

/// Current UTC time as RFC 3339 (seconds), without a date-time dependency.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

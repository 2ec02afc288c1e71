//! Assembling a [`Report`] from a run's measurements: the summaries every
//! kind of run (the scenario, the generator ceiling) shares.

use crate::report::{ErrorSummary, OpLatency, PhaseReport, Report, SkuReport};
use crate::scenario::Scenario;
use crate::stats::{self, LatencySummary, OpKind, Stats};
use crate::verify::Verdict;
use crate::workload::Tally;
use std::time::Duration;

/// One phase's request count and rate.
pub(crate) fn phase(name: &'static str, requests: u64, secs: f64) -> PhaseReport {
    PhaseReport {
        name,
        requests,
        duration_s: secs,
        throughput_rps: requests as f64 / secs.max(1e-9),
    }
}

/// The pieces a report is assembled from.
pub(crate) struct Built {
    pub target: String,
    pub scenario: Scenario,
    pub seed: u64,
    pub user_id_base: u64,
    pub phases: Vec<PhaseReport>,
    pub stats: Stats,
    pub duration: Duration,
    pub skus: Vec<SkuReport>,
    pub tally: Tally,
    pub dials: u64,
    pub verdict: Option<Verdict>,
}

/// Summarises the measurements into the report.
pub(crate) fn build_report(b: Built) -> Report {
    let combined = b.stats.combined();
    let requests = b.stats.requests();
    let mut errors = ErrorSummary::default();
    for c in &b.stats.counts {
        match (c.http, c.status.as_str()) {
            (0, "timeout") => errors.timeouts += c.count,
            (0, "connect_error") => errors.connect_errors += c.count,
            (0, _) => errors.io_errors += c.count,
            (500..=599, _) => errors.http_5xx += c.count,
            _ => {}
        }
    }
    let mut responses = b.stats.counts.clone();
    responses.sort_by(|a, b| (a.op, a.http, &a.status).cmp(&(b.op, b.http, &b.status)));
    let secs = b.duration.as_secs_f64();
    Report {
        target: b.target,
        mode: if b.scenario.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        connections: b.scenario.connections,
        rate: b.scenario.rate,
        seed: b.seed,
        user_id_base: b.user_id_base,
        phases: b.phases,
        requests,
        duration_s: secs,
        throughput_rps: requests as f64 / secs.max(1e-9),
        latency: (!combined.is_empty()).then(|| LatencySummary::of(&combined)),
        latency_by_op: OpKind::ALL
            .iter()
            .filter_map(|&op| {
                b.stats.histogram(op).map(|h| OpLatency {
                    op,
                    latency: LatencySummary::of(h),
                })
            })
            .collect(),
        responses,
        errors,
        skus: b.skus,
        tally: b.tally,
        timeline: stats::timeline(&b.stats.samples, b.duration),
        timeline_truncated: b.stats.samples_dropped > 0,
        histogram: stats::histogram_buckets(&combined),
        connection_dials: b.dials,
        verdict: b.verdict,
        scenario: b.scenario,
    }
}

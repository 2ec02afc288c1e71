//! The run report: one serializable struct, rendered as text for the
//! terminal, JSON for machines (`--json`) and HTML for people (`--html`).

use crate::api::SaleDoc;
use crate::scenario::Scenario;
use crate::stats::{HistogramBucket, LatencySummary, OpKind, ResponseCount, TimelinePoint};
use crate::verify::Verdict;
use crate::workload::Tally;
use serde::Serialize;
use std::fmt::Write;

/// One phase of the run.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub name: &'static str,
    pub requests: u64,
    pub duration_s: f64,
    pub throughput_rps: f64,
}

/// Latency of one kind of request.
#[derive(Debug, Clone, Serialize)]
pub struct OpLatency {
    pub op: OpKind,
    pub latency: LatencySummary,
}

/// Transport-level trouble, summed over all ops.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ErrorSummary {
    pub timeouts: u64,
    pub connect_errors: u64,
    pub io_errors: u64,
    pub http_5xx: u64,
}

/// One SKU's story.
#[derive(Debug, Clone, Serialize)]
pub struct SkuReport {
    pub sku: String,
    pub before: SaleDoc,
    pub after_rush: Option<SaleDoc>,
    pub at_end: Option<SaleDoc>,
    pub users: u64,
    pub demand_units: u64,
    pub admitted_units: u64,
    /// Time from the start of the rush to the first `sold_out` answer.
    pub first_sold_out_ms: Option<f64>,
}

/// Everything a run measured and concluded.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    /// `closed` or `open`.
    pub mode: &'static str,
    pub connections: u32,
    pub rate: Option<f64>,
    pub seed: u64,
    pub user_id_base: u64,
    pub scenario: Scenario,
    pub phases: Vec<PhaseReport>,
    pub requests: u64,
    pub duration_s: f64,
    pub throughput_rps: f64,
    pub latency: Option<LatencySummary>,
    pub latency_by_op: Vec<OpLatency>,
    pub responses: Vec<ResponseCount>,
    pub errors: ErrorSummary,
    pub skus: Vec<SkuReport>,
    pub tally: Tally,
    pub timeline: Vec<TimelinePoint>,
    /// True when some workers stopped keeping timeline samples (bounded memory).
    pub timeline_truncated: bool,
    pub histogram: Vec<HistogramBucket>,
    pub connection_dials: u64,
    /// `None` for runs that verify nothing (the generator-ceiling measurement).
    pub verdict: Option<Verdict>,
}

impl Report {
    /// True if the run verified and every check passed.
    pub fn passed(&self) -> bool {
        self.verdict.as_ref().is_some_and(|v| v.passed)
    }
}

fn lat_line(out: &mut String, name: &str, l: &LatencySummary) {
    let _ = writeln!(
        out,
        "  {name:<11} n={:<9} p50={:>8.3}  p90={:>8.3}  p99={:>8.3}  p99.9={:>8.3}  max={:>9.3}  mean={:>8.3}",
        l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms
    );
}

/// The human summary printed at the end of a run.
pub fn render_text(r: &Report) -> String {
    let mut o = String::new();
    text_throughput(&mut o, r);
    text_latency(&mut o, r);
    text_responses(&mut o, r);
    text_skus(&mut o, r);
    text_checks(&mut o, r);
    o
}

/// Target, mode and request rates, per phase and in all.
fn text_throughput(o: &mut String, r: &Report) {
    let _ = writeln!(o, "flashsale-loadtest against {}", r.target);
    let mode = match r.rate {
        Some(rate) => format!("open loop at {rate:.0} req/s"),
        None => "closed loop".into(),
    };
    let _ = writeln!(
        o,
        "  mode: {mode}, {} connections ({} dials), seed {:#x}",
        r.connections, r.connection_dials, r.seed
    );
    for p in &r.phases {
        let _ = writeln!(
            o,
            "  phase {:<7} {:>9} requests in {:>7.3} s = {:>10.0} req/s",
            p.name, p.requests, p.duration_s, p.throughput_rps
        );
    }
    let _ = writeln!(
        o,
        "  total   {:>9} requests in {:>7.3} s = {:>10.0} req/s",
        r.requests, r.duration_s, r.throughput_rps
    );
}

/// Latency percentiles, over all requests and per kind.
fn text_latency(o: &mut String, r: &Report) {
    let _ = writeln!(
        o,
        "latency (ms){}:",
        if r.rate.is_some() {
            ", from scheduled send time"
        } else {
            ""
        }
    );
    if let Some(l) = &r.latency {
        lat_line(o, "all", l);
    }
    for ol in &r.latency_by_op {
        lat_line(o, ol.op.label(), &ol.latency);
    }
}

/// Response counts and transport trouble.
fn text_responses(o: &mut String, r: &Report) {
    let _ = writeln!(o, "responses:");
    for c in &r.responses {
        let _ = writeln!(
            o,
            "  {:<11} {:>3} {:<20} {:>9}",
            c.op.label(),
            c.http,
            c.status,
            c.count
        );
    }
    let e = &r.errors;
    let _ = writeln!(
        o,
        "errors: {} timeouts, {} connect, {} io, {} HTTP 5xx; {} retries, {} abandoned, {} unexpected",
        e.timeouts, e.connect_errors, e.io_errors, e.http_5xx, r.tally.retries, r.tally.abandoned, r.tally.unexpected
    );
}

/// Each SKU: demand, supply, admissions and the final counters.
fn text_skus(o: &mut String, r: &Report) {
    for s in &r.skus {
        let sold = s
            .first_sold_out_ms
            .map(|ms| format!(", first sold_out after {ms:.1} ms"))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "sku {}: {} users wanted {} units of {} on offer, {} admitted{sold}",
            s.sku, s.users, s.demand_units, s.before.remaining, s.admitted_units
        );
        if let Some(f) = &s.at_end {
            let _ = writeln!(
                o,
                "  at end: stock {} = remaining {} + reserved {} + paid {} ({})",
                f.stock, f.remaining, f.reserved, f.paid, f.state
            );
        }
    }
}

/// The verdict, check by check.
fn text_checks(o: &mut String, r: &Report) {
    if let Some(v) = &r.verdict {
        let _ = writeln!(o, "checks:");
        for c in &v.checks {
            let _ = writeln!(
                o,
                "  [{}] {:<24} {}",
                if c.passed { "ok" } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        if v.passed {
            let _ = writeln!(o, "PASS: all {} checks passed", v.checks.len());
        } else {
            let names: Vec<&str> = v.failed().map(|c| c.name).collect();
            let _ = writeln!(
                o,
                "FAIL: {} check(s) failed: {}",
                names.len(),
                names.join(", ")
            );
        }
    }
}

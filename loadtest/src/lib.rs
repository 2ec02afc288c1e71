//! Load generator and correctness verifier for the flashsale HTTP API.
//!
//! A run creates sales through the admin API (or targets existing ones),
//! rushes them with many distinct users over keep-alive HTTP/1.1
//! connections, then settles some orders and asks the server what it holds.
//! The result is a [`Report`] with throughput, latency percentiles, response
//! counts and a [`Verdict`] over the invariants the sale must keep.
//!
//! The binary `flashsale-loadtest` is a thin CLI over [`run`]; integration
//! tests call [`run`] in-process against fake servers to prove the verdict
//! catches overselling and lost orders.
//!
//! Modules, in the order a request meets them: [`scenario`] (knobs),
//! [`workload`] (who sends what), [`client`] (one connection), [`stats`]
//! (measurement), [`verify`] (the verdict), [`report`] and [`html`] (output),
//! [`spawn`] (running a real server) and [`ceiling`] (the generator's own
//! limit against a trivial server).

pub mod api;
pub mod ceiling;
pub mod client;
pub mod html;
pub mod report;
pub mod scenario;
pub mod spawn;
pub mod stats;
pub mod verify;
pub mod workload;

pub use report::Report;
pub use scenario::Scenario;
pub use verify::Verdict;

use anyhow::{anyhow, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use report::{ErrorSummary, OpLatency, PhaseReport, SkuReport};
use stats::{LatencySummary, OpKind, Stats};
use std::collections::HashSet;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workload::{Action, Ctx, SkuInfo, Worker};

/// How to run one scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub scenario: Scenario,
    /// `http://host:port` of the server.
    pub target: String,
    pub admin_token: String,
    /// Hide the progress bar (it is also hidden when stderr is not a terminal).
    pub quiet: bool,
}

/// A progress bar on stderr, or a hidden one when nobody is watching.
pub fn progress_bar(quiet: bool, len: u64, prefix: &'static str) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
    }
    let pb = ProgressBar::new(len);
    let style =
        ProgressStyle::with_template("{prefix:>7} [{bar:40}] {pos}/{len} {per_sec} {elapsed}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb.set_prefix(prefix);
    pb
}

/// A seed from the clock, for runs that don't pin one.
fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    workload::mix(nanos ^ u64::from(std::process::id()))
}

/// Creates (or reads) the sales the scenario targets.
async fn setup_skus(opts: &RunOptions, target: &client::Target, seed: u64) -> Result<Vec<SkuInfo>> {
    let sc = &opts.scenario;
    let admin = client::bearer(&opts.admin_token)?;
    let mut conn = client::ClientConn::new(
        target.clone(),
        Duration::from_millis(sc.timeout_ms.max(5_000)),
    );
    let mut sales = Vec::new();
    if sc.existing_skus.is_empty() {
        let prefix = sc
            .sku_prefix
            .clone()
            .unwrap_or_else(|| format!("ls{:08x}", seed as u32));
        let mut wanted = vec![(format!("{prefix}-hot"), sc.hot_stock)];
        wanted.extend((1..=sc.cold_skus).map(|k| (format!("{prefix}-cold-{k}"), sc.cold_stock)));
        for (name, stock) in wanted {
            let sale = api::create_sale(
                &mut conn,
                &admin,
                &name,
                stock,
                sc.per_user_limit,
                sc.reservation_ttl_ms,
            )
            .await?;
            sales.push(sale);
        }
    } else {
        for name in &sc.existing_skus {
            sales.push(api::get_sale(&mut conn, name).await?);
        }
    }
    Ok(sales
        .into_iter()
        .map(|s| SkuInfo {
            name: s.sku.clone(),
            purchase_path: format!("/v1/sales/{}/purchase", s.sku),
            per_user_limit: s.per_user_limit,
            baseline: s,
        })
        .collect())
}

async fn join_all<T: Send + 'static>(set: &mut tokio::task::JoinSet<T>) -> Result<Vec<T>> {
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.map_err(|e| anyhow!("worker task failed: {e}"))?);
    }
    Ok(out)
}

/// Runs the scenario end to end: setup, rush, settle, verify.
pub async fn run(opts: &RunOptions) -> Result<Report> {
    let sc = &opts.scenario;
    sc.validate()?;
    let seed = sc.seed.unwrap_or_else(clock_seed);
    // Leave the low 24 bits free so base + user index never overflows
    // (USERS_MAX < 2^24), while the high bits keep reruns from colliding.
    let user_id_base = sc
        .user_id_base
        .unwrap_or((workload::mix(seed ^ 0x0075_5e75) >> 24) << 24);
    let target = client::Target::parse(&opts.target).await?;
    let admin = client::bearer(&opts.admin_token)?;
    let skus = setup_skus(opts, &target, seed)
        .await
        .context("setting up sales")?;

    let progress = progress_bar(opts.quiet, sc.users, "rush");
    let start = Instant::now();
    let ctx = Arc::new(Ctx::new(
        sc.clone(),
        target,
        admin,
        skus,
        seed,
        user_id_base,
        start,
    ));

    // Phase 1: the rush.
    let mut set = tokio::task::JoinSet::new();
    for w in 0..sc.connections {
        let mut worker = Worker::new(Arc::clone(&ctx), w);
        worker.set_progress(progress.clone());
        set.spawn(worker.rush());
    }
    let mut workers = join_all(&mut set).await?;
    let rush_s = start.elapsed().as_secs_f64();
    progress.finish_and_clear();
    let rush_requests: u64 = workers.iter().map(|w| w.stats.requests()).sum();
    let after_rush = verify::read_sales(&ctx)
        .await
        .context("reading sales after the rush")?;
    let after_rush_ms = api::now_ms();

    // Phase 2: settle. Acks are gathered in one list so verification can
    // index them; only primary admissions get cancelled or paid.
    let mut acks: Vec<workload::Ack> = workers
        .iter_mut()
        .flat_map(|w| std::mem::take(&mut w.acks))
        .collect();
    let planned: Vec<(usize, workload::Ack)> = acks
        .iter()
        .enumerate()
        .filter(|(_, a)| a.via == OpKind::Purchase && a.action != Action::Keep)
        .map(|(i, a)| (i, a.clone()))
        .collect();
    let settle_bar = progress_bar(opts.quiet, planned.len() as u64, "settle");
    let settle_start = Instant::now();
    let planned = Arc::new(planned);
    let cursor = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for (i, mut w) in workers.into_iter().enumerate() {
        w.set_progress(settle_bar.clone());
        w.restart_pacer(i as u32);
        set.spawn(w.settle(Arc::clone(&planned), Arc::clone(&cursor)));
    }
    let results = join_all(&mut set).await?;
    let settle_s = settle_start.elapsed().as_secs_f64();
    settle_bar.finish_and_clear();
    let load_duration = start.elapsed();

    let mut stats = Stats::new(start);
    let mut tally = workload::Tally::new(ctx.skus.len());
    let mut dials = 0;
    for (w, expected) in results {
        for (i, e) in expected {
            acks[i].expected = e;
        }
        let (s, t, d) = w.into_parts();
        stats.merge(s);
        tally.merge(t);
        dials += d;
    }
    let settle_requests = stats.requests() - rush_requests;

    // Verification.
    let final_sales = verify::read_sales(&ctx)
        .await
        .context("reading sales at the end")?;
    let lookups = verify::lookup_orders(&ctx, &acks).await;
    let now_ms = api::now_ms();
    let all_users_served = ctx.users_started.load(Ordering::Relaxed) == sc.users;
    let verdict = verify::judge(&verify::Evidence {
        skus: &ctx.skus,
        acks: &acks,
        lookups: &lookups,
        tally: &tally,
        after_rush: &after_rush,
        after_rush_ms,
        final_sales: &final_sales,
        now_ms,
        all_users_served,
        qty: sc.qty,
    });

    let mut seen = HashSet::new();
    let mut admitted_units = vec![0u64; ctx.skus.len()];
    for a in &acks {
        if seen.insert(a.order_id.as_str()) {
            admitted_units[a.sku] += u64::from(a.qty);
        }
    }
    let sku_reports = ctx
        .skus
        .iter()
        .enumerate()
        .map(|(i, s)| SkuReport {
            sku: s.name.clone(),
            before: s.baseline.clone(),
            after_rush: after_rush.get(i).cloned(),
            at_end: final_sales.get(i).cloned(),
            users: tally.users_by_sku[i],
            demand_units: tally.demand_units_by_sku[i],
            admitted_units: admitted_units[i],
            first_sold_out_ms: tally.first_sold_out_us[i].map(|us| us as f64 / 1000.0),
        })
        .collect();
    let phases = vec![
        phase("rush", rush_requests, rush_s),
        phase("settle", settle_requests, settle_s),
    ];
    Ok(build_report(Built {
        target: ctx.target.url.clone(),
        scenario: sc.clone(),
        seed,
        user_id_base,
        phases,
        stats,
        duration: load_duration,
        skus: sku_reports,
        tally,
        dials,
        verdict: Some(verdict),
    }))
}

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
    pub tally: workload::Tally,
    pub dials: u64,
    pub verdict: Option<Verdict>,
}

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

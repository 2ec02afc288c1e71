//! One scenario end to end: set up the sales, rush them, settle some orders,
//! read back what the server holds and judge it.

use crate::api::{self, SaleDoc};
use crate::assemble::{build_report, phase, Built};
use crate::client::{self, ClientConn, Target};
use crate::pgverify::{self, PgDatabase};
use crate::progress::progress_bar;
use crate::report::{Report, SkuReport};
use crate::scenario::Scenario;
use crate::stats::{OpKind, Stats};
use crate::verify;
use crate::workload::{self, Ack, Action, Ctx, Expected, SkuInfo, Tally, Worker};
use anyhow::{anyhow, Context, Result};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How to run one scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub scenario: Scenario,
    /// `http://host:port` of the server.
    pub target: String,
    pub admin_token: String,
    /// Hide the progress bar (it is also hidden when stderr is not a terminal).
    pub quiet: bool,
    /// The database the server exports to: after the run, wait for the
    /// export to catch up and check it (see [`crate::pgverify`]).
    pub postgres: Option<PgDatabase>,
    /// How buyers identify themselves (the server's `buyer_auth.mode`).
    pub buyers: crate::buyers::BuyerCreds,
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
async fn setup_skus(opts: &RunOptions, target: &Target, seed: u64) -> Result<Vec<SkuInfo>> {
    let sc = &opts.scenario;
    let admin = client::bearer(&opts.admin_token)?;
    let mut conn = ClientConn::new(
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
    let target = Target::parse(&opts.target).await?;
    let admin = client::bearer(&opts.admin_token)?;
    let skus = setup_skus(opts, &target, seed)
        .await
        .context("setting up sales")?;

    let progress = progress_bar(opts.quiet, sc.users, "rush");
    let ctx = Arc::new(Ctx::new(
        sc.clone(),
        target,
        admin,
        opts.buyers.clone(),
        skus,
        seed,
        user_id_base,
        Instant::now(),
    ));

    // Phase 1: the rush.
    let (workers, rush_s) = rush(&ctx, progress).await?;
    let rush_requests: u64 = workers.iter().map(|w| w.stats.requests()).sum();
    let after_rush = verify::read_sales(&ctx)
        .await
        .context("reading sales after the rush")?;
    let after_rush_ms = api::now_ms();

    // Phase 2: settle.
    let settled = settle(&ctx, workers, opts.quiet).await?;
    let settle_requests = settled.stats.requests() - rush_requests;

    // Verification.
    let final_sales = verify::read_sales(&ctx)
        .await
        .context("reading sales at the end")?;
    let verdict = judge_run(
        &ctx,
        &settled,
        &after_rush,
        after_rush_ms,
        &final_sales,
        opts.postgres.as_ref(),
    )
    .await;

    let skus = sku_reports(&ctx, &settled, &after_rush, &final_sales);
    let phases = vec![
        phase("rush", rush_requests, rush_s),
        phase("settle", settle_requests, settled.secs),
    ];
    Ok(build_report(Built {
        target: ctx.target.url.clone(),
        scenario: sc.clone(),
        seed,
        user_id_base,
        phases,
        stats: settled.stats,
        duration: settled.load_duration,
        skus,
        tally: settled.tally,
        dials: settled.dials,
        verdict: Some(verdict),
    }))
}

/// Phase 1: one worker per connection serves users until all are done or
/// the deadline passes. Returns the workers and the phase's length in s.
async fn rush(ctx: &Arc<Ctx>, progress: indicatif::ProgressBar) -> Result<(Vec<Worker>, f64)> {
    let mut set = tokio::task::JoinSet::new();
    for w in 0..ctx.scenario.connections {
        let mut worker = Worker::new(Arc::clone(ctx), w);
        worker.set_progress(progress.clone());
        set.spawn(worker.rush());
    }
    let workers = join_all(&mut set).await?;
    let rush_s = ctx.start.elapsed().as_secs_f64();
    progress.finish_and_clear();
    Ok((workers, rush_s))
}

/// What the settle phase leaves: every acknowledgement with the state it is
/// now expected in, and the merged measurements of both phases.
struct Settled {
    acks: Vec<Ack>,
    stats: Stats,
    tally: Tally,
    dials: u64,
    /// The settle phase's length in s.
    secs: f64,
    /// From the start of the rush to the end of the settle phase.
    load_duration: Duration,
}

/// Phase 2: cancel or pay the orders planned for it. Acks are gathered in
/// one list so verification can index them; only primary admissions get
/// cancelled or paid.
async fn settle(ctx: &Ctx, mut workers: Vec<Worker>, quiet: bool) -> Result<Settled> {
    let mut acks: Vec<Ack> = workers
        .iter_mut()
        .flat_map(|w| std::mem::take(&mut w.acks))
        .collect();
    let planned: Vec<(usize, Ack)> = acks
        .iter()
        .enumerate()
        .filter(|(_, a)| a.via == OpKind::Purchase && a.action != Action::Keep)
        .map(|(i, a)| (i, a.clone()))
        .collect();
    let settle_bar = progress_bar(quiet, planned.len() as u64, "settle");
    let settle_start = Instant::now();
    let planned = Arc::new(planned);
    let cursor = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for (i, mut w) in workers.into_iter().enumerate() {
        w.set_progress(settle_bar.clone());
        w.restart_pacer(i as u32);
        set.spawn(w.settle(Arc::clone(&planned), Arc::clone(&cursor)));
    }
    let results: Vec<(Worker, Vec<(usize, Expected)>)> = join_all(&mut set).await?;
    let secs = settle_start.elapsed().as_secs_f64();
    settle_bar.finish_and_clear();
    let load_duration = ctx.start.elapsed();

    let mut stats = Stats::new(ctx.start);
    let mut tally = Tally::new(ctx.skus.len());
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
    Ok(Settled {
        acks,
        stats,
        tally,
        dials,
        secs,
        load_duration,
    })
}

/// Looks up every acknowledged order and judges what the server holds,
/// then, with `postgres`, what the export wrote.
async fn judge_run(
    ctx: &Ctx,
    settled: &Settled,
    after_rush: &[SaleDoc],
    after_rush_ms: u64,
    final_sales: &[SaleDoc],
    postgres: Option<&PgDatabase>,
) -> verify::Verdict {
    let lookups = verify::lookup_orders(ctx, &settled.acks).await;
    let now_ms = api::now_ms();
    let all_users_served = ctx.users_started.load(Ordering::Relaxed) == ctx.scenario.users;
    let mut verdict = verify::judge(&verify::Evidence {
        skus: &ctx.skus,
        acks: &settled.acks,
        lookups: &lookups,
        tally: &settled.tally,
        after_rush,
        after_rush_ms,
        final_sales,
        now_ms,
        all_users_served,
        qty: ctx.scenario.qty,
    });
    if let Some(pg) = postgres {
        let checks = pgverify::verify_export(ctx, &settled.acks, &lookups, pg).await;
        verdict.passed &= checks.iter().all(|c| c.passed);
        verdict.checks.extend(checks);
    }
    verdict
}

/// Each SKU's story for the report; a replayed order's units count once.
fn sku_reports(
    ctx: &Ctx,
    settled: &Settled,
    after_rush: &[SaleDoc],
    final_sales: &[SaleDoc],
) -> Vec<SkuReport> {
    let tally = &settled.tally;
    let mut seen = HashSet::new();
    let mut admitted_units = vec![0u64; ctx.skus.len()];
    for a in &settled.acks {
        if seen.insert(a.order_id.as_str()) {
            admitted_units[a.sku] += u64::from(a.qty);
        }
    }
    ctx.skus
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
        .collect()
}

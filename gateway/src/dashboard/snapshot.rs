//! Building a snapshot: read the counters the hot path already keeps
//! (`Metrics`, the log's `WalStats`, `ExportStatus`), the newest sales'
//! views and the process, and turn the differences since the previous
//! reading into per-second rates and latency quantiles.
//!
//! Its cost depends on the number of buckets, routes and shown sales
//! (`dashboard.sales_max`), never on the request rate: it reads counters
//! and does no per-request work. The ticker calls it once a period.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use engine::{RejectionKind, SalePhase, SaleView};

use super::json::{
    ChartPoint, ConfigSummary, ExportPart, LatencyPart, LogPart, Outcomes, PurchasesPart,
    Quantiles, SalePart, ServerPart, Snapshot, StreamPart,
};
use crate::app::{unix_ms, App};
use crate::config::Config;
use crate::http::route::Route;
use crate::latency::HistogramReading;
use crate::metrics::{LatencyClass, Metrics};
use crate::wal::WalStats;

/// Snapshot format version (`Snapshot::version`).
pub const SNAPSHOT_VERSION: u32 = 1;

/// What a snapshot is compared with: the previous one's readings.
struct CounterReading {
    at: Instant,
    outcomes: Outcomes<u64>,
    latency: [HistogramReading; LatencyClass::COUNT],
    log: Option<LogReading>,
}

#[derive(Clone, Copy)]
struct LogReading {
    records: u64,
    fsyncs: u64,
    fsync_sum_us: u64,
    batches: u64,
    batch_records_sum: u64,
}

/// What is remembered of a shown sale between snapshots.
#[derive(Clone, Copy)]
struct SaleMemo {
    orders: u64,
    taken: u64,
    opened_at_ms: Option<u64>,
    sold_out_at_ms: Option<u64>,
}

/// Builds one snapshot per call, each against the one before.
pub struct SnapshotBuilder {
    config: ConfigSummary,
    sales_max: usize,
    previous: Option<CounterReading>,
    /// The sales shown last time, by sku: only those, so it is bounded by
    /// `sales_max`.
    sales: HashMap<Arc<str>, SaleMemo>,
    /// Fsync histogram counts at the previous reading (cumulative).
    fsync_buckets: Vec<(u64, u64)>,
}

impl SnapshotBuilder {
    pub fn new(config: &Config) -> SnapshotBuilder {
        SnapshotBuilder {
            config: summary(config),
            sales_max: config.dashboard.sales_max as usize,
            previous: None,
            sales: HashMap::new(),
            fsync_buckets: Vec::new(),
        }
    }

    /// A snapshot of `app` now.
    pub fn build(&mut self, app: &App) -> Snapshot {
        let at = Instant::now();
        let now_ms = unix_ms();
        let period_s = self
            .previous
            .as_ref()
            .map(|p| at.duration_since(p.at).as_secs_f64())
            .filter(|&s| s > 0.0);
        let metrics = &app.metrics;
        let outcomes = outcomes(metrics);
        let latency = LatencyClass::ALL.map(|c| metrics.purchase_latency(c).read());
        let core = app.core();
        let wal = core.map(|c| c.wal.stats());
        let log_reading = wal.as_ref().map(log_reading);

        // Taken out while `self` is borrowed mutably; replaced at the end.
        let previous_reading = self.previous.take();
        let previous = previous_reading.as_ref();
        let per_s = previous
            .zip(period_s)
            .map(|(p, s)| rates(&outcomes, &p.outcomes, s));
        let quantiles = |class: LatencyClass| match previous {
            Some(p) => quantiles(&latency[class as usize].since(&p.latency[class as usize])),
            None => Quantiles::default(),
        };
        let latency_part = LatencyPart {
            admitted: quantiles(LatencyClass::Admitted),
            refused: quantiles(LatencyClass::Refused),
        };
        let log = wal.as_ref().map(|w| {
            let before = previous.and_then(|p| p.log);
            self.log_part(app, w, before, period_s)
        });
        let (sales, sales_total) = match core {
            Some(core) => core.engine.recent_sales(self.sales_max, now_ms),
            None => (Vec::new(), 0),
        };
        let sales = self.sale_parts(sales, now_ms, period_s);
        let export = export_part(app, now_ms);
        let feed = &app.feed;
        let point = ChartPoint {
            t_ms: now_ms,
            rates: per_s,
            p50_ms: latency_part.admitted.p50_ms,
            p99_ms: latency_part.admitted.p99_ms,
            p999_ms: latency_part.admitted.p999_ms,
            refused_p99_ms: latency_part.refused.p99_ms,
            fsync_mean_ms: log.as_ref().and_then(|l| l.fsync_mean_ms),
            fsync_p99_ms: log.as_ref().and_then(|l| l.fsync_p99_ms),
            batch_records_mean: log.as_ref().and_then(|l| l.batch_records_mean),
            queue_depth: log.as_ref().map(|l| l.queue_depth),
            export_lag_records: export.enabled.then_some(export.lag_records),
        };
        let snapshot = Snapshot {
            version: SNAPSHOT_VERSION,
            at_ms: now_ms,
            period_s,
            server: ServerPart {
                version: env!("CARGO_PKG_VERSION"),
                ready: app.ready(),
                recovering: core.is_none(),
                uptime_s: app.started.elapsed().as_secs_f64(),
                connections_open: load(&metrics.connections_open),
                connections_total: load(&metrics.connections_total),
                rss_bytes: rss_bytes(),
            },
            config: self.config.clone(),
            purchases: PurchasesPart {
                per_s,
                total: outcomes,
            },
            latency: latency_part,
            log,
            export,
            stream: StreamPart {
                subscribers: feed.subscribers(),
                subscribers_max: feed.limits().subscribers_max,
                dropped_total: feed.dropped_total(),
                refused_total: feed.refused_total(),
            },
            sales,
            sales_total,
            point,
        };
        self.previous = Some(CounterReading {
            at,
            outcomes,
            latency,
            log: log_reading,
        });
        snapshot
    }

    fn log_part(
        &mut self,
        app: &App,
        w: &WalStats,
        before: Option<LogReading>,
        period_s: Option<f64>,
    ) -> LogPart {
        let now = log_reading(w);
        let delta = before.zip(period_s).map(|(b, s)| {
            (
                s,
                LogReading {
                    records: now.records.saturating_sub(b.records),
                    fsyncs: now.fsyncs.saturating_sub(b.fsyncs),
                    fsync_sum_us: now.fsync_sum_us.saturating_sub(b.fsync_sum_us),
                    batches: now.batches.saturating_sub(b.batches),
                    batch_records_sum: now.batch_records_sum.saturating_sub(b.batch_records_sum),
                },
            )
        });
        let fsync_p99_ms = delta.and(fsync_p99_us(&self.fsync_buckets, &w.fsync_latency_us));
        self.fsync_buckets.clone_from(&w.fsync_latency_us);
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        LogPart {
            fsync: app.config.wal.fsync.as_str(),
            failed: w.failed,
            queue_depth: w.queue_depth,
            queue_capacity: app.config.wal.queue_capacity,
            retained_bytes: w.retained_bytes,
            records_per_s: delta.map(|(s, d)| d.records as f64 / s),
            fsyncs_per_s: delta.map(|(s, d)| d.fsyncs as f64 / s),
            fsync_mean_ms: delta
                .and_then(|(_, d)| ratio(d.fsync_sum_us, d.fsyncs))
                .map(|us| us / 1e3),
            fsync_p99_ms: fsync_p99_ms.map(|us| us as f64 / 1e3),
            batch_records_mean: delta.and_then(|(_, d)| ratio(d.batch_records_sum, d.batches)),
        }
    }

    /// The shown sales, with their rates and the times this server saw
    /// them open and sell out.
    fn sale_parts(
        &mut self,
        views: Vec<SaleView>,
        now_ms: u64,
        period_s: Option<f64>,
    ) -> Vec<SalePart> {
        let mut memos = HashMap::with_capacity(views.len());
        let parts = views
            .into_iter()
            .map(|view| {
                let before = self.sales.get(&view.sku).copied();
                let (part, memo) = sale_part(&view, before, now_ms, period_s);
                memos.insert(view.sku.clone(), memo);
                part
            })
            .collect();
        self.sales = memos;
        parts
    }
}

fn sale_part(
    view: &SaleView,
    before: Option<SaleMemo>,
    now_ms: u64,
    period_s: Option<f64>,
) -> (SalePart, SaleMemo) {
    let taken = view.stock.saturating_sub(view.remaining);
    let open_now = !matches!(view.phase, SalePhase::Scheduled);
    let opened_at_ms = view
        .starts_at_ms
        .filter(|&start| start <= now_ms)
        .or(before.and_then(|b| b.opened_at_ms))
        .or(open_now.then_some(now_ms));
    let sold_out_at_ms = match view.remaining {
        0 => before.and_then(|b| b.sold_out_at_ms).or(Some(now_ms)),
        _ => None,
    };
    // Rates only against a reading of the same sale.
    let rates = before.zip(period_s).map(|(b, s)| {
        let admits = view.orders.saturating_sub(b.orders) as f64 / s;
        let units = (taken as f64 - b.taken as f64) / s;
        (admits, units)
    });
    let units_per_s = rates.map(|r| r.1);
    let eta_sold_out_s = units_per_s
        .filter(|&u| u > 0.0 && matches!(view.phase, SalePhase::Open))
        .map(|u| view.remaining as f64 / u);
    let seconds = |from: u64, to: u64| to.saturating_sub(from) as f64 / 1e3;
    let part = SalePart {
        sku: view.sku.to_string(),
        state: view.phase.as_str(),
        stock: view.stock,
        remaining: view.remaining,
        reserved: view.reserved,
        paid: view.paid,
        orders: view.orders,
        per_user_limit: view.per_user_limit,
        starts_at_ms: view.starts_at_ms,
        ends_at_ms: view.ends_at_ms,
        admits_per_s: rates.map(|r| r.0),
        units_per_s,
        opened_at_ms,
        open_for_s: opened_at_ms.map(|o| seconds(o, now_ms)),
        sold_out_at_ms,
        time_to_sold_out_s: opened_at_ms.zip(sold_out_at_ms).map(|(o, s)| seconds(o, s)),
        eta_sold_out_s,
    };
    let memo = SaleMemo {
        orders: view.orders,
        taken,
        opened_at_ms,
        sold_out_at_ms,
    };
    (part, memo)
}

fn load(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(std::sync::atomic::Ordering::Relaxed)
}

/// Purchase answers by outcome, so far. Statuses come from the request
/// counters, the kinds of 409 from the rejection counters; `errors` is the
/// rest. The counters are read one after another while requests run, so
/// an interval's `errors` can be off by the few answers in flight (never
/// negative).
fn outcomes(m: &Metrics) -> Outcomes<u64> {
    let status = |code| m.requests_of(Route::Purchase, code);
    let kind = |k| m.rejections_of(k);
    let o = Outcomes {
        admitted: status(201) + status(200),
        sold_out: kind(RejectionKind::SoldOut),
        limit_exceeded: kind(RejectionKind::LimitExceeded),
        closed: kind(RejectionKind::Paused)
            + kind(RejectionKind::NotStarted)
            + kind(RejectionKind::Ended),
        rate_limited: status(429),
        unavailable: status(503),
        errors: 0,
    };
    let known =
        o.admitted + o.sold_out + o.limit_exceeded + o.closed + o.rate_limited + o.unavailable;
    Outcomes {
        errors: m.requests_total(Route::Purchase).saturating_sub(known),
        ..o
    }
}

fn rates(now: &Outcomes<u64>, before: &Outcomes<u64>, s: f64) -> Outcomes<f64> {
    let r = |a: u64, b: u64| a.saturating_sub(b) as f64 / s;
    Outcomes {
        admitted: r(now.admitted, before.admitted),
        sold_out: r(now.sold_out, before.sold_out),
        limit_exceeded: r(now.limit_exceeded, before.limit_exceeded),
        closed: r(now.closed, before.closed),
        rate_limited: r(now.rate_limited, before.rate_limited),
        unavailable: r(now.unavailable, before.unavailable),
        errors: r(now.errors, before.errors),
    }
}

fn quantiles(h: &HistogramReading) -> Quantiles {
    let ms = |ns: Option<u64>| ns.map(|ns| ns as f64 / 1e6);
    let count = h.count();
    Quantiles {
        count,
        mean_ms: (count > 0).then(|| h.sum_ns() as f64 / count as f64 / 1e6),
        p50_ms: ms(h.quantile(0.5)),
        p99_ms: ms(h.quantile(0.99)),
        p999_ms: ms(h.quantile(0.999)),
    }
}

fn log_reading(w: &WalStats) -> LogReading {
    LogReading {
        records: w.records_written,
        fsyncs: w.fsyncs,
        fsync_sum_us: w.fsync_latency_sum_us,
        batches: w.batches,
        batch_records_sum: w.batch_records_sum,
    }
}

/// The bound (µs) of the fsync bucket holding the 99th percentile of the
/// syncs between two readings of the cumulative histogram; `None` if
/// there were none. The last bound (`u64::MAX`, +Inf) reads as the one
/// before it, the largest finite bound.
fn fsync_p99_us(before: &[(u64, u64)], now: &[(u64, u64)]) -> Option<u64> {
    let earlier = |i: usize| before.get(i).map_or(0, |&(_, n)| n);
    let total = now
        .last()
        .map(|&(_, n)| n)?
        .saturating_sub(earlier(now.len() - 1));
    if total == 0 {
        return None;
    }
    let rank = (total * 99).div_ceil(100);
    let i = now
        .iter()
        .enumerate()
        .position(|(i, &(_, n))| n.saturating_sub(earlier(i)) >= rank)?;
    let bound = now[i].0;
    Some(if bound == u64::MAX && i > 0 {
        now[i - 1].0
    } else {
        bound
    })
}

/// Resident memory: `VmRSS` of `/proc/self/status`, which Linux gives in
/// kB whatever the page size (`statm` counts pages of a size std does not
/// tell).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn summary(c: &Config) -> ConfigSummary {
    ConfigSummary {
        listen: c.server.listen.to_string(),
        io_threads: c.server.io_threads,
        max_connections: c.server.max_connections,
        engine_shards: c.engine.shards,
        max_orders_per_sale: c.engine.max_orders_per_sale,
        fsync: c.wal.fsync.as_str(),
        fsync_interval_ms: c.wal.fsync_interval_ms,
        group_commit_delay_us: c.wal.group_commit_delay_us,
        queue_capacity: c.wal.queue_capacity,
        global_rps: c.rate_limit.global_rps,
        per_client_rps: c.rate_limit.per_client_rps,
        export_enabled: c.export.postgres_url.is_some(),
        snapshot_interval_ms: c.dashboard.interval.as_millis() as u64,
        stream_subscribers_max: c.dashboard.stream_subscribers_max,
    }
}

fn export_part(app: &App, now_ms: u64) -> ExportPart {
    let s = app.export.snapshot(now_ms);
    ExportPart {
        enabled: app.config.export.postgres_url.is_some(),
        up: s.up,
        lag_records: s.lag_records,
        lag_seconds: s.lag_seconds,
        over_max_lag: app.export_over_lag(),
        refused_purchases_total: s.refused_purchases_total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_p99_reads_the_interval_between_readings() {
        let before = [(100, 10), (1_000, 10), (u64::MAX, 10)];
        // 100 new syncs: 98 at <= 100 µs, 2 at <= 1 ms.
        let now = [(100, 108), (1_000, 110), (u64::MAX, 110)];
        assert_eq!(fsync_p99_us(&before, &now), Some(1_000));
        let now = [(100, 110), (1_000, 110), (u64::MAX, 110)];
        assert_eq!(fsync_p99_us(&before, &now), Some(100));
        assert_eq!(fsync_p99_us(&before, &before), None);
        // Past the last finite bound: that bound.
        let now = [(100, 10), (1_000, 10), (u64::MAX, 11)];
        assert_eq!(fsync_p99_us(&before, &now), Some(1_000));
        // No earlier reading: everything so far.
        assert_eq!(fsync_p99_us(&[], &before), Some(100));
    }

    fn view(remaining: u64, orders: u64, phase: SalePhase) -> SaleView {
        SaleView {
            sku: Arc::from("s"),
            stock: 100,
            remaining,
            reserved: 100 - remaining,
            paid: 0,
            per_user_limit: 1,
            starts_at_ms: None,
            ends_at_ms: None,
            reservation_ttl_ms: 1,
            phase,
            orders,
        }
    }

    /// Rates come from the difference with the last reading; the sale is
    /// seen open at its first reading and sold out when nothing remains.
    #[test]
    fn sale_rates_and_times() {
        let (first, memo) = sale_part(&view(100, 0, SalePhase::Open), None, 10_000, None);
        assert_eq!(
            (first.admits_per_s, first.opened_at_ms),
            (None, Some(10_000))
        );
        let (second, memo) = sale_part(
            &view(60, 40, SalePhase::Open),
            Some(memo),
            12_000,
            Some(2.0),
        );
        assert_eq!(second.admits_per_s, Some(20.0));
        assert_eq!(second.units_per_s, Some(20.0));
        assert_eq!(second.eta_sold_out_s, Some(3.0));
        assert_eq!(second.open_for_s, Some(2.0));
        let (third, memo) = sale_part(
            &view(0, 100, SalePhase::SoldOut),
            Some(memo),
            14_000,
            Some(2.0),
        );
        assert_eq!(third.sold_out_at_ms, Some(14_000));
        assert_eq!(third.time_to_sold_out_s, Some(4.0));
        assert_eq!(third.eta_sold_out_s, None);
        let (fourth, _) = sale_part(
            &view(0, 100, SalePhase::SoldOut),
            Some(memo),
            15_000,
            Some(1.0),
        );
        assert_eq!(
            (fourth.sold_out_at_ms, fourth.admits_per_s),
            (Some(14_000), Some(0.0))
        );
    }
}

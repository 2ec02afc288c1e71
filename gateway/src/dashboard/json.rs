//! The dashboard snapshot's JSON shape: what `GET /v1/admin/stats` answers
//! and each `snapshot` event of `GET /v1/admin/stream` carries (API.md
//! documents every field). Plain data, serialised with serde; rates and
//! latencies over the last period are `null` when there is no earlier
//! reading to compare with, or nothing to measure.
//!
//! Imports nothing of the crate: the feed stores [`ChartPoint`]s and the
//! snapshot builder fills these.

use serde::Serialize;

/// One snapshot.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// Snapshot format version; a change that removes or renames a field
    /// bumps it.
    pub version: u32,
    /// Unix ms at which it was taken.
    pub at_ms: u64,
    /// Seconds since the previous snapshot: what the per-second rates
    /// cover; `null` for the first.
    pub period_s: Option<f64>,
    pub server: ServerPart,
    pub config: ConfigSummary,
    pub purchases: PurchasesPart,
    pub latency: LatencyPart,
    /// `null` until recovery is done.
    pub log: Option<LogPart>,
    pub export: ExportPart,
    pub stream: StreamPart,
    /// The newest sales, at most `dashboard.sales_max`, in creation order.
    pub sales: Vec<SalePart>,
    /// How many sales the engine holds.
    pub sales_total: usize,
    /// The figures the charts plot, also kept as the stream's history.
    pub point: ChartPoint,
}

#[derive(Debug, Serialize)]
pub struct ServerPart {
    pub version: &'static str,
    /// Recovered, the log accepts writes, not shutting down.
    pub ready: bool,
    /// Still replaying the log.
    pub recovering: bool,
    pub uptime_s: f64,
    pub connections_open: u64,
    pub connections_total: u64,
    /// Resident memory (`VmRSS` of `/proc/self/status`); `null` where
    /// unreadable.
    pub rss_bytes: Option<u64>,
}

/// The configuration in brief: nothing secret (no token, no URL).
#[derive(Clone, Debug, Serialize)]
pub struct ConfigSummary {
    pub listen: String,
    pub io_threads: u32,
    pub max_connections: u32,
    pub engine_shards: u32,
    pub max_orders_per_sale: u64,
    pub fsync: &'static str,
    pub fsync_interval_ms: u64,
    pub group_commit_delay_us: u64,
    pub queue_capacity: u32,
    pub global_rps: u64,
    pub per_client_rps: u64,
    pub export_enabled: bool,
    pub snapshot_interval_ms: u64,
    pub stream_subscribers_max: u32,
}

/// Purchase answers by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Outcomes<T> {
    /// 201, and 200 for an idempotent replay.
    pub admitted: T,
    pub sold_out: T,
    pub limit_exceeded: T,
    /// 409 `paused`, `not_started` or `ended`: the sale takes no orders.
    pub closed: T,
    /// 429.
    pub rate_limited: T,
    /// 503: the log is full or failed, the export lags, or recovery runs.
    pub unavailable: T,
    /// Every other answer (bad requests, unknown sku, `in_progress`,
    /// `order_limit`, `request_id_reused`, …).
    pub errors: T,
}

#[derive(Debug, Serialize)]
pub struct PurchasesPart {
    /// Per second over the last period.
    pub per_s: Option<Outcomes<f64>>,
    /// Since the server started.
    pub total: Outcomes<u64>,
}

/// Latency quantiles over the last period, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Quantiles {
    pub count: u64,
    pub mean_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct LatencyPart {
    /// Purchases answered 201 or 200.
    pub admitted: Quantiles,
    /// Every other purchase answer.
    pub refused: Quantiles,
}

#[derive(Debug, Serialize)]
pub struct LogPart {
    pub fsync: &'static str,
    pub failed: bool,
    /// Events waiting for the writer now.
    pub queue_depth: u64,
    pub queue_capacity: u32,
    pub retained_bytes: u64,
    pub records_per_s: Option<f64>,
    pub fsyncs_per_s: Option<f64>,
    /// Mean fdatasync time over the last period.
    pub fsync_mean_ms: Option<f64>,
    /// Upper bound of the fsync histogram bucket holding the period's
    /// 99th percentile (the buckets are 50 µs … 1 s).
    pub fsync_p99_ms: Option<f64>,
    /// Records per group-commit batch over the last period.
    pub batch_records_mean: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct ExportPart {
    pub enabled: bool,
    pub up: bool,
    pub lag_records: u64,
    pub lag_seconds: f64,
    /// Purchases are being refused because the unexported log passed
    /// `export.max_lag_bytes`.
    pub over_max_lag: bool,
    pub refused_purchases_total: u64,
}

#[derive(Debug, Serialize)]
pub struct StreamPart {
    pub subscribers: usize,
    pub subscribers_max: usize,
    pub dropped_total: u64,
    pub refused_total: u64,
}

#[derive(Debug, Serialize)]
pub struct SalePart {
    pub sku: String,
    /// `scheduled|open|paused|sold_out|ended`, as `GET /v1/sales/{sku}`.
    pub state: &'static str,
    pub stock: u64,
    pub remaining: u64,
    pub reserved: u64,
    pub paid: u64,
    /// Orders made, in any state.
    pub orders: u64,
    pub per_user_limit: u32,
    pub starts_at_ms: Option<u64>,
    pub ends_at_ms: Option<u64>,
    /// Orders made per second over the last period.
    pub admits_per_s: Option<f64>,
    /// Units taken per second over the last period, net of units given
    /// back (cancelled, expired); can be negative.
    pub units_per_s: Option<f64>,
    /// When the sale opened: `starts_at_ms`, or else when this server first
    /// saw it open (within a period of its creation; after a restart, at
    /// recovery).
    pub opened_at_ms: Option<u64>,
    pub open_for_s: Option<f64>,
    /// When this server first saw it sold out (cleared by a top-up).
    pub sold_out_at_ms: Option<u64>,
    pub time_to_sold_out_s: Option<f64>,
    /// Remaining units over `units_per_s`, while open and selling.
    pub eta_sold_out_s: Option<f64>,
}

/// The figures the dashboard's charts plot, one point per snapshot. Short
/// and flat: a new subscriber gets up to `dashboard.history_points` of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ChartPoint {
    /// Unix ms of the snapshot.
    pub t_ms: u64,
    /// Purchase answers per second, by outcome; `null` for the first.
    pub rates: Option<Outcomes<f64>>,
    /// Admitted purchases' latency quantiles, ms.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    /// Refused purchases' p99, ms.
    pub refused_p99_ms: Option<f64>,
    pub fsync_mean_ms: Option<f64>,
    pub fsync_p99_ms: Option<f64>,
    pub batch_records_mean: Option<f64>,
    pub queue_depth: Option<u64>,
    pub export_lag_records: Option<u64>,
}

//! What the relay reports: whether it is up, how far it has exported, how
//! far behind the log it is, and how its batches go. Plain atomics the
//! relay writes and `/metrics` and `GET /v1/admin/export` read; nothing
//! here is touched per request.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the batch-duration histogram's buckets.
const BATCH_SECONDS_BOUNDS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// The relay's state, shared.
#[derive(Default)]
pub struct ExportStatus {
    up: AtomicBool,
    /// The relay is yielding to a rush (see `rush`).
    yielding: AtomicBool,
    /// The cursor committed in PostgreSQL: every record up to it is there.
    lsn: AtomicU64,
    /// The log's durable end, as the relay last saw it.
    log_lsn: AtomicU64,
    /// When the relay last found itself caught up (Unix ms).
    caught_up_at_ms: AtomicU64,
    rows: AtomicU64,
    errors: AtomicU64,
    refused_purchases: AtomicU64,
    batches: [AtomicU64; BATCH_SECONDS_BOUNDS.len() + 1],
    batch_micros_sum: AtomicU64,
}

/// One reading of [`ExportStatus`].
#[derive(Clone, Debug, PartialEq)]
pub struct ExportSnapshot {
    pub up: bool,
    pub yielding: bool,
    pub lsn: u64,
    pub lag_records: u64,
    pub lag_seconds: f64,
    pub rows_total: u64,
    pub errors_total: u64,
    pub refused_purchases_total: u64,
}

impl ExportStatus {
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    /// Whether the relay yields to a rush; returns whether it did before.
    pub fn set_yielding(&self, yielding: bool) -> bool {
        self.yielding.swap(yielding, Ordering::Relaxed)
    }

    /// The cursor last committed in (or read from) PostgreSQL.
    pub fn lsn(&self) -> u64 {
        self.lsn.load(Ordering::Relaxed)
    }

    /// The database's cursor moved to `lsn` (or was read as `lsn`).
    pub fn exported(&self, lsn: u64) {
        self.lsn.fetch_max(lsn, Ordering::Relaxed);
    }

    /// The log's durable end; `now_ms` marks the relay caught up when the
    /// export has reached it.
    pub fn log_at(&self, log_lsn: u64, now_ms: u64) {
        self.log_lsn.fetch_max(log_lsn, Ordering::Relaxed);
        if self.lsn.load(Ordering::Relaxed) >= self.log_lsn.load(Ordering::Relaxed) {
            self.caught_up_at_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    pub fn batch_written(&self, rows: u64, took: Duration) {
        self.rows.fetch_add(rows, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let bucket = BATCH_SECONDS_BOUNDS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BATCH_SECONDS_BOUNDS.len());
        self.batches[bucket].fetch_add(1, Ordering::Relaxed);
        self.batch_micros_sum
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused_purchase(&self) {
        self.refused_purchases.fetch_add(1, Ordering::Relaxed);
    }

    /// A reading at `now_ms`. The lag in seconds is the time since the
    /// relay was last caught up: an upper bound on the age of the oldest
    /// record not exported yet, 0 when there is none.
    pub fn snapshot(&self, now_ms: u64) -> ExportSnapshot {
        let lsn = self.lsn.load(Ordering::Relaxed);
        let lag_records = self.log_lsn.load(Ordering::Relaxed).saturating_sub(lsn);
        let lag_seconds = if lag_records == 0 {
            0.0
        } else {
            now_ms.saturating_sub(self.caught_up_at_ms.load(Ordering::Relaxed)) as f64 / 1e3
        };
        ExportSnapshot {
            up: self.up.load(Ordering::Relaxed),
            yielding: self.yielding.load(Ordering::Relaxed),
            lsn,
            lag_records,
            lag_seconds,
            rows_total: self.rows.load(Ordering::Relaxed),
            errors_total: self.errors.load(Ordering::Relaxed),
            refused_purchases_total: self.refused_purchases.load(Ordering::Relaxed),
        }
    }

    /// The Prometheus text of the export's metrics.
    pub fn render(&self, out: &mut String, now_ms: u64) {
        let s = self.snapshot(now_ms);
        let metrics: [(&str, &str, &str, String); 8] = [
            ("flashsale_export_up", "gauge", "1 while the export to PostgreSQL works.", u8::from(s.up).to_string()),
            ("flashsale_export_yielding", "gauge", "1 while the export writes slowly to leave the cores to a rush of purchases.", u8::from(s.yielding).to_string()),
            ("flashsale_export_lsn", "gauge", "Last log record exported (committed in PostgreSQL).", s.lsn.to_string()),
            ("flashsale_export_lag_records", "gauge", "Durable log records not exported yet.", s.lag_records.to_string()),
            ("flashsale_export_lag_seconds", "gauge", "Time since the export was last caught up with the log (0 when it is).", s.lag_seconds.to_string()),
            ("flashsale_export_rows_total", "counter", "Rows the export wrote.", s.rows_total.to_string()),
            ("flashsale_export_errors_total", "counter", "Failed export attempts (connections, statements, the log).", s.errors_total.to_string()),
            ("flashsale_export_refused_purchases_total", "counter", "Purchases refused with 503 because the unexported log passed export.max_lag_bytes.", s.refused_purchases_total.to_string()),
        ];
        for (name, kind, help, value) in metrics {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let name = "flashsale_export_batch_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to write one export batch.\n# TYPE {name} histogram"
        );
        let mut count = 0;
        for (i, bound) in BATCH_SECONDS_BOUNDS.iter().enumerate() {
            count += self.batches[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        count += self.batches[BATCH_SECONDS_BOUNDS.len()].load(Ordering::Relaxed);
        let sum = self.batch_micros_sum.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}"
        );
    }

    /// The JSON of `GET /v1/admin/export`.
    pub fn json(&self, now_ms: u64, enabled: bool) -> String {
        let s = self.snapshot(now_ms);
        format!(
            "{{\"enabled\":{enabled},\"up\":{},\"yielding\":{},\"lsn\":{},\"lag_records\":{},\"lag_seconds\":{},\"rows_total\":{},\"errors_total\":{},\"refused_purchases_total\":{}}}",
            s.up, s.yielding, s.lsn, s.lag_records, s.lag_seconds, s.rows_total, s.errors_total, s.refused_purchases_total
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_records_behind_and_time_since_caught_up() {
        let s = ExportStatus::default();
        s.log_at(10, 1_000);
        assert_eq!(s.snapshot(1_000).lag_records, 10);
        s.exported(10);
        s.log_at(10, 2_000);
        assert_eq!(
            (s.snapshot(2_500).lag_records, s.snapshot(2_500).lag_seconds),
            (0, 0.0)
        );
        s.log_at(15, 3_000);
        let snap = s.snapshot(5_000);
        assert_eq!((snap.lag_records, snap.lag_seconds), (5, 3.0));
    }

    #[test]
    fn yielding_shows_on_metrics_and_json() {
        let s = ExportStatus::default();
        assert!(!s.set_yielding(true), "was not yielding");
        let mut out = String::new();
        s.render(&mut out, 0);
        assert!(out.contains("\nflashsale_export_yielding 1\n"), "{out}");
        let v: serde_json::Value = serde_json::from_str(&s.json(0, true)).unwrap();
        assert_eq!(v["yielding"], true);
        assert!(s.set_yielding(false), "was yielding");
        assert!(!s.snapshot(0).yielding);
    }

    #[test]
    fn batch_histogram_is_cumulative() {
        let s = ExportStatus::default();
        s.batch_written(3, Duration::from_millis(3));
        s.batch_written(4, Duration::from_secs(9));
        let mut out = String::new();
        s.render(&mut out, 0);
        assert!(
            out.contains("flashsale_export_batch_seconds_bucket{le=\"0.005\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("flashsale_export_batch_seconds_bucket{le=\"5\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("flashsale_export_batch_seconds_bucket{le=\"+Inf\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("flashsale_export_rows_total 7\n"), "{out}");
        let v: serde_json::Value = serde_json::from_str(&s.json(0, true)).unwrap();
        assert_eq!(v["rows_total"], 7);
    }
}

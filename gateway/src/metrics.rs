//! Counters for `/metrics`, as plain atomics in fixed arrays indexed by small
//! enums: recording is one relaxed `fetch_add`, with no map and no lock.
//! The text exposition is rendered on scrape. The purchase latency
//! histograms (`crate::latency`) live here too; the dashboard's snapshots
//! read the same counters.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use engine::{Rejection, RejectionKind};

use crate::buyer_auth::AuthFailure;

use crate::http::route::Route;
use crate::latency::LatencyHistogram;

engine::labelled_enum! {
    /// The statuses the gateway answers with, as counted; anything else
    /// (there should be nothing else) is `Other`.
    enum Status {
        Ok => "200",
        Created => "201",
        BadRequest => "400",
        Unauthorized => "401",
        Forbidden => "403",
        NotFound => "404",
        MethodNotAllowed => "405",
        RequestTimeout => "408",
        Conflict => "409",
        PayloadTooLarge => "413",
        UriTooLong => "414",
        UnsupportedMediaType => "415",
        UnprocessableEntity => "422",
        TooManyRequests => "429",
        HeadersTooLarge => "431",
        InternalError => "500",
        Unavailable => "503",
        Other => "other",
    }
}

impl Status {
    #[inline]
    fn of(code: u16) -> Status {
        match code {
            200 => Status::Ok,
            201 => Status::Created,
            400 => Status::BadRequest,
            401 => Status::Unauthorized,
            403 => Status::Forbidden,
            404 => Status::NotFound,
            405 => Status::MethodNotAllowed,
            408 => Status::RequestTimeout,
            409 => Status::Conflict,
            413 => Status::PayloadTooLarge,
            414 => Status::UriTooLong,
            415 => Status::UnsupportedMediaType,
            422 => Status::UnprocessableEntity,
            429 => Status::TooManyRequests,
            431 => Status::HeadersTooLarge,
            500 => Status::InternalError,
            503 => Status::Unavailable,
            // A mapping, not an action: an unexpected status is still counted.
            _ => Status::Other,
        }
    }
}

engine::labelled_enum! {
    /// How a purchase was answered, as its latency is counted: an order
    /// (201, or 200 for a replay) or anything else. Apart because the two
    /// differ by orders of magnitude (an admission waits for the log's
    /// fsync, a sold-out answer does not) and a flash sale answers mostly
    /// the second.
    pub enum LatencyClass {
        Admitted => "admitted",
        Refused => "refused",
    }
}

impl LatencyClass {
    #[inline]
    pub fn of(status: u16) -> LatencyClass {
        if status == 200 || status == 201 {
            LatencyClass::Admitted
        } else {
            LatencyClass::Refused
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    requests: [[AtomicU64; Status::COUNT]; Route::COUNT],
    /// Time from a purchase's head to its answer, per [`LatencyClass`].
    purchase_latency: [LatencyHistogram; LatencyClass::COUNT],
    pub admissions: AtomicU64,
    pub replays: AtomicU64,
    rejections: [AtomicU64; RejectionKind::COUNT],
    buyer_auth_rejections: [AtomicU64; AuthFailure::COUNT],
    pub rate_limited: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub expired_orders: AtomicU64,
    pub durable_errors: AtomicU64,
}

impl Metrics {
    #[inline]
    pub fn request(&self, route: Route, status: u16) {
        self.requests[route as usize][Status::of(status) as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a purchase answered with `status` after `took`.
    #[inline]
    pub fn purchase_answered(&self, status: u16, took: Duration) {
        self.purchase_latency[LatencyClass::of(status) as usize].record(took);
    }

    pub fn purchase_latency(&self, class: LatencyClass) -> &LatencyHistogram {
        &self.purchase_latency[class as usize]
    }

    /// Requests of `route` answered so far, whatever the status.
    pub fn requests_total(&self, route: Route) -> u64 {
        self.requests[route as usize]
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum()
    }

    /// Purchases the engine rejected with `kind`, so far.
    pub fn rejections_of(&self, kind: RejectionKind) -> u64 {
        self.rejections[kind as usize].load(Ordering::Relaxed)
    }

    #[inline]
    pub fn rejection(&self, r: Rejection) {
        self.rejections[r.kind() as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A buyer credential refused, by why (never told to the client).
    #[inline]
    pub fn buyer_auth_rejection(&self, why: AuthFailure) {
        self.buyer_auth_rejections[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn buyer_auth_rejections_of(&self, why: AuthFailure) -> u64 {
        self.buyer_auth_rejections[why as usize].load(Ordering::Relaxed)
    }

    pub fn requests_of(&self, route: Route, status: u16) -> u64 {
        self.requests[route as usize][Status::of(status) as usize].load(Ordering::Relaxed)
    }

    /// Renders the counters (plus the gauges passed in) in Prometheus text format.
    pub fn render(
        &self,
        out: &mut String,
        sales: &[engine::SaleView],
        wal: Option<&crate::wal::WalStats>,
    ) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        out.push_str(
            "# HELP flashsale_requests_total HTTP requests answered, by route and status.\n",
        );
        out.push_str("# TYPE flashsale_requests_total counter\n");
        for route in Route::ALL {
            for status in Status::ALL {
                let n = load(&self.requests[route as usize][status as usize]);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "flashsale_requests_total{{route=\"{}\",status=\"{}\"}} {n}",
                        route.as_str(),
                        status.as_str()
                    );
                }
            }
        }
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            out,
            "flashsale_admissions_total",
            "Purchases admitted (and acknowledged).",
            load(&self.admissions),
        );
        counter(
            out,
            "flashsale_replays_total",
            "Idempotent purchase replays answered.",
            load(&self.replays),
        );
        counter(
            out,
            "flashsale_rate_limited_total",
            "Requests refused with 429.",
            load(&self.rate_limited),
        );
        counter(
            out,
            "flashsale_connections_total",
            "Connections accepted.",
            load(&self.connections_total),
        );
        counter(
            out,
            "flashsale_expired_orders_total",
            "Reservations expired by the ticker.",
            load(&self.expired_orders),
        );
        counter(
            out,
            "flashsale_durability_errors_total",
            "Acknowledgements refused because the log failed.",
            load(&self.durable_errors),
        );
        let _ = writeln!(
            out,
            "# HELP flashsale_connections_open Connections open now.\n# TYPE flashsale_connections_open gauge\nflashsale_connections_open {}",
            load(&self.connections_open)
        );
        out.push_str(
            "# HELP flashsale_rejections_total Purchases rejected by the engine, by reason.\n",
        );
        out.push_str("# TYPE flashsale_rejections_total counter\n");
        for kind in RejectionKind::ALL {
            let _ = writeln!(
                out,
                "flashsale_rejections_total{{reason=\"{}\"}} {}",
                kind.as_str(),
                load(&self.rejections[kind as usize])
            );
        }
        out.push_str(
            "# HELP flashsale_buyer_auth_rejections_total Buyer credentials refused, by reason.\n",
        );
        out.push_str("# TYPE flashsale_buyer_auth_rejections_total counter\n");
        for why in AuthFailure::ALL {
            let _ = writeln!(
                out,
                "flashsale_buyer_auth_rejections_total{{reason=\"{}\"}} {}",
                why.as_str(),
                load(&self.buyer_auth_rejections[why as usize])
            );
        }
        let name = "flashsale_purchase_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from a purchase's request head to its answer, by outcome (admitted: 201 or 200).\n# TYPE {name} histogram"
        );
        for class in LatencyClass::ALL {
            let labels = format!("outcome=\"{}\"", class.as_str());
            self.purchase_latency(class)
                .read()
                .render_prometheus(out, name, &labels);
        }
        out.push_str("# HELP flashsale_sale_remaining Units of a sale not held by any order.\n");
        out.push_str("# TYPE flashsale_sale_remaining gauge\n");
        for sale in sales {
            let _ = writeln!(
                out,
                "flashsale_sale_remaining{{sku=\"{}\"}} {}",
                sale.sku, sale.remaining
            );
        }
        out.push_str("# HELP flashsale_sale_reserved Units held by reserved orders.\n");
        out.push_str("# TYPE flashsale_sale_reserved gauge\n");
        for sale in sales {
            let _ = writeln!(
                out,
                "flashsale_sale_reserved{{sku=\"{}\"}} {}",
                sale.sku, sale.reserved
            );
        }
        out.push_str("# HELP flashsale_sale_paid Units in paid orders.\n");
        out.push_str("# TYPE flashsale_sale_paid gauge\n");
        for sale in sales {
            let _ = writeln!(
                out,
                "flashsale_sale_paid{{sku=\"{}\"}} {}",
                sale.sku, sale.paid
            );
        }
        let Some(w) = wal else { return };
        let _ = writeln!(
            out,
            "# HELP flashsale_wal_queue_depth Events queued for the log writer.\n# TYPE flashsale_wal_queue_depth gauge\nflashsale_wal_queue_depth {}",
            w.queue_depth
        );
        let _ = writeln!(
            out,
            "# HELP flashsale_wal_retained_bytes Log bytes on disk (segments kept for recovery and for the export).\n# TYPE flashsale_wal_retained_bytes gauge\nflashsale_wal_retained_bytes {}",
            w.retained_bytes
        );
        let _ = writeln!(
            out,
            "# HELP flashsale_wal_failed 1 once the log has failed and refuses writes.\n# TYPE flashsale_wal_failed gauge\nflashsale_wal_failed {}",
            u8::from(w.failed)
        );
        counter(
            out,
            "flashsale_wal_records_total",
            "Records written to the log.",
            w.records_written,
        );
        counter(
            out,
            "flashsale_wal_bytes_total",
            "Bytes written to the log.",
            w.bytes_written,
        );
        counter(
            out,
            "flashsale_wal_fsyncs_total",
            "fdatasync calls.",
            w.fsyncs,
        );
        counter(
            out,
            "flashsale_wal_snapshots_total",
            "Snapshots written.",
            w.snapshots,
        );
        histogram(
            out,
            "flashsale_wal_batch_records",
            "Records per group-commit batch.",
            &w.batch_records,
            w.batch_records_sum as f64,
        );
        histogram(
            out,
            "flashsale_wal_fsync_seconds",
            "fdatasync latency.",
            &w.fsync_latency_us
                .iter()
                .map(|&(le, n)| (le, n))
                .collect::<Vec<_>>(),
            w.fsync_latency_sum_us as f64 / 1e6,
        );
    }
}

/// Writes a cumulative histogram. Buckets of `fsync_seconds` come in µs and
/// are rescaled to seconds by name.
fn histogram(out: &mut String, name: &str, help: &str, buckets: &[(u64, u64)], sum: f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let seconds = name.ends_with("_seconds");
    let mut count = 0;
    for &(le, n) in buckets {
        count = count.max(n);
        if le == u64::MAX {
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        } else if seconds {
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {n}", le as f64 / 1e6);
        } else {
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
        }
    }
    if buckets.last().is_none_or(|&(le, _)| le != u64::MAX) {
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    }
    let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each status label is the code `Status::of` maps to it, so a status
    /// added to the enum but not to `of` (or the other way) fails here.
    #[test]
    fn status_labels_are_their_codes() {
        for status in Status::ALL {
            match status.as_str().parse::<u16>() {
                Ok(code) => assert_eq!(Status::of(code), status, "{code}"),
                Err(_) => assert_eq!(status, Status::Other),
            }
        }
        assert_eq!(Status::of(302), Status::Other);
    }

    /// Every rejection is counted under its own label.
    #[test]
    fn rejections_are_counted_by_kind() {
        let m = Metrics::default();
        m.rejection(Rejection::SoldOut);
        m.rejection(Rejection::Unavailable(engine::SinkError::Failed));
        let mut out = String::new();
        m.render(&mut out, &[], None);
        for kind in engine::RejectionKind::ALL {
            let n = u64::from(matches!(kind.as_str(), "sold_out" | "unavailable"));
            let line = format!(
                "flashsale_rejections_total{{reason=\"{}\"}} {n}\n",
                kind.as_str()
            );
            assert!(out.contains(&line), "{line}");
        }
    }
}

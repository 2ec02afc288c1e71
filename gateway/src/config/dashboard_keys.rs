//! The `[dashboard]` keys: the live dashboard's stream and snapshots
//! (`crate::dashboard`). Part of the one table of keys (`keys.rs`'s
//! `KEYS`), in a file of its own for its size.

use std::time::Duration;

use super::key_kind::{narrow, ConfigKey, KeyKind};

/// `[dashboard]`, the last section.
pub(super) static DASHBOARD_KEYS: &[ConfigKey] = &[
    ConfigKey {
        section: "dashboard",
        name: "interval_ms",
        doc: "Period of the dashboard's snapshot: the stream sends each, /v1/admin/stats answers the latest.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: 1_000,
            min: 10,
            max: 60_000,
            zero_allowed: false,
            set: |c, v| c.dashboard.interval = Duration::from_millis(v),
            // At most a minute by the range above, so it fits.
            get: |c| c.dashboard.interval.as_millis() as u64,
        },
    },
    ConfigKey {
        section: "dashboard",
        name: "stream_subscribers_max",
        doc: "Subscribers of /v1/admin/stream at once; one more gets 503.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: 8,
            min: 1,
            max: 1_024,
            zero_allowed: false,
            set: |c, v| c.dashboard.stream_subscribers_max = narrow(v),
            get: |c| u64::from(c.dashboard.stream_subscribers_max),
        },
    },
    ConfigKey {
        section: "dashboard",
        name: "stream_buffer_snapshots",
        doc: "Snapshots queued for a stream subscriber that has not taken them; one more and it is dropped.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: 4,
            min: 1,
            max: 64,
            zero_allowed: false,
            set: |c, v| c.dashboard.stream_buffer_snapshots = narrow(v),
            get: |c| u64::from(c.dashboard.stream_buffer_snapshots),
        },
    },
    ConfigKey {
        section: "dashboard",
        name: "sales_max",
        doc: "Most sales a snapshot shows (the newest).",
        secret: false,
        kind: KeyKind::Unsigned {
            default: 32,
            min: 1,
            max: 1_024,
            zero_allowed: false,
            set: |c, v| c.dashboard.sales_max = narrow(v),
            get: |c| u64::from(c.dashboard.sales_max),
        },
    },
    ConfigKey {
        section: "dashboard",
        name: "history_points",
        doc: "Chart points (one per snapshot) a new stream subscriber gets first; 0 = none.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: 300,
            min: 0,
            max: 3_600,
            zero_allowed: true,
            set: |c, v| c.dashboard.history_points = narrow(v),
            get: |c| u64::from(c.dashboard.history_points),
        },
    },
];

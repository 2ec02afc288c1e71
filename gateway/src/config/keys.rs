//! The table of configuration keys: each key declared once, with its type,
//! default, range, one-line doc and the typed field it fills.
//!
//! Everything else reads this table: the TOML reader and the
//! `FLASHSALE_<SECTION>_<KEY>` overrides find keys in it, validation applies
//! its ranges, the start-up log prints its keys, and a test holds the
//! repository's `config.toml` to its defaults. Adding a key is one entry
//! here plus the typed field its `set` fills.
//!
//! Defaults and minimums that another crate needs too (the log's, the
//! engine's) are that crate's consts, named here rather than copied, so
//! there is one number to change. The maximums are this binary's: they keep
//! an operator's typo (an extra zero or three) from becoming a server that
//! starts and then falls over.

use std::sync::LazyLock;
use std::time::Duration;

use persistence::{FsyncMode, WalConfig};

pub use super::key_kind::{ConfigKey, KeyKind};

use super::buyer_keys::BUYER_AUTH_KEYS;
use super::dashboard_keys::DASHBOARD_KEYS;
use super::key_kind::narrow;
use super::types::TrustedProxies;
use crate::export::{
    TablePrefix, LANES_MAX, STATEMENT_TIMEOUT_DEFAULT, TABLE_PREFIX_DEFAULT, TABLE_PREFIX_LEN_MAX,
};

/// Largest request body a config may allow; bodies are small JSON objects.
pub const BODY_BYTES_LIMIT_MAX: u64 = 1 << 20;
/// Most connections a config may allow.
pub const CONNECTIONS_LIMIT_MAX: u64 = 1 << 20;
/// Most I/O threads a config may ask for.
pub const IO_THREADS_MAX: u64 = 256;
/// Most engine shards a config may ask for.
pub const SHARDS_MAX: u64 = 1024;
/// The documented admin token. The server refuses to start with it on a
/// non-loopback address, and warns about it on loopback.
pub const ADMIN_TOKEN_DEFAULT: &str = "change-me";
/// Highest rate (and burst) a limiter may be given: far above any real
/// sale, low enough that token arithmetic cannot overflow.
const RATE_MAX: u64 = 1 << 32;

/// Variables that start with `FLASHSALE_` but are not configuration keys:
/// the loader accepts and ignores exactly these, and refuses any other
/// `FLASHSALE_*` variable that names no key (a typo must not go unnoticed).
pub const NOT_CONFIG_VARIABLES: &[(&str, &str)] = &[
    (
        "FLASHSALE_BIN",
        "the server binary the load tester starts (loadtest, compare.sh, scripts/bench/with_dashboard.sh)",
    ),
    (
        "FLASHSALE_PORT",
        "the port loadtest/bench/compare.sh serves on",
    ),
    (
        "FLASHSALE_CRASH_SEED",
        "replays a run of gateway/tests/crash.rs",
    ),
    (
        "FLASHSALE_CRASH_CYCLES",
        "kill cycles of gateway/tests/crash.rs",
    ),
    (
        "FLASHSALE_STRESS_ATTEMPTS",
        "attempts per thread of engine/tests/stress.rs",
    ),
];

/// Every key, in the order of `config.toml` and the start-up log: the
/// serving keys, `[buyer_auth]` (`buyer_keys.rs`), the storage keys, then
/// `[dashboard]` (`dashboard_keys.rs`).
pub static KEYS: LazyLock<Vec<&'static ConfigKey>> = LazyLock::new(|| {
    (SERVING_KEYS.iter())
        .chain(BUYER_AUTH_KEYS)
        .chain(STORAGE_KEYS)
        .chain(DASHBOARD_KEYS)
        .collect()
});

/// `[server]`, `[engine]` and `[rate_limit]`.
static SERVING_KEYS: &[ConfigKey] = &[
    // [server]
    ConfigKey {
        section: "server",
        name: "listen",
        doc: "Address to listen on; port 0 picks a free port.",
        secret: false,
        kind: KeyKind::SocketAddr {
            default: "127.0.0.1:8080",
            set: |c, v| c.server.listen = v,
            get: |c| c.server.listen,
        },
    },
    ConfigKey {
        section: "server",
        name: "admin_token",
        doc: "Bearer token for /v1/admin/* and /v1/orders/{id}/pay.",
        secret: true,
        kind: KeyKind::Text {
            default: ADMIN_TOKEN_DEFAULT,
            max_bytes: 256,
            shape: |_| Ok(()),
            set: |c, v| c.server.admin_token = v.to_string(),
            get: |c| &c.server.admin_token,
        },
    },
    ConfigKey {
        section: "server",
        name: "max_connections",
        doc: "Connections served at once; more wait in the accept backlog.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: 10_000,
            min: 1,
            max: CONNECTIONS_LIMIT_MAX,
            zero_allowed: false,
            set: |c, v| c.server.max_connections = narrow(v),
            get: |c| u64::from(c.server.max_connections),
        },
    },
    ConfigKey {
        section: "server",
        name: "header_read_timeout_ms",
        doc: "Time allowed to send a request's head (and body); idle keep-alive limit.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: 5_000,
            min: 1,
            max: 3_600_000,
            zero_allowed: false,
            set: |c, v| c.server.header_read_timeout = Duration::from_millis(v),
            // At most an hour by the range above, so it fits.
            get: |c| c.server.header_read_timeout.as_millis() as u64,
        },
    },
    ConfigKey {
        section: "server",
        name: "max_body_bytes",
        doc: "Largest request body; larger gets 413.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: 4096,
            min: 64,
            max: BODY_BYTES_LIMIT_MAX,
            zero_allowed: false,
            set: |c, v| c.server.max_body_bytes = v,
            get: |c| c.server.max_body_bytes,
        },
    },
    ConfigKey {
        section: "server",
        name: "io_threads",
        doc: "Threads serving HTTP connections; 0 = one per core.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: 0,
            min: 0,
            max: IO_THREADS_MAX,
            zero_allowed: true,
            set: |c, v| c.server.io_threads = narrow(v),
            get: |c| u64::from(c.server.io_threads),
        },
    },
    // [engine]
    ConfigKey {
        section: "engine",
        name: "shards",
        doc: "Engine shards; 0 = one per core.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: 0,
            min: 0,
            max: SHARDS_MAX,
            zero_allowed: true,
            // 0 is resolved here, so the log shows the count in use.
            set: |c, v| {
                c.engine.shards = match v {
                    0 => engine::EngineConfig::default().shards,
                    n => narrow(n),
                }
            },
            get: |c| u64::from(c.engine.shards),
        },
    },
    ConfigKey {
        section: "engine",
        name: "max_orders_per_sale",
        doc: "Orders one sale may make (cancelled and expired included).",
        secret: false,
        kind: KeyKind::Unsigned {
            default: engine::MAX_ORDERS_PER_SALE_DEFAULT,
            min: 1,
            max: engine::ORDERS_PER_SALE_MAX,
            zero_allowed: false,
            set: |c, v| c.engine.max_orders_per_sale = v,
            get: |c| c.engine.max_orders_per_sale,
        },
    },
    // [rate_limit]: 0 turns a limiter off; a burst of 0 means `rps`
    // (resolved after all keys are read, see `load::resolve_bursts`).
    ConfigKey {
        section: "rate_limit",
        name: "global_rps",
        doc: "Refill rate of the global token bucket; 0 = off.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: 0,
            min: 0,
            max: RATE_MAX,
            zero_allowed: true,
            set: |c, v| c.rate_limit.global_rps = v,
            get: |c| c.rate_limit.global_rps,
        },
    },
    ConfigKey {
        section: "rate_limit",
        name: "global_burst",
        doc: "Capacity of the global token bucket; 0 = global_rps.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: 0,
            min: 0,
            max: RATE_MAX,
            zero_allowed: true,
            set: |c, v| c.rate_limit.global_burst = v,
            get: |c| c.rate_limit.global_burst,
        },
    },
    ConfigKey {
        section: "rate_limit",
        name: "per_client_rps",
        doc: "Refill rate of each client's token bucket; 0 = off.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: 0,
            min: 0,
            max: RATE_MAX,
            zero_allowed: true,
            set: |c, v| c.rate_limit.per_client_rps = v,
            get: |c| c.rate_limit.per_client_rps,
        },
    },
    ConfigKey {
        section: "rate_limit",
        name: "per_client_burst",
        doc: "Capacity of each client's token bucket; 0 = per_client_rps.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: 0,
            min: 0,
            max: RATE_MAX,
            zero_allowed: true,
            set: |c, v| c.rate_limit.per_client_burst = v,
            get: |c| c.rate_limit.per_client_burst,
        },
    },
    ConfigKey {
        section: "rate_limit",
        name: "per_ip_rps",
        doc: "Refill rate of each address's purchase bucket (IPv6 by /64); 0 = off.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: 0,
            min: 0,
            max: RATE_MAX,
            zero_allowed: true,
            set: |c, v| c.rate_limit.per_ip_rps = v,
            get: |c| c.rate_limit.per_ip_rps,
        },
    },
    ConfigKey {
        section: "rate_limit",
        name: "per_ip_burst",
        doc: "Capacity of each address's purchase bucket; 0 = per_ip_rps.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: 0,
            min: 0,
            max: RATE_MAX,
            zero_allowed: true,
            set: |c, v| c.rate_limit.per_ip_burst = v,
            get: |c| c.rate_limit.per_ip_burst,
        },
    },
    ConfigKey {
        section: "rate_limit",
        name: "trusted_proxies",
        doc: "Peers (ip or ip/prefix, comma-separated) whose X-Forwarded-For is believed.",
        secret: false,
        kind: KeyKind::OptionalText {
            max_bytes: 4096,
            shape: |v| TrustedProxies::parse(v).map(|_| ()),
            set: |c, v| {
                c.trusted_proxies =
                    TrustedProxies::parse(v.unwrap_or("")).expect("checked by the shape")
            },
            get: |c| c.trusted_proxies.text(),
        },
    },
];

/// The log and the export, after `[buyer_auth]`.
static STORAGE_KEYS: &[ConfigKey] = &[
    // [wal]: defaults and minimums are persistence's own consts.
    ConfigKey {
        section: "wal",
        name: "dir",
        doc: "Directory of the write-ahead log and its snapshots.",
        secret: false,
        kind: KeyKind::Dir {
            default: "./data/wal",
            set: |c, v| c.wal.dir = v.to_path_buf(),
            get: |c| &c.wal.dir,
        },
    },
    ConfigKey {
        section: "wal",
        name: "fsync",
        doc: "When a purchase is durable: always, interval, never (benchmarks only).",
        secret: false,
        kind: KeyKind::Choice {
            default: WalConfig::FSYNC_DEFAULT.as_str(),
            choices: &FSYNC_CHOICES,
            set: |c, v| c.wal.fsync = v.parse().expect("one of FSYNC_CHOICES"),
            get: |c| c.wal.fsync.as_str(),
        },
    },
    ConfigKey {
        section: "wal",
        name: "fsync_interval_ms",
        doc: "Sync period in interval mode (the loss window on power failure).",
        secret: false,
        kind: KeyKind::Unsigned {
            default: WalConfig::FSYNC_INTERVAL_MS_DEFAULT,
            min: WalConfig::FSYNC_INTERVAL_MS_MIN,
            max: 60_000,
            zero_allowed: false,
            set: |c, v| c.wal.fsync_interval_ms = v,
            get: |c| c.wal.fsync_interval_ms,
        },
    },
    ConfigKey {
        section: "wal",
        name: "segment_bytes",
        doc: "Size at which a log segment is closed and the next one opened.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: WalConfig::SEGMENT_BYTES_DEFAULT,
            min: WalConfig::SEGMENT_BYTES_MIN,
            max: 1 << 40,
            zero_allowed: false,
            set: |c, v| c.wal.segment_bytes = v,
            get: |c| c.wal.segment_bytes,
        },
    },
    ConfigKey {
        section: "wal",
        name: "snapshot_every_records",
        doc: "Snapshot after this many records; 0 = never.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: WalConfig::SNAPSHOT_EVERY_RECORDS_DEFAULT,
            min: 0,
            max: 1 << 40,
            zero_allowed: true,
            set: |c, v| c.wal.snapshot_every_records = v,
            get: |c| c.wal.snapshot_every_records,
        },
    },
    ConfigKey {
        section: "wal",
        name: "queue_capacity",
        doc: "Events queued for the writer at most; when full, purchases get 503.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: WalConfig::QUEUE_CAPACITY_DEFAULT as u64,
            min: WalConfig::QUEUE_CAPACITY_MIN as u64,
            max: 1 << 24,
            zero_allowed: false,
            set: |c, v| c.wal.queue_capacity = narrow(v),
            get: |c| u64::from(c.wal.queue_capacity),
        },
    },
    ConfigKey {
        section: "wal",
        name: "group_commit_delay_us",
        doc: "In always mode, wait this long for more records before a sync; 0 = never wait.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: WalConfig::GROUP_COMMIT_DELAY_US_DEFAULT,
            min: 0,
            max: 100_000,
            zero_allowed: true,
            set: |c, v| c.wal.group_commit_delay_us = v,
            get: |c| c.wal.group_commit_delay_us,
        },
    },
    ConfigKey {
        section: "wal",
        name: "writer_slice_us",
        doc: "Scheduler time slice of the log writer thread; 0 = the kernel's default.",
        secret: false,
        // The kernel clamps a slice to 100..=100000 µs; 0 asks for none.
        kind: KeyKind::Unsigned {
            default: WalConfig::WRITER_SLICE_US_DEFAULT,
            min: 100,
            max: 100_000,
            zero_allowed: true,
            set: |c, v| c.wal.writer_slice_us = v,
            get: |c| c.wal.writer_slice_us,
        },
    },
    ConfigKey {
        section: "wal",
        name: "writer_nice",
        doc: "Nice value of the log writer thread; 0 = inherit.",
        secret: false,
        kind: KeyKind::Signed {
            default: WalConfig::WRITER_NICE_DEFAULT as i64,
            min: -20,
            max: 19,
            set: |c, v| c.wal.writer_nice = i32::try_from(v).expect("-20..=19 fits i32"),
            get: |c| i64::from(c.wal.writer_nice),
        },
    },
    // [export]
    ConfigKey {
        section: "export",
        name: "postgres_url",
        doc:
            "PostgreSQL to export orders into (postgres://user:password@host:port/db); empty = off.",
        secret: true,
        kind: KeyKind::OptionalText {
            max_bytes: 1024,
            // Its text, which holds the password, is never repeated.
            shape: |v| {
                v.parse::<tokio_postgres::Config>()
                    .map(|_| ())
                    .map_err(|_| {
                        "not a PostgreSQL URL (postgres://user:password@host:port/dbname) \
                     or key=value connection string"
                            .to_string()
                    })
            },
            set: |c, v| c.export.postgres_url = v.map(str::to_string),
            get: |c| c.export.postgres_url.as_deref(),
        },
    },
    ConfigKey {
        section: "export",
        name: "table_prefix",
        doc: "Prefix of the export's tables ([a-z_][a-z0-9_]*).",
        secret: false,
        kind: KeyKind::Text {
            default: TABLE_PREFIX_DEFAULT,
            max_bytes: TABLE_PREFIX_LEN_MAX,
            shape: |v| TablePrefix::new(v).map(|_| ()).map_err(|e| e.to_string()),
            set: |c, v| c.export.table_prefix = v.to_string(),
            get: |c| &c.export.table_prefix,
        },
    },
    ConfigKey {
        section: "export",
        name: "max_lag_bytes",
        doc: "Log kept on disk for a lagging export past which purchases get 503.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: 4 << 30,
            min: 1 << 20,
            max: 1 << 50,
            zero_allowed: false,
            set: |c, v| c.export.max_lag_bytes = v,
            get: |c| c.export.max_lag_bytes,
        },
    },
    ConfigKey {
        section: "export",
        name: "batch_records",
        doc: "Most log records one export transaction carries.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: 10_000,
            min: 1,
            max: 1_000_000,
            zero_allowed: false,
            set: |c, v| c.export.batch_records = narrow(v),
            get: |c| u64::from(c.export.batch_records),
        },
    },
    ConfigKey {
        section: "export",
        name: "connections",
        doc: "Connections the export writes over side by side, each with its share of the orders.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: 2,
            min: 1,
            max: LANES_MAX as u64,
            zero_allowed: false,
            set: |c, v| c.export.connections = narrow(v),
            get: |c| u64::from(c.export.connections),
        },
    },
    ConfigKey {
        section: "export",
        name: "statement_timeout_ms",
        doc: "Longest one export statement may run before PostgreSQL cancels it.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: STATEMENT_TIMEOUT_DEFAULT.as_millis() as u64,
            min: 100,
            max: 3_600_000,
            zero_allowed: false,
            set: |c, v| c.export.statement_timeout = Duration::from_millis(v),
            // At most an hour by the range above, so it fits.
            get: |c| c.export.statement_timeout.as_millis() as u64,
        },
    },
];

/// The names `wal.fsync` takes, from persistence's own list of modes.
const FSYNC_CHOICES: [&str; FsyncMode::ALL.len()] = [
    FsyncMode::ALL[0].as_str(),
    FsyncMode::ALL[1].as_str(),
    FsyncMode::ALL[2].as_str(),
];

//! Configuration: `config.toml` parsed into a raw, all-optional struct that
//! rejects unknown keys, then overridden from the environment
//! (`FLASHSALE_<SECTION>_<KEY>`) and validated into one typed config per crate.
//!
//! The loader is pure: it takes the file's text and the environment as
//! arguments, so tests never touch the process environment.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::wal::{FsyncMode, WalConfig};

/// A configuration problem, always naming the key at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("config file: {0}")]
    Parse(String),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("unknown configuration key {0}")]
    UnknownKey(String),
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        reason: reason.into(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    engine: RawEngine,
    #[serde(default)]
    rate_limit: RawRateLimit,
    #[serde(default)]
    wal: RawWal,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    admin_token: Option<String>,
    max_connections: Option<u64>,
    header_read_timeout_ms: Option<u64>,
    max_body_bytes: Option<u64>,
    io_threads: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    shards: Option<u64>,
    max_orders_per_sale: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    global_rps: Option<u64>,
    global_burst: Option<u64>,
    per_client_rps: Option<u64>,
    per_client_burst: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWal {
    dir: Option<String>,
    fsync: Option<String>,
    fsync_interval_ms: Option<u64>,
    segment_bytes: Option<u64>,
    snapshot_every_records: Option<u64>,
    queue_capacity: Option<u64>,
    group_commit_delay_us: Option<u64>,
    writer_slice_us: Option<u64>,
    writer_nice: Option<i64>,
}

/// Largest request body a config may allow; bodies are small JSON objects.
pub const BODY_BYTES_LIMIT_MAX: u64 = 1 << 20;
/// Most connections a config may allow.
pub const CONNECTIONS_LIMIT_MAX: u64 = 1 << 20;
/// Most I/O threads a config may ask for.
pub const IO_THREADS_MAX: u64 = 256;
/// Most engine shards a config may ask for.
pub const SHARDS_MAX: u64 = 1024;

/// `[server]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_token: String,
    pub max_connections: u32,
    pub header_read_timeout: Duration,
    pub max_body_bytes: u64,
    /// Threads serving connections, each with its own single-threaded
    /// runtime (0 = one per core).
    pub io_threads: u32,
}

/// `[rate_limit]`, validated. A rate of 0 turns that limiter off; a burst of 0
/// with a non-zero rate means a burst of one second's worth (`rps`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub global_rps: u64,
    pub global_burst: u64,
    pub per_client_rps: u64,
    pub per_client_burst: u64,
}

/// The whole validated configuration: one part per crate.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub engine: engine::EngineConfig,
    pub rate_limit: RateLimitConfig,
    pub wal: WalConfig,
}

impl Config {
    /// Defaults for tests: port 0 on localhost, the given WAL directory.
    pub fn for_tests(wal_dir: impl Into<PathBuf>) -> Config {
        let mut config = load("", &[]).expect("defaults are valid");
        config.server.listen = "127.0.0.1:0".parse().expect("valid address");
        config.server.admin_token = "test-token".to_string();
        config.wal.dir = wal_dir.into();
        config.engine.shards = 2;
        config
    }
}

/// Parses `text` (the contents of config.toml), applies `FLASHSALE_*`
/// overrides from `env`, and validates.
pub fn load(text: &str, env: &[(String, String)]) -> Result<Config, ConfigError> {
    let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
    for (name, value) in env {
        apply_env(&mut raw, name, value)?;
    }
    validate(raw)
}

/// Sections an env var may address. `FLASHSALE_*` variables under any other
/// prefix (e.g. `FLASHSALE_CRASH_SEED`, used by tests) are not config keys and
/// are left alone; an unknown key under a known section is an error.
const SECTIONS: [&str; 4] = ["server", "engine", "rate_limit", "wal"];

fn apply_env(raw: &mut RawConfig, name: &str, value: &str) -> Result<(), ConfigError> {
    let Some(rest) = name.strip_prefix("FLASHSALE_") else {
        return Ok(());
    };
    let rest = rest.to_ascii_lowercase();
    let Some((section, key)) = SECTIONS.iter().find_map(|s| {
        rest.strip_prefix(s)
            .and_then(|k| k.strip_prefix('_'))
            .map(|k| (*s, k))
    }) else {
        return Ok(());
    };
    let num = || parse_number::<u64>(name, value, "an unsigned integer");
    let signed = || parse_number::<i64>(name, value, "an integer");
    let text = || Some(value.to_string());
    match (section, key) {
        ("server", "listen") => raw.server.listen = text(),
        ("server", "admin_token") => raw.server.admin_token = text(),
        ("server", "max_connections") => raw.server.max_connections = num()?,
        ("server", "header_read_timeout_ms") => raw.server.header_read_timeout_ms = num()?,
        ("server", "max_body_bytes") => raw.server.max_body_bytes = num()?,
        ("server", "io_threads") => raw.server.io_threads = num()?,
        ("engine", "shards") => raw.engine.shards = num()?,
        ("engine", "max_orders_per_sale") => raw.engine.max_orders_per_sale = num()?,
        ("rate_limit", "global_rps") => raw.rate_limit.global_rps = num()?,
        ("rate_limit", "global_burst") => raw.rate_limit.global_burst = num()?,
        ("rate_limit", "per_client_rps") => raw.rate_limit.per_client_rps = num()?,
        ("rate_limit", "per_client_burst") => raw.rate_limit.per_client_burst = num()?,
        ("wal", "dir") => raw.wal.dir = text(),
        ("wal", "fsync") => raw.wal.fsync = text(),
        ("wal", "fsync_interval_ms") => raw.wal.fsync_interval_ms = num()?,
        ("wal", "segment_bytes") => raw.wal.segment_bytes = num()?,
        ("wal", "snapshot_every_records") => raw.wal.snapshot_every_records = num()?,
        ("wal", "queue_capacity") => raw.wal.queue_capacity = num()?,
        ("wal", "group_commit_delay_us") => raw.wal.group_commit_delay_us = num()?,
        ("wal", "writer_slice_us") => raw.wal.writer_slice_us = num()?,
        ("wal", "writer_nice") => raw.wal.writer_nice = signed()?,
        _ => return Err(ConfigError::UnknownKey(name.to_string())),
    }
    Ok(())
}

/// An environment variable's value as a number; the error names the variable.
fn parse_number<T: std::str::FromStr>(
    name: &str,
    value: &str,
    what: &str,
) -> Result<Option<T>, ConfigError> {
    value
        .trim()
        .parse::<T>()
        .map(Some)
        .map_err(|_| invalid(name, format!("expected {what}, got {value:?}")))
}

fn range(key: &str, value: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    if value < min || value > max {
        return Err(invalid(
            key,
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
    Ok(value)
}

fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let s = raw.server;
    let listen = s.listen.as_deref().unwrap_or("127.0.0.1:8080");
    let listen: SocketAddr = listen
        .parse()
        .map_err(|_| invalid("server.listen", format!("expected ip:port, got {listen:?}")))?;
    let admin_token = s.admin_token.unwrap_or_else(|| "change-me".to_string());
    if admin_token.is_empty() || admin_token.len() > 256 {
        return Err(invalid("server.admin_token", "must be 1 to 256 bytes"));
    }
    let server = ServerConfig {
        listen,
        admin_token,
        max_connections: range(
            "server.max_connections",
            s.max_connections.unwrap_or(10_000),
            1,
            CONNECTIONS_LIMIT_MAX,
        )? as u32,
        header_read_timeout: Duration::from_millis(range(
            "server.header_read_timeout_ms",
            s.header_read_timeout_ms.unwrap_or(5_000),
            1,
            3_600_000,
        )?),
        max_body_bytes: range(
            "server.max_body_bytes",
            s.max_body_bytes.unwrap_or(4096),
            64,
            BODY_BYTES_LIMIT_MAX,
        )?,
        io_threads: range(
            "server.io_threads",
            s.io_threads.unwrap_or(0),
            0,
            IO_THREADS_MAX,
        )? as u32,
    };

    let shards = range(
        "engine.shards",
        raw.engine.shards.unwrap_or(0),
        0,
        SHARDS_MAX,
    )? as u32;
    let mut engine = if shards == 0 {
        engine::EngineConfig::default()
    } else {
        engine::EngineConfig::with_shards(shards)
    };
    engine.max_orders_per_sale = range(
        "engine.max_orders_per_sale",
        raw.engine
            .max_orders_per_sale
            .unwrap_or(engine::MAX_ORDERS_PER_SALE_DEFAULT),
        1,
        engine::ORDERS_PER_SALE_MAX,
    )?;

    let r = raw.rate_limit;
    let rate = |key: &str, v: Option<u64>| range(key, v.unwrap_or(0), 0, 1 << 32);
    let global_rps = rate("rate_limit.global_rps", r.global_rps)?;
    let global_burst = rate("rate_limit.global_burst", r.global_burst)?;
    let per_client_rps = rate("rate_limit.per_client_rps", r.per_client_rps)?;
    let per_client_burst = rate("rate_limit.per_client_burst", r.per_client_burst)?;
    let rate_limit = RateLimitConfig {
        global_rps,
        global_burst: if global_rps > 0 && global_burst == 0 {
            global_rps
        } else {
            global_burst
        },
        per_client_rps,
        per_client_burst: if per_client_rps > 0 && per_client_burst == 0 {
            per_client_rps
        } else {
            per_client_burst
        },
    };

    let w = raw.wal;
    let dir = w.dir.unwrap_or_else(|| "./data/wal".to_string());
    if dir.is_empty() {
        return Err(invalid("wal.dir", "must not be empty"));
    }
    let mut wal = WalConfig::new(dir);
    if let Some(fsync) = w.fsync {
        wal.fsync = fsync.parse::<FsyncMode>().map_err(|_| {
            invalid(
                "wal.fsync",
                format!("expected \"always\", \"interval\" or \"never\", got {fsync:?}"),
            )
        })?;
    }
    if let Some(v) = w.fsync_interval_ms {
        wal.fsync_interval_ms = range("wal.fsync_interval_ms", v, 1, 60_000)?;
    }
    if let Some(v) = w.segment_bytes {
        wal.segment_bytes = range("wal.segment_bytes", v, 4096, 1 << 40)?;
    }
    if let Some(v) = w.snapshot_every_records {
        wal.snapshot_every_records = v;
    }
    if let Some(v) = w.queue_capacity {
        wal.queue_capacity = range("wal.queue_capacity", v, 16, 1 << 24)? as u32;
    }
    if let Some(v) = w.group_commit_delay_us {
        wal.group_commit_delay_us = range("wal.group_commit_delay_us", v, 0, 100_000)?;
    }
    if let Some(v) = w.writer_slice_us {
        if v != 0 && !(100..=100_000).contains(&v) {
            return Err(invalid(
                "wal.writer_slice_us",
                format!("must be 0 (the kernel's default) or between 100 and 100000, got {v}"),
            ));
        }
        wal.writer_slice_us = v;
    }
    if let Some(v) = w.writer_nice {
        if !(-20..=19).contains(&v) {
            return Err(invalid(
                "wal.writer_nice",
                format!("must be between -20 and 19, got {v}"),
            ));
        }
        wal.writer_nice = v as i32;
    }
    Ok(Config {
        server,
        engine,
        rate_limit,
        wal,
    })
}

/// The effective configuration as one log line, the admin token masked.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.server;
        let r = &self.rate_limit;
        let w = &self.wal;
        write!(
            f,
            "server.listen={} server.admin_token=*** server.max_connections={} \
             server.header_read_timeout_ms={} server.max_body_bytes={} server.io_threads={} \
             engine.shards={} engine.max_orders_per_sale={} \
             rate_limit.global_rps={} rate_limit.global_burst={} rate_limit.per_client_rps={} \
             rate_limit.per_client_burst={} wal.dir={} wal.fsync={} wal.fsync_interval_ms={} \
             wal.segment_bytes={} wal.snapshot_every_records={} wal.queue_capacity={} \
             wal.group_commit_delay_us={} wal.writer_slice_us={} \
             wal.writer_nice={}",
            s.listen,
            s.max_connections,
            s.header_read_timeout.as_millis(),
            s.max_body_bytes,
            s.io_threads,
            self.engine.shards,
            self.engine.max_orders_per_sale,
            r.global_rps,
            r.global_burst,
            r.per_client_rps,
            r.per_client_burst,
            w.dir.display(),
            w.fsync,
            w.fsync_interval_ms,
            w.segment_bytes,
            w.snapshot_every_records,
            w.queue_capacity,
            w.group_commit_delay_us,
            w.writer_slice_us,
            w.writer_nice,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn documented_default_file_loads() {
        let text = include_str!("../../config.toml");
        let config = load(text, &[]).unwrap();
        assert_eq!(
            config.server.listen,
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(config.server.max_body_bytes, 4096);
        assert_eq!(config.server.io_threads, 0);
        assert_eq!(config.wal.fsync, FsyncMode::Always);
        assert!(!config.to_string().contains("change-me"));
    }

    #[test]
    fn env_overrides_file() {
        let text = "[server]\nlisten = \"127.0.0.1:1\"\n[wal]\nfsync = \"never\"\n";
        let e = env(&[
            ("FLASHSALE_SERVER_LISTEN", "127.0.0.1:9000"),
            ("FLASHSALE_WAL_DIR", "/tmp/x"),
            ("FLASHSALE_RATE_LIMIT_GLOBAL_RPS", "100"),
            ("FLASHSALE_CRASH_SEED", "7"),
            ("PATH", "/bin"),
        ]);
        let config = load(text, &e).unwrap();
        assert_eq!(config.server.listen.port(), 9000);
        assert_eq!(config.wal.dir, PathBuf::from("/tmp/x"));
        assert_eq!(config.wal.fsync, FsyncMode::Never);
        assert_eq!(config.rate_limit.global_rps, 100);
        assert_eq!(config.rate_limit.global_burst, 100);
        let e = env(&[("FLASHSALE_SERVER_IO_THREADS", "3")]);
        assert_eq!(load("", &e).unwrap().server.io_threads, 3);
        assert_eq!(
            load("", &env(&[])).unwrap().engine.max_orders_per_sale,
            engine::MAX_ORDERS_PER_SALE_DEFAULT
        );
        let e = env(&[("FLASHSALE_ENGINE_MAX_ORDERS_PER_SALE", "5")]);
        assert_eq!(load("", &e).unwrap().engine.max_orders_per_sale, 5);
        assert_eq!(load("", &env(&[])).unwrap().wal.writer_slice_us, 100);
        assert_eq!(load("", &env(&[])).unwrap().wal.writer_nice, -10);
        for v in [-20, 0, 19] {
            let e = env(&[("FLASHSALE_WAL_WRITER_NICE", &v.to_string())]);
            assert_eq!(load("", &e).unwrap().wal.writer_nice, v);
        }
        assert_eq!(
            load("[wal]\nwriter_nice = -5\n", &[])
                .unwrap()
                .wal
                .writer_nice,
            -5
        );
        for v in ["0", "100", "100000"] {
            let e = env(&[("FLASHSALE_WAL_WRITER_SLICE_US", v)]);
            assert_eq!(load("", &e).unwrap().wal.writer_slice_us.to_string(), v);
        }
    }

    #[test]
    fn errors_name_the_key() {
        let check = |text: &str, e: &[(&str, &str)], needle: &str| {
            let err = load(text, &env(e)).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        };
        check("[server]\nlisten_port = 1\n", &[], "listen_port");
        check("[bogus]\n", &[], "bogus");
        check(
            "[server]\nmax_connections = \"many\"\n",
            &[],
            "max_connections",
        );
        check("[wal]\nfsync = \"sometimes\"\n", &[], "wal.fsync");
        check("[server]\nlisten = \"nowhere\"\n", &[], "server.listen");
        check(
            "",
            &[("FLASHSALE_SERVER_MAX_CONNECTIONS", "x")],
            "FLASHSALE_SERVER_MAX_CONNECTIONS",
        );
        check("", &[("FLASHSALE_WAL_COLOUR", "x")], "FLASHSALE_WAL_COLOUR");
        check(
            "",
            &[("FLASHSALE_SERVER_MAX_BODY_BYTES", "0")],
            "server.max_body_bytes",
        );
        check("[server]\nio_threads = 257\n", &[], "server.io_threads");
        check(
            "[engine]\nmax_orders_per_sale = 0\n",
            &[],
            "engine.max_orders_per_sale",
        );
        check(
            "",
            &[(
                "FLASHSALE_ENGINE_MAX_ORDERS_PER_SALE",
                &(engine::ORDERS_PER_SALE_MAX + 1).to_string(),
            )],
            "engine.max_orders_per_sale",
        );
        for (v, needle) in [
            ("-21", "wal.writer_nice"),
            ("20", "wal.writer_nice"),
            ("x", "FLASHSALE_WAL_WRITER_NICE"),
        ] {
            check("", &[("FLASHSALE_WAL_WRITER_NICE", v)], needle);
        }
        check("[wal]\nwriter_nice = 20\n", &[], "wal.writer_nice");
        for v in ["1", "99", "100001"] {
            check(
                "",
                &[("FLASHSALE_WAL_WRITER_SLICE_US", v)],
                "wal.writer_slice_us",
            );
        }
    }
}

//! The validated configuration, one typed part per crate, and the loader's
//! error. The values come from the key table (`keys.rs`); these types say
//! nothing about defaults or ranges.

use std::net::SocketAddr;
use std::time::Duration;

use crate::wal::WalConfig;

/// A configuration problem, always naming the key or variable at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("config file: {0}")]
    Parse(String),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("unknown configuration key {0}")]
    UnknownKey(String),
    /// A `FLASHSALE_*` variable that is neither `FLASHSALE_<SECTION>_<KEY>`
    /// of a key nor one of the project's declared non-config variables.
    #[error(
        "environment variable {0} names no configuration key \
         (expected FLASHSALE_<SECTION>_<KEY>, e.g. FLASHSALE_RATE_LIMIT_GLOBAL_RPS)"
    )]
    UnknownVariable(String),
}

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

//! The validated configuration, one typed part per crate, and the loader's
//! error. The values come from the key table (`keys.rs`); these types say
//! nothing about defaults or ranges.

use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// Purchases per client address (an IPv6 address counts by its /64).
    pub per_ip_rps: u64,
    pub per_ip_burst: u64,
}

/// `[rate_limit] trusted_proxies`, validated: the peers whose
/// `X-Forwarded-For` is believed. Kept apart from [`RateLimitConfig`],
/// which is `Copy`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    /// (network address, prefix length) pairs.
    pub nets: Vec<(std::net::IpAddr, u8)>,
    /// As configured; `None` when empty.
    text: Option<String>,
}

impl TrustedProxies {
    /// Parses `ip` and `ip/prefix` entries separated by commas (spaces
    /// allowed around them); empty = none.
    pub fn parse(text: &str) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (addr, prefix) = match entry.split_once('/') {
                Some((addr, prefix)) => (addr, Some(prefix)),
                None => (entry, None),
            };
            let ip: std::net::IpAddr = addr
                .parse()
                .map_err(|_| format!("{entry:?} is not an IP address or ip/prefix"))?;
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => bits,
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|&p| p <= bits)
                    .ok_or_else(|| format!("{entry:?}: prefix must be 0 to {bits}"))?,
            };
            nets.push((ip, prefix));
        }
        let text = (!text.trim().is_empty()).then(|| text.to_string());
        Ok(TrustedProxies { nets, text })
    }

    /// The entries as configured; `None` when there are none.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// Whether `ip` is in one of the networks.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        self.nets.iter().any(|&(net, prefix)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            (IpAddr::V4(_), IpAddr::V6(_)) | (IpAddr::V6(_), IpAddr::V4(_)) => false,
        })
    }
}

engine::labelled_enum! {
    /// How a buyer proves who they are (`[buyer_auth] mode`).
    pub enum BuyerAuthMode {
        /// `Authorization: Bearer <JWT>`; the user is the token's `sub`.
        Jwt => "jwt",
        /// An upstream gateway authenticated the buyer and names them in a header.
        Header => "header",
        /// The client names itself in the body or query: benchmarks and tests.
        Body => "body",
    }
}

impl BuyerAuthMode {
    /// The names the key takes, in `ALL` order.
    pub const NAMES: [&'static str; Self::COUNT] = [
        Self::ALL[0].as_str(),
        Self::ALL[1].as_str(),
        Self::ALL[2].as_str(),
    ];

    pub fn named(name: &str) -> Option<BuyerAuthMode> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

engine::labelled_enum! {
    /// The one signature algorithm tokens must use; a token's own `alg`
    /// header never chooses it.
    pub enum JwtAlgorithm {
        Hs256 => "HS256",
        EdDsa => "EdDSA",
        Es256 => "ES256",
    }
}

impl JwtAlgorithm {
    /// The names the key takes, in `ALL` order.
    pub const NAMES: [&'static str; Self::COUNT] = [
        Self::ALL[0].as_str(),
        Self::ALL[1].as_str(),
        Self::ALL[2].as_str(),
    ];

    pub fn named(name: &str) -> Option<JwtAlgorithm> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// `[buyer_auth]`, validated key by key. Whether the keys fit together
/// (a secret for HS256, a public key for the others) is checked where the
/// key material is read, at start (`crate::buyer_auth::BuyerAuth::load`).
#[derive(Clone, PartialEq, Eq)]
pub struct BuyerAuthConfig {
    pub mode: BuyerAuthMode,
    pub algorithm: JwtAlgorithm,
    /// The HS256 secret; never logged.
    pub secret: Option<String>,
    /// A file holding the HS256 secret (trailing newline ignored).
    pub secret_file: Option<PathBuf>,
    /// PEM public key for EdDSA or ES256.
    pub public_key_file: Option<PathBuf>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_s: u64,
    /// Header mode: the header naming the user (lower case).
    pub user_header: String,
    /// Refuse tokens without a `skus` claim.
    pub require_sku_claim: bool,
}

/// Hand-written so the secret stays out of `{:?}`.
impl std::fmt::Debug for BuyerAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuyerAuthConfig")
            .field("mode", &self.mode)
            .field("algorithm", &self.algorithm)
            .field("secret", &self.secret.as_ref().map(|_| "<hidden>"))
            .field("secret_file", &self.secret_file)
            .field("public_key_file", &self.public_key_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_s", &self.leeway_s)
            .field("user_header", &self.user_header)
            .field("require_sku_claim", &self.require_sku_claim)
            .finish()
    }
}

/// `[export]`, validated: the relay of order events into PostgreSQL.
#[derive(Clone, PartialEq, Eq)]
pub struct ExportConfig {
    /// Where to; `None` (the key left empty) turns the export off.
    pub postgres_url: Option<String>,
    /// Prefix of every table the export writes.
    pub table_prefix: String,
    /// Log bytes on disk past which purchases are refused with 503 while
    /// the export lags (the log keeps what is not exported yet).
    pub max_lag_bytes: u64,
    /// Most events one batch (one transaction) carries.
    pub batch_records: u32,
    /// Connections (lanes) the export writes over side by side.
    pub connections: u32,
    /// Longest one statement may run before PostgreSQL cancels it.
    pub statement_timeout: Duration,
}

/// Hand-written so the URL, and the password in it, stay out of `{:?}`.
impl std::fmt::Debug for ExportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportConfig")
            .field(
                "postgres_url",
                &self.postgres_url.as_ref().map(|_| "<hidden>"),
            )
            .field("table_prefix", &self.table_prefix)
            .field("max_lag_bytes", &self.max_lag_bytes)
            .field("batch_records", &self.batch_records)
            .field("connections", &self.connections)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

/// `[dashboard]`, validated: the live snapshots of `GET /v1/admin/stats`
/// and the stream of `GET /v1/admin/stream` (`crate::dashboard`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DashboardConfig {
    /// Period of the snapshot.
    pub interval: Duration,
    /// Stream subscribers served at once; one more gets 503.
    pub stream_subscribers_max: u32,
    /// Snapshots queued for one subscriber; a subscriber with a full queue
    /// is dropped.
    pub stream_buffer_snapshots: u32,
    /// Most sales one snapshot carries (the newest).
    pub sales_max: u32,
    /// Chart points kept for a new subscriber (one per snapshot).
    pub history_points: u32,
}

/// The whole validated configuration: one part per crate.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub engine: engine::EngineConfig,
    pub rate_limit: RateLimitConfig,
    pub trusted_proxies: TrustedProxies,
    pub buyer_auth: BuyerAuthConfig,
    pub wal: WalConfig,
    pub export: ExportConfig,
    pub dashboard: DashboardConfig,
}

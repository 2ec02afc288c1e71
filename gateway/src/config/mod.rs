//! Configuration: `config.toml` and `FLASHSALE_<SECTION>_<KEY>` overrides,
//! validated into one typed config per crate.
//!
//! Every key is declared once, in [`KEYS`] (`keys.rs`): name, type, default,
//! bounds, a one-line doc, and the typed field it fills. The loader
//! (`load.rs`), the environment overrides, validation, the start-up log and
//! the test that holds the repository's `config.toml` to the table
//! (`tests.rs`) all read that table, so a key cannot be known to one and
//! missing from another. Defaults that another crate also needs are that
//! crate's consts (`persistence::WalConfig::*_DEFAULT`,
//! `engine::MAX_ORDERS_PER_SALE_DEFAULT`), named in the table, not copied.
//!
//! Files: `types.rs` the typed configs and the error; `key_kind.rs` what a
//! key is; `keys.rs` the table (its `[buyer_auth]` and `[dashboard]` parts in `buyer_keys.rs` and `dashboard_keys.rs`); `load.rs` the loader and the log line.
//! Imports go one way (types <- key_kind <- buyer_keys, dashboard_keys <- keys <- load), so no two files
//! import each other.

mod buyer_keys;
mod dashboard_keys;
mod key_kind;
mod keys;
mod load;
mod types;

#[cfg(test)]
mod tests;

pub use keys::{
    ConfigKey, KeyKind, ADMIN_TOKEN_DEFAULT, BODY_BYTES_LIMIT_MAX, CONNECTIONS_LIMIT_MAX,
    IO_THREADS_MAX, KEYS, NOT_CONFIG_VARIABLES, SHARDS_MAX,
};
pub use load::load;
pub use types::{
    BuyerAuthConfig, BuyerAuthMode, Config, ConfigError, DashboardConfig, ExportConfig,
    JwtAlgorithm, RateLimitConfig, ServerConfig, TrustedProxies,
};

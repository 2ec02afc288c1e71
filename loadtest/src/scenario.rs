//! The scenario: every knob of a flash-sale simulation, with defaults.
//!
//! A scenario comes from three layers, later ones winning: the built-in
//! defaults, an optional TOML file (`--scenario FILE`), then command-line
//! flags. The file is parsed with `deny_unknown_fields` so a typo in a key is
//! an error instead of a silently ignored setting.

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Upper bound on simulated users; the harness keeps a few bytes per user and
/// per acknowledged order, so this keeps memory bounded (about 1 GiB worst case).
pub const USERS_MAX: u64 = 10_000_000;
/// Upper bound on concurrent connections, and so on worker tasks.
pub const CONNECTIONS_MAX: u32 = 10_000;
/// Upper bound on cold SKUs; each is a sale created through the admin API.
pub const COLD_SKUS_MAX: u32 = 1_000;

/// Every knob of one run. Field names are also the TOML keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Distinct users rushing the sale; each makes one primary purchase.
    pub users: u64,
    /// Units on sale for the hot SKU.
    pub hot_stock: u64,
    /// Per-user limit set on every created sale.
    pub per_user_limit: u32,
    /// Units asked for in each primary purchase.
    pub qty: u32,
    /// Number of cold SKUs (0 = only the hot one).
    pub cold_skus: u32,
    /// Units on sale for each cold SKU.
    pub cold_stock: u64,
    /// Fraction of users that go for a cold SKU instead of the hot one.
    pub cold_fraction: f64,
    /// Zipf exponent of cold-SKU popularity (cold SKU k is picked with weight 1/k^s).
    pub zipf_s: f64,
    /// Reservation TTL given to created sales.
    pub reservation_ttl_ms: u64,
    /// Fraction of admitted users that try a second purchase (new request_id) past their limit.
    pub over_limit_fraction: f64,
    /// Fraction of admitted users that replay their purchase with the same request_id.
    pub replay_fraction: f64,
    /// Fraction of admitted orders cancelled after the rush.
    pub cancel_fraction: f64,
    /// Fraction of admitted orders paid (admin `/pay`) after the rush.
    pub pay_fraction: f64,
    /// Keep-alive connections, one worker task each.
    pub connections: u32,
    /// Open-loop request rate in requests/s; `None` means closed loop.
    pub rate: Option<f64>,
    /// Per-request timeout, after which the request is retried on a fresh connection.
    pub timeout_ms: u64,
    /// Retries of one logical request (same request_id) before giving up on it.
    pub max_retries: u32,
    /// Cap on the pause before a retry; Retry-After is honoured up to this.
    pub retry_backoff_max_ms: u64,
    /// Hard stop for the load phases; users not started by then are skipped.
    pub max_duration_s: u64,
    /// Concurrent GETs during verification.
    pub verify_concurrency: u32,
    /// Seed for every random choice; `None` picks one from the clock (and prints it).
    pub seed: Option<u64>,
    /// Prefix of created SKU names; `None` derives a unique one from the seed.
    pub sku_prefix: Option<String>,
    /// Target existing sales instead of creating them: the first is hot, the rest cold.
    pub existing_skus: Vec<String>,
    /// First user id; `None` derives one from the seed so reruns don't collide.
    pub user_id_base: Option<u64>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            users: 100_000,
            hot_stock: 5_000,
            per_user_limit: 1,
            qty: 1,
            cold_skus: 0,
            cold_stock: 1_000,
            cold_fraction: 0.2,
            zipf_s: 1.1,
            reservation_ttl_ms: 600_000,
            over_limit_fraction: 0.05,
            replay_fraction: 0.05,
            cancel_fraction: 0.10,
            pay_fraction: 0.50,
            connections: 64,
            rate: None,
            timeout_ms: 5_000,
            max_retries: 8,
            retry_backoff_max_ms: 200,
            max_duration_s: 300,
            verify_concurrency: 32,
            seed: None,
            sku_prefix: None,
            existing_skus: Vec::new(),
            user_id_base: None,
        }
    }
}

impl Scenario {
    /// Reads a scenario from a TOML file; missing keys take their defaults.
    pub fn from_file(path: &Path) -> Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario {}", path.display()))?;
        Scenario::from_toml(&text).with_context(|| format!("parsing scenario {}", path.display()))
    }

    /// Parses scenario TOML text.
    pub fn from_toml(text: &str) -> Result<Scenario> {
        let s: Scenario = toml::from_str(text)?;
        Ok(s)
    }

    /// Rejects settings that would make the run meaningless or unbounded.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            (1..=USERS_MAX).contains(&self.users),
            "users must be in 1..={USERS_MAX}"
        );
        ensure!(
            (1..=CONNECTIONS_MAX).contains(&self.connections),
            "connections must be in 1..={CONNECTIONS_MAX}"
        );
        ensure!(
            self.cold_skus <= COLD_SKUS_MAX,
            "cold_skus must be <= {COLD_SKUS_MAX}"
        );
        ensure!(self.qty >= 1, "qty must be >= 1");
        ensure!(self.per_user_limit >= 1, "per_user_limit must be >= 1");
        ensure!(
            self.qty <= self.per_user_limit,
            "qty ({}) must not exceed per_user_limit ({}), or no purchase could succeed",
            self.qty,
            self.per_user_limit
        );
        for (name, v) in [
            ("cold_fraction", self.cold_fraction),
            ("over_limit_fraction", self.over_limit_fraction),
            ("replay_fraction", self.replay_fraction),
            ("cancel_fraction", self.cancel_fraction),
            ("pay_fraction", self.pay_fraction),
        ] {
            ensure!(
                (0.0..=1.0).contains(&v),
                "{name} must be within 0..=1, got {v}"
            );
        }
        ensure!(
            self.cancel_fraction + self.pay_fraction <= 1.0,
            "cancel_fraction + pay_fraction must be <= 1"
        );
        ensure!(
            self.zipf_s >= 0.0 && self.zipf_s.is_finite(),
            "zipf_s must be >= 0"
        );
        if let Some(r) = self.rate {
            ensure!(r > 0.0 && r.is_finite(), "rate must be > 0");
        }
        ensure!(self.timeout_ms >= 1, "timeout_ms must be >= 1");
        ensure!(self.max_retries <= 100, "max_retries must be <= 100");
        ensure!(self.max_duration_s >= 1, "max_duration_s must be >= 1");
        ensure!(
            (1..=1024).contains(&self.verify_concurrency),
            "verify_concurrency must be in 1..=1024"
        );
        ensure!(
            self.reservation_ttl_ms >= 1,
            "reservation_ttl_ms must be >= 1"
        );
        if let Some(p) = &self.sku_prefix {
            ensure!(
                !p.is_empty() && p.len() <= 40,
                "sku_prefix must be 1..=40 chars"
            );
        }
        if !self.existing_skus.is_empty() && self.cold_skus != 0 {
            bail!("cold_skus is for created sales; with existing_skus list the cold SKUs after the hot one");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_only_given_keys() {
        let s = Scenario::from_toml("users = 10\nrate = 500.0\nexisting_skus = [\"a\", \"b\"]\n")
            .unwrap();
        assert_eq!(s.users, 10);
        assert_eq!(s.rate, Some(500.0));
        assert_eq!(s.existing_skus, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(s.hot_stock, Scenario::default().hot_stock);
    }

    #[test]
    fn unknown_key_is_an_error() {
        let err = Scenario::from_toml("userz = 10\n").unwrap_err();
        assert!(format!("{err:#}").contains("userz"), "{err:#}");
    }

    #[test]
    fn validate_rejects_bad_fractions() {
        let s = Scenario {
            cancel_fraction: 0.7,
            pay_fraction: 0.5,
            ..Scenario::default()
        };
        assert!(s.validate().is_err());
        assert!(Scenario::default().validate().is_ok());
    }
}

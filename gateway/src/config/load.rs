//! The loader, driven by the key table: reads `config.toml` into a TOML
//! table, takes `FLASHSALE_<SECTION>_<KEY>` overrides from the environment,
//! checks each value against its key's type and bounds, fills the typed
//! config, then applies the few rules that span keys. Also the start-up log
//! line, printed from the same table.
//!
//! Pure: the file's text and the environment are arguments, so tests never
//! touch the process environment.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::keys::{ConfigKey, KeyKind, ADMIN_TOKEN_DEFAULT, KEYS, NOT_CONFIG_VARIABLES};
use super::types::{
    BuyerAuthConfig, BuyerAuthMode, Config, ConfigError, DashboardConfig, ExportConfig,
    JwtAlgorithm, RateLimitConfig, ServerConfig, TrustedProxies,
};
use crate::wal::{FsyncMode, WalConfig};

/// A key's value as the operator gave it, before its type and bounds are
/// checked. `None` in its place means "the declared default".
#[derive(Clone, Copy, Debug)]
enum Given<'a> {
    File(&'a toml::Value),
    Env { var: &'a str, value: &'a str },
}

/// Parses `text` (the contents of config.toml), applies `FLASHSALE_*`
/// overrides from `env`, and validates.
pub fn load(text: &str, env: &[(String, String)]) -> Result<Config, ConfigError> {
    load_onto(placeholder(), text, env)
}

impl Config {
    /// Defaults for tests: port 0 on localhost, the given WAL directory.
    pub fn for_tests(wal_dir: impl Into<PathBuf>) -> Config {
        let mut config = load("", &[]).expect("defaults are valid");
        config.server.listen = "127.0.0.1:0".parse().expect("valid address");
        config.server.admin_token = "test-token".to_string();
        config.wal.dir = wal_dir.into();
        config.engine.shards = 2;
        // Most tests name their buyers in the body; those of buyer
        // authentication set their mode.
        config.buyer_auth.mode = BuyerAuthMode::Body;
        config
    }
}

/// [`load`], filling `config`: every field is overwritten by a key (the
/// tests load onto two different placeholders and compare, to prove it).
pub(super) fn load_onto(
    mut config: Config,
    text: &str,
    env: &[(String, String)],
) -> Result<Config, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
    let mut given: Vec<Option<Given<'_>>> = vec![None; KEYS.len()];
    read_file(&table, &mut given)?;
    // After the file, so that the environment wins.
    read_env(env, &mut given)?;
    for (key, given) in KEYS.iter().zip(given) {
        apply(&mut config, key, given)?;
    }
    resolve_bursts(&mut config.rate_limit);
    check_admin_token(&config.server)?;
    Ok(config)
}

/// What the keys then overwrite. Deliberately not the defaults (those live
/// only in the table), and spelled out field by field rather than through
/// `WalConfig::new`, so a field added to a typed config fails to compile
/// here until someone decides which key fills it.
pub(super) fn placeholder() -> Config {
    Config {
        server: ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            admin_token: String::new(),
            max_connections: 0,
            header_read_timeout: Duration::ZERO,
            max_body_bytes: 0,
            io_threads: 0,
        },
        engine: engine::EngineConfig {
            shards: 0,
            max_orders_per_sale: 0,
        },
        rate_limit: RateLimitConfig::default(),
        trusted_proxies: TrustedProxies::default(),
        buyer_auth: BuyerAuthConfig {
            mode: BuyerAuthMode::Body,
            algorithm: JwtAlgorithm::EdDsa,
            secret: None,
            secret_file: None,
            public_key_file: None,
            issuer: None,
            audience: None,
            leeway_s: 0,
            user_header: String::new(),
            require_sku_claim: true,
        },
        wal: WalConfig {
            dir: PathBuf::new(),
            fsync: FsyncMode::Never,
            fsync_interval_ms: 0,
            segment_bytes: 0,
            queue_capacity: 0,
            snapshot_every_records: 0,
            group_commit_delay_us: 0,
            writer_slice_us: 0,
            writer_nice: 0,
        },
        export: ExportConfig {
            postgres_url: None,
            table_prefix: String::new(),
            max_lag_bytes: 0,
            batch_records: 0,
            connections: 0,
            statement_timeout: Duration::ZERO,
        },
        dashboard: DashboardConfig {
            interval: Duration::ZERO,
            stream_subscribers_max: 0,
            stream_buffer_snapshots: 0,
            sales_max: 0,
            history_points: 0,
        },
    }
}

/// Records each key the file sets; an unknown section or key is an error.
fn read_file<'a>(
    table: &'a toml::Table,
    given: &mut [Option<Given<'a>>],
) -> Result<(), ConfigError> {
    for (section, keys) in table {
        if !KEYS.iter().any(|k| k.section == section) {
            return Err(ConfigError::UnknownKey(section.clone()));
        }
        let toml::Value::Table(keys) = keys else {
            return Err(ConfigError::Invalid {
                key: section.clone(),
                reason: format!("expected a table [{section}]"),
            });
        };
        for (name, value) in keys {
            let i = KEYS
                .iter()
                .position(|k| k.section == section && k.name == name)
                .ok_or_else(|| ConfigError::UnknownKey(format!("{section}.{name}")))?;
            given[i] = Some(Given::File(value));
        }
    }
    Ok(())
}

/// Records each key a `FLASHSALE_*` variable overrides. Such a variable
/// that names no key, and is not one of the declared non-config ones, is an
/// error: a typo (`FLASHSALE_RATELIMIT_GLOBAL_RPS`) must not quietly leave a
/// sale without its rate limit. Key names match case-insensitively, as they
/// always have.
fn read_env<'a>(
    env: &'a [(String, String)],
    given: &mut [Option<Given<'a>>],
) -> Result<(), ConfigError> {
    for (var, value) in env {
        if !var.starts_with("FLASHSALE_") || NOT_CONFIG_VARIABLES.iter().any(|(n, _)| n == var) {
            continue;
        }
        let i = KEYS
            .iter()
            .position(|k| k.env_name().eq_ignore_ascii_case(var))
            .ok_or_else(|| ConfigError::UnknownVariable(var.clone()))?;
        given[i] = Some(Given::Env { var, value });
    }
    Ok(())
}

/// Checks one key's value (given, or its default) and fills its field.
fn apply(
    config: &mut Config,
    key: &ConfigKey,
    given: Option<Given<'_>>,
) -> Result<(), ConfigError> {
    match &key.kind {
        KeyKind::Unsigned {
            default,
            min,
            max,
            zero_allowed,
            set,
            ..
        } => {
            let v = given.map_or(Ok(i128::from(*default)), |g| integer(key, g))?;
            in_bounds(key, given, v, (*min).into(), (*max).into(), *zero_allowed)?;
            set(config, u64::try_from(v).expect("within the key's bounds"));
        }
        KeyKind::Signed {
            default,
            min,
            max,
            set,
            ..
        } => {
            let v = given.map_or(Ok(i128::from(*default)), |g| integer(key, g))?;
            in_bounds(key, given, v, (*min).into(), (*max).into(), false)?;
            set(config, i64::try_from(v).expect("within the key's bounds"));
        }
        KeyKind::Text {
            default,
            max_bytes,
            shape,
            set,
            ..
        } => {
            let v = given.map_or(Ok(*default), |g| string(key, g))?;
            check_text(key, given, v, *max_bytes)?;
            shape(v).map_err(|reason| invalid(key, given, reason))?;
            set(config, v);
        }
        KeyKind::OptionalText {
            max_bytes,
            shape,
            set,
            ..
        } => {
            let v = given.map_or(Ok(""), |g| string(key, g))?;
            if v.is_empty() {
                set(config, None);
            } else {
                check_text(key, given, v, *max_bytes)?;
                shape(v).map_err(|reason| invalid(key, given, reason))?;
                set(config, Some(v));
            }
        }
        KeyKind::Choice {
            default,
            choices,
            set,
            ..
        } => {
            let v = given.map_or(Ok(*default), |g| string(key, g))?;
            if !choices.contains(&v) {
                let expected = choices.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>();
                let reason = format!("expected one of {}, got {v:?}", expected.join(", "));
                return Err(invalid(key, given, reason));
            }
            set(config, v);
        }
        KeyKind::SocketAddr { default, set, .. } => {
            let v = given.map_or(Ok(*default), |g| string(key, g))?;
            let addr = v
                .parse()
                .map_err(|_| invalid(key, given, format!("expected ip:port, got {v:?}")))?;
            set(config, addr);
        }
        KeyKind::Dir { default, set, .. } => {
            let v = given.map_or(Ok(*default), |g| string(key, g))?;
            if v.is_empty() {
                return Err(invalid(key, given, "must not be empty"));
            }
            set(config, Path::new(v));
        }
        KeyKind::Bool { default, set, .. } => {
            let v = given.map_or(Ok(*default), |g| boolean(key, g))?;
            set(config, v);
        }
    }
    Ok(())
}

/// An error naming the key, and the variable when the value came from one.
fn invalid(key: &ConfigKey, given: Option<Given<'_>>, reason: impl fmt::Display) -> ConfigError {
    let reason = match given {
        Some(Given::Env { var, .. }) => format!("{reason} (from {var})"),
        Some(Given::File(_)) | None => reason.to_string(),
    };
    ConfigError::Invalid {
        key: key.path(),
        reason,
    }
}

/// The given value as an integer, wide enough for both `u64` and `i64`
/// keys so that one bounds check serves both (and `-1` for an unsigned key
/// is reported as out of range, not as a parse error).
fn integer(key: &ConfigKey, given: Given<'_>) -> Result<i128, ConfigError> {
    match given {
        Given::File(toml::Value::Integer(i)) => Ok(i128::from(*i)),
        Given::File(other) => Err(invalid(
            key,
            Some(given),
            format!("expected an integer, got a {}", other.type_str()),
        )),
        Given::Env { value, .. } => value.trim().parse::<i128>().map_err(|_| {
            invalid(
                key,
                Some(given),
                format!("expected an integer, got {value:?}"),
            )
        }),
    }
}

/// The given value as a boolean: a TOML boolean, or `true`/`false` in a
/// variable.
fn boolean(key: &ConfigKey, given: Given<'_>) -> Result<bool, ConfigError> {
    match given {
        Given::File(toml::Value::Boolean(b)) => Ok(*b),
        Given::File(other) => Err(invalid(
            key,
            Some(given),
            format!("expected a boolean, got a {}", other.type_str()),
        )),
        Given::Env { value, .. } => match value.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(invalid(
                key,
                Some(given),
                format!("expected true or false, got {value:?}"),
            )),
        },
    }
}

/// The given value as a string.
fn string<'a>(key: &ConfigKey, given: Given<'a>) -> Result<&'a str, ConfigError> {
    match given {
        Given::File(toml::Value::String(s)) => Ok(s),
        Given::File(other) => Err(invalid(
            key,
            Some(given),
            format!("expected a string, got a {}", other.type_str()),
        )),
        Given::Env { value, .. } => Ok(value),
    }
}

fn in_bounds(
    key: &ConfigKey,
    given: Option<Given<'_>>,
    v: i128,
    min: i128,
    max: i128,
    zero_allowed: bool,
) -> Result<(), ConfigError> {
    if (min..=max).contains(&v) || (zero_allowed && v == 0) {
        return Ok(());
    }
    let zero = if zero_allowed && min > 0 { "0 or " } else { "" };
    Err(invalid(
        key,
        given,
        format!("must be {zero}between {min} and {max}, got {v}"),
    ))
}

/// A token-like string: not blank, and no whitespace at either end (HTTP
/// strips it from header values, so such a token could never be sent).
fn check_text(
    key: &ConfigKey,
    given: Option<Given<'_>>,
    v: &str,
    max_bytes: usize,
) -> Result<(), ConfigError> {
    if v.trim().is_empty() {
        return Err(invalid(key, given, "must not be empty or blank"));
    }
    if v.trim() != v {
        return Err(invalid(key, given, "must not start or end with whitespace"));
    }
    if v.len() > max_bytes {
        return Err(invalid(
            key,
            given,
            format!("must be at most {max_bytes} bytes, got {}", v.len()),
        ));
    }
    Ok(())
}

/// A burst of 0 with a non-zero rate means one second's worth.
fn resolve_bursts(r: &mut RateLimitConfig) {
    if r.global_rps > 0 && r.global_burst == 0 {
        r.global_burst = r.global_rps;
    }
    if r.per_client_rps > 0 && r.per_client_burst == 0 {
        r.per_client_burst = r.per_client_rps;
    }
    if r.per_ip_rps > 0 && r.per_ip_burst == 0 {
        r.per_ip_burst = r.per_ip_rps;
    }
}

/// The documented token is public: anyone who can reach a non-loopback
/// address could end sales and mark orders paid with it. On loopback it
/// stays allowed (local trials), with a warning at start.
fn check_admin_token(server: &ServerConfig) -> Result<(), ConfigError> {
    if server.admin_token == ADMIN_TOKEN_DEFAULT && !server.listen.ip().is_loopback() {
        return Err(ConfigError::Invalid {
            key: "server.admin_token".to_string(),
            reason: format!(
                "is the documented default {ADMIN_TOKEN_DEFAULT:?} while server.listen = {} \
                 is not a loopback address; set a secret token",
                server.listen
            ),
        });
    }
    Ok(())
}

/// A key's effective value as the start-up log shows it (unmasked).
pub(super) fn value_text(key: &ConfigKey, config: &Config) -> String {
    match &key.kind {
        KeyKind::Unsigned { get, .. } => get(config).to_string(),
        KeyKind::Signed { get, .. } => get(config).to_string(),
        KeyKind::Text { get, .. } => get(config).to_string(),
        KeyKind::OptionalText { get, .. } => get(config).unwrap_or("").to_string(),
        KeyKind::Choice { get, .. } => get(config).to_string(),
        KeyKind::SocketAddr { get, .. } => get(config).to_string(),
        KeyKind::Dir { get, .. } => get(config).display().to_string(),
        KeyKind::Bool { get, .. } => get(config).to_string(),
    }
}

/// The effective configuration as one log line, `section.key=value` for
/// every key of the table, secrets masked.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, key) in KEYS.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            let value = value_text(key, self);
            // A secret is masked, but whether it is set at all shows.
            let value = if key.secret && !value.is_empty() {
                "***".to_string()
            } else {
                value
            };
            write!(f, "{sep}{}={value}", key.path())?;
        }
        Ok(())
    }
}

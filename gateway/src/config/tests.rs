//! Tests of the key table and the loader. Most are data-driven over
//! [`KEYS`], so a key added to the table is tested without a new line here:
//! its default against `config.toml`, its override variable, its bounds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::keys::{ConfigKey, KeyKind, ADMIN_TOKEN_DEFAULT, KEYS, NOT_CONFIG_VARIABLES};
use super::load::{load, load_onto, placeholder, value_text};
use super::types::{
    Config, ConfigError, DashboardConfig, ExportConfig, RateLimitConfig, ServerConfig,
};
use crate::wal::{FsyncMode, WalConfig};

/// The repository's documented default configuration.
const REPO_CONFIG: &str = include_str!("../../../config.toml");

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A key's declared default as the TOML value `config.toml` must hold.
fn default_toml(key: &ConfigKey) -> toml::Value {
    match &key.kind {
        KeyKind::Unsigned { default, .. } => {
            toml::Value::Integer(i64::try_from(*default).expect("defaults fit TOML"))
        }
        KeyKind::Signed { default, .. } => toml::Value::Integer(*default),
        KeyKind::Text { default, .. }
        | KeyKind::Choice { default, .. }
        | KeyKind::SocketAddr { default, .. }
        | KeyKind::Dir { default, .. } => toml::Value::String(default.to_string()),
        KeyKind::OptionalText { .. } => toml::Value::String(String::new()),
        KeyKind::Bool { default, .. } => toml::Value::Boolean(*default),
    }
}

/// `value` (as an environment variable would give it) as a TOML value of
/// the key's type, or `None` if it cannot be written as one.
fn as_toml(key: &ConfigKey, value: &str) -> Option<toml::Value> {
    match &key.kind {
        KeyKind::Unsigned { .. } | KeyKind::Signed { .. } => {
            value.parse::<i64>().ok().map(toml::Value::Integer)
        }
        KeyKind::Text { .. }
        | KeyKind::OptionalText { .. }
        | KeyKind::Choice { .. }
        | KeyKind::SocketAddr { .. }
        | KeyKind::Dir { .. } => Some(toml::Value::String(value.to_string())),
        KeyKind::Bool { .. } => value.parse::<bool>().ok().map(toml::Value::Boolean),
    }
}

/// A config file setting just `key` to `value`.
fn file_with(key: &ConfigKey, value: toml::Value) -> String {
    let mut section = toml::Table::new();
    section.insert(key.name.to_string(), value);
    let mut file = toml::Table::new();
    file.insert(key.section.to_string(), toml::Value::Table(section));
    toml::to_string(&file).unwrap()
}

/// Values the key must accept besides its default: its bounds, 0 where 0
/// is allowed, and a few of each type.
fn accepted(key: &ConfigKey) -> Vec<String> {
    // Text with a shape of its own (an SQL identifier prefix).
    if key.path() == "export.table_prefix" {
        return vec![
            "t".into(),
            "shop_1_".into(),
            "x".repeat(crate::export::TABLE_PREFIX_LEN_MAX),
        ];
    }
    if key.path() == "buyer_auth.user_header" {
        return vec!["x-user".into(), "x".repeat(64)];
    }
    if key.path() == "rate_limit.trusted_proxies" {
        return vec!["10.0.0.1".into(), "10.0.0.0/8, ::1,fd00::/8".into()];
    }
    match &key.kind {
        KeyKind::Unsigned {
            min,
            max,
            zero_allowed,
            ..
        } => {
            let mut v = vec![min.to_string(), max.to_string()];
            if *zero_allowed {
                v.push("0".to_string());
            }
            v
        }
        KeyKind::Signed { min, max, .. } => vec![min.to_string(), max.to_string()],
        KeyKind::Text { max_bytes, .. } => {
            vec!["t".to_string(), "a b".to_string(), "x".repeat(*max_bytes)]
        }
        // Values the URL check takes, the longest at the bound.
        KeyKind::OptionalText { max_bytes, .. } => vec![
            "postgres://u@h/db".to_string(),
            format!("postgres://u@h/{}", "d".repeat(max_bytes - 15)),
        ],
        KeyKind::Choice { choices, .. } => choices.iter().map(|c| c.to_string()).collect(),
        KeyKind::SocketAddr { .. } => vec!["127.0.0.1:1".to_string(), "[::1]:2".to_string()],
        KeyKind::Dir { .. } => vec!["/tmp/flashsale-test".to_string(), "rel/dir".to_string()],
        KeyKind::Bool { .. } => vec!["true".to_string(), "false".to_string()],
    }
}

/// Values the key must refuse: one past each bound, and wrong shapes.
fn refused(key: &ConfigKey) -> Vec<String> {
    if key.path() == "buyer_auth.user_header" {
        return vec![String::new(), "x user".into(), "x:y".into(), "x".repeat(65)];
    }
    if key.path() == "rate_limit.trusted_proxies" {
        return vec!["proxy.local".into(), "10.0.0.0/33".into(), "::1/129".into()];
    }
    if key.path() == "export.table_prefix" {
        return vec![
            String::new(),
            "a b".into(),
            "1x".into(),
            "Shop_".into(),
            "x;drop".into(),
        ];
    }
    match &key.kind {
        KeyKind::Unsigned {
            min,
            max,
            zero_allowed,
            ..
        } => {
            let below = i128::from(*min) - 1;
            let mut v = vec![(i128::from(*max) + 1).to_string(), "x".into(), "1.5".into()];
            if !(*zero_allowed && below == 0) {
                v.push(below.to_string());
            }
            v
        }
        KeyKind::Signed { min, max, .. } => vec![
            (i128::from(*min) - 1).to_string(),
            (i128::from(*max) + 1).to_string(),
            "x".into(),
        ],
        KeyKind::Text { max_bytes, .. } => vec![
            String::new(),
            " ".into(),
            "\t".into(),
            " t".into(),
            "t\n".into(),
            "x".repeat(max_bytes + 1),
        ],
        KeyKind::OptionalText { max_bytes, .. } => {
            vec![" ".into(), " t".into(), "x".repeat(max_bytes + 1)]
        }
        KeyKind::Choice { .. } => vec![String::new(), "sometimes".into()],
        KeyKind::SocketAddr { .. } => vec![String::new(), "nowhere".into(), "127.0.0.1".into()],
        KeyKind::Dir { .. } => vec![String::new()],
        KeyKind::Bool { .. } => vec![String::new(), "yes".into(), "1".into()],
    }
}

/// What the log should show after `key` was set to `value`.
fn expected_shown(key: &ConfigKey, value: &str) -> String {
    match (key.path().as_str(), value) {
        ("engine.shards", "0") => engine::EngineConfig::default().shards.to_string(),
        _ => value.to_string(),
    }
}

#[test]
fn repository_config_toml_is_the_table_defaults() {
    let file: toml::Table = REPO_CONFIG.parse().unwrap();
    for key in KEYS.iter() {
        let value = file.get(key.section).and_then(|s| s.get(key.name));
        assert_eq!(
            value,
            Some(&default_toml(key)),
            "config.toml's {} is missing or differs from the table's default",
            key.path()
        );
    }
    for (section, keys) in &file {
        for name in keys.as_table().expect("sections are tables").keys() {
            assert!(
                KEYS.iter().any(|k| k.section == section && k.name == name),
                "config.toml has {section}.{name}, which the table lacks"
            );
        }
    }
    assert_eq!(
        load(REPO_CONFIG, &[]).unwrap().to_string(),
        load("", &[]).unwrap().to_string()
    );
}

#[test]
fn the_table_is_well_formed() {
    let mut env_names: Vec<String> = KEYS.iter().map(|k| k.env_name()).collect();
    env_names.sort();
    env_names.dedup();
    assert_eq!(env_names.len(), KEYS.len(), "two keys share a variable");
    for (name, why) in NOT_CONFIG_VARIABLES {
        assert!(!env_names.contains(&name.to_string()), "{name} is a key");
        assert!(name.starts_with("FLASHSALE_") && !why.is_empty());
    }
    for key in KEYS.iter() {
        assert!(
            !key.doc.is_empty() && !key.doc.contains('\n'),
            "{}",
            key.path()
        );
        // Every default, written out explicitly, is accepted.
        let text = file_with(key, default_toml(key));
        load(&text, &[]).unwrap_or_else(|e| panic!("{}: default refused: {e}", key.path()));
    }
}

/// Every key's variable overrides it (and the file), and every accepted
/// value reaches the field the log reads, from the file and from the env.
#[test]
fn every_key_takes_its_accepted_values_from_env_and_file() {
    for key in KEYS.iter() {
        for value in accepted(key) {
            let e = env(&[(&key.env_name(), &value)]);
            let file = file_with(key, default_toml(key));
            let config = load(&file, &e)
                .unwrap_or_else(|err| panic!("{}={value:?} refused: {err}", key.env_name()));
            assert_eq!(value_text(key, &config), expected_shown(key, &value));
            let toml = as_toml(key, &value).expect("accepted values are TOML");
            let config = load(&file_with(key, toml), &[])
                .unwrap_or_else(|err| panic!("{} = {value:?} refused: {err}", key.path()));
            assert_eq!(value_text(key, &config), expected_shown(key, &value));
        }
    }
}

/// One past each bound, and values of the wrong shape, are refused with the
/// key named (and the variable, when it came from one).
#[test]
fn every_key_refuses_values_out_of_bounds() {
    for key in KEYS.iter() {
        for value in refused(key) {
            let var = key.env_name();
            let err = load("", &env(&[(&var, &value)]))
                .expect_err(&format!("{var}={value:?} accepted"))
                .to_string();
            assert!(err.contains(&key.path()), "{err}");
            assert!(err.contains(&var), "{err}");
            if let Some(toml) = as_toml(key, &value) {
                let err = load(&file_with(key, toml), &[])
                    .expect_err(&format!("{} = {value:?} accepted", key.path()))
                    .to_string();
                assert!(err.starts_with(&format!("{}: ", key.path())), "{err}");
            }
        }
    }
}

#[test]
fn wrong_toml_types_name_the_key() {
    for key in KEYS.iter() {
        let wrong = match &key.kind {
            KeyKind::Unsigned { .. } | KeyKind::Signed { .. } => toml::Value::String("1".into()),
            KeyKind::Text { .. }
            | KeyKind::OptionalText { .. }
            | KeyKind::Choice { .. }
            | KeyKind::SocketAddr { .. }
            | KeyKind::Dir { .. }
            | KeyKind::Bool { .. } => toml::Value::Integer(1),
        };
        let err = load(&file_with(key, wrong), &[]).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: expected", key.path())),
            "{err}"
        );
    }
}

#[test]
fn a_flashsale_variable_naming_no_key_is_refused() {
    for var in [
        "FLASHSALE_RATELIMIT_GLOBAL_RPS",
        "FLASHSALE_WAL_COLOUR",
        "FLASHSALE_SERVER",
        "FLASHSALE_",
        "FLASHSALE_CRASH_SEEDS",
    ] {
        let err = load("", &env(&[(var, "1000")])).unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownVariable(v) if v == var),
            "{err:?}"
        );
        assert!(err.to_string().contains(var));
    }
    // The declared non-config variables, and anything not FLASHSALE_*, pass.
    let mut pairs: Vec<(String, String)> = NOT_CONFIG_VARIABLES
        .iter()
        .map(|(n, _)| (n.to_string(), "7".to_string()))
        .collect();
    pairs.extend(env(&[("PATH", "/bin"), ("MY_FLASHSALE_X", "1")]));
    assert_eq!(
        load("", &pairs).unwrap().to_string(),
        load("", &[]).unwrap().to_string()
    );
}

#[test]
fn default_admin_token_is_refused_off_loopback() {
    for listen in ["0.0.0.0:8080", "10.1.2.3:80", "[::]:8080"] {
        let e = env(&[("FLASHSALE_SERVER_LISTEN", listen)]);
        let err = load("", &e).unwrap_err().to_string();
        assert!(err.starts_with("server.admin_token: "), "{err}");
        assert!(err.contains(ADMIN_TOKEN_DEFAULT), "{err}");
        let text = format!("[server]\nlisten = \"{listen}\"\nadmin_token = \"s3cret\"\n");
        assert_eq!(
            load(&text, &[]).unwrap().server.listen,
            listen.parse::<SocketAddr>().unwrap()
        );
    }
    for listen in ["127.0.0.1:8080", "127.0.0.2:1", "[::1]:8080"] {
        let e = env(&[("FLASHSALE_SERVER_LISTEN", listen)]);
        assert_eq!(
            load("", &e).unwrap().server.admin_token,
            ADMIN_TOKEN_DEFAULT
        );
    }
}

#[test]
fn blank_admin_token_is_refused() {
    for token in ["", " ", "   ", "\t\n"] {
        let e = env(&[("FLASHSALE_SERVER_ADMIN_TOKEN", token)]);
        let err = load("", &e).unwrap_err().to_string();
        assert!(err.starts_with("server.admin_token: "), "{err}");
        let text = format!("[server]\nadmin_token = {token:?}\n");
        let err = load(&text, &[]).unwrap_err().to_string();
        assert!(err.starts_with("server.admin_token: "), "{err}");
    }
}

/// Loading onto two placeholders that differ in every field gives the same
/// config: each field is filled by some key, none left to the placeholder.
#[test]
fn every_typed_field_is_filled_by_a_key() {
    let other = Config {
        server: ServerConfig {
            listen: "10.9.9.9:9".parse().unwrap(),
            admin_token: "other".into(),
            max_connections: 7,
            header_read_timeout: Duration::from_secs(99),
            max_body_bytes: 7,
            io_threads: 7,
        },
        engine: engine::EngineConfig {
            shards: 77,
            max_orders_per_sale: 7,
        },
        rate_limit: RateLimitConfig {
            global_rps: 7,
            global_burst: 7,
            per_client_rps: 7,
            per_client_burst: 7,
            per_ip_rps: 7,
            per_ip_burst: 7,
        },
        trusted_proxies: super::types::TrustedProxies::parse("10.7.7.7").unwrap(),
        buyer_auth: super::types::BuyerAuthConfig {
            mode: super::types::BuyerAuthMode::Header,
            algorithm: super::types::JwtAlgorithm::Es256,
            secret: Some("other".into()),
            secret_file: Some("/other".into()),
            public_key_file: Some("/other".into()),
            issuer: Some("other".into()),
            audience: Some("other".into()),
            leeway_s: 7,
            user_header: "x-other".into(),
            require_sku_claim: true,
        },
        wal: WalConfig {
            dir: "/other".into(),
            fsync: FsyncMode::Interval,
            fsync_interval_ms: 7,
            segment_bytes: 7,
            queue_capacity: 7,
            snapshot_every_records: 7,
            group_commit_delay_us: 7,
            writer_slice_us: 7,
            writer_nice: 7,
        },
        export: ExportConfig {
            postgres_url: Some("postgres://other".into()),
            table_prefix: "other_".into(),
            max_lag_bytes: 7,
            batch_records: 7,
            connections: 7,
            statement_timeout: Duration::from_secs(7),
        },
        dashboard: DashboardConfig {
            interval: Duration::from_secs(7),
            stream_subscribers_max: 7,
            stream_buffer_snapshots: 7,
            sales_max: 7,
            history_points: 7,
        },
    };
    let e = env(&[("FLASHSALE_RATE_LIMIT_GLOBAL_RPS", "5")]);
    for (text, e) in [("", &e[..0]), (REPO_CONFIG, &e[..0]), ("", &e[..])] {
        assert_eq!(
            format!("{:?}", load_onto(placeholder(), text, e).unwrap()),
            format!("{:?}", load_onto(other.clone(), text, e).unwrap())
        );
    }
}

/// The `[wal]` defaults are persistence's: the table names its consts.
#[test]
fn wal_and_engine_defaults_are_their_crates() {
    let config = load("", &[]).unwrap();
    assert_eq!(
        format!("{:?}", config.wal),
        format!("{:?}", WalConfig::new(PathBuf::from("./data/wal")))
    );
    assert_eq!(
        config.engine.max_orders_per_sale,
        engine::MAX_ORDERS_PER_SALE_DEFAULT
    );
}

/// The log's own minimums are the table's: one minimum per key, not a
/// stricter one here and a laxer one in persistence.
#[test]
fn wal_minimums_are_persistences() {
    let min = |path: &str| match KEYS.iter().find(|k| k.path() == path).map(|k| &k.kind) {
        Some(KeyKind::Unsigned { min, .. }) => *min,
        other => panic!("{path} is not an unsigned key: {}", other.is_some()),
    };
    assert_eq!(min("wal.segment_bytes"), WalConfig::SEGMENT_BYTES_MIN);
    assert_eq!(
        min("wal.queue_capacity"),
        u64::from(WalConfig::QUEUE_CAPACITY_MIN)
    );
    assert_eq!(
        min("wal.fsync_interval_ms"),
        WalConfig::FSYNC_INTERVAL_MS_MIN
    );
}

#[test]
fn startup_log_shows_every_key_and_masks_secrets() {
    let e = env(&[
        ("FLASHSALE_SERVER_ADMIN_TOKEN", "hunter2-token"),
        ("FLASHSALE_EXPORT_POSTGRES_URL", "postgres://u:hunter3@h/db"),
        (
            "FLASHSALE_BUYER_AUTH_SECRET",
            "hunter4-0123456789abcdef0123456789",
        ),
    ]);
    let config = load("", &e).unwrap();
    assert!(!format!("{config:?}").contains("hunter4"), "{config:?}");
    let line = config.to_string();
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), KEYS.len(), "{line}");
    for (key, field) in KEYS.iter().zip(&fields) {
        let (path, value) = field.split_once('=').unwrap();
        assert_eq!(path, key.path());
        if key.secret {
            assert_eq!(value, "***");
        }
    }
    assert!(!line.contains("hunter2"), "{line}");
    assert!(!line.contains("hunter3"), "{line}");
    assert!(!line.contains("hunter4"), "{line}");
    // An unset secret shows as unset.
    let line = load("", &[]).unwrap().to_string();
    assert!(line.contains(" export.postgres_url= "), "{line}");
    assert!(line.contains(" wal.fsync=always "), "{line}");
}

#[test]
fn documented_default_file_loads() {
    let text = REPO_CONFIG;
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

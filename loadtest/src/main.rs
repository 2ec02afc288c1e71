//! `flashsale-loadtest`: simulate a flash sale against a flashsale server
//! and verify it kept its promises. Exit status: 0 = every check passed,
//! 1 = a check failed, 2 = the run itself could not be carried out.

use anyhow::{Context, Result};
use clap::Parser;
use loadtest::ceiling::{self, CeilingOptions};
use loadtest::pgverify::PgDatabase;
use loadtest::spawn::{self, SpawnOptions};
use loadtest::{html, report, RunOptions, Scenario};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Simulate a flash sale against a flashsale server and verify the outcome.
///
/// Scenario flags override `--scenario FILE`, which overrides the defaults.
#[derive(Debug, Parser)]
#[command(name = "flashsale-loadtest", version)]
struct Args {
    /// Server to test [default: `server.listen` of --config].
    #[arg(long)]
    target: Option<String>,
    /// Admin bearer token [default: `server.admin_token` of --config; with
    /// --spawn, a fresh random one].
    #[arg(long)]
    admin_token: Option<String>,
    /// The server's configuration file, read for the defaults of --target
    /// and --admin-token (not with --spawn), so they are never copies.
    #[arg(long, value_name = "FILE", default_value = "config.toml")]
    config: PathBuf,
    /// TOML scenario file (keys = the scenario flags with underscores).
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,

    /// Distinct users [default: 100000].
    #[arg(long)]
    users: Option<u64>,
    /// Stock of the hot SKU [default: 5000].
    #[arg(long)]
    hot_stock: Option<u64>,
    /// Per-user limit of created sales [default: 1].
    #[arg(long)]
    per_user_limit: Option<u32>,
    /// Units per primary purchase [default: 1].
    #[arg(long)]
    qty: Option<u32>,
    /// Number of cold SKUs, picked with zipf popularity [default: 0].
    #[arg(long)]
    cold_skus: Option<u32>,
    /// Stock of each cold SKU [default: 1000].
    #[arg(long)]
    cold_stock: Option<u64>,
    /// Fraction of users going for a cold SKU [default: 0.2].
    #[arg(long)]
    cold_fraction: Option<f64>,
    /// Zipf exponent of cold-SKU popularity [default: 1.1].
    #[arg(long)]
    zipf_s: Option<f64>,
    /// Reservation TTL of created sales [default: 600000].
    #[arg(long)]
    reservation_ttl_ms: Option<u64>,
    /// Fraction of admitted users that try to exceed their limit [default: 0.05].
    #[arg(long)]
    over_limit_fraction: Option<f64>,
    /// Fraction of admitted users that replay their purchase [default: 0.05].
    #[arg(long)]
    replay_fraction: Option<f64>,
    /// Fraction of admitted orders cancelled after the rush [default: 0.1].
    #[arg(long)]
    cancel_fraction: Option<f64>,
    /// Fraction of admitted orders paid after the rush [default: 0.5].
    #[arg(long)]
    pay_fraction: Option<f64>,
    /// Keep-alive connections (= concurrent workers) [default: 64].
    #[arg(long, short = 'c')]
    connections: Option<u32>,
    /// Open loop at this many requests/s (wrk2-style); omit for closed loop.
    #[arg(long, short = 'r')]
    rate: Option<f64>,
    /// Per-request timeout [default: 5000].
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Retries per logical request, same request_id [default: 8].
    #[arg(long)]
    max_retries: Option<u32>,
    /// Cap on the pause before a retry [default: 200].
    #[arg(long)]
    retry_backoff_max_ms: Option<u64>,
    /// Stop starting new users after this long [default: 300].
    #[arg(long)]
    max_duration_s: Option<u64>,
    /// Concurrent order lookups during verification [default: 32].
    #[arg(long)]
    verify_concurrency: Option<u32>,
    /// Seed of all random choices [default: from the clock].
    #[arg(long)]
    seed: Option<u64>,
    /// Prefix of created SKU names [default: derived from the seed].
    #[arg(long)]
    sku_prefix: Option<String>,
    /// Target existing sales instead of creating them (first = hot).
    #[arg(long, value_delimiter = ',')]
    existing_skus: Option<Vec<String>>,
    /// First user id [default: derived from the seed].
    #[arg(long)]
    user_id_base: Option<u64>,

    /// Write the machine-readable report here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short = 'q')]
    quiet: bool,

    /// Start a flashsale server on a temp dir and free port, test it, stop it.
    #[arg(long)]
    spawn: bool,
    /// PostgreSQL database the server exports orders to (libpq URL, e.g.
    /// postgres://user:password@host:5432/db). After the run, wait up to
    /// 60 s for GET /v1/admin/export to report no lag, then check the
    /// tables against the run: every acknowledged order once and in the
    /// state it was driven to, the sale rows equal to the server's
    /// counters, no other rows. With --spawn, the spawned server exports
    /// there. The URL is never printed.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// The export's table prefix (the server's export.table_prefix); with
    /// --spawn, the spawned server's too.
    #[arg(long, value_name = "PREFIX", default_value = loadtest::pgverify::TABLE_PREFIX_DEFAULT)]
    postgres_table_prefix: String,
    /// Server binary for --spawn [default: $FLASHSALE_BIN, next to this binary, or built].
    #[arg(long, value_name = "PATH")]
    server_bin: Option<PathBuf>,
    /// WAL fsync mode for the spawned server's config.
    #[arg(long, default_value = "always")]
    spawn_fsync: String,
    /// How buyers prove who they are, as the server's buyer_auth.mode:
    /// "jwt" mints an HS256 token per buyer from --jwt-secret (with
    /// --spawn, a fresh random secret given to the server); "body" names
    /// the buyer in the body [default: jwt with --spawn or --jwt-secret,
    /// else body].
    #[arg(long, value_name = "MODE")]
    buyer_auth: Option<String>,
    /// The server's buyer_auth.secret (HS256), for jwt mode without --spawn.
    #[arg(long, value_name = "SECRET")]
    jwt_secret: Option<String>,

    /// Measure the generator's ceiling with plain GETs instead of a sale.
    #[arg(long)]
    ceiling: bool,
    /// Server for --ceiling [default: an in-process trivial server].
    #[arg(long, value_name = "URL")]
    ceiling_target: Option<String>,
    /// Path requested by --ceiling.
    #[arg(long, default_value = "/")]
    ceiling_path: String,
    /// Duration of --ceiling.
    #[arg(long, default_value_t = 5)]
    ceiling_secs: u64,
}

impl Args {
    /// Defaults, then the file, then flags.
    fn scenario(&self) -> Result<Scenario> {
        let mut s = match &self.scenario {
            Some(p) => Scenario::from_file(p)?,
            None => Scenario::default(),
        };
        macro_rules! over {
            ($($f:ident),*) => {$(
                if let Some(v) = &self.$f { s.$f = v.clone(); }
            )*};
        }
        over!(
            users,
            hot_stock,
            per_user_limit,
            qty,
            cold_skus,
            cold_stock,
            cold_fraction,
            zipf_s,
            reservation_ttl_ms,
            over_limit_fraction,
            replay_fraction,
            cancel_fraction,
            pay_fraction,
            connections,
            timeout_ms,
            max_retries,
            retry_backoff_max_ms,
            max_duration_s,
            verify_concurrency,
            existing_skus
        );
        if self.rate.is_some() {
            s.rate = self.rate;
        }
        if self.seed.is_some() {
            s.seed = self.seed;
        }
        if self.sku_prefix.is_some() {
            s.sku_prefix.clone_from(&self.sku_prefix);
        }
        if self.user_id_base.is_some() {
            s.user_id_base = self.user_id_base;
        }
        s.validate()?;
        Ok(s)
    }
}

fn write_outputs(args: &Args, r: &report::Report) -> Result<()> {
    if let Some(p) = &args.json {
        let text = serde_json::to_string_pretty(r)?;
        std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.html {
        std::fs::write(p, html::render_html(r))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// `--ceiling`: the generator's own limit against a trivial server.
async fn ceiling_main(args: &Args) -> Result<ExitCode> {
    let s = args.scenario()?;
    let r = ceiling::measure(&CeilingOptions {
        target: args.ceiling_target.clone(),
        path: args.ceiling_path.clone(),
        connections: s.connections,
        rate: s.rate,
        duration: Duration::from_secs(args.ceiling_secs.clamp(1, 3600)),
        timeout_ms: s.timeout_ms,
        quiet: args.quiet,
    })
    .await?;
    print!("{}", report::render_text(&r));
    write_outputs(args, &r)?;
    Ok(ExitCode::SUCCESS)
}

async fn real_main(args: Args) -> Result<ExitCode> {
    if args.ceiling {
        return ceiling_main(&args).await;
    }

    let scenario = args.scenario()?;
    let postgres = args
        .postgres
        .as_deref()
        .map(|url| PgDatabase::parse(url)?.with_prefix(&args.postgres_table_prefix))
        .transpose()?;
    let admin_token = match (&args.admin_token, args.spawn) {
        (Some(token), _) => token.clone(),
        (None, true) => random_token(),
        (None, false) => server_config(&args.config)?.admin_token,
    };
    let jwt = match args.buyer_auth.as_deref() {
        None => args.spawn || args.jwt_secret.is_some(),
        Some("jwt") => true,
        Some("body") => false,
        Some(other) => anyhow::bail!("--buyer-auth {other:?}: expected jwt or body"),
    };
    let jwt_secret = match (&args.jwt_secret, jwt, args.spawn) {
        (_, false, _) => None,
        (Some(secret), true, _) => Some(secret.clone()),
        // 256 bits: two 128-bit random tokens.
        (None, true, true) => Some(format!("{}{}", random_token(), random_token())),
        (None, true, false) => {
            anyhow::bail!("--buyer-auth jwt needs --jwt-secret (the server's buyer_auth.secret)")
        }
    };
    let buyers = match &jwt_secret {
        Some(secret) => loadtest::buyers::BuyerCreds::jwt(secret),
        None => loadtest::buyers::BuyerCreds::Body,
    };
    let mut server = None;
    let target = if args.spawn {
        let bin = spawn::find_server_bin(args.server_bin.as_deref(), args.quiet)?;
        let s = spawn::spawn_server(&SpawnOptions {
            bin: bin.clone(),
            admin_token: admin_token.clone(),
            fsync: args.spawn_fsync.clone(),
            export_postgres_url: postgres.as_ref().map(|pg| pg.secret_url().to_string()),
            export_table_prefix: postgres.as_ref().map(|pg| pg.prefix().to_string()),
            jwt_secret: jwt_secret.clone(),
        })
        .await?;
        eprintln!(
            "spawned {} at {} (dir {})",
            bin.display(),
            s.url,
            s.dir().display()
        );
        let url = s.url.clone();
        server = Some(s);
        url
    } else {
        match &args.target {
            Some(target) => target.clone(),
            None => server_config(&args.config)?.url,
        }
    };
    let opts = RunOptions {
        scenario,
        target,
        admin_token,
        quiet: args.quiet,
        postgres,
        buyers,
    };
    let result = loadtest::run(&opts).await;
    // Stop the server whatever happened, and before reporting, so its exit
    // status is part of the verdict.
    let stopped = match server {
        Some(s) => {
            let tail = s.log_tail();
            Some(s.stop().await.map(|st| (st, tail)))
        }
        None => None,
    };
    let r = result?;
    print!("{}", report::render_text(&r));
    write_outputs(&args, &r)?;
    let mut ok = r.passed();
    if let Some(stopped) = stopped {
        let (status, tail) = stopped?;
        if status.success() {
            println!("server stopped cleanly after SIGTERM");
        } else {
            ok = false;
            println!("FAIL: server exited with {status} after SIGTERM; log tail:\n{tail}");
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: building runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(real_main(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// What the load tester takes from a server's configuration file.
struct ServerDefaults {
    url: String,
    admin_token: String,
}

/// `server.listen` (as a URL; a wildcard address becomes loopback) and
/// `server.admin_token` of the server's config file.
fn server_config(path: &Path) -> Result<ServerDefaults> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading {} for the server's address and token (or give --target and --admin-token)",
            path.display()
        )
    })?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let server = table.get("server").and_then(|s| s.as_table());
    let key = |name: &str| {
        server
            .and_then(|s| s.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .with_context(|| format!("{}: no server.{name}", path.display()))
    };
    let listen: std::net::SocketAddr = key("listen")?
        .parse()
        .with_context(|| format!("{}: server.listen is not ip:port", path.display()))?;
    let host = match listen.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    Ok(ServerDefaults {
        url: format!("http://{host}:{}", listen.port()),
        admin_token: key("admin_token")?,
    })
}

/// A token for a server this process spawns and alone talks to.
fn random_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    // Two std hashers keyed from the OS's randomness: 128 bits, no crate.
    let mut token = String::with_capacity(32);
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        token.push_str(&format!("{:016x}", h.finish()));
    }
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_come_from_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        for (listen, url) in [
            ("127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("0.0.0.0:9000", "http://127.0.0.1:9000"),
            ("[::]:9001", "http://[::1]:9001"),
            ("[::1]:9002", "http://[::1]:9002"),
        ] {
            let text = format!("[server]\nlisten = \"{listen}\"\nadmin_token = \"t0k\"\n");
            std::fs::write(&path, text).unwrap();
            let d = server_config(&path).unwrap();
            assert_eq!((d.url.as_str(), d.admin_token.as_str()), (url, "t0k"));
        }
        std::fs::write(&path, "[server]\nlisten = \"x\"\n").unwrap();
        assert!(server_config(&path).is_err());
        assert!(server_config(&dir.path().join("missing.toml")).is_err());
    }

    /// The repository's own config.toml gives the documented address.
    #[test]
    fn the_repository_config_is_readable() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.toml");
        assert!(server_config(&path).is_ok());
    }

    #[test]
    fn random_tokens_differ() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}

//! The `flashsale` binary: `serve` runs the HTTP server; `wal verify|dump`
//! are the operator tools of the write-ahead log.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use gateway::wal;
use gateway::Config;

#[global_allocator]
static GLOBAL: gateway::alloc::MiMalloc = gateway::alloc::MiMalloc;

#[derive(Parser)]
#[command(name = "flashsale", version, about = "Flash-sale engine over HTTP")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve {
        /// Configuration file; every key can be overridden by FLASHSALE_<SECTION>_<KEY>.
        #[arg(long, default_value = "./config.toml")]
        config: PathBuf,
    },
    /// Mint a development buyer token (HS256, from the configured
    /// buyer_auth.secret or secret_file; iss and aud as configured), and
    /// print it. For trying the API in jwt mode; production tokens come
    /// from the shop's login service.
    Token {
        /// The user the token names (its sub): 1 to 128 bytes.
        #[arg(long)]
        user: String,
        /// How long the token is valid: seconds, or with a unit (30s, 10m, 2h).
        #[arg(long, default_value = "10m")]
        ttl: String,
        /// Limit the token to these SKUs (repeat for more); default: any.
        #[arg(long = "sku")]
        skus: Vec<String>,
        /// Mint this many tokens, one per line, for users USER0, USER1, …
        /// (benchmarks: a wrk script picks from the list).
        #[arg(long)]
        count: Option<u64>,
        #[arg(long, default_value = "./config.toml")]
        config: PathBuf,
    },
    /// Inspect the write-ahead log.
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
    /// Export a log directory's orders to PostgreSQL, exactly once, resuming
    /// after what the database holds (for catch-up, or after a sale). The
    /// export settings ([export], [engine]) come from the config file and
    /// FLASHSALE_* variables; give the URL there or with --postgres.
    Export {
        /// The log directory (a stopped server's `wal.dir`).
        #[arg(long)]
        wal_dir: PathBuf,
        /// PostgreSQL URL [default: export.postgres_url]. It holds the
        /// password, which the process list shows: prefer
        /// FLASHSALE_EXPORT_POSTGRES_URL.
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        /// Stop once everything in the directory is exported; without it,
        /// keep following the directory.
        #[arg(long)]
        once: bool,
        #[arg(long, default_value = "./config.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum WalCommand {
    /// Check every record and snapshot; exit 1 on corruption.
    Verify {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Print one line per record.
    Dump {
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Export {
            wal_dir,
            postgres,
            once,
            config,
        } => export(&config, wal_dir, postgres, once),
        Command::Token {
            user,
            ttl,
            skus,
            count,
            config,
        } => match tokens(&config, &user, &ttl, skus, count) {
            Ok(tokens) => {
                use std::io::Write as _;
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                for token in tokens {
                    let _ = writeln!(out, "{token}");
                }
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("flashsale token: {err:#}");
                ExitCode::from(2)
            }
        },
        Command::Wal { command } => match command {
            WalCommand::Verify { dir } => match wal::verify(&dir) {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("flashsale wal verify: {err}");
                    ExitCode::from(1)
                }
            },
            WalCommand::Dump { dir } => {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                match wal::dump(&dir, &mut out) {
                    Ok(_) => ExitCode::SUCCESS,
                    Err(err) => {
                        drop(out);
                        eprintln!("flashsale wal dump: {err}");
                        ExitCode::from(1)
                    }
                }
            }
        },
    }
}

/// `flashsale token`: HS256 tokens for `user` (or, with `count`, for
/// `user0`, `user1`, …), valid for `ttl`.
fn tokens(
    config_path: &Path,
    user: &str,
    ttl: &str,
    skus: Vec<String>,
    count: Option<u64>,
) -> Result<Vec<String>> {
    let config = load_config(config_path)?;
    let auth = &config.buyer_auth;
    if auth.algorithm != gateway::config::JwtAlgorithm::Hs256 {
        anyhow::bail!(
            "buyer_auth.algorithm is {}: only HS256 tokens can be minted here (their              private key belongs to the shop's login service)",
            auth.algorithm.as_str()
        );
    }
    let users: Vec<String> = match count {
        None => vec![user.to_string()],
        Some(n) => (0..n).map(|i| format!("{user}{i}")).collect(),
    };
    if let Some(bad) = users.iter().find(|u| !engine::valid_user_id(u)) {
        anyhow::bail!(
            "user {bad:?} must be 1 to {} bytes",
            engine::USER_ID_LEN_MAX
        );
    }
    let secret = gateway::buyer_auth::hs256_secret(auth)?;
    let ttl_s = parse_ttl(ttl).with_context(|| format!("--ttl {ttl:?}"))?;
    let now = gateway::app::unix_ms() / 1000;
    let skus = (!skus.is_empty()).then_some(skus);
    let mint = |sub: String| {
        let claims = gateway::buyer_auth::BuyerClaims {
            sub,
            exp: now + ttl_s,
            nbf: None,
            iat: Some(now),
            iss: auth.issuer.clone(),
            aud: auth.audience.clone(),
            skus: skus.clone(),
        };
        gateway::buyer_auth::mint_hs256(&secret, &claims)
    };
    Ok(users.into_iter().map(mint).collect())
}

/// `90`, `90s`, `10m`, `2h`, `1d` as seconds.
fn parse_ttl(text: &str) -> Result<u64> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits
        .parse()
        .context("expected a number of seconds, or 30s, 10m, 2h, 1d")?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => anyhow::bail!("unknown unit {other:?} (s, m, h or d)"),
    };
    let secs = n
        .checked_mul(scale)
        .filter(|&s| s > 0)
        .context("must be above 0")?;
    Ok(secs)
}

fn load_config(path: &Path) -> Result<Config> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        // No file: the documented defaults, still overridable from the env.
        Err(err)
            if err.kind() == std::io::ErrorKind::NotFound && path == Path::new("./config.toml") =>
        {
            String::new()
        }
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    let env = config_env()?;
    gateway::config::load(&text, &env)
        .with_context(|| format!("configuration ({})", path.display()))
}

/// The environment as the loader takes it. `std::env::vars` would panic on
/// a variable that is not UTF-8; those are skipped, except a `FLASHSALE_*`
/// one, which is refused: it may be a key, and a key must not be dropped.
fn config_env() -> Result<Vec<(String, String)>> {
    let mut env = Vec::new();
    for (name, value) in std::env::vars_os() {
        match (name.into_string(), value.into_string()) {
            (Ok(name), Ok(value)) => env.push((name, value)),
            (Ok(name), Err(_)) if name.starts_with("FLASHSALE_") => {
                anyhow::bail!("environment variable {name} is not valid UTF-8")
            }
            // Not UTF-8 and not ours: no key can be named by it.
            _ => {}
        }
    }
    Ok(env)
}

fn serve(config_path: &Path) -> ExitCode {
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(err) => {
            eprintln!("flashsale: {err:#}");
            return ExitCode::from(2);
        }
    };
    init_logging();
    // This runtime only accepts, recovers and waits for signals; connections
    // are served on the I/O threads' own runtimes (gateway::server).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            tracing::error!(%err, "cannot start the runtime");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve_async(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::from(1)
        }
    }
}

async fn serve_async(config: Config) -> Result<()> {
    tracing::info!(config = %config, "effective configuration");
    if config.wal.fsync == wal::FsyncMode::Never {
        tracing::warn!(
            "wal.fsync = \"never\": acknowledged orders can be lost on a crash (benchmarks only)"
        );
    }
    match config.buyer_auth.mode {
        gateway::config::BuyerAuthMode::Jwt => {}
        gateway::config::BuyerAuthMode::Header => tracing::warn!(
            header = %config.buyer_auth.user_header,
            "buyer_auth.mode = \"header\": buyers are whoever the {} header names; \
             serve only behind a gateway that authenticates them and sets it",
            config.buyer_auth.user_header
        ),
        gateway::config::BuyerAuthMode::Body => tracing::warn!(
            "buyer_auth.mode = \"body\": clients name themselves (user_id in the body); \
             anyone can buy as anyone (benchmarks and tests only)"
        ),
    }
    // On a non-loopback address the loader refuses the default token.
    if config.server.admin_token == gateway::config::ADMIN_TOKEN_DEFAULT {
        tracing::warn!("server.admin_token is the documented default; set a secret one");
    }
    // Handlers first, so a SIGTERM during start-up is a clean shutdown too.
    let shutdown = shutdown_signal().context("installing signal handlers")?;
    let listener = gateway::server::bind(config.server.listen)
        .with_context(|| format!("binding {}", config.server.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!(%addr, "listening on {addr}");

    gateway::server::serve(listener, config, shutdown).await?;
    tracing::info!("bye");
    Ok(())
}

/// Log lines to stderr, at `info` unless `RUST_LOG` says otherwise.
fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
}

/// `flashsale export`: the relay of `serve`, on a directory no server
/// writes to.
fn export(config_path: &Path, wal_dir: PathBuf, postgres: Option<String>, once: bool) -> ExitCode {
    let mut config = match load_config(config_path) {
        Ok(c) => c,
        Err(err) => {
            eprintln!("flashsale: {err:#}");
            return ExitCode::from(2);
        }
    };
    init_logging();
    if let Some(url) = postgres {
        config.export.postgres_url = Some(url);
    }
    let Some(url) = config.export.postgres_url.clone() else {
        eprintln!("flashsale export: no database: give --postgres URL or set export.postgres_url");
        return ExitCode::from(2);
    };
    let options = gateway::export::relay::RelayOptions {
        export: gateway::export::ExportOptions {
            postgres_url: url,
            table_prefix: config.export.table_prefix.clone(),
            statement_timeout: config.export.statement_timeout,
            connect_timeout: gateway::export::CONNECT_TIMEOUT_DEFAULT,
        },
        wal_dir,
        engine: config.engine,
        batch_records: config.export.batch_records as usize,
        lanes: config.export.connections as usize,
        max_lag_bytes: config.export.max_lag_bytes,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("flashsale export: cannot start the runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let status = gateway::export::ExportStatus::default();
    let result = runtime.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let signals = shutdown_signal().context("installing signal handlers")?;
        let source = gateway::export::relay::RelaySource::Directory { once };
        let relay = gateway::export::relay::run(source, options, &status, stop_rx);
        tokio::pin!(relay);
        tokio::select! {
            result = &mut relay => result.map_err(anyhow::Error::from),
            () = signals => {
                let _ = stop_tx.send(true);
                relay.await.map_err(anyhow::Error::from)
            }
        }
    });
    let s = status.snapshot(gateway::app::unix_ms());
    match result {
        Ok(()) => {
            println!(
                "exported up to log record {} ({} rows written)",
                s.lsn, s.rows_total
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("flashsale export: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// A future resolving on SIGTERM or SIGINT; the handlers are installed now.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
    })
}

//! `--spawn`: run a real `flashsale` server for the duration of a test.
//!
//! The server gets a private temp dir (config file and WAL), a free loopback
//! port and the admin token, is waited on until `/readyz` answers 200, and is
//! stopped with SIGTERM afterwards so its graceful shutdown path is exercised
//! too. If the binary isn't built yet it is built with cargo, because
//! `cargo run -p loadtest` only builds this package.

use crate::client::{ClientConn, Target};
use anyhow::{bail, Context, Result};
use hyper::Method;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::process::{Child, Command};

/// How long the server may take to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Lines of the server log shown when it misbehaves.
const LOG_TAIL_LINES: usize = 40;

/// Where the workspace root is: this crate lives one level below it.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Finds the server binary: an explicit path, then `$FLASHSALE_BIN`, then
/// next to this executable; failing all three, builds it.
pub fn find_server_bin(explicit: Option<&Path>, quiet: bool) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if !p.is_file() {
            bail!("--server-bin {} does not exist", p.display());
        }
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("FLASHSALE_BIN") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("FLASHSALE_BIN={} does not exist", p.display());
        }
        return Ok(p);
    }
    if let Some(beside) = beside_exe() {
        return Ok(beside);
    }
    build_server(quiet)
}

/// `flashsale` next to this executable, if it is there.
fn beside_exe() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let beside = exe.parent()?.join("flashsale");
    beside.is_file().then_some(beside)
}

fn build_server(quiet: bool) -> Result<PathBuf> {
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    if !quiet {
        eprintln!("flashsale binary not found; building it: cargo build --release -p gateway --bin flashsale");
    }
    let status = std::process::Command::new(&cargo)
        .args(["build", "--release", "-p", "gateway", "--bin", "flashsale"])
        .current_dir(&root)
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {cargo:?} build in {}", root.display()))?;
    if !status.success() {
        bail!("building the flashsale server failed ({status})");
    }
    // Under `cargo run --release` the build landed next to us, whatever
    // target dir cargo was configured with; otherwise work it out.
    if let Some(beside) = beside_exe() {
        return Ok(beside);
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
        Some(d) => root.join(d),
        None => root.join("target"),
    };
    let bin = target.join("release").join("flashsale");
    if !bin.is_file() {
        bail!("cargo built the server but {} is missing", bin.display());
    }
    Ok(bin)
}

/// A free loopback port. Another process could take it before the server
/// binds it; that race is accepted because the server is told the port up
/// front (it cannot report one it picked itself).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Settings for the spawned server.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    pub bin: PathBuf,
    pub admin_token: String,
    /// WAL fsync mode written to the config (`always` is the durable default).
    pub fsync: String,
    /// `export.postgres_url` (a secret: passed in the environment, never
    /// written to the config file or printed).
    pub export_postgres_url: Option<String>,
    /// `export.table_prefix`, with the URL.
    pub export_table_prefix: Option<String>,
    /// `buyer_auth.secret`: jwt mode with it, body mode without (a secret
    /// too: in the environment only).
    pub jwt_secret: Option<String>,
}

/// A running server; stop it with [`Spawned::stop`]. Dropping it kills the
/// process (kill_on_drop), so an early error never leaks a server.
pub struct Spawned {
    child: Child,
    pub url: String,
    pub log_path: PathBuf,
    dir: TempDir,
}

fn toml_str(s: &str) -> String {
    // A TOML basic string has the same escapes as JSON for what we write.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The spawned server's config file: only the keys a load test sets on
/// purpose. Every other key takes the binary's own default (declared once,
/// in the gateway's key table), so no default is copied here to drift.
/// Listen address, WAL dir and admin token are passed in the environment.
fn server_config(fsync: &str, mode: &str) -> String {
    format!(
        "# Written by flashsale-loadtest --spawn: only what a load test sets;\n\
         # every other key is the server's default.\n\
         [rate_limit]\n\
         # Off: the test measures the server, not its limiter.\n\
         global_rps = 0\n\
         per_client_rps = 0\n\
         \n\
         [buyer_auth]\n\
         # jwt: the secret is in FLASHSALE_BUYER_AUTH_SECRET.\n\
         mode = {}\n\
         \n\
         [wal]\n\
         fsync = {}\n",
        toml_str(mode),
        toml_str(fsync)
    )
}

/// Writes the config, starts the server and waits until it is ready.
pub async fn spawn_server(opts: &SpawnOptions) -> Result<Spawned> {
    let dir = tempfile::Builder::new()
        .prefix("flashsale-loadtest-")
        .tempdir()
        .context("creating temp dir")?;
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let wal = dir.path().join("wal");
    std::fs::create_dir_all(&wal).context("creating WAL dir")?;
    let config_path = dir.path().join("flashsale.toml");
    let mode = if opts.jwt_secret.is_some() {
        "jwt"
    } else {
        "body"
    };
    std::fs::write(&config_path, server_config(&opts.fsync, mode))
        .context("writing server config")?;
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).context("creating server log")?;
    let mut cmd = Command::new(&opts.bin);
    if let Some(url) = &opts.export_postgres_url {
        cmd.env("FLASHSALE_EXPORT_POSTGRES_URL", url);
    }
    if let Some(prefix) = &opts.export_table_prefix {
        cmd.env("FLASHSALE_EXPORT_TABLE_PREFIX", prefix);
    }
    if let Some(secret) = &opts.jwt_secret {
        cmd.env("FLASHSALE_BUYER_AUTH_SECRET", secret);
    }
    let child = cmd
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        // In the environment rather than the file: it wins over the file
        // and over any FLASHSALE_* the caller exported, which may still
        // tune the other keys of the spawned server.
        .env("FLASHSALE_SERVER_LISTEN", &listen)
        .env("FLASHSALE_WAL_DIR", &wal)
        .env("FLASHSALE_SERVER_ADMIN_TOKEN", &opts.admin_token)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", opts.bin.display()))?;
    let mut s = Spawned {
        child,
        url: format!("http://{listen}"),
        log_path,
        dir,
    };
    s.wait_ready().await?;
    Ok(s)
}

impl Spawned {
    /// The server's temp dir (config, WAL, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let target = Target::parse(&self.url).await?;
        let mut conn = ClientConn::new(target, Duration::from_secs(1));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "server exited before becoming ready ({status}); log:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(r) = conn.send(Method::GET, "/readyz", None, None).await {
                if r.code == 200 {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "server not ready within {} s; log:\n{}",
                    READY_TIMEOUT.as_secs(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then wait; SIGKILL if it doesn't exit in time.
    pub async fn stop(mut self) -> Result<ExitStatus> {
        if let Some(pid) = self.child.id() {
            let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
            // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our
            // own child, which has not been reaped yet (we still hold it), so
            // the pid cannot have been recycled for another process.
            let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
            if rc != 0 {
                bail!(
                    "sending SIGTERM to server: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                self.child.kill().await.context("killing server")?;
                bail!(
                    "server did not exit within {} s of SIGTERM and was killed; log:\n{}",
                    STOP_TIMEOUT.as_secs(),
                    self.log_tail()
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spawned server's file names only keys the repository's
    /// documented config.toml has (so a renamed key fails here, not at a
    /// rehearsal), sets few of them, and escapes the fsync mode.
    #[test]
    fn server_config_sets_only_documented_keys() {
        let documented: toml::Table = include_str!("../../config.toml").parse().unwrap();
        let ours: toml::Table = server_config("interval", "jwt").parse().unwrap();
        let mut count = 0;
        for (section, keys) in &ours {
            for name in keys.as_table().unwrap().keys() {
                assert!(
                    documented[section].get(name).is_some(),
                    "{section}.{name} is not in config.toml"
                );
                count += 1;
            }
        }
        assert_eq!(count, 4);
        assert_eq!(ours["buyer_auth"]["mode"].as_str(), Some("jwt"));
        assert_eq!(ours["wal"]["fsync"].as_str(), Some("interval"));
        let odd: toml::Table = server_config("a\"b", "body").parse().unwrap();
        assert_eq!(odd["wal"]["fsync"].as_str(), Some("a\"b"));
    }
}

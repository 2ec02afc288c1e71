//! A throwaway PostgreSQL cluster for tests: Debian's `postgresql` package
//! (`initdb` and `pg_ctl` of the newest version under /usr/lib/postgresql),
//! on a temporary directory and a free port on 127.0.0.1, stopped when the
//! [`PgCluster`] drops, a failed or panicking test included.
//!
//! PostgreSQL refuses to run as root, so as root the server runs as the
//! `postgres` user (`runuser`), in a directory handed to it. TCP logins
//! need the password (scram-sha-256), so a wrong password is refused as in
//! production. The data directory keeps fsync on: the fault tests stop
//! the server with `-m immediate`, and what it committed must survive.
//!
//! [`PgCluster::start`] is `None` only when no server can be started at all
//! (no PostgreSQL installed); callers print a loud SKIP then, and under
//! `CI=true` it panics instead, so CI cannot pass by skipping.

#![allow(dead_code)] // each test file uses its own share of the helpers

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A running throwaway cluster.
pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    password: String,
    /// Run the tools as `postgres` (we are root).
    as_postgres: bool,
    running: bool,
}

impl PgCluster {
    /// Starts a cluster, or says why not (see the module doc).
    pub fn start() -> Option<PgCluster> {
        match PgCluster::try_start() {
            Ok(cluster) => Some(cluster),
            Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("CI=true and PostgreSQL cannot be started: {why}")
            }
            Err(why) => {
                eprintln!();
                eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
                eprintln!("!!! SKIP: this test needs PostgreSQL and none can be started:");
                eprintln!("!!!   {why}");
                eprintln!("!!! Install it: apt-get install -y postgresql (scripts/test.sh does)");
                eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
                None
            }
        }
    }

    fn try_start() -> Result<PgCluster, String> {
        let bin = newest_bin_dir().ok_or("no /usr/lib/postgresql/*/bin/initdb")?;
        // SAFETY: geteuid has no preconditions.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let dir = tempfile::Builder::new()
            .prefix("flashsale-pg-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let password = format!("pw-{:x}-{}", nanos(), std::process::id());
        let cluster = PgCluster {
            bin,
            dir,
            port: free_port()?,
            password,
            as_postgres,
            running: false,
        };
        if as_postgres {
            let (uid, gid) = postgres_ids()?;
            std::os::unix::fs::chown(cluster.dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("chown to postgres: {e}"))?;
        }
        cluster.init_db()?;
        let mut cluster = cluster;
        cluster.start_again();
        Ok(cluster)
    }

    /// `initdb` with the password, scram for TCP, trust on the socket.
    fn init_db(&self) -> Result<(), String> {
        let pwfile = self.dir.path().join("pwfile");
        std::fs::write(&pwfile, &self.password).map_err(|e| e.to_string())?;
        self.chown(&pwfile)?;
        let out = self.tool(
            "initdb",
            &[
                "-D",
                &self.data().display().to_string(),
                "-U",
                "postgres",
                "--pwfile",
                &pwfile.display().to_string(),
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )?;
        check("initdb", &out)
    }

    /// Starts (or restarts) the server on the same port and data; waits
    /// until it accepts connections. Panics if it cannot.
    pub fn start_again(&mut self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c max_connections=40 -c shared_buffers=64MB",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .tool(
                "pg_ctl",
                &[
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    &self.data().display().to_string(),
                    "-l",
                    &self.dir.path().join("server.log").display().to_string(),
                    "-o",
                    &opts,
                ],
            )
            .expect("run pg_ctl start");
        if let Err(e) = check("pg_ctl start", &out) {
            panic!("{e}\nserver log:\n{}", self.server_log());
        }
        self.running = true;
    }

    /// Stops the server the way a crash does: no checkpoint, connections
    /// cut. What it had committed comes back with [`PgCluster::start_again`].
    pub fn stop_immediate(&mut self) {
        let data = self.data().display().to_string();
        let out = self
            .tool("pg_ctl", &["stop", "-m", "immediate", "-w", "-D", &data])
            .expect("run pg_ctl stop");
        check("pg_ctl stop", &out).unwrap();
        self.running = false;
    }

    /// `postgres://postgres:<password>@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        self.url_with("postgres", &self.password, "postgres")
    }

    pub fn url_with(&self, user: &str, password: &str, dbname: &str) -> String {
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{dbname}",
            self.port
        )
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn chown(&self, path: &Path) -> Result<(), String> {
        if !self.as_postgres {
            return Ok(());
        }
        let (uid, gid) = postgres_ids()?;
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| e.to_string())
    }

    /// Runs one of the server's tools, as `postgres` when we are root.
    fn tool(&self, name: &str, args: &[&str]) -> Result<Output, String> {
        let exe = self.bin.join(name);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        // Run from a directory `postgres` may enter (not root's home).
        cmd.args(args).current_dir(self.dir.path());
        cmd.output().map_err(|e| format!("{}: {e}", exe.display()))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let data = self.data().display().to_string();
            // Best effort: the temp dir goes either way.
            let _ = self.tool("pg_ctl", &["stop", "-m", "immediate", "-w", "-D", &data]);
        }
    }
}

/// The bin directory of the newest installed major version.
fn newest_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn postgres_ids() -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(|e| e.to_string())?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| "no `postgres` user to run the server as".to_string())
    };
    Ok((id("-u")?, id("-g")?))
}

/// A port free now on 127.0.0.1 (another process could take it before
/// the server binds it; pg_ctl would then fail loudly).
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn check(what: &str, out: &Output) -> Result<(), String> {
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

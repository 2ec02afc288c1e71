//! Helpers shared by the gateway's integration tests: an in-process server on
//! port 0, a small hyper-based client, raw sockets, and the real binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway::{App, Config};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderMap;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub const TOKEN: &str = "test-token";

/// A server running in this process on 127.0.0.1:0.
pub struct TestServer {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), gateway::wal::WalError>>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_tests(dir.path().join("wal"));
        tweak(&mut config);
        Self::start_in(dir, config).await
    }

    pub async fn start_in(dir: tempfile::TempDir, config: Config) -> TestServer {
        Self::start_on(dir, config, Arc::new(persistence::FsStorage)).await
    }

    /// On a given storage backend (fault injection).
    pub async fn start_on(
        dir: tempfile::TempDir,
        config: Config,
        storage: Arc<dyn persistence::Storage>,
    ) -> TestServer {
        let listener = gateway::server::bind(config.server.listen).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = App::new(config.clone()).expect("buyer auth loads");
        let (engine, wal, _) =
            persistence::open_with_storage(config.wal.clone(), config.engine, storage).unwrap();
        app.install(engine, wal);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(gateway::run(listener, app.clone(), async {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            app,
            dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn conn(&self) -> Conn {
        Conn::connect(self.addr).await.unwrap()
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn shutdown(&mut self) -> Result<(), gateway::wal::WalError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap(),
            None => Ok(()),
        }
    }
}

/// A reply, body kept whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The `status` field of the body.
    pub fn code(&self) -> String {
        self.json()["status"].as_str().unwrap_or("").to_string()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One keep-alive HTTP/1.1 client connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender })
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> Result<Reply, hyper::Error> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("host", "localhost")];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth));
        }
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        self.request(method, path, &headers, body.unwrap_or(""))
            .await
    }

    /// A request with exactly these headers (no `host` unless given).
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Reply, hyper::Error> {
        let mut req = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(Method::GET, path, None, None).await.unwrap()
    }

    pub async fn post(&mut self, path: &str, body: &str) -> Reply {
        self.send(Method::POST, path, Some(body), None)
            .await
            .unwrap()
    }

    pub async fn admin_get(&mut self, path: &str) -> Reply {
        self.send(Method::GET, path, None, Some(TOKEN))
            .await
            .unwrap()
    }

    pub async fn admin_post(&mut self, path: &str, body: &str) -> Reply {
        self.send(Method::POST, path, Some(body), Some(TOKEN))
            .await
            .unwrap()
    }

    pub async fn create_sale(&mut self, body: &str) -> Reply {
        self.admin_post("/v1/admin/sales", body).await
    }
}

/// `raw_exchange` off the runtime's threads (the server shares the runtime).
pub async fn raw(addr: SocketAddr, request: &[u8], wait: Duration) -> (String, bool) {
    let request = request.to_vec();
    tokio::task::spawn_blocking(move || raw_exchange(addr, &request, wait))
        .await
        .unwrap()
}

/// Writes raw bytes and reads until the server closes or `wait` passes.
pub fn raw_exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> (String, bool) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

// ---------------------------------------------------------------------------
// The real binary

/// A `flashsale serve` child process.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<String>>,
}

pub fn write_config(dir: &Path, fsync: &str) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\n\
         header_read_timeout_ms = 5000\n[engine]\nshards = 2\n\
         [buyer_auth]\nmode = \"body\"\n\
         [wal]\ndir = \"{}\"\nfsync = \"{fsync}\"\n",
        dir.join("wal").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

impl Proc {
    /// Starts the binary and waits until it logs its bound address.
    pub fn spawn(config: &Path, env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flashsale"));
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn flashsale");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find("listening on ") {
                    let addr = line[i + 13..]
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_string();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                let mut log = log2.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "flashsale did not report its address; log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Proc { child, addr, log }
    }

    /// Polls /readyz until 200.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut c) = Conn::connect(self.addr).await {
                if let Ok(r) = c.send(Method::GET, "/readyz", None, None).await {
                    if r.status == 200 {
                        return;
                    }
                }
            }
            assert!(Instant::now() < deadline, "not ready; log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// SIGTERM, then the exit code (within 20 s).
    pub fn terminate(mut self) -> i32 {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("no exit after SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

//! The dashboard in a real browser: Debian's headless `chromium`, driven
//! over WebDriver by Debian's `chromedriver`, against the real `flashsale`
//! binary while purchases run. Checks that the page signs in from the URL
//! fragment and shows the sale, that the remaining stock it shows is the
//! API's (`GET /v1/sales/{sku}`) at its snapshot's time and at most a
//! second old, and that pausing from the page pauses the sale. Leaves a
//! screenshot in `target/test-artefacts/dashboard.png`.
//!
//! Without chromium or chromedriver it prints a loud SKIP, unless
//! `CI=true`, where it fails (`scripts/test.sh` installs both). Override
//! their paths with `CHROMIUM_BIN` and `CHROMEDRIVER_BIN`.
//!
//! The WebDriver client is a few lines of blocking HTTP/1.1 over a
//! `TcpStream` (one request per connection), so the guards can end the
//! browser session from `Drop`, on failure too.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{write_config, Conn, Proc, TOKEN};
use serde_json::{json, Value};

const SKU: &str = "dash-1";
/// How stale the shown figure may be: one snapshot period (1 s), plus
/// the time to deliver and draw it and for WebDriver to read it back on a
/// busy 2-core machine.
const FRESH_MS: u64 = 1_000 + 400;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

// ---------------------------------------------------------------------------
// Blocking HTTP/1.1, one request per connection.

fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let content = if body.is_empty() && method != "POST" {
        String::new()
    } else {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {TOKEN}\r\n{content}\r\n{body}"
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut length = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut out = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).unwrap();
            out.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        out.resize(n, 0);
        reader.read_exact(&mut out).unwrap();
    } else {
        reader.read_to_end(&mut out).unwrap();
    }
    (status, out)
}

fn http_json(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let (status, bytes) = http(addr, method, path, body);
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: not JSON ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, value)
}

// ---------------------------------------------------------------------------
// chromedriver and the browser, stopped on drop.

/// `chromedriver` in its own process group (so the browsers it starts go
/// with it), and its one session.
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: Option<String>,
    profile: tempfile::TempDir,
    artefacts: PathBuf,
}

impl Browser {
    fn start(chromium: &Path, chromedriver: &Path, artefacts: PathBuf) -> Browser {
        let mut driver = Command::new(chromedriver)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let stdout = driver.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // "ChromeDriver was started successfully on port 39917."
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromedriver reports its port");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            addr,
            session: None,
            profile,
            artefacts,
        };
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1400,1700".into(),
            format!("--user-data-dir={}", browser.profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let (status, v) = http_json(addr, "POST", "/session", Some(&caps));
        assert_eq!(status, 200, "new session: {v}");
        browser.session = Some(v["value"]["sessionId"].as_str().unwrap().to_string());
        browser
    }

    /// A WebDriver command of the session; its `value`.
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let session = self.session.as_deref().unwrap();
        let body = body.or_else(|| (method == "POST").then(|| json!({})));
        let (status, v) = http_json(
            self.addr,
            method,
            &format!("/session/{session}{path}"),
            body.as_ref(),
        );
        assert_eq!(status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    fn script(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// The element `css` selects, or `None`.
    fn find(&self, css: &str) -> Option<String> {
        let session = self.session.as_deref().unwrap();
        let (status, v) = http_json(
            self.addr,
            "POST",
            &format!("/session/{session}/element"),
            Some(&json!({"using": "css selector", "value": css})),
        );
        if status != 200 {
            return None;
        }
        let element = &v["value"]["element-6066-11e4-a52e-4f735466cecf"];
        element.as_str().map(String::from)
    }

    fn wait_for(&self, css: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(e) = self.find(css) {
                return e;
            }
            assert!(Instant::now() < deadline, "no {css} within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn text(&self, element: &str) -> String {
        self.cmd("GET", &format!("/element/{element}/text"), None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn attribute(&self, element: &str, name: &str) -> Option<String> {
        self.cmd("GET", &format!("/element/{element}/attribute/{name}"), None)
            .as_str()
            .map(String::from)
    }

    fn click(&self, element: &str) {
        self.cmd("POST", &format!("/element/{element}/click"), None);
    }

    /// Saves a PNG of the page under the artefacts directory.
    fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64_decode(b64.as_str().expect("base64 text"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        std::fs::create_dir_all(&self.artefacts).unwrap();
        let path = self.artefacts.join(name);
        std::fs::write(&path, &png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            if std::thread::panicking() {
                // What the page showed when the test failed.
                self.session = Some(session.clone());
                let shot = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.screenshot("dashboard-failure.png")
                }));
                if let Ok(path) = shot {
                    eprintln!("failure screenshot: {}", path.display());
                }
                self.session = None;
            }
            // Closes the browser; chromedriver waits for it to exit.
            let addr = self.addr;
            let _ = std::panic::catch_unwind(move || {
                http(addr, "DELETE", &format!("/session/{session}"), None)
            });
        }
        // Then the whole group: chromedriver and anything it left.
        let pgid = self.driver.id() as i32;
        // SAFETY: kill(2) on the process group of a child we started.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}

/// Standard base64 (RFC 4648), as WebDriver sends screenshots.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c:?}"),
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=' && c != b'\n').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= u32::from(value(c)) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

// ---------------------------------------------------------------------------
// The load, and the API's view of the sale over time.

/// `GET /v1/sales/{sku}` answers: sent at, received at, remaining, state.
type Samples = Arc<Mutex<Vec<(u64, u64, u64, String)>>>;

struct Load {
    stop: Arc<AtomicBool>,
    admitted: Arc<AtomicU64>,
    paused: Arc<AtomicU64>,
    samples: Samples,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn start_load(rt: &tokio::runtime::Runtime, addr: SocketAddr) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let admitted = Arc::new(AtomicU64::new(0));
    let paused = Arc::new(AtomicU64::new(0));
    let next_user = Arc::new(AtomicU64::new(1));
    let samples: Samples = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (stop, admitted, paused, next_user) = (
            stop.clone(),
            admitted.clone(),
            paused.clone(),
            next_user.clone(),
        );
        tasks.push(rt.spawn(async move {
            let mut c = Conn::connect(addr).await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                let user = next_user.fetch_add(1, Ordering::Relaxed);
                let r = c
                    .post(
                        &format!("/v1/sales/{SKU}/purchase"),
                        &format!(r#"{{"user_id":"u{user}"}}"#),
                    )
                    .await;
                match (r.status, r.code().as_str()) {
                    (201, _) => admitted.fetch_add(1, Ordering::Relaxed),
                    (409, "paused") => paused.fetch_add(1, Ordering::Relaxed),
                    other => panic!("purchase answered {other:?}"),
                };
            }
        }));
    }
    let (stop2, samples2) = (stop.clone(), samples.clone());
    tasks.push(rt.spawn(async move {
        let mut c = Conn::connect(addr).await.unwrap();
        while !stop2.load(Ordering::Relaxed) {
            let sent = unix_ms();
            let sale = c.get(&format!("/v1/sales/{SKU}")).await.json();
            let received = unix_ms();
            let remaining = sale["remaining"].as_u64().unwrap();
            let state = sale["state"].as_str().unwrap().to_string();
            samples2
                .lock()
                .unwrap()
                .push((sent, received, remaining, state));
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }));
    Load {
        stop,
        admitted,
        paused,
        samples,
        tasks,
    }
}

impl Load {
    fn finish(self, rt: &tokio::runtime::Runtime) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            rt.block_on(task).expect("a load task failed");
        }
        (
            self.admitted.load(Ordering::Relaxed),
            self.paused.load(Ordering::Relaxed),
        )
    }
}

/// The shown value `shown`, from a snapshot taken at `at_ms`, is what the
/// API answered then: answers received before it show at least as much
/// (stock only goes down here: no cancellation, no expiry within the
/// test), answers sent after it at most as much. Both sides must have an
/// answer within 250 ms, so the check is never vacuous.
fn check_against_api(samples: &Samples, shown: u64, at_ms: u64) {
    // The snapshot reads the sale a moment after it stamps `at_ms`.
    const BUILD_MS: u64 = 25;
    let samples = samples.lock().unwrap();
    let before: Vec<_> = samples.iter().filter(|s| s.1 <= at_ms).collect();
    let after: Vec<_> = samples.iter().filter(|s| s.0 >= at_ms + BUILD_MS).collect();
    let last_before = before.last().expect("an API answer before the snapshot");
    let first_after = after.first().expect("an API answer after the snapshot");
    assert!(
        at_ms - last_before.1 <= 250 && first_after.0 - at_ms <= 250 + BUILD_MS,
        "API answers too far from the snapshot at {at_ms}: {last_before:?} {first_after:?}"
    );
    for s in &before {
        assert!(
            s.2 >= shown,
            "shown {shown} at {at_ms}, but {s:?} came before"
        );
    }
    for s in &after {
        assert!(
            s.2 <= shown,
            "shown {shown} at {at_ms}, but {s:?} came after"
        );
    }
}

// ---------------------------------------------------------------------------

fn tool(var: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    path.exists().then_some(path)
}

fn artefacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("test-artefacts")
}

/// The shown remaining stock of the sale, its snapshot's time, and when
/// it was read. The figure and the time are two reads; a snapshot drawn
/// between them would pair one snapshot's figure with the next one's
/// time, so the time is read before and after, and the pair kept only
/// when both agree.
fn shown_remaining(b: &Browser) -> (u64, u64, u64) {
    let main = b.wait_for("#main", Duration::from_secs(1));
    let snapshot_at = || -> u64 {
        b.attribute(&main, "data-snapshot-at")
            .and_then(|v| v.parse().ok())
            .expect("data-snapshot-at on #main")
    };
    for _ in 0..20 {
        let before = snapshot_at();
        let e = b.wait_for(
            &format!("[data-sku=\"{SKU}\"] [data-metric=\"remaining\"]"),
            Duration::from_secs(5),
        );
        let raw: u64 = b
            .attribute(&e, "data-value")
            .and_then(|v| v.parse().ok())
            .expect("data-value on the remaining figure");
        // The text is the same number, grouped for reading.
        let digits: String = b.text(&e).chars().filter(char::is_ascii_digit).collect();
        if snapshot_at() == before {
            // After the reads: the age it is checked for is an upper bound.
            let read_at = unix_ms();
            assert_eq!(digits, raw.to_string(), "text and data-value differ");
            return (raw, before, read_at);
        }
    }
    panic!("a new snapshot was drawn during every read");
}

#[test]
fn dashboard_in_a_real_browser() {
    let chromium = tool("CHROMIUM_BIN", "/usr/bin/chromium");
    let chromedriver = tool("CHROMEDRIVER_BIN", "/usr/bin/chromedriver");
    let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "CI=true but chromium or chromedriver is missing: apt-get install chromium chromium-driver"
        );
        // Straight to stderr, past the test harness's capture, so the skip
        // shows without --nocapture.
        let _ = writeln!(
            std::io::stderr(),
            "\n!!! SKIP dashboard_in_a_real_browser: chromium or chromedriver not found\n\
             !!! (apt-get install chromium chromium-driver, or set CHROMIUM_BIN / CHROMEDRIVER_BIN)\n"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Proc::spawn(&write_config(dir.path(), "always"), &[]);
    rt.block_on(server.wait_ready());
    let addr = server.addr;
    let (status, _) = http_json(
        addr,
        "POST",
        "/v1/admin/sales",
        Some(&json!({"sku": SKU, "stock": 1_000_000, "per_user_limit": 1})),
    );
    assert_eq!(status, 201);
    let load = start_load(&rt, addr);
    let deadline = Instant::now() + Duration::from_secs(20);
    while load.admitted.load(Ordering::Relaxed) < 50 {
        assert!(Instant::now() < deadline, "the load admits nothing");
        std::thread::sleep(Duration::from_millis(20));
    }

    let browser = Browser::start(&chromium, &chromedriver, artefacts_dir());
    browser.cmd(
        "POST",
        "/url",
        Some(json!({"url": format!("http://{addr}/dashboard#token={TOKEN}")})),
    );

    // Signed in from the fragment: live, the sale shown, the token kept
    // for the tab and gone from the address bar.
    let card = browser.wait_for(&format!("[data-sku=\"{SKU}\"]"), Duration::from_secs(20));
    let link = browser.wait_for("#link", Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    while browser.attribute(&link, "data-state").as_deref() != Some("live") {
        assert!(Instant::now() < deadline, "the page never went live");
        std::thread::sleep(Duration::from_millis(50));
    }
    let page = browser.script(
        "return {hash: location.hash, stored: sessionStorage.getItem('flashsale.admin_token'), \
         login: document.querySelector('#login').hidden, \
         styled: getComputedStyle(document.body).maxWidth, \
         charts: document.querySelectorAll('.chart canvas').length}",
    );
    // The policy let the style sheet and both scripts (uPlot's draws the
    // charts) run.
    assert_eq!(page["styled"], "1440px", "the style sheet was refused");
    assert_eq!(page["charts"], 3, "the charts were not drawn");
    assert_eq!(page["hash"], "", "the fragment stays in the address bar");
    assert_eq!(page["stored"], TOKEN);
    assert_eq!(page["login"], true, "the login form shows");
    let state = browser.wait_for(
        &format!("[data-sku=\"{SKU}\"] [data-metric=\"state\"]"),
        Duration::from_secs(1),
    );
    assert_eq!(
        browser.attribute(&state, "data-value").as_deref(),
        Some("open")
    );
    assert!(browser.text(&card).contains(SKU));

    // While purchases run: the shown figure is the API's at its snapshot,
    // and that snapshot is at most a second (and delivery) old.
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (shown, at_ms, read_at) = shown_remaining(&browser);
        assert!(
            read_at.saturating_sub(at_ms) <= FRESH_MS,
            "shown {shown} from a snapshot {} ms old",
            read_at - at_ms
        );
        // Let answers after the snapshot come in, then compare.
        std::thread::sleep(Duration::from_millis(300));
        check_against_api(&load.samples, shown, at_ms);
        seen.push(shown);
        std::thread::sleep(Duration::from_millis(400));
    }
    assert!(
        seen.first() > seen.last(),
        "the shown stock did not move under load: {seen:?}"
    );

    // Pause from the page, confirming in its dialog.
    let pause = browser.wait_for(
        &format!("[data-sku=\"{SKU}\"] [data-action=\"pause\"]"),
        Duration::from_secs(1),
    );
    browser.click(&pause);
    let yes = browser.wait_for(
        "#confirm[open] [data-confirm=\"yes\"]",
        Duration::from_secs(5),
    );
    let title = browser.wait_for("#confirm-title", Duration::from_secs(1));
    assert_eq!(browser.text(&title), format!("Pause {SKU}?"));
    browser.click(&yes);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, sale) = http_json(addr, "GET", &format!("/v1/sales/{SKU}"), None);
        assert_eq!(status, 200);
        if sale["state"] == "paused" {
            break;
        }
        assert!(Instant::now() < deadline, "not paused: {sale}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while browser.attribute(&state, "data-value").as_deref() != Some("paused") {
        assert!(
            Instant::now() < deadline,
            "the page does not show it paused"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Paused, the stock stands still: within a snapshot period the page
    // shows exactly what the API answers.
    std::thread::sleep(Duration::from_millis(1_500));
    let (shown, at_ms, read_at) = shown_remaining(&browser);
    let (_, sale) = http_json(addr, "GET", &format!("/v1/sales/{SKU}"), None);
    assert_eq!(shown, sale["remaining"].as_u64().unwrap());
    assert!(read_at.saturating_sub(at_ms) <= FRESH_MS);
    let shot = browser.screenshot("dashboard.png");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    eprintln!("screenshot: {}", shot.display());

    let (admitted, paused) = load.finish(&rt);
    assert!(
        admitted >= 50 && paused > 0,
        "{admitted} admitted, {paused} paused"
    );
    drop(browser);
    assert_eq!(server.terminate(), 0);
}

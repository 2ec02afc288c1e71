//! Tests through the real `flashsale` binary: restart recovery after a clean
//! SIGTERM, configuration errors, and the `wal` operator commands.

mod common;

use std::process::Command;

use common::{write_config, Conn, Proc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_recovers_state_after_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "always");

    let p = Proc::spawn(&config, &[]);
    p.wait_ready().await;
    let mut c = Conn::connect(p.addr).await.unwrap();
    assert_eq!(
        c.create_sale(r#"{"sku":"r","stock":10,"per_user_limit":3}"#)
            .await
            .status,
        201
    );
    let mut orders = Vec::new();
    for user in 1..=4u64 {
        let r = c
            .post(
                "/v1/sales/r/purchase",
                &format!(r#"{{"user_id":"{user}","qty":2,"request_id":"req-{user}"}}"#),
            )
            .await;
        assert_eq!(r.status, 201);
        orders.push(r.json()["order_id"].as_str().unwrap().to_string());
    }
    assert_eq!(
        c.admin_post(&format!("/v1/orders/{}/pay", orders[0]), "")
            .await
            .status,
        200
    );
    assert_eq!(
        c.post(
            &format!("/v1/orders/{}/cancel", orders[1]),
            r#"{"user_id":"2"}"#
        )
        .await
        .status,
        200
    );
    assert_eq!(
        c.admin_post("/v1/admin/sales/r/stock", r#"{"add":5}"#)
            .await
            .status,
        200
    );
    assert_eq!(
        c.admin_post("/v1/admin/sales/r/pause", "").await.status,
        200
    );
    let before = c.get("/v1/sales/r").await.json();
    drop(c);
    let log = p.log();
    assert_eq!(p.terminate(), 0, "exit code after SIGTERM");

    let p = Proc::spawn(&config, &[]);
    p.wait_ready().await;
    let mut c = Conn::connect(p.addr).await.unwrap();
    assert_eq!(
        c.get("/v1/sales/r").await.json(),
        before,
        "first run log:\n{log}"
    );
    assert_eq!(before["stock"], 15);
    assert_eq!(before["state"], "paused");
    let expect = [
        (&orders[0], "paid"),
        (&orders[1], "cancelled"),
        (&orders[2], "reserved"),
        (&orders[3], "reserved"),
    ];
    for (id, state) in expect {
        let r = c.admin_get(&format!("/v1/orders/{id}")).await;
        assert_eq!(
            (r.status, r.json()["state"].as_str().unwrap()),
            (200, state),
            "order {id}"
        );
    }
    // Idempotency survives the restart (the request id hash is stable).
    assert_eq!(
        c.admin_post("/v1/admin/sales/r/resume", "").await.status,
        200
    );
    let r = c
        .post(
            "/v1/sales/r/purchase",
            r#"{"user_id":"3","qty":2,"request_id":"req-3"}"#,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["order_id"].as_str()),
        (200, Some(orders[2].as_str()))
    );
    // New order ids continue past the recovered ones.
    let r = c
        .post("/v1/sales/r/purchase", r#"{"user_id":"9","qty":1}"#)
        .await;
    assert_eq!(r.status, 201);
    assert!(!orders.contains(&r.json()["order_id"].as_str().unwrap().to_string()));
    drop(c);
    assert_eq!(p.terminate(), 0);

    // The operator tools read the same directory.
    let wal_dir = dir.path().join("wal");
    let out = Command::new(env!("CARGO_BIN_EXE_flashsale"))
        .args(["wal", "verify", "--dir"])
        .arg(&wal_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_flashsale"))
        .args(["wal", "dump", "--dir"])
        .arg(&wal_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let dump = String::from_utf8_lossy(&out.stdout);
    assert!(dump.lines().count() >= 10, "dump:\n{dump}");
}

#[test]
fn wal_verify_exits_1_on_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    {
        let config = gateway::Config::for_tests(&wal_dir);
        let (engine, wal, _) = gateway::wal::open(config.wal.clone(), config.engine).unwrap();
        let spec = engine::SaleSpec {
            sku: "v".into(),
            stock: 100,
            per_user_limit: 100,
            starts_at_ms: None,
            ends_at_ms: None,
            reservation_ttl_ms: 1000,
        };
        engine.create_sale(spec, 0, wal.sink()).unwrap();
        for user in 0..50 {
            let _ = engine.purchase("v", &user.to_string(), 1, None, 1, wal.sink());
        }
        wal.shutdown().unwrap();
    }
    // Flip a byte in the middle of the segment's records (the file runs on
    // past them in preallocated zeros).
    let segment = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).unwrap().len() > 1000)
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a segment file");
    let mut bytes = std::fs::read(&segment).unwrap();
    let used = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    bytes[used / 2] ^= 0x40;
    std::fs::write(&segment, bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flashsale"))
        .args(["wal", "verify", "--dir"])
        .arg(&wal_dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn bad_configuration_exits_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let run = |text: &str, env: &[(&str, &str)]| {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flashsale"));
        cmd.arg("serve").arg("--config").arg(&path);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run("[server]\nlisten_addr = \"x\"\n", &[]);
    assert_ne!(code, Some(0));
    assert!(err.contains("listen_addr"), "{err}");
    let (code, err) = run("", &[("FLASHSALE_SERVER_MAX_CONNECTIONS", "lots")]);
    assert_ne!(code, Some(0));
    assert!(err.contains("FLASHSALE_SERVER_MAX_CONNECTIONS"), "{err}");
    let (code, err) = run("[wal]\nfsync = \"maybe\"\n", &[]);
    assert_ne!(code, Some(0));
    assert!(err.contains("wal.fsync"), "{err}");
    // A FLASHSALE_* variable that names no key (here a typo of
    // FLASHSALE_RATE_LIMIT_GLOBAL_RPS) stops start-up rather than leaving
    // the sale without its rate limit.
    let (code, err) = run("", &[("FLASHSALE_RATELIMIT_GLOBAL_RPS", "1000")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("FLASHSALE_RATELIMIT_GLOBAL_RPS"), "{err}");
    // The documented admin token on a non-loopback address.
    let (code, err) = run("", &[("FLASHSALE_SERVER_LISTEN", "0.0.0.0:0")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("server.admin_token"), "{err}");
}

/// `flashsale token` mints an HS256 token from the configured secret that
/// the server in jwt mode accepts; without a secret it says what to set.
#[test]
fn token_tool_mints_what_the_server_accepts() {
    let secret = "binary-test-secret-of-32-bytes-or-more";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("empty.toml");
    std::fs::write(&config, "").unwrap();
    let mint = |env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flashsale"));
        cmd.arg("token").arg("--config").arg(&config).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = mint(
        &[("FLASHSALE_BUYER_AUTH_SECRET", secret)],
        &["--user", "alice", "--ttl", "2m", "--sku", "s1"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mut c = gateway::Config::for_tests(dir.path().join("wal"));
    c.buyer_auth.mode = gateway::config::BuyerAuthMode::Jwt;
    c.buyer_auth.secret = Some(secret.into());
    let gateway::buyer_auth::BuyerAuth::Jwt(verifier) =
        gateway::buyer_auth::BuyerAuth::load(&c.buyer_auth).unwrap()
    else {
        panic!("jwt mode");
    };
    let now = gateway::app::unix_ms() / 1000;
    let buyer = verifier.verify(token.as_bytes(), now).unwrap();
    assert_eq!(buyer.user_id, "alice");
    assert_eq!(buyer.skus, Some(vec!["s1".to_string()]));
    let out = mint(&[], &["--user", "alice"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FLASHSALE_BUYER_AUTH_SECRET"), "{err}");
}

//! Logs written by format version 1 (numeric user ids) still recover: each
//! id becomes its decimal string and keeps its limit, its orders and its
//! request ids; the server then appends version 2 in a new segment, never
//! into the old file. A version this build does not know is refused with a
//! message naming it.

use std::path::Path;

use engine::{EngineConfig, OrderId, OrderOutcome, OrderRejection, PurchaseOutcome, Rejection};
use persistence::format::{self, FileKind, FORMAT_VERSION, FORMAT_VERSION_V1};
use persistence::legacy::{encode_v1_payload, EventV1};
use persistence::{open, WalConfig, WalError};

const ENGINE: EngineConfig = EngineConfig::with_shards(2);
const TTL: u64 = 600_000;

fn frames(events: &[EventV1]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        let payload = encode_v1_payload(e);
        let len = payload.len() as u32;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&format::frame_crc(len, &payload).to_le_bytes());
        out.extend_from_slice(&payload);
    }
    out
}

fn write_v1_segment(dir: &Path, first_lsn: u64, events: &[EventV1]) {
    let mut bytes =
        format::encode_header_of_version(FileKind::Segment, first_lsn, FORMAT_VERSION_V1).to_vec();
    bytes.extend(frames(events));
    std::fs::write(dir.join(format::segment_name(first_lsn)), bytes).unwrap();
}

fn write_v1_snapshot(dir: &Path, covered: u64, events: &[EventV1]) {
    let mut bytes =
        format::encode_header_of_version(FileKind::Snapshot, covered, FORMAT_VERSION_V1).to_vec();
    bytes.extend(frames(events));
    bytes.extend_from_slice(&format::encode_footer(events.len() as u64));
    std::fs::write(dir.join(format::snapshot_name(covered)), bytes).unwrap();
}

fn admitted(seq: u64, user_id: u64, qty: u32, request_id: Option<u64>) -> EventV1 {
    EventV1::Admitted {
        order_id: OrderId::new(0, seq).0,
        user_id,
        qty,
        request_id,
        created_at_ms: 1_000,
        expires_at_ms: 1_000 + TTL,
    }
}

/// A version-1 snapshot (sale, user 7's order with request id 11) and a
/// version-1 segment after it (user 8's order, cancelled; user 7's second).
fn old_log(dir: &Path) {
    write_v1_snapshot(
        dir,
        3,
        &[
            EventV1::SaleCreated {
                ordinal: 0,
                sku: "hot".into(),
                stock: 10,
                per_user_limit: 3,
                starts_at_ms: None,
                ends_at_ms: None,
                reservation_ttl_ms: TTL,
            },
            admitted(0, 7, 2, Some(11)),
        ],
    );
    write_v1_segment(
        dir,
        3,
        &[
            admitted(1, 8, 1, None),
            EventV1::Cancelled {
                order_id: OrderId::new(0, 1).0,
                at_ms: 1_001,
            },
            admitted(2, 7, 1, None),
        ],
    );
}

#[test]
fn a_version_1_log_recovers_with_decimal_user_ids() {
    let tmp = tempfile::tempdir().unwrap();
    old_log(tmp.path());
    let segment = tmp.path().join(format::segment_name(3));
    let old_bytes = std::fs::read(&segment).unwrap();
    let config = WalConfig::new(tmp.path());
    let (engine, wal, _) = open(config.clone(), ENGINE).unwrap();

    let order0 = engine.order(OrderId::new(0, 0)).unwrap();
    assert_eq!(&*order0.user_id, "7");
    assert_eq!(&*engine.order(OrderId::new(0, 1)).unwrap().user_id, "8");
    let state = engine.state();
    assert_eq!(state.holdings, vec![((0, "7".to_string()), 3)]);
    assert_eq!(
        state.idempotency,
        vec![(("7".to_string(), 11), order0.order_id.0)]
    );
    assert_eq!(engine.sale("hot", 2_000).unwrap().remaining, 7);

    // "7" today is the 7 of the old log: its limit (3) is spent, its
    // request id replays, and nobody else can cancel its order.
    let mut sink = wal.sink();
    assert_eq!(
        engine.purchase("hot", "7", 1, None, 2_000, &mut sink),
        PurchaseOutcome::Rejected(Rejection::LimitExceeded)
    );
    assert!(matches!(
        engine.purchase("hot", "7", 2, Some(11), 2_000, &mut sink),
        PurchaseOutcome::Replayed(a) if a.order_id == order0.order_id
    ));
    assert_eq!(
        engine.cancel(order0.order_id, "07", 2_000, &mut sink),
        OrderOutcome::Rejected(OrderRejection::UnknownOrder)
    );
    assert!(matches!(
        engine.purchase("hot", "alice", 1, Some(11), 2_000, &mut sink),
        PurchaseOutcome::Admitted(_)
    ));
    assert!(matches!(
        engine.cancel(order0.order_id, "7", 2_001, &mut sink),
        OrderOutcome::Done { changed: true, .. }
    ));
    wal.wait_durable(sink.ticket().unwrap()).unwrap();
    let live = engine.state();
    wal.shutdown().unwrap();

    // The old file is untouched; what came after is in a new segment of
    // today's format.
    assert_eq!(std::fs::read(&segment).unwrap(), old_bytes);
    let next = tmp.path().join(format::segment_name(6));
    let header = std::fs::read(&next).unwrap();
    let header = format::decode_header(FileKind::Segment, &next, &header).unwrap();
    assert_eq!(header.version, FORMAT_VERSION);

    // Both formats replay together, to the same state.
    let (again, wal, _) = open(config, ENGINE).unwrap();
    assert_eq!(again.state(), live);
    wal.shutdown().unwrap();
    let report = persistence::verify(tmp.path()).unwrap();
    assert_eq!(report.records, 5);
}

#[test]
fn an_unknown_version_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = format::encode_header_of_version(FileKind::Segment, 1, 3).to_vec();
    bytes.extend_from_slice(&[0; 64]);
    let path = tmp.path().join(format::segment_name(1));
    std::fs::write(&path, bytes).unwrap();
    match open(WalConfig::new(tmp.path()), ENGINE) {
        Err(err @ WalError::UnsupportedVersion { version: 3, .. }) => {
            let text = err.to_string();
            assert!(text.contains("format version 3"), "{text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
        }
        Err(other) => panic!("expected UnsupportedVersion, got {other}"),
        Ok(_) => panic!("a log of version 3 was opened"),
    }
}

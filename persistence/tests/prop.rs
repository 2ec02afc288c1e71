//! Property: any sequence of engine operations logged through the WAL (with
//! small segments and frequent snapshots) recovers to the live state.

mod common;

use common::*;
use persistence::SimStorage;
use proptest::prelude::*;

fn op() -> impl Strategy<Value = SimOp> {
    prop_oneof![
        6 => (0..SALES, 0u8..8, 1u32..4, proptest::option::of(0u8..16))
            .prop_map(|(sale, user, qty, request)| SimOp::Purchase { sale, user, qty, request }),
        2 => any::<u16>().prop_map(SimOp::Pay),
        2 => any::<u16>().prop_map(SimOp::Cancel),
        1 => Just(SimOp::Expire),
        1 => (0..SALES, 1u64..5).prop_map(|(sale, add)| SimOp::AddStock { sale, add }),
        1 => (0..SALES).prop_map(SimOp::Pause),
        1 => (0..SALES).prop_map(SimOp::Resume),
        1 => (0..SALES).prop_map(SimOp::End),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn recovery_equals_live(ops in proptest::collection::vec(op(), 1..200), snapshot_every in 0u64..60) {
        let sim = SimStorage::new();
        let mut c = config(&sim_dir());
        c.segment_bytes = 700;
        c.snapshot_every_records = snapshot_every;
        let (engine, wal, _) = open_sim(&sim, c.clone());
        let log = run_ops(&engine, &wal, &ops);
        wal.shutdown().unwrap();
        let (again, w, report) = open_sim(&sim, c.clone());
        prop_assert_eq!(again.state(), engine.state());
        prop_assert!(report.snapshot_records + report.replayed_records <= log.len() as u64 * 2 + 10);
        w.shutdown().unwrap();
        // And once more, from what the second run left.
        let (third, w, _) = open_sim(&sim, c);
        prop_assert_eq!(third.state(), engine.state());
        w.shutdown().unwrap();
    }
}

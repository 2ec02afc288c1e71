//! Properties: any sequence of engine operations logged through the WAL (with
//! small segments and frequent snapshots) recovers to the live state; and
//! the tailer's batches, for any cursor, batch sizes and upper bounds, are
//! exactly the appended sequence.

mod common;

use common::*;
use std::sync::Arc;

use persistence::{LogTailer, SimStorage, Storage};
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn tailer_batches_are_the_appended_sequence(
        ops in proptest::collection::vec(op(), 1..120),
        segment_bytes in 256u64..3000,
        after_pick in any::<u16>(),
        steps in proptest::collection::vec((1usize..25, 0u64..20), 1..40),
    ) {
        let sim = SimStorage::new();
        let mut c = config(&sim_dir());
        c.segment_bytes = segment_bytes;
        let (engine, wal, _) = open_sim(&sim, c);
        let log = run_ops(&engine, &wal, &ops);
        wal.shutdown().unwrap();
        let after = u64::from(after_pick) % (log.len() as u64 + 1);
        let storage = Arc::new(sim.clone()) as Arc<dyn Storage>;
        let mut tailer = LogTailer::open_with_storage(storage, sim_dir(), after);
        let mut got = Vec::new();
        let mut up_to = after;
        // Random batch sizes under a bound that rises by random steps, then
        // everything that is left.
        let rest = std::iter::repeat_n((1000, u64::MAX), log.len() + 2);
        for (max, step) in steps.into_iter().chain(rest) {
            up_to = up_to.saturating_add(step);
            let batch = tailer.next_batch(max, up_to).unwrap();
            prop_assert!(batch.records.len() <= max);
            prop_assert_eq!(batch.snapshot, None);
            for (i, (lsn, _)) in batch.records.iter().enumerate() {
                prop_assert_eq!(*lsn, after + got.len() as u64 + 1 + i as u64);
                prop_assert!(*lsn <= up_to);
            }
            // Short only at the bound or at the end of the log.
            let next = after + got.len() as u64 + batch.records.len() as u64;
            if batch.records.len() < max {
                prop_assert!(next == up_to.min(log.len() as u64), "short batch at {}", next);
            }
            got.extend(batch.records);
            prop_assert_eq!(tailer.cursor(), after + got.len() as u64);
        }
        prop_assert_eq!(&got[..], &log[after as usize..]);
    }
}

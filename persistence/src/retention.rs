//! Retention holds: how consumers of the log (the PostgreSQL export, later
//! a replication stream) keep the snapshot clean-up from deleting segments
//! they have not read yet.
//!
//! A consumer takes a [`RetentionHold`] at the LSN it has durably taken
//! (its persisted cursor, 0 for nothing) and moves it forward with
//! [`RetentionHold::advance`] after each batch it has committed. The
//! snapshot thread deletes a segment only if every record in it is at or
//! below the minimum over the live holds ([`Holds::with_floor`]). Dropping
//! the hold releases it. Holds live in memory: a consumer takes its hold
//! again after a restart, from its own persisted cursor, before the first
//! snapshot can run (start-up recovery deletes no segment; see DESIGN.md).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// The live holds of one log, shared by the handles and the snapshot thread.
#[derive(Debug, Default)]
pub(crate) struct Holds {
    table: Mutex<HoldTable>,
}

#[derive(Debug, Default)]
struct HoldTable {
    next_id: u64,
    /// Hold id → (consumer name, LSN it has durably taken).
    holds: BTreeMap<u64, (String, u64)>,
}

impl Holds {
    pub(crate) fn add(self: &Arc<Self>, name: &str, taken: u64) -> RetentionHold {
        let mut table = self.table.lock();
        let id = table.next_id;
        table.next_id += 1;
        table.holds.insert(id, (name.to_string(), taken));
        RetentionHold {
            holds: self.clone(),
            id,
        }
    }

    /// Runs `f` with the lowest LSN any live hold has taken (`u64::MAX`
    /// without holds), holding the table's lock throughout: a hold taken
    /// while the snapshot thread deletes segments waits, so that a hold
    /// that exists once `Wal::hold` returns is honoured by every deletion
    /// after it. `f` does a few file removals; `advance` waits that long.
    pub(crate) fn with_floor<R>(&self, f: impl FnOnce(u64) -> R) -> R {
        let table = self.table.lock();
        let floor = table.holds.values().map(|&(_, lsn)| lsn).min();
        f(floor.unwrap_or(u64::MAX))
    }

    /// (name, LSN) of every live hold, oldest hold first.
    pub(crate) fn list(&self) -> Vec<(String, u64)> {
        self.table.lock().holds.values().cloned().collect()
    }
}

/// A consumer's claim on the log: segments holding records after
/// [`lsn`](RetentionHold::lsn) are not deleted while it lives. Made by
/// `Wal::hold`; dropping it releases the claim.
#[derive(Debug)]
pub struct RetentionHold {
    holds: Arc<Holds>,
    id: u64,
}

impl RetentionHold {
    /// Records that the consumer has durably taken every record up to
    /// `lsn` (its committed cursor): segments up to it may now go. Only
    /// moves forward; a lower `lsn` is ignored.
    pub fn advance(&self, lsn: u64) {
        let mut table = self.holds.table.lock();
        if let Some((_, taken)) = table.holds.get_mut(&self.id) {
            *taken = (*taken).max(lsn);
        }
    }

    /// The LSN the consumer has durably taken, as last advanced.
    pub fn lsn(&self) -> u64 {
        self.holds
            .table
            .lock()
            .holds
            .get(&self.id)
            .map_or(0, |&(_, lsn)| lsn)
    }
}

impl Drop for RetentionHold {
    fn drop(&mut self) {
        self.holds.table.lock().holds.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_is_the_minimum_of_live_holds() {
        let holds = Arc::new(Holds::default());
        assert_eq!(holds.with_floor(|f| f), u64::MAX);
        let a = holds.add("a", 10);
        let b = holds.add("b", 4);
        assert_eq!(holds.with_floor(|f| f), 4);
        b.advance(20);
        assert_eq!(holds.with_floor(|f| f), 10);
        a.advance(3); // never backwards
        assert_eq!(a.lsn(), 10);
        drop(a);
        assert_eq!(holds.with_floor(|f| f), 20);
        assert_eq!(holds.list(), vec![("b".to_string(), 20)]);
        drop(b);
        assert_eq!(holds.with_floor(|f| f), u64::MAX);
    }
}

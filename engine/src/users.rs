//! The buyers an engine knows: user ids interned to small handles
//! ([`UserRef`]), so an order, a holding and an idempotency record carry
//! four bytes for their owner instead of the id's up to 128.
//!
//! **Identity is the bytes.** The table is a hash table of slot numbers
//! whose every probe compares the id's full bytes with the slot's name, so
//! two ids that hash alike (by chance, or forced: [`UserHashing::Colliding`])
//! still get two handles. The hash only picks the shard and the bucket.
//!
//! **Bounded.** An entry lives while something holds it: each admitted
//! order holds one reference for good, each purchase in flight one until
//! it is decided ([`UserTable::pin`], [`UserTable::unpin`]). A purchase
//! that is refused after it pinned a new id (sold out in a race, a full
//! log queue) gives its entry back, so ids that never bought anything do
//! not stay: the table is bounded by the buyers that hold orders (orders
//! are capped per sale) plus the requests in flight. A freed slot is
//! reused; nothing that outlives a reference names a handle (see
//! `Engine::purchase` for the one read that runs without one, and how it
//! checks the owner by name).
//!
//! Below `engine` and the `impl Engine` files; it knows nothing of sales.

use crossbeam_utils::CachePadded;
use hashbrown::HashTable;
use parking_lot::RwLock;

use crate::types::USER_ID_LEN_MAX;

/// Bits of a [`UserRef`] naming its table shard; the rest is the slot.
const SHARD_BITS: u32 = 5;
const SHARDS: usize = 1 << SHARD_BITS;
const SLOT_BITS: u32 = 32 - SHARD_BITS;
/// Most users one table shard holds: 2^27, so 2^32 over the table.
pub(crate) const SLOTS_PER_SHARD_MAX: u32 = 1 << SLOT_BITS;
/// A reference count at this value is never decremented again: such a
/// user (some 4 billion orders or requests) stays for good, which is what
/// their orders want anyway.
const REFS_PINNED_FOREVER: u32 = u32::MAX;

// An id's length must fit the checks below without overflow.
const _: () = assert!(USER_ID_LEN_MAX < u32::MAX as usize);

/// An interned user: shard in the top bits, slot below. Valid while the
/// user is referenced (an order, or a pin held by the caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct UserRef(pub(crate) u32);

impl UserRef {
    fn new(shard: usize, slot: u32) -> UserRef {
        debug_assert!(shard < SHARDS);
        debug_assert!(slot < SLOTS_PER_SHARD_MAX);
        UserRef(((shard as u32) << SLOT_BITS) | slot)
    }
    fn shard(self) -> usize {
        (self.0 >> SLOT_BITS) as usize
    }
    fn slot(self) -> usize {
        (self.0 & (SLOTS_PER_SHARD_MAX - 1)) as usize
    }
}

/// How user ids are hashed. Ids are chosen by clients, so the table is
/// randomly keyed against hash flooding; tests can make every id hash to
/// the same value to show that ids are told apart by their bytes.
#[derive(Clone)]
pub(crate) enum UserHashing {
    Keyed(ahash::RandomState),
    /// Every id hashes to one value: for tests only (every lookup then
    /// compares against every id of the table).
    Colliding,
}

impl UserHashing {
    fn hash(&self, id: &str) -> u64 {
        match self {
            UserHashing::Keyed(state) => state.hash_one(id.as_bytes()),
            UserHashing::Colliding => 0x0123_4567_89ab_cdef,
        }
    }
}

/// Which shard a hash lives in. Bits 32..37: hashbrown takes a bucket from
/// the low bits and a tag from the top seven, so these stay free for it.
fn shard_of(hash: u64) -> usize {
    ((hash >> 32) as usize) & (SHARDS - 1)
}

/// One shard: the index (slot numbers, looked up by the name's hash and
/// compared by the name's bytes), the names and reference counts by slot,
/// and the free slots.
#[derive(Default)]
struct UserShard {
    index: HashTable<u32>,
    names: Vec<Option<Box<str>>>,
    refs: Vec<u32>,
    free: Vec<u32>,
}

impl UserShard {
    fn find(&self, hash: u64, id: &str) -> Option<u32> {
        let names = &self.names;
        self.index
            .find(hash, |&slot| names[slot as usize].as_deref() == Some(id))
            .copied()
    }

    /// A new slot named `id` with `refs` references, or `None` when the
    /// shard is full.
    fn insert(&mut self, hashing: &UserHashing, hash: u64, id: &str, refs: u32) -> Option<u32> {
        let slot = match self.free.pop() {
            Some(slot) => {
                debug_assert!(self.names[slot as usize].is_none());
                self.names[slot as usize] = Some(id.into());
                self.refs[slot as usize] = refs;
                slot
            }
            None => {
                let slot = u32::try_from(self.names.len()).ok()?;
                if slot >= SLOTS_PER_SHARD_MAX {
                    return None;
                }
                self.names.push(Some(id.into()));
                self.refs.push(refs);
                slot
            }
        };
        let names = &self.names;
        self.index.insert_unique(hash, slot, |&s| {
            hashing.hash(
                names[s as usize]
                    .as_deref()
                    .expect("indexed slots are named"),
            )
        });
        Some(slot)
    }
}

/// The interned users of one engine.
pub(crate) struct UserTable {
    hashing: UserHashing,
    shards: Box<[CachePadded<RwLock<UserShard>>]>,
}

impl UserTable {
    pub(crate) fn new(hashing: UserHashing) -> UserTable {
        UserTable {
            hashing,
            shards: (0..SHARDS).map(|_| CachePadded::default()).collect(),
        }
    }

    /// The handle of `id` if the table holds it. Takes no reference: the
    /// handle may be freed (and its slot given to another id) as soon as
    /// this returns, unless the caller knows `id` has an order.
    pub(crate) fn lookup(&self, id: &str) -> Option<UserRef> {
        let hash = self.hashing.hash(id);
        let shard = shard_of(hash);
        let slot = self.shards[shard].read().find(hash, id)?;
        Some(UserRef::new(shard, slot))
    }

    /// The handle of `id`, interned if new, with one more reference, which
    /// the caller keeps (for an order) or gives back with
    /// [`UserTable::unpin`]. `None` when its shard is full.
    pub(crate) fn pin(&self, id: &str) -> Option<UserRef> {
        self.get_or_insert(id, 1)
    }

    /// The handle of `id`, interned with no reference if new. For recovery,
    /// which restores a request id (whose order pins the user) possibly
    /// before the admission itself, and unpins nothing meanwhile.
    pub(crate) fn intern(&self, id: &str) -> Option<UserRef> {
        self.get_or_insert(id, 0)
    }

    fn get_or_insert(&self, id: &str, add: u32) -> Option<UserRef> {
        let hash = self.hashing.hash(id);
        let shard_index = shard_of(hash);
        let mut shard = self.shards[shard_index].write();
        let slot = match shard.find(hash, id) {
            Some(slot) => {
                let refs = &mut shard.refs[slot as usize];
                if *refs != REFS_PINNED_FOREVER {
                    *refs = refs.saturating_add(add);
                }
                slot
            }
            None => shard.insert(&self.hashing, hash, id, add)?,
        };
        Some(UserRef::new(shard_index, slot))
    }

    /// Gives back a reference taken by [`UserTable::pin`]; the last one
    /// frees the entry.
    pub(crate) fn unpin(&self, user: UserRef) {
        let mut shard = self.shards[user.shard()].write();
        let slot = user.slot();
        let refs = &mut shard.refs[slot];
        assert!(*refs > 0, "unpinned a user with no reference");
        if *refs == REFS_PINNED_FOREVER {
            return;
        }
        *refs -= 1;
        if *refs > 0 {
            return;
        }
        let name = shard.names[slot]
            .take()
            .expect("a referenced slot is named");
        let hash = self.hashing.hash(&name);
        let entry = shard
            .index
            .find_entry(hash, |&s| s as usize == slot)
            .expect("a named slot is indexed");
        entry.remove();
        shard.free.push(slot as u32);
    }

    /// Whether `user` is the id `id`, by its bytes.
    pub(crate) fn is(&self, user: UserRef, id: &str) -> bool {
        self.shards[user.shard()].read().names[user.slot()].as_deref() == Some(id)
    }

    /// The id of `user`, copied out.
    pub(crate) fn name(&self, user: UserRef) -> Box<str> {
        self.shards[user.shard()].read().names[user.slot()]
            .clone()
            .expect("a referenced user is named")
    }

    /// Users held now.
    pub(crate) fn len(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.read().index.len() as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> [UserTable; 2] {
        [
            UserTable::new(UserHashing::Keyed(ahash::RandomState::new())),
            UserTable::new(UserHashing::Colliding),
        ]
    }

    #[test]
    fn ids_are_told_apart_by_their_bytes() {
        for table in tables() {
            let ids = ["alice", "bob", "alicf", "", "ü", "u", "alice "];
            let refs: Vec<_> = ids.iter().map(|id| table.pin(id).unwrap()).collect();
            for (i, a) in refs.iter().enumerate() {
                assert!(table.is(*a, ids[i]));
                assert_eq!(&*table.name(*a), ids[i]);
                assert_eq!(table.lookup(ids[i]), Some(*a));
                for (j, b) in refs.iter().enumerate() {
                    assert_eq!(a == b, i == j, "{} vs {}", ids[i], ids[j]);
                }
            }
            assert_eq!(table.pin("alice"), Some(refs[0]), "same id, same handle");
            assert_eq!(table.len(), ids.len() as u64);
        }
    }

    #[test]
    fn the_last_reference_frees_the_entry_and_its_slot_is_reused() {
        for table in tables() {
            let a = table.pin("a").unwrap();
            let b = table.pin("b").unwrap();
            assert_eq!(table.pin("a"), Some(a));
            table.unpin(a);
            assert_eq!(table.lookup("a"), Some(a), "one reference left");
            table.unpin(a);
            assert_eq!(table.lookup("a"), None);
            assert_eq!(table.lookup("b"), Some(b), "others stay");
            assert_eq!(table.len(), 1);
            // Colliding ids share a shard, so "c" reuses the slot "a" had.
            let c = table.pin("c").unwrap();
            assert!(table.is(c, "c"));
            assert!(!table.is(b, "c"));
            // An interned id with no reference stays until pinned and unpinned.
            let d = table.intern("d").unwrap();
            assert_eq!(table.pin("d"), Some(d));
            table.unpin(d);
            assert_eq!(table.lookup("d"), None);
        }
    }

    #[test]
    fn many_colliding_ids_stay_distinct_through_growth() {
        let table = UserTable::new(UserHashing::Colliding);
        let refs: Vec<_> = (0..500)
            .map(|i| table.pin(&format!("user-{i}")).unwrap())
            .collect();
        for (i, r) in refs.iter().enumerate() {
            assert_eq!(table.lookup(&format!("user-{i}")), Some(*r));
        }
        for r in refs.iter().step_by(2) {
            table.unpin(*r);
        }
        for (i, r) in refs.iter().enumerate() {
            let want = (i % 2 == 1).then_some(*r);
            assert_eq!(table.lookup(&format!("user-{i}")), want);
        }
    }
}

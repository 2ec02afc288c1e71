//! A shard ([`SkuShard`]): the sales whose SKUs hash to it, the per-(sale,
//! user) holdings, the idempotency records of the users that hash to it, and
//! the expiry queue of its orders. Also the hashers its maps use.
//!
//! Below [`crate::engine::Engine`], above [`crate::sale`]: a shard holds
//! sales, never the reverse (a sale names its shard by index).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use arc_swap::ArcSwap;
use crossbeam_queue::SegQueue;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use parking_lot::Mutex;

use crate::gate;
use crate::sale::SaleEntry;
use crate::sync::{AtomicU32, Ordering};
use crate::users::UserRef;

/// Marks an idempotency entry whose admission is being decided right now.
pub(crate) const IDEM_PENDING: u64 = u64::MAX;

/// Multiplicative hasher for maps whose keys no client can insert (the SKUs
/// of a shard's sales, which only an operator creates). Keys a client chooses
/// or can steer (request ids; users, whose handles follow their ids) use
/// [`KeyedBuild`] instead, randomly keyed against hash flooding.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
}

pub(crate) type IdBuild = BuildHasherDefault<IdHasher>;

/// Randomly keyed hasher for keys a client chooses: as resistant to hash
/// flooding as std's SipHash, several times cheaper on 16-byte keys.
pub(crate) type KeyedBuild = ahash::RandomState;

/// A shard owns its SKUs (and through them their orders), the per-(SKU,
/// user) counters and the expiry queue of those orders. Idempotency records
/// live in the shard of the user who made the request.
pub(crate) struct SkuShard {
    pub(crate) sales: ArcSwap<HashMap<Arc<str>, Arc<SaleEntry>, IdBuild>>,
    /// Units each user holds (reserved + paid) per sale ordinal. Entries at 0
    /// are removed so the map is bounded by live holdings.
    pub(crate) holdings: DashMap<(u32, UserRef), AtomicU32, KeyedBuild>,
    /// (user, request id) → order id, or `IDEM_PENDING` while being decided.
    pub(crate) idempotency: DashMap<(UserRef, u64), u64, KeyedBuild>,
    /// Admissions not yet moved into `expiry_heap`: producers push here without
    /// a lock; only the expiry tick takes the heap's lock.
    pub(crate) expiry_incoming: SegQueue<(u64, u64)>,
    pub(crate) expiry_heap: Mutex<BinaryHeap<Reverse<(u64, u64)>>>,
}

impl SkuShard {
    /// An empty shard.
    pub(crate) fn new() -> SkuShard {
        SkuShard {
            sales: ArcSwap::from_pointee(HashMap::default()),
            holdings: DashMap::default(),
            idempotency: DashMap::default(),
            expiry_incoming: SegQueue::new(),
            expiry_heap: Mutex::new(BinaryHeap::new()),
        }
    }

    /// Releases `qty` of `user`'s holding in sale `ordinal`, dropping the
    /// entry at zero. Removal takes the map's write lock, so no thread is in
    /// the middle of `try_hold` on that counter when it goes.
    pub(crate) fn release_holding(&self, ordinal: u32, user: UserRef, qty: u32) {
        // One hash and one probe under the write lock.
        let Entry::Occupied(held) = self.holdings.entry((ordinal, user)) else {
            panic!("released a holding of user {user:?} in sale {ordinal} that does not exist");
        };
        gate::release(held.get(), qty);
        if held.get().load(Ordering::Acquire) == 0 {
            held.remove();
        }
    }

    /// Adds `qty` to `user`'s holding in sale `ordinal` if that keeps it
    /// within `limit`; a refused first hold leaves no entry behind.
    pub(crate) fn try_hold(&self, ordinal: u32, user: UserRef, qty: u32, limit: u32) -> bool {
        let key = (ordinal, user);
        // Straight to the entry: in a flash sale most buyers are new, and a
        // lookup first would hash the key twice for them.
        let held = self
            .holdings
            .entry(key)
            .or_insert_with(|| AtomicU32::new(0))
            .downgrade();
        let ok = gate::try_hold(&held, qty, limit);
        drop(held);
        if !ok {
            self.holdings
                .remove_if(&key, |_, held| held.load(Ordering::Acquire) == 0);
        }
        ok
    }
}

//! The orders of one sale, stored by sequence number in a table that grows in
//! doubling buckets and never moves an order once written.
//!
//! Why not a hash map: order ids are dense per sale (`seq` counts up), so a
//! table indexed by `seq` needs no hashing, keeps consecutive admissions on
//! consecutive cache lines, and costs a flat 24 bytes per order instead of a
//! map entry plus its load-factor slack. Buckets are allocated zeroed, and an
//! all-zero slot is a valid empty slot, so the pages of a large bucket are
//! only committed as orders fill them.
//!
//! Each slot carries a lock bit. A change of state (pay, cancel, expire) holds
//! it while it checks the state, hands the event to the sink and writes the
//! new state, so the log orders every change of one order as it happened.
//! Readers and the admission that fills a fresh slot never wait on it.

use std::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use crossbeam_utils::Backoff;

use crate::types::{OrderState, ORDER_SEQ_BITS};
use crate::users::UserRef;

/// Slots in the first bucket; bucket `b` holds `FIRST_BUCKET << b`.
const FIRST_BUCKET_BITS: u32 = 10;
const FIRST_BUCKET: u64 = 1 << FIRST_BUCKET_BITS;
/// Enough buckets for every sequence number an order id can carry.
const BUCKETS: usize = (ORDER_SEQ_BITS - FIRST_BUCKET_BITS + 1) as usize;

// Layout of `OrderSlot::word`: state in the low byte, lock in bit 8, qty above.
const STATE_MASK: u64 = 0xff;
const LOCKED: u64 = 1 << 8;
const QTY_SHIFT: u32 = 32;

const VACANT: u64 = 0;

fn encode_state(state: OrderState) -> u64 {
    match state {
        OrderState::Reserved => 1,
        OrderState::Paid => 2,
        OrderState::Cancelled => 3,
        OrderState::Expired => 4,
    }
}

fn decode_state(word: u64) -> Option<OrderState> {
    match word & STATE_MASK {
        1 => Some(OrderState::Reserved),
        2 => Some(OrderState::Paid),
        3 => Some(OrderState::Cancelled),
        4 => Some(OrderState::Expired),
        _ => None,
    }
}

/// One order: 24 bytes, all atomics so that zeroed memory is a valid, vacant
/// slot. The owner is its interned handle (`UserRef`); the id's bytes live
/// once per user in the user table, not once per order.
#[repr(C)]
struct OrderSlot {
    word: AtomicU64,
    user: AtomicU64,
    expires_at_ms: AtomicU64,
}

/// A plain copy of one order. `created_at_ms` is derived from the sale's TTL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OrderEntry {
    pub user: UserRef,
    pub expires_at_ms: u64,
    pub qty: u32,
    pub state: OrderState,
}

/// The owner of a written slot. Only `insert` stores it, from a `UserRef`.
fn user_of(slot: &OrderSlot) -> UserRef {
    let user = slot.user.load(Ordering::Relaxed);
    UserRef(u32::try_from(user).expect("a slot's owner is a UserRef"))
}

fn locate(seq: u64) -> (usize, usize) {
    let n = seq + FIRST_BUCKET;
    let bucket = 63 - n.leading_zeros() - FIRST_BUCKET_BITS;
    let index = n - (FIRST_BUCKET << bucket);
    (bucket as usize, index as usize)
}

fn bucket_layout(bucket: usize) -> Layout {
    Layout::array::<OrderSlot>((FIRST_BUCKET << bucket) as usize).expect("bucket layout fits")
}

pub(crate) struct OrderTable {
    buckets: [AtomicPtr<OrderSlot>; BUCKETS],
}

impl OrderTable {
    pub fn new() -> OrderTable {
        OrderTable {
            buckets: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
        }
    }

    /// The slot for `seq`, if its bucket exists.
    fn slot(&self, seq: u64) -> Option<&OrderSlot> {
        if seq >= 1 << ORDER_SEQ_BITS {
            return None;
        }
        let (bucket, index) = locate(seq);
        let base = self.buckets[bucket].load(Ordering::Acquire);
        if base.is_null() {
            return None;
        }
        // SAFETY: `base` points to a live, zero-initialised array of
        // `FIRST_BUCKET << bucket` slots (allocated in `slot_or_alloc`, freed
        // only in `drop`), and `index` is below that length by `locate`.
        Some(unsafe { &*base.add(index) })
    }

    fn slot_or_alloc(&self, seq: u64) -> &OrderSlot {
        assert!(seq < 1 << ORDER_SEQ_BITS, "order sequence exhausted");
        let (bucket, index) = locate(seq);
        let mut base = self.buckets[bucket].load(Ordering::Acquire);
        if base.is_null() {
            let layout = bucket_layout(bucket);
            // SAFETY: the layout has a non-zero size. Zeroed bytes are valid
            // `OrderSlot`s: three `AtomicU64`s, which have the layout of `u64`.
            let fresh = unsafe { alloc_zeroed(layout) }.cast::<OrderSlot>();
            if fresh.is_null() {
                handle_alloc_error(layout);
            }
            match self.buckets[bucket].compare_exchange(
                std::ptr::null_mut(),
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => base = fresh,
                Err(winner) => {
                    // SAFETY: `fresh` came from `alloc_zeroed(layout)` just
                    // above and was never shared.
                    unsafe { dealloc(fresh.cast(), layout) };
                    base = winner;
                }
            }
        }
        // SAFETY: as in `slot`.
        unsafe { &*base.add(index) }
    }

    /// Writes a new reserved order at `seq`. Each `seq` is written once.
    pub fn insert(&self, seq: u64, order: OrderEntry) -> bool {
        let slot = self.slot_or_alloc(seq);
        if slot.word.load(Ordering::Acquire) != VACANT {
            return false;
        }
        slot.user.store(u64::from(order.user.0), Ordering::Relaxed);
        slot.expires_at_ms
            .store(order.expires_at_ms, Ordering::Relaxed);
        let word = (u64::from(order.qty) << QTY_SHIFT) | encode_state(order.state);
        // Release: whoever sees the state also sees the fields above.
        slot.word.store(word, Ordering::Release);
        true
    }

    pub fn get(&self, seq: u64) -> Option<OrderEntry> {
        let slot = self.slot(seq)?;
        let word = slot.word.load(Ordering::Acquire);
        let state = decode_state(word)?;
        Some(OrderEntry {
            user: user_of(slot),
            expires_at_ms: slot.expires_at_ms.load(Ordering::Relaxed),
            qty: (word >> QTY_SHIFT) as u32,
            state,
        })
    }

    /// Locks the order at `seq` for a change of state; `None` if there is none.
    pub fn lock(&self, seq: u64) -> Option<OrderGuard<'_>> {
        let slot = self.slot(seq)?;
        let backoff = Backoff::new();
        loop {
            let word = slot.word.load(Ordering::Acquire);
            decode_state(word)?;
            if word & LOCKED == 0
                && slot
                    .word
                    .compare_exchange_weak(
                        word,
                        word | LOCKED,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                let order = OrderEntry {
                    user: user_of(slot),
                    expires_at_ms: slot.expires_at_ms.load(Ordering::Relaxed),
                    qty: (word >> QTY_SHIFT) as u32,
                    state: decode_state(word).expect("checked above"),
                };
                return Some(OrderGuard { slot, order, word });
            }
            // Held only across a state check and an enqueue: spin briefly.
            backoff.snooze();
        }
    }
}

impl Drop for OrderTable {
    fn drop(&mut self) {
        for (bucket, ptr) in self.buckets.iter_mut().enumerate() {
            let ptr = *ptr.get_mut();
            if !ptr.is_null() {
                // SAFETY: allocated in `slot_or_alloc` with this layout; we
                // have `&mut self`, so no reference into it remains.
                unsafe { dealloc(ptr.cast(), bucket_layout(bucket)) };
            }
        }
    }
}

// SAFETY: the table only hands out shared references to slots made of atomics.
unsafe impl Send for OrderTable {}
unsafe impl Sync for OrderTable {}

/// An order locked for a change of state; unlocks on drop.
pub(crate) struct OrderGuard<'a> {
    slot: &'a OrderSlot,
    /// The order as it was when locked.
    pub order: OrderEntry,
    word: u64,
}

impl OrderGuard<'_> {
    /// Sets the new state; it is published when the guard drops.
    pub fn set_state(&mut self, state: OrderState) {
        self.order.state = state;
        self.word = (self.word & !STATE_MASK) | encode_state(state);
    }
}

impl Drop for OrderGuard<'_> {
    fn drop(&mut self) {
        // Release: the next holder sees everything done under the lock.
        self.slot.word.store(self.word & !LOCKED, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_covers_every_sequence_once() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(FIRST_BUCKET - 1), (0, (FIRST_BUCKET - 1) as usize));
        assert_eq!(locate(FIRST_BUCKET), (1, 0));
        assert_eq!(
            locate(3 * FIRST_BUCKET - 1),
            (1, (2 * FIRST_BUCKET - 1) as usize)
        );
        assert_eq!(locate(3 * FIRST_BUCKET), (2, 0));
        let last = (1u64 << ORDER_SEQ_BITS) - 1;
        let (bucket, index) = locate(last);
        assert!(bucket < BUCKETS);
        assert!((index as u64) < FIRST_BUCKET << bucket);
    }

    #[test]
    fn insert_get_lock() {
        let table = OrderTable::new();
        assert_eq!(table.get(5), None);
        assert!(table.lock(5).is_none());
        let order = OrderEntry {
            user: UserRef(9),
            expires_at_ms: 77,
            qty: 3,
            state: OrderState::Reserved,
        };
        for seq in [0, 5, 1023, 1024, 100_000] {
            assert!(table.insert(seq, order));
            assert!(!table.insert(seq, order), "a slot is written once");
            assert_eq!(table.get(seq), Some(order));
        }
        {
            let mut guard = table.lock(5).unwrap();
            assert_eq!(guard.order, order);
            guard.set_state(OrderState::Paid);
        }
        assert_eq!(table.get(5).unwrap().state, OrderState::Paid);
        assert_eq!(table.get(5).unwrap().qty, 3);
        assert_eq!(table.get(6), None);
        assert_eq!(table.get(1 << ORDER_SEQ_BITS), None);
    }
}

//! The stock gate and the per-user quota: the only code on a SKU's hot path
//! that writes shared memory. Both are compare-and-swap loops on a single
//! atomic, so no interleaving of threads can take more than what is there.
//!
//! These functions are the ones the loom model (`tests/loom.rs`) checks; keep
//! them free of anything loom cannot model.

use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Takes `qty` units from `remaining` if at least `qty` are left.
///
/// Returns false (and writes nothing) when there is not enough stock: the
/// check is a plain load first, so a sold-out SKU costs one shared read.
#[inline]
pub fn try_take(remaining: &AtomicU64, qty: u64) -> bool {
    debug_assert!(qty > 0);
    let mut current = remaining.load(Ordering::Acquire);
    loop {
        if current < qty {
            return false;
        }
        match remaining.compare_exchange_weak(
            current,
            current - qty,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return true,
            Err(actual) => current = actual,
        }
    }
}

/// Returns `qty` units taken earlier by [`try_take`].
#[inline]
pub fn give_back(remaining: &AtomicU64, qty: u64) {
    let before = remaining.fetch_add(qty, Ordering::AcqRel);
    assert!(before.checked_add(qty).is_some(), "stock gate overflow");
}

/// Adds `qty` to a user's held units if that keeps them within `limit`.
#[inline]
pub fn try_hold(held: &AtomicU32, qty: u32, limit: u32) -> bool {
    let mut current = held.load(Ordering::Acquire);
    loop {
        match current.checked_add(qty) {
            Some(next) if next <= limit => {
                match held.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return true,
                    Err(actual) => current = actual,
                }
            }
            _ => return false,
        }
    }
}

/// Releases `qty` units held by a user (cancel, expiry or a rolled-back admission).
#[inline]
pub fn release(held: &AtomicU32, qty: u32) {
    let before = held.fetch_sub(qty, Ordering::AcqRel);
    assert!(
        before >= qty,
        "user quota underflow: held {before}, released {qty}"
    );
}

//! Loom models of the stock gate and the per-user quota: every interleaving
//! of 2–3 threads running the real `engine::gate` functions.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p engine --test loom --release`.
#![cfg(loom)]

use engine::gate::{give_back, release, try_hold, try_take};
use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use loom::sync::Arc;
use loom::thread;

/// Three buyers race for two units: exactly two win and stock ends at zero.
#[test]
fn stock_gate_never_oversells() {
    loom::model(|| {
        let remaining = Arc::new(AtomicU64::new(2));
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let remaining = remaining.clone();
                thread::spawn(move || try_take(&remaining, 1))
            })
            .collect();
        let won = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&w| w)
            .count();
        assert_eq!(won, 2);
        assert_eq!(remaining.load(Ordering::SeqCst), 0);
    });
}

/// A two-unit take and a one-unit take race for two units: never both.
#[test]
fn stock_gate_respects_quantities() {
    loom::model(|| {
        let remaining = Arc::new(AtomicU64::new(2));
        let r1 = remaining.clone();
        let a = thread::spawn(move || try_take(&r1, 2));
        let b = try_take(&remaining, 1);
        let a = a.join().unwrap();
        assert!(a != b, "exactly one of the takes fits: a={a} b={b}");
        let left = remaining.load(Ordering::SeqCst);
        assert_eq!(left, if a { 0 } else { 1 });
    });
}

/// The engine's admission protocol for one unit with limit 1: quota first,
/// then stock, rolling the quota back when the stock is gone.
fn admit(remaining: &AtomicU64, held: &AtomicU32) -> bool {
    if !try_hold(held, 1, 1) {
        return false;
    }
    if !try_take(remaining, 1) {
        release(held, 1);
        return false;
    }
    true
}

/// The admission protocol of one user (quota first, then stock, rolling the
/// quota back when the stock is gone), run by two of that user's requests at
/// once with limit 1: at most one admitted, and the quota matches.
#[test]
fn per_user_limit_holds_under_races() {
    loom::model(|| {
        let remaining = Arc::new(AtomicU64::new(5));
        let held = Arc::new(AtomicU32::new(0));
        let (r1, h1) = (remaining.clone(), held.clone());
        let t = thread::spawn(move || admit(&r1, &h1));
        let b = admit(&remaining, &held);
        let a = t.join().unwrap();
        assert_eq!(u32::from(a) + u32::from(b), 1);
        assert_eq!(held.load(Ordering::SeqCst), 1);
        assert_eq!(remaining.load(Ordering::SeqCst), 4);
    });
}

/// Quota rollback when stock runs out: two users, one unit. The loser's quota
/// is released, the winner's kept.
#[test]
fn quota_rolls_back_when_sold_out() {
    loom::model(|| {
        let remaining = Arc::new(AtomicU64::new(1));
        let held_a = Arc::new(AtomicU32::new(0));
        let held_b = Arc::new(AtomicU32::new(0));
        let (r1, h1) = (remaining.clone(), held_a.clone());
        let t = thread::spawn(move || admit(&r1, &h1));
        let b = admit(&remaining, &held_b);
        let a = t.join().unwrap();
        assert_eq!(u32::from(a) + u32::from(b), 1);
        assert_eq!(held_a.load(Ordering::SeqCst), u32::from(a));
        assert_eq!(held_b.load(Ordering::SeqCst), u32::from(b));
        assert_eq!(remaining.load(Ordering::SeqCst), 0);
    });
}

const RESERVED: u8 = 0;
const CANCELLED: u8 = 1;
const EXPIRED: u8 = 2;

/// One reserved unit, a cancel and an expiry racing for it (the engine makes
/// the state change exclusive; modelled here as a CAS from `reserved`), and a
/// buyer waiting for stock: the unit comes back exactly once, so the buyer can
/// get it at most once and the stock never exceeds one.
#[test]
fn cancel_and_expiry_return_stock_once() {
    loom::model(|| {
        let remaining = Arc::new(AtomicU64::new(0));
        let state = Arc::new(AtomicU8::new(RESERVED));
        let release_unit = |to: u8, state: &AtomicU8, remaining: &AtomicU64| {
            if state
                .compare_exchange(RESERVED, to, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                give_back(remaining, 1);
            }
        };
        let (s1, r1) = (state.clone(), remaining.clone());
        let cancel = thread::spawn(move || release_unit(CANCELLED, &s1, &r1));
        let (s2, r2) = (state.clone(), remaining.clone());
        let expire = thread::spawn(move || release_unit(EXPIRED, &s2, &r2));
        let bought = try_take(&remaining, 1);
        cancel.join().unwrap();
        expire.join().unwrap();
        let left = remaining.load(Ordering::SeqCst);
        assert_eq!(
            left + u64::from(bought),
            1,
            "the unit returned exactly once"
        );
        assert_ne!(state.load(Ordering::SeqCst), RESERVED);
    });
}

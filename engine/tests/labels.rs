//! Label lists from enums: each outcome enum's `ALL` lists every variant once,
//! in `index` order, with distinct labels. The gateway sizes its rejection
//! counters with `RejectionKind::COUNT`, indexes them with `kind()` and
//! renders labels from `RejectionKind::ALL`.

use std::collections::HashSet;
use std::fmt::Debug;

use engine::{OrderRejection, OrderState, Rejection, RejectionKind, SalePhase, SinkError};

/// Checks `all` against `every`, a hand list of every variant (with each
/// payload a variant can carry): `all` is in `index` order, its labels are
/// distinct, each variant's index lands on the entry with its label, and the
/// two lists name the same labels.
fn check<T: Copy + Debug>(
    all: &[T],
    every: &[T],
    index: fn(T) -> usize,
    label: fn(T) -> &'static str,
) {
    for (i, &v) in all.iter().enumerate() {
        assert_eq!(index(v), i, "{v:?} is at position {i} of ALL");
    }
    let listed: HashSet<&str> = all.iter().map(|&v| label(v)).collect();
    assert_eq!(listed.len(), all.len(), "labels in ALL are distinct");
    for &v in every {
        let i = index(v);
        assert!(i < all.len(), "{v:?} has index {i}, past ALL");
        assert_eq!(label(all[i]), label(v), "{v:?} indexes its own label");
    }
    let distinct: HashSet<&str> = every.iter().map(|&v| label(v)).collect();
    assert_eq!(distinct, listed, "ALL names exactly the variants' labels");
    assert_eq!(
        all.len(),
        distinct.len(),
        "one ALL entry per distinct label"
    );
}

#[test]
fn rejection_labels_come_from_all() {
    let every = [
        Rejection::SoldOut,
        Rejection::LimitExceeded,
        Rejection::NotStarted,
        Rejection::Ended,
        Rejection::Paused,
        Rejection::UnknownSku,
        Rejection::InvalidSku,
        Rejection::InvalidQuantity,
        Rejection::InvalidUser,
        Rejection::UsersFull,
        Rejection::RequestIdReused,
        Rejection::InProgress,
        Rejection::OrderLimit,
        Rejection::Unavailable(SinkError::Full),
        Rejection::Unavailable(SinkError::Failed),
    ];
    let kinds: Vec<RejectionKind> = every.iter().map(|r| r.kind()).collect();
    check(
        &RejectionKind::ALL,
        &kinds,
        |k| k as usize,
        RejectionKind::as_str,
    );
    for r in every {
        assert_eq!(r.as_str(), r.kind().as_str(), "{r:?}");
    }
}

#[test]
fn order_rejection_labels_come_from_all() {
    let every = [
        OrderRejection::UnknownOrder,
        OrderRejection::Paid,
        OrderRejection::Cancelled,
        OrderRejection::Expired,
        OrderRejection::Unavailable(SinkError::Full),
        OrderRejection::Unavailable(SinkError::Failed),
    ];
    check(
        &OrderRejection::ALL,
        &every,
        OrderRejection::index,
        OrderRejection::as_str,
    );
}

#[test]
fn order_state_labels_come_from_all() {
    let every = [
        OrderState::Reserved,
        OrderState::Paid,
        OrderState::Cancelled,
        OrderState::Expired,
    ];
    check(
        &OrderState::ALL,
        &every,
        OrderState::index,
        OrderState::as_str,
    );
}

#[test]
fn sale_phase_labels_come_from_all() {
    let every = [
        SalePhase::Scheduled,
        SalePhase::Open,
        SalePhase::Paused,
        SalePhase::SoldOut,
        SalePhase::Ended,
    ];
    check(&SalePhase::ALL, &every, SalePhase::index, SalePhase::as_str);
}

/// The check itself fails on a list that misses a variant or repeats a label.
#[test]
fn check_catches_a_short_or_repeated_list() {
    let every = [OrderState::Reserved, OrderState::Paid];
    let short = std::panic::catch_unwind(|| {
        check(&every[..1], &every, OrderState::index, OrderState::as_str)
    });
    assert!(short.is_err(), "a variant missing from ALL is caught");
    let repeated = [OrderState::Reserved, OrderState::Reserved];
    let twice = std::panic::catch_unwind(|| {
        check(&repeated, &every, OrderState::index, OrderState::as_str)
    });
    assert!(twice.is_err(), "a repeated entry is caught");
}

//! Unit tests of the individual checks. Each starts from evidence a correct
//! server would produce, breaks one thing, and asserts that the check naming
//! that thing fails (and, where it matters, that a legitimate variation still
//! passes). The fake-server tests in `tests/verdicts.rs` cover the checks a
//! whole buggy server trips; these cover the ones no fake server breaks.

use super::checks::*;
use super::evidence::{AdmittedUnits, Evidence, ServerUnits};
use super::{judge, Check};
use crate::api::{OrderDoc, OrderLookup, SaleDoc};
use crate::stats::OpKind;
use crate::workload::{Ack, Action, Expected, SkuInfo, Tally};

const STOCK: u64 = 10;
pub(super) const NOW_MS: u64 = 1_000_000;

pub(super) fn sale(remaining: u64, reserved: u64, paid: u64) -> SaleDoc {
    SaleDoc {
        sku: "hot".into(),
        stock: STOCK,
        remaining,
        reserved,
        paid,
        per_user_limit: 2,
        reservation_ttl_ms: 600_000,
        state: String::new(),
    }
}

pub(super) fn ack(n: u64, expected: Expected) -> Ack {
    Ack {
        order_id: format!("o{n}"),
        sku: 0,
        user_id: n,
        qty: 1,
        expires_at_ms: u64::MAX,
        via: OpKind::Purchase,
        action: Action::Keep,
        expected,
    }
}

pub(super) fn found(a: &Ack, state: &str) -> OrderLookup {
    OrderLookup::Found(OrderDoc {
        order_id: a.order_id.clone(),
        sku: "hot".into(),
        user_id: a.user_id,
        qty: a.qty,
        state: state.into(),
        expires_at_ms: a.expires_at_ms,
    })
}

/// The owned data an [`Evidence`] borrows.
pub(super) struct EvidenceFixture {
    pub(super) skus: Vec<SkuInfo>,
    pub(super) acks: Vec<Ack>,
    pub(super) lookups: Vec<OrderLookup>,
    tally: Tally,
    after_rush: Vec<SaleDoc>,
    after_rush_ms: u64,
    pub(super) final_sales: Vec<SaleDoc>,
    all_users_served: bool,
}

/// A correct run: 12 users want one unit each of a stock of 10, so 10 are
/// admitted and the hot SKU sells out; order 1 is then paid.
pub(super) fn clean() -> EvidenceFixture {
    let mut acks: Vec<Ack> = (1..=10).map(|n| ack(n, Expected::Reserved)).collect();
    acks[0].action = Action::Pay;
    acks[0].expected = Expected::Paid;
    let lookups = acks
        .iter()
        .map(|a| match a.expected {
            Expected::Paid => found(a, "paid"),
            _ => found(a, "reserved"),
        })
        .collect();
    let mut tally = Tally::new(1);
    tally.users_by_sku[0] = 12;
    tally.demand_units_by_sku[0] = 12;
    EvidenceFixture {
        skus: vec![SkuInfo {
            name: "hot".into(),
            purchase_path: "/v1/sales/hot/purchase".into(),
            per_user_limit: 2,
            baseline: sale(STOCK, 0, 0),
        }],
        acks,
        lookups,
        tally,
        after_rush: vec![sale(0, STOCK, 0)],
        after_rush_ms: NOW_MS - 1_000,
        final_sales: vec![sale(0, STOCK - 1, 1)],
        all_users_served: true,
    }
}

impl EvidenceFixture {
    fn ev(&self) -> Evidence<'_> {
        Evidence {
            skus: &self.skus,
            acks: &self.acks,
            lookups: &self.lookups,
            tally: &self.tally,
            after_rush: &self.after_rush,
            after_rush_ms: self.after_rush_ms,
            final_sales: &self.final_sales,
            now_ms: NOW_MS,
            all_users_served: self.all_users_served,
            qty: 1,
        }
    }

    /// Adds an acknowledged order the server reports in `state`.
    fn push(&mut self, a: Ack, state: &str) {
        self.lookups.push(found(&a, state));
        self.acks.push(a);
    }
}

fn admitted_matches_supply(f: &EvidenceFixture) -> Check {
    let ev = f.ev();
    check_admitted_matches_supply(&ev, &AdmittedUnits::of(&ev))
}

fn no_oversell(f: &EvidenceFixture) -> Check {
    let ev = f.ev();
    check_no_oversell(&ev, &AdmittedUnits::of(&ev))
}

fn counters_match_orders(f: &EvidenceFixture) -> Check {
    let ev = f.ev();
    check_counters_match_orders(&ev, &ServerUnits::of(&ev))
}

#[track_caller]
fn assert_fails(c: &Check, needle: &str) {
    assert!(!c.passed, "{} should fail: {}", c.name, c.detail);
    assert!(c.detail.contains(needle), "{}: {}", c.name, c.detail);
}

#[track_caller]
fn assert_passes(c: &Check) {
    assert!(c.passed, "{} should pass: {}", c.name, c.detail);
}

#[test]
fn clean_evidence_passes_every_check_in_report_order() {
    let v = judge(&clean().ev());
    let names: Vec<&str> = v.checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "no_oversell",
            "admitted_matches_supply",
            "per_user_limit",
            "orders_exist",
            "order_states",
            "stock_conservation",
            "accounting",
            "idempotent_replay",
            "over_limit_rejected",
            "all_requests_decided",
            "responses_expected",
        ]
    );
    assert!(v.passed, "{:?}", v.failed().collect::<Vec<_>>());
    assert_eq!(
        v.check("admitted_matches_supply").unwrap().detail,
        "hot sold 10/10"
    );
}

#[test]
fn judge_fails_when_any_check_fails() {
    let mut f = clean();
    f.tally.unexpected = 1;
    let v = judge(&f.ev());
    assert!(!v.passed);
    let failed: Vec<&str> = v.failed().map(|c| c.name).collect();
    assert_eq!(failed, ["responses_expected"]);
}

#[test]
fn no_oversell_counts_a_replayed_order_once_but_catches_an_extra_one() {
    let mut f = clean();
    let replay = Ack {
        via: OpKind::Replay,
        ..f.acks[1].clone()
    };
    f.push(replay, "reserved");
    assert_passes(&no_oversell(&f));
    f.push(ack(11, Expected::Reserved), "reserved");
    assert_fails(&no_oversell(&f), "11 units held at once but only 10");
}

#[test]
fn no_oversell_after_expiry_compares_only_orders_still_held() {
    let mut f = clean();
    // Order 2 expired before the snapshot and its unit was sold again.
    f.acks[1].expires_at_ms = f.after_rush_ms - 1;
    f.lookups[1] = found(&f.acks[1], "expired");
    f.push(ack(11, Expected::Reserved), "reserved");
    assert_passes(&no_oversell(&f));
    f.push(ack(12, Expected::Reserved), "reserved");
    assert_fails(&no_oversell(&f), "11 units held at once");
}

#[test]
fn admitted_matches_supply_catches_unsold_stock() {
    let mut f = clean();
    f.acks.truncate(8);
    f.lookups.truncate(8);
    assert_fails(
        &admitted_matches_supply(&f),
        "demand 12 > supply 10, but 8 units admitted",
    );
}

#[test]
fn admitted_matches_supply_catches_stock_left_after_the_rush() {
    let mut f = clean();
    f.after_rush[0] = sale(1, STOCK - 1, 0);
    assert_fails(&admitted_matches_supply(&f), "still had 1 remaining");
}

#[test]
fn admitted_matches_supply_catches_admitting_other_than_the_demand() {
    let mut f = clean();
    f.tally.demand_units_by_sku[0] = 9;
    assert_fails(
        &admitted_matches_supply(&f),
        "demand 9 <= supply 10, but 10 units admitted",
    );
}

#[test]
fn admitted_matches_supply_fails_on_abandoned_purchases() {
    let mut f = clean();
    f.tally.abandoned_by_sku[0] = 1;
    assert_fails(&admitted_matches_supply(&f), "1 purchases abandoned");
}

#[test]
fn admitted_matches_supply_is_not_applicable_when_it_cannot_hold() {
    let mut f = clean();
    f.acks.truncate(8);
    f.lookups.truncate(8);
    f.all_users_served = false;
    let c = admitted_matches_supply(&f);
    assert_passes(&c);
    assert!(
        c.detail.starts_with("not applicable: deadline"),
        "{}",
        c.detail
    );
    f.all_users_served = true;
    f.acks[0].expires_at_ms = f.after_rush_ms;
    let c = admitted_matches_supply(&f);
    assert_passes(&c);
    assert!(c.detail.contains("reservations expired"), "{}", c.detail);
}

#[test]
fn per_user_limit_ignores_expired_orders_but_catches_held_ones() {
    let mut f = clean();
    let over = |n| Ack {
        order_id: format!("o{n}"),
        qty: 2,
        ..ack(1, Expected::Reserved)
    };
    f.push(over(100), "expired");
    assert_passes(&check_per_user_limits(&f.ev()));
    f.push(over(101), "reserved");
    assert_fails(
        &check_per_user_limits(&f.ev()),
        "user 1 holds 3 of hot (limit 2)",
    );
}

#[test]
fn orders_exist_catches_missing_failed_and_different_orders() {
    let mut f = clean();
    f.lookups[2] = OrderLookup::Missing;
    f.lookups[3] = OrderLookup::Failed("HTTP 500".into());
    if let OrderLookup::Found(o) = &mut f.lookups[4] {
        o.user_id = 999;
    }
    let c = check_acknowledged_orders_present(&f.ev());
    assert_fails(&c, "3 problem(s)");
    assert!(c.detail.contains("o3 (user 3) acknowledged but unknown"));
    assert!(c.detail.contains("o4: lookup failed: HTTP 500"));
    assert!(c
        .detail
        .contains("(hot, user 5, qty 1) but server has (hot, user 999, qty 1)"));
}

#[test]
fn order_states_catches_an_order_not_in_the_driven_state() {
    let mut f = clean();
    f.lookups[0] = found(&f.acks[0], "reserved");
    assert_fails(
        &check_order_states_as_driven(&f.ev()),
        "order o1 expected Paid, server says reserved",
    );
}

#[test]
fn order_states_accepts_expiry_only_once_it_is_due() {
    let mut f = clean();
    f.lookups[1] = found(&f.acks[1], "expired");
    assert_fails(
        &check_order_states_as_driven(&f.ev()),
        "order o2 expected Reserved, server says expired",
    );
    f.acks[1].expires_at_ms = NOW_MS;
    f.lookups[1] = found(&f.acks[1], "expired");
    assert_passes(&check_order_states_as_driven(&f.ev()));
}

#[test]
fn order_states_with_an_unanswered_action_accepts_either_state_only() {
    let mut f = clean();
    f.acks[0].expected = Expected::ReservedOr(Action::Pay);
    assert_passes(&check_order_states_as_driven(&f.ev()));
    f.lookups[0] = found(&f.acks[0], "cancelled");
    assert_fails(
        &check_order_states_as_driven(&f.ev()),
        "server says cancelled",
    );
}

#[test]
fn stock_conservation_catches_units_appearing() {
    let mut f = clean();
    f.final_sales[0].reserved += 1;
    assert_fails(
        &check_stock_conserved(&f.ev()),
        "hot at end: remaining 0 + reserved 10 + paid 1 = 11 != stock 10",
    );
}

#[test]
fn counters_match_orders_catches_paid_and_reserved_drift() {
    let mut f = clean();
    f.final_sales[0] = sale(0, STOCK - 2, 2);
    assert_fails(
        &counters_match_orders(&f),
        "hot: server paid 2 but orders show 1 (+0 before)",
    );
    let mut f = clean();
    f.final_sales[0] = sale(1, STOCK - 2, 1);
    assert_fails(
        &counters_match_orders(&f),
        "hot: server reserved 8 but orders show 9",
    );
    let mut f = clean();
    f.final_sales[0].stock = STOCK + 5;
    assert_fails(&counters_match_orders(&f), "stock changed from 10 to 15");
}

#[test]
fn counters_match_orders_counts_a_replayed_order_once() {
    let mut f = clean();
    let replay = Ack {
        via: OpKind::Replay,
        ..f.acks[0].clone()
    };
    f.push(replay, "paid");
    let c = counters_match_orders(&f);
    assert_passes(&c);
    assert_eq!(c.detail, "sale counters match the orders");
}

#[test]
fn counters_match_orders_skips_reserved_once_reservations_may_expire() {
    let mut f = clean();
    f.final_sales[0] = sale(1, STOCK - 2, 1);
    f.acks[5].expires_at_ms = NOW_MS + 1_000;
    let c = counters_match_orders(&f);
    assert_passes(&c);
    assert!(
        c.detail.contains("reserved not compared for hot"),
        "{}",
        c.detail
    );
}

#[test]
fn tally_checks_fail_on_their_counter() {
    let mut t = Tally::new(1);
    assert_passes(&check_replays_idempotent(&t));
    assert_passes(&check_over_limit_rejected(&t));
    assert_passes(&check_all_requests_decided(&t));
    assert_passes(&check_no_unexpected_responses(&t));
    t.replay_mismatches = 1;
    t.over_limit_admitted = 2;
    t.abandoned = 3;
    t.unexpected = 4;
    t.unexpected_examples = vec!["purchase user 7: HTTP 418".into()];
    assert_fails(&check_replays_idempotent(&t), "1 did not");
    assert_fails(&check_over_limit_rejected(&t), "2 admitted");
    assert_fails(&check_all_requests_decided(&t), "3 requests abandoned");
    assert_fails(
        &check_no_unexpected_responses(&t),
        "4 unexpected, e.g. purchase user 7: HTTP 418",
    );
}

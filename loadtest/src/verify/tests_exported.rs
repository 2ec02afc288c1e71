//! Unit tests of the `--postgres` checks: each starts from the rows a
//! correct export of the clean run in `tests` holds, breaks one thing, and
//! asserts that the check naming that thing fails, and that legitimate
//! variations (an expired reservation, an order of an earlier run the
//! server holds) still pass.

use super::exported::*;
use super::tests::{ack, clean, found, EvidenceFixture, NOW_MS};
use crate::api::{OrderLookup, SaleDoc};
use crate::workload::{Ack, Expected};

/// The owned data an [`ExportEvidence`] borrows, over a clean run.
struct Exported {
    run: EvidenceFixture,
    order_rows: Vec<ExportedOrder>,
    sale_rows: Vec<ExportedSale>,
    server_sales: Vec<SaleDoc>,
    other_orders: Vec<(String, OrderLookup)>,
    other_sales: Vec<(String, bool)>,
}

fn row(a: &Ack, state: &str) -> ExportedOrder {
    ExportedOrder {
        order_id: a.order_id.clone(),
        sku: "hot".into(),
        user_id: a.user_id.to_string(),
        qty: a.qty as i32,
        state: state.into(),
    }
}

/// Order 1 paid, nine reserved; the sale row equals the server's counters.
fn exported() -> Exported {
    let run = clean();
    let order_rows = run
        .acks
        .iter()
        .map(|a| match a.expected {
            Expected::Paid => row(a, "paid"),
            _ => row(a, "reserved"),
        })
        .collect();
    let server_sales = run.final_sales.clone();
    let s = &server_sales[0];
    let sale_rows = vec![ExportedSale {
        sku: s.sku.clone(),
        stock: s.stock as i64,
        remaining: s.remaining as i64,
        reserved: s.reserved as i64,
        paid: s.paid as i64,
    }];
    Exported {
        run,
        order_rows,
        sale_rows,
        server_sales,
        other_orders: Vec::new(),
        other_sales: Vec::new(),
    }
}

impl Exported {
    fn ev(&self) -> ExportEvidence<'_> {
        ExportEvidence {
            skus: &self.run.skus,
            acks: &self.run.acks,
            lookups: &self.run.lookups,
            order_rows: &self.order_rows,
            sale_rows: &self.sale_rows,
            server_sales: &self.server_sales,
            other_orders: &self.other_orders,
            other_sales: &self.other_sales,
            read_ms: NOW_MS,
        }
    }

    fn failed(&self) -> Vec<&'static str> {
        judge_export(&self.ev())
            .into_iter()
            .filter(|c| !c.passed)
            .map(|c| c.name)
            .collect()
    }

    fn row_mut(&mut self, n: usize) -> &mut ExportedOrder {
        &mut self.order_rows[n]
    }
}

#[test]
fn a_correct_export_passes_every_check() {
    let x = exported();
    let checks = judge_export(&x.ev());
    assert_eq!(checks.len(), 5);
    assert!(checks.iter().all(|c| c.passed), "{checks:?}");
}

#[test]
fn a_missing_order_row_fails_presence() {
    let mut x = exported();
    x.order_rows.remove(3);
    // Its reserved unit is missing from the sums too.
    assert_eq!(x.failed(), ["export_orders_present", "export_order_sums"]);
    let c = check_exported_orders_present(&x.ev());
    assert!(
        c.detail.contains("o4 acknowledged but not exported"),
        "{c:?}"
    );
}

#[test]
fn a_repeated_order_row_fails_presence() {
    let mut x = exported();
    let again = x.order_rows[2].clone();
    x.order_rows.push(again);
    let c = check_exported_orders_present(&x.ev());
    assert!(!c.passed && c.detail.contains("more than one row"), "{c:?}");
}

#[test]
fn a_row_for_another_user_fails_presence() {
    let mut x = exported();
    x.row_mut(4).user_id = "999".into();
    let c = check_exported_orders_present(&x.ev());
    assert!(!c.passed && c.detail.contains("user 999"), "{c:?}");
}

#[test]
fn a_row_in_the_wrong_state_fails_states() {
    let mut x = exported();
    // Order 1 was paid; the row says cancelled.
    x.row_mut(0).state = "cancelled".into();
    assert!(x.failed().contains(&"export_order_states"));
    // A reserved order whose reservation has not run out cannot be expired.
    let mut x = exported();
    x.row_mut(5).state = "expired".into();
    assert!(x.failed().contains(&"export_order_states"));
}

#[test]
fn an_expired_reservation_may_be_exported_as_expired() {
    let mut x = exported();
    // The reservation ran out after the run's lookup showed it reserved.
    x.run.acks[5].expires_at_ms = NOW_MS - 1;
    x.run.lookups[5] = found(&x.run.acks[5], "reserved");
    x.row_mut(5).state = "expired".into();
    // The server released the unit: one reserved fewer, one remaining more.
    x.server_sales[0].reserved -= 1;
    x.server_sales[0].remaining += 1;
    x.sale_rows[0].reserved -= 1;
    x.sale_rows[0].remaining += 1;
    assert_eq!(x.failed(), Vec::<&str>::new());
}

#[test]
fn a_row_behind_a_final_state_the_server_showed_fails_states() {
    let mut x = exported();
    // The server already showed order 6 expired; the row still says reserved.
    x.run.acks[5].expires_at_ms = NOW_MS - 1;
    x.run.lookups[5] = found(&x.run.acks[5], "expired");
    let c = check_exported_order_states(&x.ev());
    assert!(
        !c.passed && c.detail.contains("was expired on the server"),
        "{c:?}"
    );
}

#[test]
fn a_sale_row_off_the_servers_counters_fails_sales_match() {
    let mut x = exported();
    x.sale_rows[0].paid += 1;
    assert_eq!(x.failed(), ["export_sales_match"]);
    let mut x = exported();
    x.sale_rows.clear();
    let c = check_exported_sales_match_server(&x.ev());
    assert!(
        !c.passed && c.detail.contains("no row in flashsale_sales"),
        "{c:?}"
    );
}

#[test]
fn order_rows_off_the_counters_fail_sums() {
    let mut x = exported();
    // A second paid row beyond the one paid unit the counters show: the
    // extra row is also an order nobody acknowledged or looked up.
    let mut extra = x.order_rows[0].clone();
    extra.order_id = "o99".into();
    x.order_rows.push(extra);
    let failed = x.failed();
    assert!(failed.contains(&"export_order_sums"), "{failed:?}");
    assert!(failed.contains(&"export_no_other_rows"), "{failed:?}");
}

#[test]
fn an_order_row_the_server_does_not_know_fails_no_other_rows() {
    let mut x = exported();
    let mut phantom = row(&ack(77, Expected::Reserved), "cancelled");
    phantom.order_id = "o77".into();
    x.order_rows.push(phantom);
    x.other_orders.push(("o77".into(), OrderLookup::Missing));
    assert_eq!(x.failed(), ["export_no_other_rows"]);
    let c = check_no_other_rows(&x.ev());
    assert!(
        c.detail.contains("o77: the server has no such order"),
        "{c:?}"
    );
}

#[test]
fn an_order_row_the_server_holds_passes_no_other_rows() {
    let mut x = exported();
    // An order of another client, cancelled, that the server knows.
    let earlier = ack(88, Expected::Cancelled);
    x.order_rows.push(row(&earlier, "cancelled"));
    x.other_orders
        .push((earlier.order_id.clone(), found(&earlier, "cancelled")));
    assert_eq!(x.failed(), Vec::<&str>::new());
    // The same row with another quantity than the server's is a failure.
    x.order_rows.last_mut().unwrap().qty = 3;
    assert_eq!(x.failed(), ["export_no_other_rows"]);
}

#[test]
fn a_sale_row_of_no_known_sale_fails_no_other_rows() {
    let mut x = exported();
    let mut stray = x.sale_rows[0].clone();
    stray.sku = "stray".into();
    x.sale_rows.push(stray);
    x.other_sales.push(("stray".into(), false));
    assert_eq!(x.failed(), ["export_no_other_rows"]);
    x.other_sales[0].1 = true;
    assert_eq!(x.failed(), Vec::<&str>::new());
}

//! The checks of `--postgres`: the database the server's export relay wrote
//! against what the harness saw acknowledged and what the server holds.
//! One function per check, pure like those in `checks`; the rows are read
//! by [`crate::pgverify`], which also makes sure the export had caught up
//! with the log before they were read.

use super::evidence::state_as_driven;
use super::outcome::{Check, Problems};
use crate::api::{OrderDoc, OrderLookup, SaleDoc};
use crate::workload::{Ack, SkuInfo};
use std::collections::{BTreeMap, HashMap, HashSet};

/// One row of `flashsale_orders`, with the columns the checks compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedOrder {
    pub order_id: String,
    pub sku: String,
    pub user_id: String,
    pub qty: i32,
    pub state: String,
}

/// One row of `flashsale_sales`, with the counters the checks compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedSale {
    pub sku: String,
    pub stock: i64,
    pub remaining: i64,
    pub reserved: i64,
    pub paid: i64,
}

/// Everything the export's checks are computed from.
pub struct ExportEvidence<'a> {
    pub skus: &'a [SkuInfo],
    pub acks: &'a [Ack],
    /// The server's view of each ack, as the run's verification read it.
    pub lookups: &'a [OrderLookup],
    pub order_rows: &'a [ExportedOrder],
    pub sale_rows: &'a [ExportedSale],
    /// Each run SKU's sale as the server reported it at the log position
    /// the rows were read at.
    pub server_sales: &'a [SaleDoc],
    /// The server's answer for each order row the harness did not see
    /// acknowledged.
    pub other_orders: &'a [(String, OrderLookup)],
    /// Each sale row's SKU that is not one of the run's, and whether the
    /// server holds a sale of that name.
    pub other_sales: &'a [(String, bool)],
    /// When the rows were read (ms since epoch); expiry is judged against it.
    pub read_ms: u64,
}

impl ExportEvidence<'_> {
    /// The order rows by id; a repeated id (which the primary key forbids)
    /// keeps its first row and is reported by `export_orders_present`.
    fn orders_by_id(&self) -> HashMap<&str, &ExportedOrder> {
        let mut by_id = HashMap::with_capacity(self.order_rows.len());
        for r in self.order_rows {
            by_id.entry(r.order_id.as_str()).or_insert(r);
        }
        by_id
    }

    /// Each acknowledged order once, with the server's view of it.
    fn distinct_acks(&self) -> impl Iterator<Item = (&Ack, &OrderLookup)> {
        let mut seen = HashSet::new();
        self.acks
            .iter()
            .zip(self.lookups)
            .filter(move |(a, _)| seen.insert(a.order_id.as_str()))
    }
}

/// Runs the export's checks in report order.
pub fn judge_export(ev: &ExportEvidence<'_>) -> Vec<Check> {
    vec![
        check_exported_orders_present(ev),
        check_exported_order_states(ev),
        check_exported_sales_match_server(ev),
        check_exported_order_sums(ev),
        check_no_other_rows(ev),
    ]
}

/// "export_orders_present": every acknowledged order has exactly one row,
/// with the SKU, user and quantity it was acknowledged with.
pub(super) fn check_exported_orders_present(ev: &ExportEvidence<'_>) -> Check {
    let mut p = Problems::new();
    let mut ids = HashSet::with_capacity(ev.order_rows.len());
    for r in ev.order_rows {
        if !ids.insert(r.order_id.as_str()) {
            p.add(|| format!("order {} has more than one row", r.order_id));
        }
    }
    let rows = ev.orders_by_id();
    let mut n = 0u64;
    for (a, _) in ev.distinct_acks() {
        n += 1;
        let sku = &ev.skus[a.sku].name;
        match rows.get(a.order_id.as_str()) {
            None => p.add(|| format!("order {} acknowledged but not exported", a.order_id)),
            Some(r)
                if &r.sku != sku
                    || r.user_id != a.user_id.to_string()
                    || i64::from(r.qty) != i64::from(a.qty) =>
            {
                p.add(|| {
                    format!(
                        "order {} acknowledged as ({sku}, user {}, qty {}) but exported as ({}, user {}, qty {})",
                        a.order_id, a.user_id, a.qty, r.sku, r.user_id, r.qty
                    )
                })
            }
            Some(_) => {}
        }
    }
    p.into_check(
        "export_orders_present",
        format!("all {n} acknowledged orders exported once"),
    )
}

/// "export_order_states": every acknowledged order's row is in the state
/// the harness drove it to (or expired once its reservation ran out), and
/// in the final state the server had already shown for it.
pub(super) fn check_exported_order_states(ev: &ExportEvidence<'_>) -> Check {
    let mut p = Problems::new();
    let rows = ev.orders_by_id();
    for (a, l) in ev.distinct_acks() {
        // A missing row is reported by export_orders_present.
        let Some(r) = rows.get(a.order_id.as_str()) else {
            continue;
        };
        let server = match l {
            OrderLookup::Found(o) => Some(o),
            OrderLookup::Missing | OrderLookup::Failed(_) => None,
        };
        if !state_as_driven(a, server, &r.state, ev.read_ms) {
            p.add(|| {
                format!(
                    "order {} expected {:?}, exported as {}",
                    a.order_id, a.expected, r.state
                )
            });
            continue;
        }
        // Paid, cancelled and expired are final: a row read after the
        // server showed one of them must show it too.
        if let Some(o) = server.filter(|o| o.state != "reserved" && o.state != r.state) {
            p.add(|| {
                format!(
                    "order {} was {} on the server but is exported as {}",
                    a.order_id, o.state, r.state
                )
            });
        }
    }
    p.into_check(
        "export_order_states",
        "every exported order in the state the harness drove it to".into(),
    )
}

/// "export_sales_match": each run SKU's `flashsale_sales` row has the
/// stock, remaining, reserved and paid the server reports.
pub(super) fn check_exported_sales_match_server(ev: &ExportEvidence<'_>) -> Check {
    let mut p = Problems::new();
    let rows: HashMap<&str, &ExportedSale> =
        ev.sale_rows.iter().map(|r| (r.sku.as_str(), r)).collect();
    for s in ev.server_sales {
        let Some(r) = rows.get(s.sku.as_str()) else {
            p.add(|| format!("{}: no row in flashsale_sales", s.sku));
            continue;
        };
        let server = [s.stock, s.remaining, s.reserved, s.paid].map(i128::from);
        let row = [r.stock, r.remaining, r.reserved, r.paid].map(i128::from);
        if server != row {
            p.add(|| {
                format!(
                    "{}: server has stock/remaining/reserved/paid {}/{}/{}/{}, row has {}/{}/{}/{}",
                    s.sku,
                    s.stock,
                    s.remaining,
                    s.reserved,
                    s.paid,
                    r.stock,
                    r.remaining,
                    r.reserved,
                    r.paid
                )
            });
        }
    }
    p.into_check(
        "export_sales_match",
        format!(
            "{} sale rows equal the server's counters",
            ev.server_sales.len()
        ),
    )
}

/// "export_order_sums": per run SKU, the units of the order rows in state
/// reserved and paid add up to the server's reserved and paid.
pub(super) fn check_exported_order_sums(ev: &ExportEvidence<'_>) -> Check {
    let mut sums: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for r in ev.order_rows {
        *sums.entry((r.sku.as_str(), r.state.as_str())).or_default() += i64::from(r.qty);
    }
    let mut p = Problems::new();
    for s in ev.server_sales {
        for (state, want) in [("reserved", s.reserved), ("paid", s.paid)] {
            let got = sums.get(&(s.sku.as_str(), state)).copied().unwrap_or(0);
            if i128::from(got) != i128::from(want) {
                p.add(|| {
                    format!(
                        "{}: {state} order rows hold {got} units, the server counts {want}",
                        s.sku
                    )
                });
            }
        }
    }
    p.into_check(
        "export_order_sums",
        "reserved and paid order rows add up to the counters".into(),
    )
}

/// "export_no_other_rows": every order row is an acknowledged order or one
/// the server holds with the same SKU, user and quantity, and every sale
/// row is a run SKU or a sale the server holds.
pub(super) fn check_no_other_rows(ev: &ExportEvidence<'_>) -> Check {
    let mut p = Problems::new();
    let rows = ev.orders_by_id();
    for (id, l) in ev.other_orders {
        let Some(r) = rows.get(id.as_str()) else {
            continue;
        };
        match l {
            OrderLookup::Found(o) if same_order(r, o) => {}
            OrderLookup::Found(o) => p.add(|| {
                format!(
                    "row {id} is ({}, user {}, qty {}) but the server has ({}, user {}, qty {})",
                    r.sku, r.user_id, r.qty, o.sku, o.user_id, o.qty
                )
            }),
            OrderLookup::Missing => p.add(|| format!("row {id}: the server has no such order")),
            OrderLookup::Failed(why) => p.add(|| format!("row {id}: lookup failed: {why}")),
        }
    }
    let looked_up: HashSet<&str> = ev.other_orders.iter().map(|(id, _)| id.as_str()).collect();
    let acked: HashSet<&str> = ev.acks.iter().map(|a| a.order_id.as_str()).collect();
    for r in ev.order_rows {
        let id = r.order_id.as_str();
        if !acked.contains(id) && !looked_up.contains(id) {
            p.add(|| format!("row {id} was neither acknowledged nor looked up"));
        }
    }
    let run_skus: HashSet<&str> = ev.skus.iter().map(|s| s.name.as_str()).collect();
    let held: HashMap<&str, bool> = ev
        .other_sales
        .iter()
        .map(|(s, h)| (s.as_str(), *h))
        .collect();
    for r in ev.sale_rows {
        let sku = r.sku.as_str();
        if !run_skus.contains(sku) && held.get(sku) != Some(&true) {
            p.add(|| format!("sale row {sku}: not a sale of this run nor one the server holds"));
        }
    }
    p.into_check(
        "export_no_other_rows",
        format!(
            "{} order rows ({} not acknowledged, all held by the server), {} sale rows",
            ev.order_rows.len(),
            ev.other_orders.len(),
            ev.sale_rows.len()
        ),
    )
}

fn same_order(r: &ExportedOrder, o: &OrderDoc) -> bool {
    r.sku == o.sku && r.user_id == o.user_id.to_string() && i64::from(r.qty) == i64::from(o.qty)
}

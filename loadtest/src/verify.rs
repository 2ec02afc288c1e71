//! The verdict: after the load, ask the server what it holds and compare it
//! with what it acknowledged.
//!
//! Only acknowledged outcomes count as evidence. An order the harness saw
//! admitted must exist, belong to the right user and SKU, and be in the state
//! the harness drove it to; the sale counters must add up and agree with
//! those orders; no user may hold more than the limit; and when demand
//! exceeded supply, exactly the supply must have been admitted.
//!
//! This file gathers the evidence over HTTP ([`read_sales`],
//! [`lookup_orders`]) and runs the checks ([`judge`]). The files below it
//! depend one way: `checks` (one function per check) on `evidence` (what is
//! judged and the tallies shared by checks) and `outcome` (the result types);
//! `exported` holds the checks of the database `--postgres` names.

mod checks;
mod evidence;
mod exported;
mod outcome;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_exported;

pub use evidence::Evidence;
pub use exported::{judge_export, ExportEvidence, ExportedOrder, ExportedSale};
pub use outcome::{Check, Verdict};

use crate::api::{self, OrderLookup, SaleDoc};
use crate::client::ClientConn;
use crate::workload::{Ack, Ctx};
use anyhow::Result;
use checks::*;
use evidence::{AdmittedUnits, ServerUnits};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Looks up every acknowledged order with bounded concurrency.
pub async fn lookup_orders(ctx: &Ctx, acks: &[Ack]) -> Vec<OrderLookup> {
    lookup_order_ids(ctx, acks.iter().map(|a| a.order_id.clone()).collect()).await
}

/// Looks up orders by id with bounded concurrency, answers in `ids` order.
pub async fn lookup_order_ids(ctx: &Ctx, ids: Vec<String>) -> Vec<OrderLookup> {
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let workers = (ctx.scenario.verify_concurrency as usize).min(ids.len().max(1));
    for _ in 0..workers {
        let ids = Arc::clone(&ids);
        let next = Arc::clone(&next);
        let admin = ctx.admin.clone();
        let mut conn = ClientConn::new(
            ctx.target.clone(),
            Duration::from_millis(ctx.scenario.timeout_ms),
        );
        tasks.spawn(async move {
            let mut out = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(k) else { break };
                out.push((k, api::get_order(&mut conn, &admin, id).await));
            }
            out
        });
    }
    let mut result = vec![OrderLookup::Failed("not looked up".into()); ids.len()];
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(found) => {
                for (k, l) in found {
                    result[k] = l;
                }
            }
            // A panicked lookup task leaves its orders as "not looked up",
            // which fails the verdict instead of hiding the orders.
            Err(e) => eprintln!("order lookup task failed: {e}"),
        }
    }
    result
}

/// Computes the verdict from the evidence; pure, so tests can feed it directly.
/// The checks run in the order the report lists them.
pub fn judge(ev: &Evidence<'_>) -> Verdict {
    let units = AdmittedUnits::of(ev);
    let server = ServerUnits::of(ev);
    let checks = vec![
        check_no_oversell(ev, &units),
        check_admitted_matches_supply(ev, &units),
        check_per_user_limits(ev),
        check_acknowledged_orders_present(ev),
        check_order_states_as_driven(ev),
        check_stock_conserved(ev),
        check_counters_match_orders(ev, &server),
        check_replays_idempotent(ev.tally),
        check_over_limit_rejected(ev.tally),
        check_all_requests_decided(ev.tally),
        check_no_unexpected_responses(ev.tally),
    ];
    Verdict {
        passed: checks.iter().all(|c| c.passed),
        checks,
    }
}

/// Reads every SKU's sale.
pub async fn read_sales(ctx: &Ctx) -> Result<Vec<SaleDoc>> {
    let mut conn = ClientConn::new(
        ctx.target.clone(),
        Duration::from_millis(ctx.scenario.timeout_ms),
    );
    let mut out = Vec::with_capacity(ctx.skus.len());
    for s in &ctx.skus {
        out.push(api::get_sale(&mut conn, &s.name).await?);
    }
    Ok(out)
}

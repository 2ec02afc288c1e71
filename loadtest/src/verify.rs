//! The verdict: after the load, ask the server what it holds and compare it
//! with what it acknowledged.
//!
//! Only acknowledged outcomes count as evidence. An order the harness saw
//! admitted must exist, belong to the right user and SKU, and be in the state
//! the harness drove it to; the sale counters must add up and agree with
//! those orders; no user may hold more than the limit; and when demand
//! exceeded supply, exactly the supply must have been admitted.

use crate::api::{self, OrderDoc, OrderLookup, SaleDoc};
use crate::client::ClientConn;
use crate::workload::{Ack, Action, Ctx, Expected, Tally};
use anyhow::Result;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Offending items listed per failed check; the rest are only counted.
const EXAMPLES_MAX: usize = 5;

/// One named check and its outcome.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// All checks; the run passes only if every one does.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Verdict {
    pub passed: bool,
    pub checks: Vec<Check>,
}

impl Verdict {
    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }

    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// Collects problems for one check, keeping a few examples.
struct Problems {
    count: u64,
    examples: Vec<String>,
}

impl Problems {
    fn new() -> Problems {
        Problems {
            count: 0,
            examples: Vec::new(),
        }
    }

    fn add(&mut self, what: impl FnOnce() -> String) {
        self.count += 1;
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(what());
        }
    }

    fn into_check(self, name: &'static str, ok_detail: String) -> Check {
        if self.count == 0 {
            Check {
                name,
                passed: true,
                detail: ok_detail,
            }
        } else {
            Check {
                name,
                passed: false,
                detail: format!(
                    "{} problem(s), e.g. {}",
                    self.count,
                    self.examples.join("; ")
                ),
            }
        }
    }
}

/// Looks up every acknowledged order with bounded concurrency.
pub async fn lookup_orders(ctx: &Ctx, acks: &[Ack]) -> Vec<OrderLookup> {
    let ids: Arc<Vec<String>> = Arc::new(acks.iter().map(|a| a.order_id.clone()).collect());
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

/// Everything the verdict is computed from.
pub struct Evidence<'a> {
    pub skus: &'a [crate::workload::SkuInfo],
    pub acks: &'a [Ack],
    pub lookups: &'a [OrderLookup],
    pub tally: &'a Tally,
    /// Sales read between the rush and the settle phase.
    pub after_rush: &'a [SaleDoc],
    /// When `after_rush` was read (ms since epoch).
    pub after_rush_ms: u64,
    /// Sales read at the end.
    pub final_sales: &'a [SaleDoc],
    /// When the lookups ran (ms since epoch); expiry is judged against it.
    pub now_ms: u64,
    /// Whether every user got to make their purchase before the deadline.
    pub all_users_served: bool,
    pub qty: u32,
}

fn expiry_passed(ack: &Ack, order: Option<&OrderDoc>, now_ms: u64) -> bool {
    let at = order.map_or(ack.expires_at_ms, |o| {
        o.expires_at_ms.max(ack.expires_at_ms)
    });
    at <= now_ms
}

/// Computes the verdict from the evidence; pure, so tests can feed it directly.
pub fn judge(ev: &Evidence<'_>) -> Verdict {
    let mut checks = Vec::new();
    let n_skus = ev.skus.len();

    // Distinct acknowledged orders; a replay answering the same order must not
    // be counted twice.
    // Without expiry every acknowledged order held its units from admission
    // to the end of the rush, so all of them must fit in the supply at once.
    // Once reservations can expire, units come back and are sold again; the
    // orders still reserved or paid at the end are then the set known to hold
    // units simultaneously.
    let expiry_before_snapshot = ev.acks.iter().any(|a| a.expires_at_ms <= ev.after_rush_ms);
    let mut seen = HashSet::new();
    let mut admitted_units = vec![0u64; n_skus];
    let mut held_units = vec![0u64; n_skus];
    for (a, l) in ev.acks.iter().zip(ev.lookups) {
        if seen.insert(a.order_id.as_str()) {
            admitted_units[a.sku] += u64::from(a.qty);
            let holds = match l {
                OrderLookup::Found(o) if expiry_before_snapshot => {
                    matches!(o.state.as_str(), "reserved" | "paid")
                }
                _ => true,
            };
            if holds {
                held_units[a.sku] += u64::from(a.qty);
            }
        }
    }

    // 1. No oversell: acknowledged, unexpired units never exceed the supply.
    let mut p = Problems::new();
    for (i, s) in ev.skus.iter().enumerate() {
        if held_units[i] > s.baseline.remaining {
            p.add(|| {
                format!(
                    "{}: {} units held at once but only {} were on offer",
                    s.name, held_units[i], s.baseline.remaining
                )
            });
        }
    }
    let total: u64 = admitted_units.iter().sum();
    checks.push(p.into_check(
        "no_oversell",
        if expiry_before_snapshot {
            format!("{total} units acknowledged; reservations expired, so only those still held were compared")
        } else {
            format!("{total} units acknowledged, none beyond supply")
        },
    ));

    // 2. Admitted == supply when demand exceeds it (== demand otherwise).
    let mut p = Problems::new();
    let mut applied = Vec::new();
    for (i, s) in ev.skus.iter().enumerate() {
        let supply = s.baseline.remaining;
        let demand = ev.tally.demand_units_by_sku[i];
        let got = admitted_units[i];
        if !ev.all_users_served || expiry_before_snapshot {
            continue;
        }
        if ev.tally.abandoned_by_sku[i] > 0 {
            p.add(|| {
                format!(
                    "{}: {} purchases abandoned after retries, outcome unknown",
                    s.name, ev.tally.abandoned_by_sku[i]
                )
            });
            continue;
        }
        if demand > supply {
            // Whole requests of `qty` units: up to qty-1 units may stay unsold.
            if got > supply || supply - got >= u64::from(ev.qty) {
                p.add(|| {
                    format!(
                        "{}: demand {demand} > supply {supply}, but {got} units admitted",
                        s.name
                    )
                });
            }
            if let Some(after) = ev.after_rush.get(i) {
                if !expiry_before_snapshot && after.remaining >= u64::from(ev.qty) {
                    p.add(|| {
                        format!(
                            "{}: demand exceeded supply but the server still had {} remaining after the rush",
                            s.name, after.remaining
                        )
                    });
                }
            }
            applied.push(format!("{} sold {got}/{supply}", s.name));
        } else {
            if got != demand {
                p.add(|| {
                    format!(
                        "{}: demand {demand} <= supply {supply}, but {got} units admitted",
                        s.name
                    )
                });
            }
            applied.push(format!("{} admitted all {demand} demanded", s.name));
        }
    }
    let detail = if !ev.all_users_served {
        "not applicable: deadline hit before every user purchased".into()
    } else if expiry_before_snapshot {
        // Expired units go back on sale mid-rush, so no exact count holds.
        "not applicable: reservations expired during the rush".into()
    } else {
        applied.join(", ")
    };
    checks.push(p.into_check("admitted_matches_supply", detail));

    // 3. Per-user limit over acknowledged, unexpired orders.
    let mut held: BTreeMap<(usize, u64), u64> = BTreeMap::new();
    let mut counted = HashSet::new();
    for (a, l) in ev.acks.iter().zip(ev.lookups) {
        let expired = matches!(l, OrderLookup::Found(o) if o.state == "expired");
        if !expired && counted.insert(a.order_id.as_str()) {
            *held.entry((a.sku, a.user_id)).or_default() += u64::from(a.qty);
        }
    }
    let mut p = Problems::new();
    for (&(sku, user), &units) in &held {
        let limit = u64::from(ev.skus[sku].per_user_limit);
        if units > limit {
            p.add(|| {
                format!(
                    "user {user} holds {units} of {} (limit {limit})",
                    ev.skus[sku].name
                )
            });
        }
    }
    checks.push(p.into_check(
        "per_user_limit",
        format!("{} (sku, user) pairs within limit", held.len()),
    ));

    // 4 and 5. Every acknowledged order exists, matches, and has the expected state.
    let mut missing = Problems::new();
    let mut wrong_state = Problems::new();
    let mut found_units: Vec<BTreeMap<&str, u64>> = vec![BTreeMap::new(); n_skus];
    let mut any_expired = false;
    for (a, l) in ev.acks.iter().zip(ev.lookups) {
        let o = match l {
            OrderLookup::Found(o) => o,
            OrderLookup::Missing => {
                missing.add(|| {
                    format!(
                        "order {} (user {}) acknowledged but unknown to the server",
                        a.order_id, a.user_id
                    )
                });
                continue;
            }
            OrderLookup::Failed(why) => {
                missing.add(|| format!("order {}: lookup failed: {why}", a.order_id));
                continue;
            }
        };
        let sku = &ev.skus[a.sku].name;
        if o.order_id != a.order_id || &o.sku != sku || o.user_id != a.user_id || o.qty != a.qty {
            missing.add(|| {
                format!(
                    "order {} acknowledged as ({sku}, user {}, qty {}) but server has ({}, user {}, qty {})",
                    a.order_id, a.user_id, a.qty, o.sku, o.user_id, o.qty
                )
            });
            continue;
        }
        let expired_ok = o.state == "expired" && expiry_passed(a, Some(o), ev.now_ms);
        any_expired |= o.state == "expired";
        let ok = match a.expected {
            Expected::Reserved => o.state == "reserved" || expired_ok,
            Expected::Paid => o.state == "paid",
            Expected::Cancelled => o.state == "cancelled",
            Expected::Expired => o.state == "expired",
            Expected::ReservedOr(Action::Pay) => {
                matches!(o.state.as_str(), "reserved" | "paid") || expired_ok
            }
            Expected::ReservedOr(Action::Cancel) => {
                matches!(o.state.as_str(), "reserved" | "cancelled") || expired_ok
            }
            Expected::ReservedOr(Action::Keep) => o.state == "reserved" || expired_ok,
        };
        if !ok {
            wrong_state.add(|| {
                format!(
                    "order {} expected {:?}, server says {}",
                    a.order_id, a.expected, o.state
                )
            });
        }
        if seen.contains(a.order_id.as_str()) {
            *found_units[a.sku].entry(state_key(&o.state)).or_default() += u64::from(o.qty);
        }
        seen.remove(a.order_id.as_str());
    }
    checks.push(missing.into_check(
        "orders_exist",
        format!("all {} acknowledged orders found", ev.acks.len()),
    ));
    checks.push(wrong_state.into_check(
        "order_states",
        "every order in the state the harness drove it to".into(),
    ));

    // 6. Conservation on every SKU, after the rush and at the end.
    let mut p = Problems::new();
    for (when, sales) in [("after rush", ev.after_rush), ("at end", ev.final_sales)] {
        for s in sales {
            let sum = s.remaining as u128 + s.reserved as u128 + s.paid as u128;
            if sum != s.stock as u128 {
                p.add(|| {
                    format!(
                        "{} {when}: remaining {} + reserved {} + paid {} = {sum} != stock {}",
                        s.sku, s.remaining, s.reserved, s.paid, s.stock
                    )
                });
            }
        }
    }
    checks.push(p.into_check(
        "stock_conservation",
        "remaining + reserved + paid == stock everywhere".into(),
    ));

    // 7. The sale counters agree with the orders the server showed us. The
    // harness is assumed to be the only client during the run.
    let mut p = Problems::new();
    let mut skipped = Vec::new();
    for (i, s) in ev.skus.iter().enumerate() {
        let Some(f) = ev.final_sales.get(i) else {
            continue;
        };
        let b = &s.baseline;
        if f.stock != b.stock {
            p.add(|| {
                format!(
                    "{}: stock changed from {} to {} during the run",
                    s.name, b.stock, f.stock
                )
            });
        }
        let paid = found_units[i].get("paid").copied().unwrap_or(0);
        if f.paid != b.paid + paid {
            p.add(|| {
                format!(
                    "{}: server paid {} but orders show {} (+{} before)",
                    s.name, f.paid, paid, b.paid
                )
            });
        }
        // Reserved units drift by themselves once reservations can expire,
        // so the exact comparison only holds when none could have.
        let may_expire = any_expired
            || b.reserved > 0
            || ev.acks.iter().any(|a| a.expires_at_ms <= ev.now_ms + 1000);
        if may_expire {
            skipped.push(s.name.as_str());
            continue;
        }
        let reserved = found_units[i].get("reserved").copied().unwrap_or(0);
        if f.reserved != reserved {
            p.add(|| {
                format!(
                    "{}: server reserved {} but orders show {reserved}",
                    s.name, f.reserved
                )
            });
        }
    }
    let detail = if skipped.is_empty() {
        "sale counters match the orders".to_string()
    } else {
        format!(
            "paid matches; reserved not compared for {} (reservations may expire)",
            skipped.join(",")
        )
    };
    checks.push(p.into_check("accounting", detail));

    // 8-11. Behaviour seen during the run.
    let t = ev.tally;
    checks.push(Check {
        name: "idempotent_replay",
        passed: t.replay_mismatches == 0,
        detail: format!(
            "{} replays answered with the same order, {} did not",
            t.replays_ok, t.replay_mismatches
        ),
    });
    checks.push(Check {
        name: "over_limit_rejected",
        passed: t.over_limit_admitted == 0,
        detail: format!(
            "{} over-limit purchases rejected, {} admitted ({} more after the first order expired)",
            t.over_limit_rejected, t.over_limit_admitted, t.over_limit_after_expiry
        ),
    });
    checks.push(Check {
        name: "all_requests_decided",
        passed: t.abandoned == 0,
        detail: format!(
            "{} requests abandoned after retries ({} retries in all)",
            t.abandoned, t.retries
        ),
    });
    checks.push(Check {
        name: "responses_expected",
        passed: t.unexpected == 0,
        detail: if t.unexpected == 0 {
            "no unexpected responses".into()
        } else {
            format!(
                "{} unexpected, e.g. {}",
                t.unexpected,
                t.unexpected_examples.join("; ")
            )
        },
    });

    Verdict {
        passed: checks.iter().all(|c| c.passed),
        checks,
    }
}

fn state_key(s: &str) -> &'static str {
    match s {
        "reserved" => "reserved",
        "paid" => "paid",
        "cancelled" => "cancelled",
        "expired" => "expired",
        _ => "other",
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

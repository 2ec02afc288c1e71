//! One function per verification check, each named after what it proves and
//! returning the [`Check`] the report lists under the name in its doc.
//! They are pure: [`super::judge`] gathers the evidence and calls them in
//! report order.

use super::evidence::{
    server_record, state_as_driven, AdmittedUnits, Evidence, RecordProblem, ServerUnits,
};
use super::outcome::{Check, Problems};
use crate::api::OrderLookup;
use crate::workload::Tally;
use std::collections::{BTreeMap, HashSet};

/// "no_oversell": acknowledged, unexpired units never exceed the supply.
pub(super) fn check_no_oversell(ev: &Evidence<'_>, units: &AdmittedUnits) -> Check {
    let mut p = Problems::new();
    for (i, s) in ev.skus.iter().enumerate() {
        if units.held[i] > s.baseline.remaining {
            p.add(|| {
                format!(
                    "{}: {} units held at once but only {} were on offer",
                    s.name, units.held[i], s.baseline.remaining
                )
            });
        }
    }
    let total: u64 = units.admitted.iter().sum();
    p.into_check(
        "no_oversell",
        if units.expiry_before_snapshot {
            format!("{total} units acknowledged; reservations expired, so only those still held were compared")
        } else {
            format!("{total} units acknowledged, none beyond supply")
        },
    )
}

/// "admitted_matches_supply": when demand exceeds the supply exactly the
/// supply is admitted (up to one request's worth), otherwise exactly the
/// demand. Only judged when every user purchased and nothing expired.
pub(super) fn check_admitted_matches_supply(ev: &Evidence<'_>, units: &AdmittedUnits) -> Check {
    const NAME: &str = "admitted_matches_supply";
    let not_applicable = if !ev.all_users_served {
        Some("not applicable: deadline hit before every user purchased")
    } else if units.expiry_before_snapshot {
        // Expired units go back on sale mid-rush, so no exact count holds.
        Some("not applicable: reservations expired during the rush")
    } else {
        None
    };
    if let Some(why) = not_applicable {
        return Problems::new().into_check(NAME, why.into());
    }
    let mut p = Problems::new();
    let mut applied = Vec::new();
    for (i, s) in ev.skus.iter().enumerate() {
        let supply = s.baseline.remaining;
        let demand = ev.tally.demand_units_by_sku[i];
        let got = units.admitted[i];
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
                if after.remaining >= u64::from(ev.qty) {
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
    p.into_check(NAME, applied.join(", "))
}

/// "per_user_limit": no user holds more than the limit, over acknowledged
/// orders the server has not expired.
pub(super) fn check_per_user_limits(ev: &Evidence<'_>) -> Check {
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
    p.into_check(
        "per_user_limit",
        format!("{} (sku, user) pairs within limit", held.len()),
    )
}

/// "orders_exist": the server knows every order it acknowledged, with the
/// SKU, user and quantity it acknowledged.
pub(super) fn check_acknowledged_orders_present(ev: &Evidence<'_>) -> Check {
    let mut missing = Problems::new();
    for (a, l) in ev.acks.iter().zip(ev.lookups) {
        let Err(problem) = server_record(ev, a, l) else {
            continue;
        };
        missing.add(|| match problem {
            RecordProblem::Unknown => format!(
                "order {} (user {}) acknowledged but unknown to the server",
                a.order_id, a.user_id
            ),
            RecordProblem::LookupFailed(why) => {
                format!("order {}: lookup failed: {why}", a.order_id)
            }
            RecordProblem::Differs(o) => format!(
                "order {} acknowledged as ({}, user {}, qty {}) but server has ({}, user {}, qty {})",
                a.order_id, ev.skus[a.sku].name, a.user_id, a.qty, o.sku, o.user_id, o.qty
            ),
        });
    }
    missing.into_check(
        "orders_exist",
        format!("all {} acknowledged orders found", ev.acks.len()),
    )
}

/// "order_states": every order the server has is in the state the harness
/// drove it to, or expired once its reservation ran out.
pub(super) fn check_order_states_as_driven(ev: &Evidence<'_>) -> Check {
    let mut wrong_state = Problems::new();
    for (a, l) in ev.acks.iter().zip(ev.lookups) {
        // A missing or different order is reported by orders_exist.
        let Ok(o) = server_record(ev, a, l) else {
            continue;
        };
        if !state_as_driven(a, Some(o), &o.state, ev.now_ms) {
            wrong_state.add(|| {
                format!(
                    "order {} expected {:?}, server says {}",
                    a.order_id, a.expected, o.state
                )
            });
        }
    }
    wrong_state.into_check(
        "order_states",
        "every order in the state the harness drove it to".into(),
    )
}

/// "stock_conservation": remaining + reserved + paid == stock on every SKU,
/// after the rush and at the end.
pub(super) fn check_stock_conserved(ev: &Evidence<'_>) -> Check {
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
    p.into_check(
        "stock_conservation",
        "remaining + reserved + paid == stock everywhere".into(),
    )
}

/// "accounting": the sale counters agree with the orders the server showed
/// us. The harness is assumed to be the only client during the run.
pub(super) fn check_counters_match_orders(ev: &Evidence<'_>, server: &ServerUnits) -> Check {
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
        let paid = server.get(i, "paid");
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
        let may_expire = server.any_expired
            || b.reserved > 0
            || ev.acks.iter().any(|a| a.expires_at_ms <= ev.now_ms + 1000);
        if may_expire {
            skipped.push(s.name.as_str());
            continue;
        }
        let reserved = server.get(i, "reserved");
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
    p.into_check("accounting", detail)
}

/// "idempotent_replay": every replayed request_id was answered with the
/// order it first got.
pub(super) fn check_replays_idempotent(t: &Tally) -> Check {
    Check {
        name: "idempotent_replay",
        passed: t.replay_mismatches == 0,
        detail: format!(
            "{} replays answered with the same order, {} did not",
            t.replays_ok, t.replay_mismatches
        ),
    }
}

/// "over_limit_rejected": no purchase past the per-user limit was admitted
/// while the user's first order still held its units.
pub(super) fn check_over_limit_rejected(t: &Tally) -> Check {
    Check {
        name: "over_limit_rejected",
        passed: t.over_limit_admitted == 0,
        detail: format!(
            "{} over-limit purchases rejected, {} admitted ({} more after the first order expired)",
            t.over_limit_rejected, t.over_limit_admitted, t.over_limit_after_expiry
        ),
    }
}

/// "all_requests_decided": no request was given up on after all retries, so
/// every outcome is known.
pub(super) fn check_all_requests_decided(t: &Tally) -> Check {
    Check {
        name: "all_requests_decided",
        passed: t.abandoned == 0,
        detail: format!(
            "{} requests abandoned after retries ({} retries in all)",
            t.abandoned, t.retries
        ),
    }
}

/// "responses_expected": every response was one the API allows for the
/// request.
pub(super) fn check_no_unexpected_responses(t: &Tally) -> Check {
    Check {
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
    }
}

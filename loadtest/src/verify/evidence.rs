//! The evidence a verdict is computed from, and the tallies over it that
//! more than one check needs.

use crate::api::{OrderDoc, OrderLookup, SaleDoc};
use crate::workload::{Ack, Action, Expected, SkuInfo, Tally};
use std::collections::{BTreeMap, HashSet};

/// Everything the verdict is computed from.
pub struct Evidence<'a> {
    pub skus: &'a [SkuInfo],
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

/// Units of the distinct acknowledged orders, per SKU. A replay answering the
/// same order must not be counted twice.
pub(super) struct AdmittedUnits {
    /// Whether some reservation had expired by the time the sales were read
    /// after the rush.
    pub(super) expiry_before_snapshot: bool,
    /// Every acknowledged unit.
    pub(super) admitted: Vec<u64>,
    /// The units known to be held at the same time.
    pub(super) held: Vec<u64>,
}

impl AdmittedUnits {
    pub(super) fn of(ev: &Evidence<'_>) -> AdmittedUnits {
        let n_skus = ev.skus.len();
        // Without expiry every acknowledged order held its units from
        // admission to the end of the rush, so all of them must fit in the
        // supply at once. Once reservations can expire, units come back and
        // are sold again; the orders still reserved or paid at the end are
        // then the set known to hold units simultaneously.
        let expiry_before_snapshot = ev.acks.iter().any(|a| a.expires_at_ms <= ev.after_rush_ms);
        let mut seen = HashSet::new();
        let mut admitted = vec![0u64; n_skus];
        let mut held = vec![0u64; n_skus];
        for (a, l) in ev.acks.iter().zip(ev.lookups) {
            if seen.insert(a.order_id.as_str()) {
                admitted[a.sku] += u64::from(a.qty);
                let holds = match l {
                    OrderLookup::Found(o) if expiry_before_snapshot => {
                        matches!(o.state.as_str(), "reserved" | "paid")
                    }
                    _ => true,
                };
                if holds {
                    held[a.sku] += u64::from(a.qty);
                }
            }
        }
        AdmittedUnits {
            expiry_before_snapshot,
            admitted,
            held,
        }
    }
}

/// Units of the orders the server showed us, per SKU and state, counting each
/// order once and only orders that match what was acknowledged.
pub(super) struct ServerUnits {
    by_sku: Vec<BTreeMap<&'static str, u64>>,
    /// Whether any such order had expired.
    pub(super) any_expired: bool,
}

impl ServerUnits {
    pub(super) fn of(ev: &Evidence<'_>) -> ServerUnits {
        let mut by_sku: Vec<BTreeMap<&'static str, u64>> = vec![BTreeMap::new(); ev.skus.len()];
        let mut any_expired = false;
        let mut counted = HashSet::new();
        for (a, l) in ev.acks.iter().zip(ev.lookups) {
            let Ok(o) = server_record(ev, a, l) else {
                continue;
            };
            any_expired |= o.state == "expired";
            if counted.insert(a.order_id.as_str()) {
                *by_sku[a.sku].entry(state_key(&o.state)).or_default() += u64::from(o.qty);
            }
        }
        ServerUnits {
            by_sku,
            any_expired,
        }
    }

    pub(super) fn get(&self, sku: usize, state: &str) -> u64 {
        self.by_sku[sku].get(state).copied().unwrap_or(0)
    }
}

/// Why the server's record of an acknowledged order does not stand for it.
pub(super) enum RecordProblem<'a> {
    /// 404: the server does not know the order.
    Unknown,
    LookupFailed(&'a str),
    /// The server has the order, but for another SKU, user or quantity.
    Differs(&'a OrderDoc),
}

/// The server's record of `a`, if it has one that matches the acknowledgement.
pub(super) fn server_record<'a>(
    ev: &Evidence<'_>,
    a: &Ack,
    l: &'a OrderLookup,
) -> Result<&'a OrderDoc, RecordProblem<'a>> {
    let o = match l {
        OrderLookup::Found(o) => o,
        OrderLookup::Missing => return Err(RecordProblem::Unknown),
        OrderLookup::Failed(why) => return Err(RecordProblem::LookupFailed(why)),
    };
    let sku = &ev.skus[a.sku].name;
    if o.order_id != a.order_id || &o.sku != sku || o.user_id != a.user_id || o.qty != a.qty {
        return Err(RecordProblem::Differs(o));
    }
    Ok(o)
}

/// Whether `state` is one the harness may find `ack`'s order in at `now_ms`:
/// the state it drove the order to, or `expired` once the reservation ran
/// out (by the acknowledgement's or the server's `order`'s expiry time) if
/// the order could still have been reserved then.
pub(super) fn state_as_driven(
    ack: &Ack,
    order: Option<&OrderDoc>,
    state: &str,
    now_ms: u64,
) -> bool {
    let expired_ok = state == "expired" && expiry_passed(ack, order, now_ms);
    match ack.expected {
        Expected::Reserved => state == "reserved" || expired_ok,
        Expected::Paid => state == "paid",
        Expected::Cancelled => state == "cancelled",
        Expected::Expired => state == "expired",
        Expected::ReservedOr(Action::Pay) => matches!(state, "reserved" | "paid") || expired_ok,
        Expected::ReservedOr(Action::Cancel) => {
            matches!(state, "reserved" | "cancelled") || expired_ok
        }
        Expected::ReservedOr(Action::Keep) => state == "reserved" || expired_ok,
    }
}

fn expiry_passed(ack: &Ack, order: Option<&OrderDoc>, now_ms: u64) -> bool {
    let at = order.map_or(ack.expires_at_ms, |o| {
        o.expires_at_ms.max(ack.expires_at_ms)
    });
    at <= now_ms
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

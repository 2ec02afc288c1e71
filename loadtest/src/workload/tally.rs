//! Counters of logical outcomes (admissions, replays, over-limit attempts,
//! abandoned requests, ...), kept per worker and merged at the end.

use serde::Serialize;

/// Examples of unexpected responses kept for the report, per worker.
const UNEXPECTED_EXAMPLES_MAX: usize = 5;

/// Counters of logical outcomes, beyond per-response counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    /// Per SKU: users whose primary purchase targeted it.
    pub users_by_sku: Vec<u64>,
    /// Per SKU: units requested by primary purchases.
    pub demand_units_by_sku: Vec<u64>,
    /// Per SKU: requests given up on after all retries (outcome unknown).
    pub abandoned_by_sku: Vec<u64>,
    pub abandoned: u64,
    pub retries: u64,
    pub admitted: u64,
    pub sold_out: u64,
    pub replays_ok: u64,
    pub replay_mismatches: u64,
    pub over_limit_rejected: u64,
    pub over_limit_admitted: u64,
    /// Over-limit attempts admitted after the user's first order expired.
    pub over_limit_after_expiry: u64,
    pub cancels_ok: u64,
    pub pays_ok: u64,
    pub unexpected: u64,
    pub unexpected_examples: Vec<String>,
    /// Per SKU: µs from rush start to the first `sold_out` answer.
    pub first_sold_out_us: Vec<Option<u64>>,
}

impl Tally {
    /// Zeroed counters for `skus` SKUs.
    pub fn new(skus: usize) -> Tally {
        Tally {
            users_by_sku: vec![0; skus],
            demand_units_by_sku: vec![0; skus],
            abandoned_by_sku: vec![0; skus],
            first_sold_out_us: vec![None; skus],
            ..Tally::default()
        }
    }

    pub(super) fn unexpected(&mut self, what: String) {
        self.unexpected += 1;
        if self.unexpected_examples.len() < UNEXPECTED_EXAMPLES_MAX {
            self.unexpected_examples.push(what);
        }
    }

    pub fn merge(&mut self, o: Tally) {
        let add = |a: &mut Vec<u64>, b: Vec<u64>| a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        add(&mut self.users_by_sku, o.users_by_sku);
        add(&mut self.demand_units_by_sku, o.demand_units_by_sku);
        add(&mut self.abandoned_by_sku, o.abandoned_by_sku);
        self.abandoned += o.abandoned;
        self.retries += o.retries;
        self.admitted += o.admitted;
        self.sold_out += o.sold_out;
        self.replays_ok += o.replays_ok;
        self.replay_mismatches += o.replay_mismatches;
        self.over_limit_rejected += o.over_limit_rejected;
        self.over_limit_admitted += o.over_limit_admitted;
        self.over_limit_after_expiry += o.over_limit_after_expiry;
        self.cancels_ok += o.cancels_ok;
        self.pays_ok += o.pays_ok;
        self.unexpected += o.unexpected;
        for e in o.unexpected_examples {
            if self.unexpected_examples.len() < UNEXPECTED_EXAMPLES_MAX * 4 {
                self.unexpected_examples.push(e);
            }
        }
        for (a, b) in self.first_sold_out_us.iter_mut().zip(o.first_sold_out_us) {
            *a = match (*a, b) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
        }
    }
}

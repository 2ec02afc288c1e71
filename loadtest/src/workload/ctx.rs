//! What every worker shares: the run's scenario, target and SKUs, the user
//! counter, and the seeded per-user decisions.

use super::ack::{Action, SkuInfo};
use crate::buyers::BuyerCreds;
use crate::client::Target;
use crate::scenario::Scenario;
use hyper::header::HeaderValue;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// Everything the workers share, read-only except the counters.
pub struct Ctx {
    pub scenario: Scenario,
    pub target: Target,
    pub admin: HeaderValue,
    /// How buyers identify themselves to the server.
    pub buyers: BuyerCreds,
    pub skus: Vec<SkuInfo>,
    /// Cumulative popularity of the cold SKUs (indices 1..), for zipf picks.
    pub cold_cdf: Vec<f64>,
    pub seed: u64,
    pub user_id_base: u64,
    /// Prefix of every request_id, unique per run.
    pub request_tag: String,
    pub start: Instant,
    pub deadline: Instant,
    /// The next user index to serve.
    pub(super) next: AtomicU64,
    pub users_started: AtomicU64,
}

impl Ctx {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scenario: Scenario,
        target: Target,
        admin: HeaderValue,
        buyers: BuyerCreds,
        skus: Vec<SkuInfo>,
        seed: u64,
        user_id_base: u64,
        start: Instant,
    ) -> Ctx {
        let cold = skus.len().saturating_sub(1);
        let weights: Vec<f64> = (1..=cold)
            .map(|k| 1.0 / (k as f64).powf(scenario.zipf_s))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cold_cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        let deadline = start + Duration::from_secs(scenario.max_duration_s);
        Ctx {
            scenario,
            target,
            admin,
            buyers,
            skus,
            cold_cdf,
            seed,
            user_id_base,
            request_tag: format!("{seed:016x}"),
            start,
            deadline,
            next: AtomicU64::new(0),
            users_started: AtomicU64::new(0),
        }
    }
}

/// The seeded decisions for one user: who they are, which SKU they buy,
/// what becomes of their order, and which extra requests they send.
#[derive(Debug, Clone, Copy)]
pub(super) struct UserPlan {
    /// The user's index in the run, 0..users.
    pub index: u64,
    pub user_id: u64,
    /// Index into the run's SKU list.
    pub sku: usize,
    pub action: Action,
    /// Replays the purchase with the same request_id.
    pub replays: bool,
    /// Tries to buy past the per-user limit.
    pub tries_over_limit: bool,
}

impl Ctx {
    /// Draws user `i`'s plan; a pure function of (seed, i).
    pub(super) fn plan_user(&self, i: u64) -> UserPlan {
        let s = &self.scenario;
        let seed = self.seed;
        let sku = if self.skus.len() > 1 && unit(seed, i, 0) < s.cold_fraction {
            let u = unit(seed, i, 1);
            1 + self
                .cold_cdf
                .partition_point(|&c| c < u)
                .min(self.cold_cdf.len() - 1)
        } else {
            0
        };
        let action = {
            let u = unit(seed, i, 2);
            if u < s.cancel_fraction {
                Action::Cancel
            } else if u < s.cancel_fraction + s.pay_fraction {
                Action::Pay
            } else {
                Action::Keep
            }
        };
        UserPlan {
            index: i,
            user_id: self.user_id_base.wrapping_add(i),
            sku,
            action,
            replays: unit(seed, i, 3) < s.replay_fraction,
            tries_over_limit: unit(seed, i, 4) < s.over_limit_fraction,
        }
    }
}

/// SplitMix64: a tiny, well-mixed hash. Every per-user decision is a pure
/// function of (seed, user index), so a run is reproducible from its seed no
/// matter which worker happens to serve which user.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The `k`-th uniform number in [0, 1) for user `i`.
fn unit(seed: u64, i: u64, k: u64) -> f64 {
    (mix(seed ^ mix(i.wrapping_mul(8).wrapping_add(k))) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SaleDoc;

    fn ctx(seed: u64, cold_skus: usize) -> Ctx {
        let sku = |name: String| SkuInfo {
            purchase_path: format!("/v1/sales/{name}/purchase"),
            per_user_limit: 1,
            baseline: SaleDoc {
                sku: name.clone(),
                stock: 10,
                remaining: 10,
                reserved: 0,
                paid: 0,
                per_user_limit: 1,
                reservation_ttl_ms: 0,
                state: String::new(),
            },
            name,
        };
        let skus = (0..=cold_skus).map(|k| sku(format!("s{k}"))).collect();
        let scenario = Scenario {
            cold_fraction: 0.25,
            cancel_fraction: 0.2,
            pay_fraction: 0.3,
            replay_fraction: 0.1,
            over_limit_fraction: 0.4,
            ..Scenario::default()
        };
        let target = Target {
            addr: "127.0.0.1:1".parse().unwrap(),
            host: HeaderValue::from_static("127.0.0.1:1"),
            url: "http://127.0.0.1:1".into(),
        };
        let admin = HeaderValue::from_static("Bearer t");
        Ctx::new(
            scenario,
            target,
            admin,
            BuyerCreds::Body,
            skus,
            seed,
            1_000,
            Instant::now(),
        )
    }

    /// The per-user decisions depend on (seed, user) only, and follow the
    /// scenario's fractions.
    #[test]
    fn plans_are_seeded_and_follow_the_fractions() {
        const USERS: u64 = 20_000;
        let (a, b, other) = (ctx(42, 3), ctx(42, 3), ctx(43, 3));
        let plans: Vec<UserPlan> = (0..USERS).map(|i| a.plan_user(i)).collect();
        let same = |p: &UserPlan, q: &UserPlan| {
            (p.user_id, p.sku, p.action, p.replays, p.tries_over_limit)
                == (q.user_id, q.sku, q.action, q.replays, q.tries_over_limit)
        };
        // Served in reverse order by another context: the same plans.
        assert!((0..USERS)
            .rev()
            .all(|i| same(&b.plan_user(i), &plans[i as usize])));
        let differing = (0..USERS)
            .filter(|&i| !same(&other.plan_user(i), &plans[i as usize]))
            .count();
        assert!(differing > USERS as usize / 2, "{differing}");
        assert_eq!(plans[7].user_id, 1_007);
        assert_eq!(plans[7].index, 7);

        let share = |f: &dyn Fn(&UserPlan) -> bool| {
            plans.iter().filter(|p| f(p)).count() as f64 / USERS as f64
        };
        let near = |got: f64, want: f64| assert!((got - want).abs() < 0.02, "{got} vs {want}");
        near(share(&|p| p.sku != 0), 0.25);
        near(share(&|p| p.action == Action::Cancel), 0.2);
        near(share(&|p| p.action == Action::Pay), 0.3);
        near(share(&|p| p.replays), 0.1);
        near(share(&|p| p.tries_over_limit), 0.4);
        // Zipf: the first cold SKU is the most popular one.
        let cold = |k| share(&|p| p.sku == k);
        assert!(
            cold(1) > cold(2) && cold(2) > cold(3),
            "{} {} {}",
            cold(1),
            cold(2),
            cold(3)
        );
        // A single SKU takes every user.
        let single = ctx(42, 0);
        assert!((0..1_000).all(|i| single.plan_user(i).sku == 0));
    }
}

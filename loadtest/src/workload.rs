//! The flash-sale workload: the rush, then the after-sale actions.
//!
//! Phase 1 ("rush"): every user makes one purchase, some replay it with the
//! same request_id and some try to buy past their limit. Phase 2 ("settle"):
//! a fraction of the admitted orders are cancelled or paid. The phases are
//! kept apart so the sale's state between them is exact: with no cancels
//! during the rush, admitted units must equal the stock on offer.
//!
//! Each worker task owns one connection and pulls the next user (or order)
//! from a shared counter, which makes the closed loop. For the open loop a
//! per-worker `Pacer` hands out send slots at `rate / connections`, as wrk2
//! does, and latency is taken from the slot, not from the actual send.

use crate::api::HttpReply;
use crate::client::{ClientConn, Response, Target, TransportError};
use crate::scenario::Scenario;
use crate::stats::{OpKind, Stats};
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::Method;
use indicatif::ProgressBar;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Examples of unexpected responses kept for the report, per worker.
const UNEXPECTED_EXAMPLES_MAX: usize = 5;

/// What the harness plans to do with an admitted order after the rush.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Keep,
    Cancel,
    Pay,
}

/// The state the harness expects an acknowledged order to be in at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expected {
    Reserved,
    Paid,
    Cancelled,
    /// The server said `expired` to a cancel or pay.
    Expired,
    /// The cancel/pay was never answered, so either state is fine.
    ReservedOr(Action),
}

/// An admission the server acknowledged (201, or 200 on replay).
#[derive(Debug, Clone, Serialize)]
pub struct Ack {
    pub order_id: String,
    /// Index into the run's SKU list.
    pub sku: usize,
    pub user_id: u64,
    pub qty: u32,
    pub expires_at_ms: u64,
    /// Which request got it admitted.
    pub via: OpKind,
    pub action: Action,
    pub expected: Expected,
}

/// One SKU of the run, with the sale as it was before the rush.
#[derive(Debug, Clone)]
pub struct SkuInfo {
    pub name: String,
    pub purchase_path: String,
    pub per_user_limit: u32,
    pub baseline: crate::api::SaleDoc,
}

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

    fn unexpected(&mut self, what: String) {
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

/// Everything the workers share, read-only except the counters.
pub struct Ctx {
    pub scenario: Scenario,
    pub target: Target,
    pub admin: HeaderValue,
    pub skus: Vec<SkuInfo>,
    /// Cumulative popularity of the cold SKUs (indices 1..), for zipf picks.
    pub cold_cdf: Vec<f64>,
    pub seed: u64,
    pub user_id_base: u64,
    /// Prefix of every request_id, unique per run.
    pub request_tag: String,
    pub start: Instant,
    pub deadline: Instant,
    next: AtomicU64,
    pub users_started: AtomicU64,
}

impl Ctx {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scenario: Scenario,
        target: Target,
        admin: HeaderValue,
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

/// Hands out send times: "now" in closed loop, a fixed schedule in open loop.
pub struct Pacer {
    interval: Option<Duration>,
    next: Instant,
}

impl Pacer {
    pub fn new(rate: Option<f64>, connections: u32, worker: u32, start: Instant) -> Pacer {
        match rate {
            None => Pacer {
                interval: None,
                next: start,
            },
            Some(r) => {
                let interval = Duration::from_secs_f64(connections as f64 / r);
                // Stagger workers across one interval so the aggregate
                // schedule is even rather than C requests in a burst.
                let offset = interval.mul_f64(worker as f64 / connections as f64);
                Pacer {
                    interval: Some(interval),
                    next: start + offset,
                }
            }
        }
    }

    /// Waits for the next slot and returns the time latency is measured from.
    pub async fn slot(&mut self) -> Instant {
        match self.interval {
            None => Instant::now(),
            Some(iv) => {
                let t = self.next;
                self.next += iv;
                if t > Instant::now() {
                    tokio::time::sleep_until(t.into()).await;
                }
                t
            }
        }
    }
}

/// The result of one logical request after retries.
enum Call {
    Done(Response, HttpReply),
    Abandoned,
}

/// The order a response acknowledged, if it is an admission.
fn admission(
    sku: usize,
    user_id: u64,
    qty: u32,
    via: OpKind,
    action: Action,
    r: &Response,
    reply: &HttpReply,
) -> Option<Ack> {
    let order_id = reply.order_id.clone()?;
    if !(r.code == 201 || r.code == 200) || reply.status.as_deref() != Some("admitted") {
        return None;
    }
    Some(Ack {
        order_id,
        sku,
        user_id,
        qty,
        expires_at_ms: reply.expires_at_ms.unwrap_or(u64::MAX),
        via,
        action,
        expected: Expected::Reserved,
    })
}

/// A worker: one connection, one pacer, private measurements.
pub struct Worker {
    ctx: Arc<Ctx>,
    conn: ClientConn,
    pacer: Pacer,
    pub stats: Stats,
    pub tally: Tally,
    pub acks: Vec<Ack>,
    progress: ProgressBar,
}

impl Worker {
    pub fn new(ctx: Arc<Ctx>, index: u32) -> Worker {
        let s = &ctx.scenario;
        Worker {
            conn: ClientConn::new(ctx.target.clone(), Duration::from_millis(s.timeout_ms)),
            pacer: Pacer::new(s.rate, s.connections, index, Instant::now()),
            stats: Stats::new(ctx.start),
            tally: Tally::new(ctx.skus.len()),
            acks: Vec::new(),
            progress: ProgressBar::hidden(),
            ctx,
        }
    }

    /// Sends one logical request, retrying with the identical body (so the
    /// same request_id) on timeouts, broken connections, 429, 503 and
    /// `409 in_progress`, as a well-behaved client would.
    async fn call(
        &mut self,
        op: OpKind,
        method: Method,
        path: &str,
        body: Bytes,
        admin: bool,
    ) -> Call {
        let max_retries = self.ctx.scenario.max_retries;
        let backoff_cap = Duration::from_millis(self.ctx.scenario.retry_backoff_max_ms);
        let body = if body.is_empty() { None } else { Some(body) };
        for attempt in 0..=max_retries {
            if attempt > 0 {
                self.tally.retries += 1;
            }
            let scheduled = self.pacer.slot().await;
            let auth = if admin { Some(&self.ctx.admin) } else { None };
            let result = self
                .conn
                .send(method.clone(), path, body.clone(), auth)
                .await;
            let done = Instant::now();
            let (reply, label) = match &result {
                Ok(r) => {
                    let reply = HttpReply::parse(&r.body);
                    let label = reply.label().to_string();
                    (Some(reply), label)
                }
                Err(e) => (None, e.label().to_string()),
            };
            self.stats.record(op, scheduled, done, &result, &label);
            let pause = match (result, reply) {
                (Ok(r), Some(reply)) => {
                    let retryable = r.code == 503
                        || r.code == 429
                        || (r.code == 409 && reply.status.as_deref() == Some("in_progress"));
                    if !retryable {
                        return Call::Done(r, reply);
                    }
                    match r.retry_after_s {
                        Some(s) => Duration::from_secs(s).min(backoff_cap),
                        None => Duration::from_millis(1 << attempt.min(16)).min(backoff_cap),
                    }
                }
                // A refused dial would fail again at once: back off as for 503.
                (Err(TransportError::Connect), _) => {
                    Duration::from_millis(1 << attempt.min(16)).min(backoff_cap)
                }
                // A timeout already waited; a broken connection is re-dialled
                // by the next send. Either way retry right away.
                _ => Duration::ZERO,
            };
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        Call::Abandoned
    }

    /// Sets the bar each finished user or order ticks.
    pub fn set_progress(&mut self, progress: ProgressBar) {
        self.progress = progress;
    }

    /// Splits the worker into its measurements and its dial count.
    pub fn into_parts(self) -> (Stats, Tally, u64) {
        (self.stats, self.tally, self.conn.dials)
    }

    /// Restarts the open-loop schedule, so time spent between phases is not
    /// charged to the first requests of the next phase as latency.
    pub fn restart_pacer(&mut self, index: u32) {
        let s = &self.ctx.scenario;
        self.pacer = Pacer::new(s.rate, s.connections, index, Instant::now());
    }

    /// Phase 1: serve users until all are done or the deadline passes.
    pub async fn rush(mut self) -> Worker {
        let users = self.ctx.scenario.users;
        loop {
            if Instant::now() >= self.ctx.deadline {
                break;
            }
            let i = self.ctx.next.fetch_add(1, Ordering::Relaxed);
            if i >= users {
                break;
            }
            self.ctx.users_started.fetch_add(1, Ordering::Relaxed);
            self.user(i).await;
            self.progress.inc(1);
        }
        self
    }

    async fn user(&mut self, i: u64) {
        let ctx = Arc::clone(&self.ctx);
        let s = &ctx.scenario;
        let seed = ctx.seed;
        let user_id = ctx.user_id_base.wrapping_add(i);
        let sku = if ctx.skus.len() > 1 && unit(seed, i, 0) < s.cold_fraction {
            let u = unit(seed, i, 1);
            1 + ctx
                .cold_cdf
                .partition_point(|&c| c < u)
                .min(ctx.cold_cdf.len() - 1)
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
        self.tally.users_by_sku[sku] += 1;
        self.tally.demand_units_by_sku[sku] += u64::from(s.qty);
        let path = &ctx.skus[sku].purchase_path;
        let request_id = format!("{}-{i:x}-p", ctx.request_tag);
        let body = Bytes::from(
            serde_json::json!({"user_id": user_id, "qty": s.qty, "request_id": request_id})
                .to_string(),
        );
        let (r, reply) = match self
            .call(OpKind::Purchase, Method::POST, path, body.clone(), false)
            .await
        {
            Call::Done(r, reply) => (r, reply),
            Call::Abandoned => {
                self.tally.abandoned += 1;
                self.tally.abandoned_by_sku[sku] += 1;
                return;
            }
        };
        let Some(ack) = admission(sku, user_id, s.qty, OpKind::Purchase, action, &r, &reply) else {
            if r.code == 409 && reply.status.as_deref() == Some("sold_out") {
                self.tally.sold_out += 1;
                let at = ctx.start.elapsed().as_micros() as u64;
                let first = &mut self.tally.first_sold_out_us[sku];
                *first = Some(first.map_or(at, |f| f.min(at)));
            } else {
                self.tally.unexpected(format!(
                    "purchase user {user_id}: HTTP {} {}",
                    r.code,
                    String::from_utf8_lossy(&r.body)
                ));
            }
            return;
        };
        self.tally.admitted += 1;
        let order_id = ack.order_id.clone();
        let expires_at_ms = ack.expires_at_ms;
        self.acks.push(ack);

        if unit(seed, i, 3) < s.replay_fraction {
            match self
                .call(OpKind::Replay, Method::POST, path, body, false)
                .await
            {
                Call::Done(r, reply) => {
                    if r.code == 200 && reply.order_id.as_deref() == Some(order_id.as_str()) {
                        self.tally.replays_ok += 1;
                    } else {
                        self.tally.replay_mismatches += 1;
                        self.tally.unexpected(format!(
                            "replay user {user_id} (order {order_id}): HTTP {} {}",
                            r.code,
                            String::from_utf8_lossy(&r.body)
                        ));
                        // A replay that minted another order is a second
                        // acknowledged order and must be verified too.
                        if let Some(ack) = admission(
                            sku,
                            user_id,
                            s.qty,
                            OpKind::Replay,
                            Action::Keep,
                            &r,
                            &reply,
                        ) {
                            if ack.order_id != order_id {
                                self.acks.push(ack);
                            }
                        }
                    }
                }
                Call::Abandoned => self.tally.abandoned += 1,
            }
        }

        if unit(seed, i, 4) < s.over_limit_fraction {
            // Asking for a full limit's worth on top of what the user holds
            // is over the limit whatever per_user_limit and qty are.
            let limit = ctx.skus[sku].per_user_limit;
            let rid = format!("{}-{i:x}-o", ctx.request_tag);
            let body = Bytes::from(
                serde_json::json!({"user_id": user_id, "qty": limit, "request_id": rid})
                    .to_string(),
            );
            match self
                .call(OpKind::OverLimit, Method::POST, path, body, false)
                .await
            {
                Call::Done(r, reply) => {
                    if let Some(ack) = admission(
                        sku,
                        user_id,
                        limit,
                        OpKind::OverLimit,
                        Action::Keep,
                        &r,
                        &reply,
                    ) {
                        // Legitimate once the first reservation has expired.
                        if crate::api::now_ms() >= expires_at_ms {
                            self.tally.over_limit_after_expiry += 1;
                        } else {
                            self.tally.over_limit_admitted += 1;
                        }
                        self.acks.push(ack);
                    } else if r.code == 409
                        && matches!(reply.status.as_deref(), Some("limit_exceeded" | "sold_out"))
                    {
                        self.tally.over_limit_rejected += 1;
                    } else {
                        self.tally.unexpected(format!(
                            "over-limit purchase user {user_id}: HTTP {} {}",
                            r.code,
                            String::from_utf8_lossy(&r.body)
                        ));
                    }
                }
                Call::Abandoned => self.tally.abandoned += 1,
            }
        }
    }

    /// Phase 2: cancel or pay the orders planned for it; `orders` holds
    /// (index into the ack list, ack) and `next` is the shared cursor.
    pub async fn settle(
        mut self,
        orders: Arc<Vec<(usize, Ack)>>,
        next: Arc<AtomicUsize>,
    ) -> (Worker, Vec<(usize, Expected)>) {
        let mut out = Vec::new();
        loop {
            let k = next.fetch_add(1, Ordering::Relaxed);
            let Some((idx, ack)) = orders.get(k) else {
                break;
            };
            let (op, path, body, admin, target) = match ack.action {
                Action::Keep => continue,
                Action::Cancel => (
                    OpKind::Cancel,
                    format!("/v1/orders/{}/cancel", ack.order_id),
                    Bytes::from(serde_json::json!({"user_id": ack.user_id}).to_string()),
                    false,
                    "cancelled",
                ),
                Action::Pay => (
                    OpKind::Pay,
                    format!("/v1/orders/{}/pay", ack.order_id),
                    Bytes::new(),
                    true,
                    "paid",
                ),
            };
            let expected = match self.call(op, Method::POST, &path, body, admin).await {
                Call::Done(r, reply) if r.code == 200 && reply.state.as_deref() == Some(target) => {
                    if op == OpKind::Cancel {
                        self.tally.cancels_ok += 1;
                        Expected::Cancelled
                    } else {
                        self.tally.pays_ok += 1;
                        Expected::Paid
                    }
                }
                Call::Done(r, reply)
                    if r.code == 409 && reply.status.as_deref() == Some("expired") =>
                {
                    Expected::Expired
                }
                Call::Done(r, _) => {
                    self.tally.unexpected(format!(
                        "{} order {}: HTTP {} {}",
                        op.label(),
                        ack.order_id,
                        r.code,
                        String::from_utf8_lossy(&r.body)
                    ));
                    Expected::ReservedOr(ack.action)
                }
                Call::Abandoned => {
                    self.tally.abandoned += 1;
                    Expected::ReservedOr(ack.action)
                }
            };
            out.push((*idx, expected));
            self.progress.inc(1);
        }
        (self, out)
    }
}

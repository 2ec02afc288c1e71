//! One worker task: a connection, a pacer and private measurements. It
//! serves users in the rush and settles orders afterwards, retrying each
//! logical request as a well-behaved client would.

use super::ack::{Ack, Action, Expected};
use super::ctx::{Ctx, UserPlan};
use super::pacer::Pacer;
use super::tally::Tally;
use crate::api::HttpReply;
use crate::client::{ClientConn, Response, TransportError};
use crate::stats::{OpKind, Stats};
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::Method;
use indicatif::ProgressBar;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// The credential of the buyer whose requests are being sent (jwt mode).
    buyer: Option<HeaderValue>,
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
            buyer: None,
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
            let auth = if admin {
                Some(&self.ctx.admin)
            } else {
                self.buyer.as_ref()
            };
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

    /// One user of the rush: the primary purchase, then the replay and the
    /// over-limit attempt their plan calls for.
    async fn user(&mut self, i: u64) {
        let ctx = Arc::clone(&self.ctx);
        let s = &ctx.scenario;
        let plan = ctx.plan_user(i);
        self.tally.users_by_sku[plan.sku] += 1;
        self.tally.demand_units_by_sku[plan.sku] += u64::from(s.qty);
        let path = &ctx.skus[plan.sku].purchase_path;
        let request_id = format!("{}-{i:x}-p", ctx.request_tag);
        // One token per buyer, for all of their requests: a buyer trying
        // to pass the limit has only their own.
        self.buyer = match ctx.buyers.authorization(plan.user_id) {
            Ok(auth) => auth,
            Err(err) => panic!("minting a buyer token: {err:#}"),
        };
        let body = Bytes::from(ctx.buyers.body(
            plan.user_id,
            serde_json::json!({"qty": s.qty, "request_id": request_id}),
        ));
        let Some((order_id, expires_at_ms)) = self.purchase(&plan, path, body.clone()).await else {
            return;
        };
        if plan.replays {
            self.replay(&plan, path, body, &order_id).await;
        }
        if plan.tries_over_limit {
            self.over_limit(&plan, path, expires_at_ms).await;
        }
    }

    /// The user's primary purchase; returns the admitted order's id and
    /// expiry, or `None` when it was not admitted.
    async fn purchase(
        &mut self,
        plan: &UserPlan,
        path: &str,
        body: Bytes,
    ) -> Option<(String, u64)> {
        let (sku, user_id) = (plan.sku, plan.user_id);
        let qty = self.ctx.scenario.qty;
        let (r, reply) = match self
            .call(OpKind::Purchase, Method::POST, path, body, false)
            .await
        {
            Call::Done(r, reply) => (r, reply),
            Call::Abandoned => {
                self.tally.abandoned += 1;
                self.tally.abandoned_by_sku[sku] += 1;
                return None;
            }
        };
        let Some(ack) = admission(sku, user_id, qty, OpKind::Purchase, plan.action, &r, &reply)
        else {
            if r.code == 409 && reply.status.as_deref() == Some("sold_out") {
                self.tally.sold_out += 1;
                let at = self.ctx.start.elapsed().as_micros() as u64;
                let first = &mut self.tally.first_sold_out_us[sku];
                *first = Some(first.map_or(at, |f| f.min(at)));
            } else {
                self.tally.unexpected(format!(
                    "purchase user {user_id}: HTTP {} {}",
                    r.code,
                    String::from_utf8_lossy(&r.body)
                ));
            }
            return None;
        };
        self.tally.admitted += 1;
        let order_id = ack.order_id.clone();
        let expires_at_ms = ack.expires_at_ms;
        self.acks.push(ack);
        Some((order_id, expires_at_ms))
    }

    /// Replays the primary purchase (same body, so the same request_id),
    /// which must be answered with the same order.
    async fn replay(&mut self, plan: &UserPlan, path: &str, body: Bytes, order_id: &str) {
        let (sku, user_id) = (plan.sku, plan.user_id);
        let qty = self.ctx.scenario.qty;
        match self
            .call(OpKind::Replay, Method::POST, path, body, false)
            .await
        {
            Call::Done(r, reply) => {
                if r.code == 200 && reply.order_id.as_deref() == Some(order_id) {
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
                    if let Some(ack) =
                        admission(sku, user_id, qty, OpKind::Replay, Action::Keep, &r, &reply)
                    {
                        if ack.order_id != order_id {
                            self.acks.push(ack);
                        }
                    }
                }
            }
            Call::Abandoned => self.tally.abandoned += 1,
        }
    }

    /// A second purchase with a new request_id that must exceed the limit
    /// while the first order (expiring at `expires_at_ms`) still holds.
    async fn over_limit(&mut self, plan: &UserPlan, path: &str, expires_at_ms: u64) {
        let (i, sku, user_id) = (plan.index, plan.sku, plan.user_id);
        let ctx = &self.ctx;
        // Asking for a full limit's worth on top of what the user holds
        // is over the limit whatever per_user_limit and qty are.
        let limit = ctx.skus[sku].per_user_limit;
        let rid = format!("{}-{i:x}-o", ctx.request_tag);
        let body = Bytes::from(ctx.buyers.body(
            user_id,
            serde_json::json!({"qty": limit, "request_id": rid}),
        ));
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
                    Bytes::from(self.ctx.buyers.body(ack.user_id, serde_json::json!({}))),
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
            // The order's buyer cancels it, with their own credential.
            self.buyer = if admin {
                None
            } else {
                match self.ctx.buyers.authorization(ack.user_id) {
                    Ok(auth) => auth,
                    Err(err) => panic!("minting a buyer token: {err:#}"),
                }
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

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
//!
//! Files: `ack` (plans and acknowledgements), `tally` (outcome counters),
//! `ctx` (what workers share, seeded per-user decisions), `pacer` (send
//! slots) and `worker` (the requests themselves), each depending only on
//! the ones before it.

mod ack;
mod ctx;
mod pacer;
mod tally;
mod worker;

pub use ack::{Ack, Action, Expected, SkuInfo};
pub use ctx::{mix, Ctx};
pub use pacer::Pacer;
pub use tally::Tally;
pub use worker::Worker;

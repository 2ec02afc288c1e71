//! The HTTP layer: HTTP and JSON in, engine calls, JSON out. One file per
//! concern: [`route`] (the route table), [`dispatch`] (the entry point),
//! `head` (head checks), `response` (the JSON envelope and errors), `body`
//! (reading and parsing bodies), `auth` (admin tokens), `buyer` (who a
//! buyer is, per `[buyer_auth] mode`), `ack` (waiting for
//! durability), and the handlers: `purchase` (the hot path), `orders`,
//! `sales`, `admin`, `probes`, `live` (the dashboard page, its snapshot and
//! its stream).
//!
//! The purchase path's small functions in other files of this folder are
//! `#[inline]`: the compiler splits a crate into codegen units by module and
//! does not inline across them otherwise, and the split from one file cost
//! the path a few hundred instructions per request in calls it used not to
//! make (BENCHMARKS.md, "Decisions and what they rest on").

// Checks return `Result<_, Resp>` where the error is the finished response:
// it is moved once on a cold path, and boxing it would cost an allocation.
#![allow(clippy::result_large_err)]

mod ack;
mod admin;
mod auth;
mod body;
mod buyer;
pub mod dispatch;
mod head;
mod live;
mod orders;
mod peer;
mod probes;
mod purchase;
mod purchase_body;
pub mod response;
pub mod route;
mod sales;

pub use auth::constant_time_eq;
pub use dispatch::handle;
pub use head::HEAD_BYTES_MAX;
pub use peer::Peer;
pub use purchase::{request_id_hash, REQUEST_ID_LEN_MAX};
pub use route::Route;

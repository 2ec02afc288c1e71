//! The live operator dashboard (issue 14): `GET /dashboard`, a page built
//! into the binary, fed by `GET /v1/admin/stream` (Server-Sent Events) and
//! `GET /v1/admin/stats`, both admin-only.
//!
//! - `json`: the snapshot's shape (a leaf);
//! - `stream`: the [`stream::SnapshotFeed`]: the latest snapshot, the chart
//!   history, the subscribers with their bounded queues;
//! - `snapshot`: [`snapshot::SnapshotBuilder`], which reads the counters
//!   the hot path keeps and makes rates and quantiles of them;
//! - `ticker`: the thread that builds one snapshot a period and publishes
//!   it (started by `crate::server::run`);
//! - `page`: the page's HTML, CSS and JS, from `web/` at build time.
//!
//! **Invariant:** nothing here runs per request. The purchase path's only
//! cost is the latency histogram's record (`crate::latency`); the
//! dashboard's cost is one snapshot per period plus one queue push per
//! subscriber, whatever the request rate.

pub mod json;
pub mod page;
pub mod snapshot;
pub mod stream;
pub mod ticker;

//! Load generator and correctness verifier for the flashsale HTTP API.
//!
//! A run creates sales through the admin API (or targets existing ones),
//! rushes them with many distinct users over keep-alive HTTP/1.1
//! connections, then settles some orders and asks the server what it holds.
//! The result is a [`Report`] with throughput, latency percentiles, response
//! counts and a [`Verdict`] over the invariants the sale must keep.
//!
//! The binary `flashsale-loadtest` is a thin CLI over [`run`]; integration
//! tests call [`run`] in-process against fake servers to prove the verdict
//! catches overselling and lost orders.
//!
//! Modules, in the order a request meets them: [`scenario`] (knobs),
//! [`workload`] (who sends what), [`client`] (one connection), [`api`] (the
//! response shapes and admin calls), [`stats`] (measurement), [`verify`]
//! (the verdict), [`pgverify`] (the PostgreSQL export against the run),
//! [`report`] and [`html`] (output), [`spawn`] (running a real server) and
//! [`ceiling`] (the generator's own limit against a trivial server). A run is driven by `runner` and summarised by `assemble`.
//!
//! This file only declares and re-exports: no module imports from the crate
//! root, so the files of the crate depend on each other one way.

pub mod api;
mod assemble;
pub mod buyers;
pub mod ceiling;
pub mod client;
pub mod html;
pub mod pgverify;
mod progress;
pub mod report;
mod runner;
pub mod scenario;
pub mod spawn;
pub mod stats;
pub mod verify;
pub mod workload;

pub use progress::progress_bar;
pub use report::Report;
pub use runner::{run, RunOptions};
pub use scenario::Scenario;
pub use verify::Verdict;

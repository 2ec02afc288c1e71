//! The HTTP/1.1 gateway of flashsale: configuration, the listener, the
//! HTTP layer, rate limiting and metrics. The `flashsale` binary
//! (`main.rs`) is a thin shell around [`server::serve`].
//!
//! Layers, each depending only on those after it: [`server`] (listener,
//! I/O threads, shutdown) → [`http`] (routes and handlers) → [`app`] (the
//! state every connection shares: engine and log, limiter, counters,
//! expiry ticker, the dashboard's feed) → `relay`, [`metrics`] (over
//! [`latency`]), [`ratelimit`], [`config`]. [`dashboard`] sits beside
//! [`http`]: its ticker (started by `server::run`) reads the app, and the
//! app and the HTTP layer use its leaves (the feed, the snapshot's JSON).
//! One edge goes back, to a leaf: [`metrics`] counts requests by
//! `http::route::Route`, a file that imports nothing of the crate.
//! `tests/tidy.rs` fails on any circle between files.
//!
//! **Invariant:** a 201 admission, or a 200 for pay/cancel or an admin change,
//! is sent only after the log reports its event durable (per `wal.fsync`);
//! an idempotent repeat waits for every event accepted before it.

pub mod alloc;
pub mod app;
pub mod buyer_auth;
mod clock;
pub mod config;
pub mod dashboard;
mod drain;
pub mod export;
pub mod http;
pub mod latency;
pub mod metrics;
pub mod ratelimit;
mod relay;
pub mod server;
pub mod timer;
pub mod wal;

pub use app::App;
pub use config::{Config, ConfigError};
pub use server::{run, serve, ServeError};

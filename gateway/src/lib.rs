//! The HTTP/1.1 gateway of flashsale: configuration, the hyper server,
//! routes, rate limiting and metrics. The `flashsale` binary (`main.rs`) is a
//! thin shell around [`server::run`].
//!
//! **Invariant:** a 201 admission, or a 200 for pay/cancel or an admin change,
//! is sent only after the log reports its event durable (per `wal.fsync`);
//! an idempotent repeat waits for every event accepted before it.

pub mod alloc;
pub mod config;
mod drain;
pub mod metrics;
mod purchase_body;
pub mod ratelimit;
mod relay;
pub mod routes;
pub mod server;
pub mod timer;
pub mod wal;

pub use config::{Config, ConfigError};
pub use server::{run, serve, ServeError, Shared};

//! The flashsale engine: in-memory inventory and order admission for flash
//! sales, sharded by SKU.
//!
//! **Invariants.** The engine does no I/O, starts no thread, reads no clock
//! (`now_ms` is always an argument) and has no `async`. Stock never goes
//! below zero and no user ever holds more than the sale's per-user limit,
//! under any interleaving of threads: both are guarded by compare-and-swap
//! loops in [`gate`]. Every state change is handed to an [`EventSink`] before
//! it is acknowledged, and [`Engine::apply`] of that stream rebuilds the same
//! state.
//!
//! Start with [`Engine`]; the outcomes and views are in this crate's root.
//!
//! **Layout.** Files depend one way, bottom to top, with no circles:
//! - `sync`, [`gate`]: the atomics and the compare-and-swap loops on them;
//! - `event`, `types`, `state`: plain data (events and sinks, requests,
//!   outcomes and views, the sorted state picture); `users`: the buyers'
//!   ids interned to small handles;
//! - `orders`, `sale`, `shard`: one sale's order table, one sale's live
//!   counters and status, one shard's sales, holdings and queues;
//! - `engine`: [`Engine`], its config and the sale registry;
//! - one `impl Engine` per concern on top: `admin` (sales), `admission`
//!   (purchase, the hot path), `lifecycle` (order lookup, pay, cancel,
//!   expiry), `apply` (rebuilding from events), `snapshot` (state, export).

mod admin;
mod admission;
mod apply;
mod engine;
mod event;
pub mod gate;
mod labels;
mod lifecycle;
mod orders;
mod sale;
mod shard;
mod snapshot;
mod state;
mod sync;
mod types;
mod users;

pub use crate::engine::{Engine, EngineConfig, MAX_ORDERS_PER_SALE_DEFAULT, ORDERS_PER_SALE_MAX};
pub use crate::event::{DiscardSink, Event, EventSink, SinkError};
pub use crate::state::{EngineState, OrderRecord, SaleState};
pub use crate::types::*;

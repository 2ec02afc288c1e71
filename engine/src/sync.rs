//! Atomics used by the stock gate, swapped for loom's under `--cfg loom` so the
//! model checker explores every interleaving of the real gate code.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

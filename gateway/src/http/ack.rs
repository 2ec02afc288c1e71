//! Acknowledgement: a change is answered only once its log event is
//! durable (per `wal.fsync`). When the log has failed the answer is 503 and
//! the change is not acknowledged.

use std::sync::atomic::Ordering;

use super::response::{unavailable, Resp};
use crate::app::Core;
use crate::metrics::Metrics;
use crate::wal::Ticket;

/// Waits until the change that handed out `ticket` (or, for `None`, an
/// idempotent repeat, everything accepted so far: see `Core::acknowledge`)
/// is durable.
#[inline]
pub async fn acknowledge(
    metrics: &Metrics,
    core: &Core,
    ticket: Option<Ticket>,
) -> Result<(), Resp> {
    core.acknowledge(ticket).await.map_err(|err| {
        metrics.durable_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%err, "change not acknowledged: the log failed");
        unavailable("the order log is unavailable")
    })
}

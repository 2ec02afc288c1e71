//! Events: every state change of the engine, handed to a caller-supplied sink.
//!
//! The write-ahead log persists these and replays them through
//! [`crate::Engine::apply`]. The engine emits an event *before* it makes the
//! change visible when the change releases units (cancel, expiry, top-up), and
//! *after* it has taken the units when the change consumes them (admission,
//! payment of an expired order). So in any prefix of the log the replayed stock
//! is never below the live stock was at some moment: replay cannot underflow.

/// One state change. Plain data; the log gives it its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "rkyv",
    derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)
)]
pub enum Event {
    SaleCreated {
        /// Dense index of the sale, part of every order id it issues.
        ordinal: u32,
        sku: String,
        stock: u64,
        per_user_limit: u32,
        starts_at_ms: Option<u64>,
        ends_at_ms: Option<u64>,
        reservation_ttl_ms: u64,
    },
    StockAdded {
        ordinal: u32,
        add: u64,
    },
    Paused {
        ordinal: u32,
    },
    Resumed {
        ordinal: u32,
    },
    Ended {
        ordinal: u32,
    },
    Admitted {
        order_id: u64,
        /// The buyer's id: 1 to `USER_ID_LEN_MAX` bytes of UTF-8.
        user_id: String,
        qty: u32,
        request_id: Option<u64>,
        created_at_ms: u64,
        expires_at_ms: u64,
    },
    /// `retaken` is true when the order had expired and its units were taken again.
    Paid {
        order_id: u64,
        at_ms: u64,
        retaken: bool,
    },
    Cancelled {
        order_id: u64,
        at_ms: u64,
    },
    Expired {
        order_id: u64,
        at_ms: u64,
    },
}

impl Event {
    /// Short name for logs and dumps.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::SaleCreated { .. } => "sale_created",
            Event::StockAdded { .. } => "stock_added",
            Event::Paused { .. } => "paused",
            Event::Resumed { .. } => "resumed",
            Event::Ended { .. } => "ended",
            Event::Admitted { .. } => "admitted",
            Event::Paid { .. } => "paid",
            Event::Cancelled { .. } => "cancelled",
            Event::Expired { .. } => "expired",
        }
    }
}

/// Why a sink refused an event. The engine rolls the change back and reports
/// [`SinkError`] to its caller as "unavailable": nothing is half-applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The sink's queue is full: back-pressure, try again shortly.
    #[error("event queue is full")]
    Full,
    /// The sink has failed for good (e.g. the log could not be synced).
    #[error("event sink has failed")]
    Failed,
}

/// Where the engine sends its events. Called on the caller's thread, while the
/// engine holds the order or sale being changed, so it must be quick (an
/// enqueue, not a write).
pub trait EventSink {
    fn emit(&mut self, event: &Event) -> Result<(), SinkError>;
}

/// Collects events in memory (tests, snapshots).
impl EventSink for Vec<Event> {
    fn emit(&mut self, event: &Event) -> Result<(), SinkError> {
        self.push(event.clone());
        Ok(())
    }
}

/// Discards every event: for benchmarks and tools that need no log.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiscardSink;

impl EventSink for DiscardSink {
    fn emit(&mut self, _event: &Event) -> Result<(), SinkError> {
        Ok(())
    }
}

impl<S: EventSink + ?Sized> EventSink for &mut S {
    fn emit(&mut self, event: &Event) -> Result<(), SinkError> {
        (**self).emit(event)
    }
}

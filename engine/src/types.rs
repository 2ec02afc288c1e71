//! Public value types: identifiers, limits, requests, outcomes and views.

use std::fmt;
use std::sync::Arc;

use crate::event::SinkError;

/// Longest SKU id accepted, in bytes.
pub const SKU_LEN_MAX: usize = 64;
/// Longest user id accepted, in bytes (of UTF-8). User ids are the shop's
/// (a token's `sub`): any string of 1 to this many bytes.
pub const USER_ID_LEN_MAX: usize = 128;
/// Largest quantity one purchase may ask for, and largest per-user limit.
pub const QTY_MAX: u32 = 1_000_000;
/// Largest total stock of one sale (initial plus every top-up).
pub const STOCK_MAX: u64 = 1 << 40;
/// Most sales one engine holds; the ordinal must fit the order id's high bits.
pub const SALES_MAX: u32 = 1 << 20;
/// Longest reservation TTL: 30 days.
pub const RESERVATION_TTL_MAX_MS: u64 = 30 * 24 * 3600 * 1000;
/// Bits of an order id holding the per-sale sequence; the sale ordinal sits above.
pub const ORDER_SEQ_BITS: u32 = 40;
const ORDER_SEQ_MASK: u64 = (1 << ORDER_SEQ_BITS) - 1;

/// Identifies an order across shards and restarts: the sale's ordinal in the
/// high 24 bits, that sale's order sequence in the low 40. The ordinal tells
/// which sale (and so which shard) holds the order without an index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderId(pub u64);

impl OrderId {
    pub fn new(ordinal: u32, seq: u64) -> OrderId {
        assert!(ordinal < SALES_MAX);
        assert!(seq <= ORDER_SEQ_MASK);
        OrderId((u64::from(ordinal) << ORDER_SEQ_BITS) | seq)
    }
    pub fn ordinal(self) -> u32 {
        (self.0 >> ORDER_SEQ_BITS) as u32
    }
    pub fn seq(self) -> u64 {
        self.0 & ORDER_SEQ_MASK
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// FNV-1a, 64 bits: a hash that is the same in every build and on every
/// machine. The engine shards SKUs with it; the gateway turns a client's
/// `request_id` string into the engine's `u64` key with it, and that key is
/// in the log, so this function must never change.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Why a SKU id is not acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SkuError {
    #[error("sku is empty")]
    Empty,
    #[error("sku is longer than {SKU_LEN_MAX} bytes")]
    TooLong,
    #[error("sku may only contain [A-Za-z0-9_.-]")]
    BadChar,
    /// `.` or `..`: a client or proxy that normalises paths can never
    /// reach `/v1/sales/./purchase`.
    #[error("sku must not be \".\" or \"..\"")]
    DotSegment,
}

/// Checks a SKU id: 1–64 chars of `[A-Za-z0-9_.-]`.
pub fn validate_sku(sku: &str) -> Result<(), SkuError> {
    if sku.is_empty() {
        return Err(SkuError::Empty);
    }
    if sku.len() > SKU_LEN_MAX {
        return Err(SkuError::TooLong);
    }
    let ok = sku
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if !ok {
        return Err(SkuError::BadChar);
    }
    Ok(())
}

/// Checks the SKU of a new sale: [`validate_sku`], and not a dot segment
/// (`.` or `..`), so that every sale is a path segment a normalising client
/// can reach. Only creation checks this: a log written before the rule may
/// hold such a sale, and replays it.
pub fn validate_new_sku(sku: &str) -> Result<(), SkuError> {
    validate_sku(sku)?;
    if sku == "." || sku == ".." {
        return Err(SkuError::DotSegment);
    }
    Ok(())
}

/// Checks a user id: 1 to [`USER_ID_LEN_MAX`] bytes. Any characters: two
/// ids are the same user exactly when their bytes are equal.
pub fn valid_user_id(user_id: &str) -> bool {
    (1..=USER_ID_LEN_MAX).contains(&user_id.len())
}

/// What an operator asks for when creating a sale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaleSpec {
    pub sku: String,
    pub stock: u64,
    pub per_user_limit: u32,
    pub starts_at_ms: Option<u64>,
    pub ends_at_ms: Option<u64>,
    pub reservation_ttl_ms: u64,
}

/// Where a sale stands, as a buyer sees it at a given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SalePhase {
    Scheduled,
    Open,
    Paused,
    SoldOut,
    Ended,
}

impl SalePhase {
    /// Every phase, in [`SalePhase::index`] order.
    pub const ALL: [SalePhase; 5] = [
        SalePhase::Scheduled,
        SalePhase::Open,
        SalePhase::Paused,
        SalePhase::SoldOut,
        SalePhase::Ended,
    ];

    /// Position in [`SalePhase::ALL`]. A new variant does not compile until
    /// it has an arm here; give it the next index and add it to `ALL`.
    pub const fn index(self) -> usize {
        match self {
            SalePhase::Scheduled => 0,
            SalePhase::Open => 1,
            SalePhase::Paused => 2,
            SalePhase::SoldOut => 3,
            SalePhase::Ended => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SalePhase::Scheduled => "scheduled",
            SalePhase::Open => "open",
            SalePhase::Paused => "paused",
            SalePhase::SoldOut => "sold_out",
            SalePhase::Ended => "ended",
        }
    }
}

/// A consistent-enough picture of one sale. `remaining + reserved + paid == stock`
/// holds exactly when the sale is quiescent; under load the three counters are
/// read one after another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaleView {
    pub sku: Arc<str>,
    pub stock: u64,
    pub remaining: u64,
    pub reserved: u64,
    pub paid: u64,
    pub per_user_limit: u32,
    pub starts_at_ms: Option<u64>,
    pub ends_at_ms: Option<u64>,
    pub reservation_ttl_ms: u64,
    pub phase: SalePhase,
    /// Orders the sale has made, in any state (what
    /// `engine.max_orders_per_sale` caps): its admissions, replays aside.
    pub orders: u64,
}

/// Why a sale could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CreateSaleError {
    #[error("invalid sku: {0}")]
    InvalidSku(SkuError),
    #[error("per_user_limit must be between 1 and {QTY_MAX}")]
    InvalidLimit,
    #[error("stock must be at most {STOCK_MAX}")]
    StockTooLarge,
    #[error("ends_at_ms must be after starts_at_ms")]
    InvalidWindow,
    #[error("reservation_ttl_ms must be between 1 and {RESERVATION_TTL_MAX_MS}")]
    InvalidTtl,
    #[error("a sale with this sku exists")]
    Exists,
    #[error("the engine holds {SALES_MAX} sales already")]
    TooManySales,
    #[error("event log unavailable: {0}")]
    Unavailable(SinkError),
}

/// Why an operator action on an existing sale (top-up, pause, resume, end) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaleOpError {
    #[error("invalid sku: {0}")]
    InvalidSku(SkuError),
    #[error("no sale with this sku")]
    UnknownSku,
    #[error("the amount added must be at least 1")]
    ZeroAdd,
    #[error("stock would exceed {STOCK_MAX}")]
    StockOverflow,
    #[error("the sale has ended")]
    Ended,
    #[error("event log unavailable: {0}")]
    Unavailable(SinkError),
}

/// An admitted purchase. Its buyer is the user who asked (not repeated
/// here, so this stays `Copy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    pub order_id: OrderId,
    pub qty: u32,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
}

/// Why a purchase was not admitted. Small and `Copy`: this is the hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    SoldOut,
    LimitExceeded,
    NotStarted,
    Ended,
    Paused,
    UnknownSku,
    InvalidSku,
    InvalidQuantity,
    /// The user reused a request id with a different sku or quantity.
    RequestIdReused,
    /// The same (user, request id) is being decided by another thread now.
    InProgress,
    /// The sale has made `EngineConfig::max_orders_per_sale` orders.
    OrderLimit,
    /// The user id is empty or longer than [`USER_ID_LEN_MAX`] bytes.
    InvalidUser,
    /// The engine holds as many distinct buyers as its user table can
    /// (2^32 less hash imbalance: buyers with orders, plus requests in flight).
    UsersFull,
    Unavailable(SinkError),
}

crate::labelled_enum! {
    /// The reason of a [`Rejection`] without its detail: what metrics count
    /// rejections by. Its `ALL` comes from this one list, and
    /// [`Rejection::kind`] maps every rejection here without a wildcard, so
    /// a new rejection cannot go uncounted or index past a counter array.
    pub enum RejectionKind {
        SoldOut => "sold_out",
        LimitExceeded => "limit_exceeded",
        NotStarted => "not_started",
        Ended => "ended",
        Paused => "paused",
        UnknownSku => "unknown_sku",
        InvalidSku => "invalid_sku",
        InvalidQuantity => "invalid_quantity",
        RequestIdReused => "request_id_reused",
        InProgress => "in_progress",
        OrderLimit => "order_limit",
        InvalidUser => "invalid_user",
        UsersFull => "users_full",
        Unavailable => "unavailable",
    }
}

impl Rejection {
    /// The reason, without the detail `Unavailable` carries.
    pub const fn kind(self) -> RejectionKind {
        match self {
            Rejection::SoldOut => RejectionKind::SoldOut,
            Rejection::LimitExceeded => RejectionKind::LimitExceeded,
            Rejection::NotStarted => RejectionKind::NotStarted,
            Rejection::Ended => RejectionKind::Ended,
            Rejection::Paused => RejectionKind::Paused,
            Rejection::UnknownSku => RejectionKind::UnknownSku,
            Rejection::InvalidSku => RejectionKind::InvalidSku,
            Rejection::InvalidQuantity => RejectionKind::InvalidQuantity,
            Rejection::RequestIdReused => RejectionKind::RequestIdReused,
            Rejection::InProgress => RejectionKind::InProgress,
            Rejection::OrderLimit => RejectionKind::OrderLimit,
            Rejection::InvalidUser => RejectionKind::InvalidUser,
            Rejection::UsersFull => RejectionKind::UsersFull,
            Rejection::Unavailable(_) => RejectionKind::Unavailable,
        }
    }

    /// Machine-readable reason, as the HTTP API and metrics spell it.
    pub const fn as_str(self) -> &'static str {
        self.kind().as_str()
    }
}

/// The decision on one purchase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PurchaseOutcome {
    Admitted(Admission),
    /// The same user repeated the request id of an earlier admission with the
    /// same sku and quantity: that admission, unchanged.
    Replayed(Admission),
    Rejected(Rejection),
}

/// Life cycle of an order: reserved → paid | cancelled | expired, and
/// expired → paid when the units can be taken again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OrderState {
    Reserved,
    Paid,
    Cancelled,
    Expired,
}

impl OrderState {
    /// Every state, in [`OrderState::index`] order.
    pub const ALL: [OrderState; 4] = [
        OrderState::Reserved,
        OrderState::Paid,
        OrderState::Cancelled,
        OrderState::Expired,
    ];

    /// Position in [`OrderState::ALL`]. A new variant does not compile until
    /// it has an arm here; give it the next index and add it to `ALL`.
    pub const fn index(self) -> usize {
        match self {
            OrderState::Reserved => 0,
            OrderState::Paid => 1,
            OrderState::Cancelled => 2,
            OrderState::Expired => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Reserved => "reserved",
            OrderState::Paid => "paid",
            OrderState::Cancelled => "cancelled",
            OrderState::Expired => "expired",
        }
    }
    /// Whether an order in this state holds its units.
    pub fn holds_units(self) -> bool {
        // Every state named: a new one must say whether it holds units.
        match self {
            OrderState::Reserved | OrderState::Paid => true,
            OrderState::Cancelled | OrderState::Expired => false,
        }
    }
}

/// One order as the outside world sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderView {
    pub order_id: OrderId,
    pub sku: Arc<str>,
    pub user_id: Arc<str>,
    pub qty: u32,
    pub state: OrderState,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
}

/// Why an action on an order (pay, cancel) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderRejection {
    /// No such order, or (for user actions) it belongs to someone else.
    UnknownOrder,
    Paid,
    Cancelled,
    Expired,
    Unavailable(SinkError),
}

impl OrderRejection {
    /// Every reason, in [`OrderRejection::index`] order. `Unavailable`
    /// stands for all its sink errors, which share one label.
    pub const ALL: [OrderRejection; 5] = [
        OrderRejection::UnknownOrder,
        OrderRejection::Paid,
        OrderRejection::Cancelled,
        OrderRejection::Expired,
        OrderRejection::Unavailable(SinkError::Full),
    ];

    /// Position in [`OrderRejection::ALL`]. A new variant does not compile
    /// until it has an arm here; give it the next index and add it to `ALL`.
    pub const fn index(self) -> usize {
        match self {
            OrderRejection::UnknownOrder => 0,
            OrderRejection::Paid => 1,
            OrderRejection::Cancelled => 2,
            OrderRejection::Expired => 3,
            OrderRejection::Unavailable(_) => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderRejection::UnknownOrder => "unknown_order",
            OrderRejection::Paid => "paid",
            OrderRejection::Cancelled => "cancelled",
            OrderRejection::Expired => "expired",
            OrderRejection::Unavailable(_) => "unavailable",
        }
    }
}

/// Result of `pay` and `cancel`: `changed` is false for an idempotent repeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderOutcome {
    Done { order: OrderView, changed: bool },
    Rejected(OrderRejection),
}

/// What one `expire_due` tick did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpireReport {
    /// Orders moved to `expired`, their units returned.
    pub expired: u64,
    /// True when the sink refused an event; the rest waits for the next tick.
    pub deferred: bool,
}

/// An event stream that cannot be applied to this engine.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    #[error("event refers to unknown sale ordinal {0}")]
    UnknownSale(u32),
    #[error("event refers to unknown order {0}")]
    UnknownOrder(u64),
    #[error("sale {ordinal} created twice or out of order (expected ordinal {expected})")]
    SaleOrdinal { ordinal: u32, expected: u32 },
    #[error("order {0} admitted twice")]
    DuplicateOrder(u64),
    #[error("invalid event: {0}")]
    Invalid(&'static str),
}

/// Checks at compile time that an enum's `ALL` is in `index` order, so a
/// label list and the arrays it sizes cannot drift apart. (That every variant
/// is in `ALL` is tested in `tests/labels.rs`.)
macro_rules! assert_all_in_index_order {
    ($($t:ident),*) => {$(
        const _: () = {
            let mut i = 0;
            while i < $t::ALL.len() {
                assert!(
                    $t::ALL[i].index() == i,
                    concat!(stringify!($t), "::ALL is out of index order")
                );
                i += 1;
            }
        };
    )*};
}

assert_all_in_index_order!(SalePhase, OrderState, OrderRejection);

//! Reading logs of earlier format versions. Version 1 stored an admission's
//! buyer as a `u64`; version 2 stores the user id's bytes. A version-1
//! record decodes into a mirror of the old event ([`EventV1`]) and converts:
//! a numeric user id becomes its decimal string, so `7` in an old log and
//! `"7"` sent today are one user, with one limit and the same orders.
//!
//! Nothing here writes: the writer only writes the current version, and
//! never appends to a segment of an older one (recovery starts a new one).
//! `tests` build version-1 records with this type, byte for byte what the
//! old build wrote (the layout is rkyv's archive of the same shape).

use engine::Event;
use rkyv::rancor;
use rkyv::util::AlignedVec;

/// `engine::Event` as format version 1 laid it out. Field order and types
/// are the layout: never change them.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum EventV1 {
    SaleCreated {
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
        user_id: u64,
        qty: u32,
        request_id: Option<u64>,
        created_at_ms: u64,
        expires_at_ms: u64,
    },
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

impl From<EventV1> for Event {
    /// One arm per kind, no wildcard: the conversion is total.
    fn from(old: EventV1) -> Event {
        match old {
            EventV1::SaleCreated {
                ordinal,
                sku,
                stock,
                per_user_limit,
                starts_at_ms,
                ends_at_ms,
                reservation_ttl_ms,
            } => Event::SaleCreated {
                ordinal,
                sku,
                stock,
                per_user_limit,
                starts_at_ms,
                ends_at_ms,
                reservation_ttl_ms,
            },
            EventV1::StockAdded { ordinal, add } => Event::StockAdded { ordinal, add },
            EventV1::Paused { ordinal } => Event::Paused { ordinal },
            EventV1::Resumed { ordinal } => Event::Resumed { ordinal },
            EventV1::Ended { ordinal } => Event::Ended { ordinal },
            EventV1::Admitted {
                order_id,
                user_id,
                qty,
                request_id,
                created_at_ms,
                expires_at_ms,
            } => Event::Admitted {
                order_id,
                user_id: user_id.to_string(),
                qty,
                request_id,
                created_at_ms,
                expires_at_ms,
            },
            EventV1::Paid {
                order_id,
                at_ms,
                retaken,
            } => Event::Paid {
                order_id,
                at_ms,
                retaken,
            },
            EventV1::Cancelled { order_id, at_ms } => Event::Cancelled { order_id, at_ms },
            EventV1::Expired { order_id, at_ms } => Event::Expired { order_id, at_ms },
        }
    }
}

/// Decodes (and validates) a version-1 payload, already in aligned memory.
pub(crate) fn decode_v1(aligned: &AlignedVec<16>) -> Result<Event, String> {
    rkyv::from_bytes::<EventV1, rancor::Error>(aligned)
        .map(Event::from)
        .map_err(|e| format!("undecodable version-1 record: {e}"))
}

/// A version-1 payload of `event`: what the old build wrote. For tests of
/// old logs.
pub fn encode_v1_payload(event: &EventV1) -> Vec<u8> {
    rkyv::to_bytes::<rancor::Error>(event)
        .expect("serializing an event into memory cannot fail")
        .to_vec()
}

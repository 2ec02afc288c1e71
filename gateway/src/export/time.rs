//! Values in PostgreSQL's types: milliseconds since the epoch as
//! `timestamptz`, and unsigned counters as `bigint`/`integer`, each
//! checked to fit, so an absurd value is an error that names it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::ExportError;

/// Latest time written: the end of 9999 AD. PostgreSQL goes further, but
/// a time past this is a mistake, not a sale (and tokio-postgres counts
/// microseconds in an i64, which ends in 294,247 AD).
const TIMESTAMPTZ_MAX_MS: u64 = 253_402_300_799_999;

pub(crate) fn time(ms: u64, what: &'static str) -> Result<SystemTime, ExportError> {
    if ms > TIMESTAMPTZ_MAX_MS {
        return Err(ExportError::OutOfRange { what });
    }
    Ok(UNIX_EPOCH + Duration::from_millis(ms))
}

pub(crate) fn opt_time(
    ms: Option<u64>,
    what: &'static str,
) -> Result<Option<SystemTime>, ExportError> {
    ms.map(|ms| time(ms, what)).transpose()
}

pub(crate) fn to_bigint(v: u64, what: &'static str) -> Result<i64, ExportError> {
    i64::try_from(v).map_err(|_| ExportError::OutOfRange { what })
}

pub(crate) fn to_integer(v: u32, what: &'static str) -> Result<i32, ExportError> {
    i32::try_from(v).map_err(|_| ExportError::OutOfRange { what })
}

//! The wall clock, read in one place: the engine takes time as an argument
//! (`now_ms`), and this is where the gateway gets it.

/// Unix time in milliseconds: the engine's `now_ms`.
#[inline]
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

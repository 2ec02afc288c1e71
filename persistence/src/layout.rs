//! The numbers of the on-disk layout: format version, magic numbers and
//! sizes. A leaf of the crate, so that the error type can name the version
//! it reads without depending on the codec in `format.rs`. Layout in DESIGN.md.

/// Format version written in every segment and snapshot header. Version 2
/// stores an admission's user id as its bytes (1 had a `u64`).
pub const FORMAT_VERSION: u32 = 2;
/// Older versions this build still reads (`legacy.rs` converts them).
pub const FORMAT_VERSION_V1: u32 = 1;
pub const SEGMENT_MAGIC: [u8; 8] = *b"FSWALSEG";
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"FSWALSNP";
pub const SNAPSHOT_END_MAGIC: [u8; 8] = *b"FSSNPEND";
/// Segment and snapshot headers: magic, version, flags, first/covered LSN,
/// reserved, CRC32C of the 28 bytes before it.
pub const HEADER_BYTES: usize = 32;
/// Snapshot footer: magic, record count, reserved, CRC32C of the 20 bytes before it.
pub const FOOTER_BYTES: usize = 24;
/// Record frame header: payload length and CRC32C.
pub const FRAME_HEADER_BYTES: usize = 8;
/// Largest payload accepted. Events are ~50–150 bytes; a bigger length field
/// is damage, not data.
pub const RECORD_BYTES_MAX: u32 = 64 << 10;

//! Configuration of the log: where it lives, when it syncs, how big things get.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// When the writer makes written records durable, and so when a purchase may
/// be acknowledged. See DESIGN.md for the crash argument of each mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncMode {
    /// fdatasync after every batch; a ticket is durable after its batch's sync.
    Always,
    /// fdatasync every `fsync_interval_ms`; tickets count as durable at once,
    /// and a power failure loses at most the last interval.
    Interval,
    /// Never sync (benchmarks only): the OS decides.
    Never,
}

impl FsyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncMode::Always => "always",
            FsyncMode::Interval => "interval",
            FsyncMode::Never => "never",
        }
    }
}

impl fmt::Display for FsyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An fsync mode name that is none of `always`, `interval`, `never`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown fsync mode {0:?} (expected always, interval or never)")]
pub struct ParseFsyncModeError(pub String);

impl FromStr for FsyncMode {
    type Err = ParseFsyncModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(FsyncMode::Always),
            "interval" => Ok(FsyncMode::Interval),
            "never" => Ok(FsyncMode::Never),
            other => Err(ParseFsyncModeError(other.to_string())),
        }
    }
}

/// Everything the log needs to know; built by the gateway's config loader.
#[derive(Clone, Debug)]
pub struct WalConfig {
    pub dir: PathBuf,
    /// Default `Always`.
    pub fsync: FsyncMode,
    /// Sync period in `Interval` mode; default 5.
    pub fsync_interval_ms: u64,
    /// A segment is closed once the next record would take it past this size;
    /// default 64 MiB.
    pub segment_bytes: u64,
    /// Most events queued and not yet taken by the writer; default 65 536.
    /// When full, `emit` fails with `SinkError::Full`.
    pub queue_capacity: u32,
    /// Write a snapshot after this many records; 0 = never; default 1 000 000.
    pub snapshot_every_records: u64,
    /// `Always` mode under load: once a batch of more than one record is
    /// written, wait this long for more before the fdatasync, so that one
    /// sync (and one round of wake-ups) covers more records. A lone record
    /// (light load) is synced at once. 0 = never wait; default 500.
    pub group_commit_delay_us: u64,
    /// Time slice the writer thread asks the scheduler for, in µs; 0 = the
    /// kernel's default. A short slice lets the writer preempt a busy I/O
    /// thread when its sync completes or its delay ends, instead of
    /// queueing behind it (see `sched.rs`). Linux 6.12+ (EEVDF) honours
    /// it, no privilege needed; the kernel clamps it to 100–100 000.
    /// Default 100.
    pub writer_slice_us: u64,
    /// Nice value for the writer thread (-20 highest priority .. 19), 0 =
    /// leave it as inherited. A negative value needs `CAP_SYS_NICE` (or a
    /// raised `RLIMIT_NICE`); without it the writer logs that and keeps its
    /// priority. Default -10: with the short slice, the writer then waits
    /// almost not at all for a CPU when it wakes.
    pub writer_nice: i32,
}

impl WalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WalConfig {
            dir: dir.into(),
            fsync: FsyncMode::Always,
            fsync_interval_ms: 5,
            segment_bytes: 64 << 20,
            queue_capacity: 65_536,
            snapshot_every_records: 1_000_000,
            group_commit_delay_us: 500,
            writer_slice_us: 100,
            writer_nice: -10,
        }
    }
}

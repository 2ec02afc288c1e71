//! Configuration of the log: where it lives, when it syncs, how big things get.
//!
//! Each setting's default and (where the log itself needs one) minimum is an
//! associated const of [`WalConfig`], and nothing else in the workspace
//! repeats the number: [`WalConfig::new`] is built from the defaults, and the
//! gateway's key table (`gateway::config`) refers to the same consts for the
//! `[wal]` section. The gateway adds operator-facing maximums; the minimums
//! here are the ones `open` enforces, pinned to it by a test below.

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
    /// Every mode, for listings and tests. `all_lists_every_mode` fails to
    /// compile when a variant is added and not listed here.
    pub const ALL: [FsyncMode; 3] = [FsyncMode::Always, FsyncMode::Interval, FsyncMode::Never];

    pub const fn as_str(self) -> &'static str {
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
    /// Default [`Self::FSYNC_DEFAULT`].
    pub fsync: FsyncMode,
    /// Sync period in `Interval` mode; default [`Self::FSYNC_INTERVAL_MS_DEFAULT`].
    pub fsync_interval_ms: u64,
    /// A segment is closed once the next record would take it past this size;
    /// default [`Self::SEGMENT_BYTES_DEFAULT`].
    pub segment_bytes: u64,
    /// Most events queued and not yet taken by the writer; default
    /// [`Self::QUEUE_CAPACITY_DEFAULT`].
    /// When full, `emit` fails with `SinkError::Full`.
    pub queue_capacity: u32,
    /// Write a snapshot after this many records; 0 = never; default
    /// [`Self::SNAPSHOT_EVERY_RECORDS_DEFAULT`].
    pub snapshot_every_records: u64,
    /// `Always` mode under load: once a batch of more than one record is
    /// written, wait this long for more before the fdatasync, so that one
    /// sync (and one round of wake-ups) covers more records. A lone record
    /// (light load) is synced at once. 0 = never wait; default
    /// [`Self::GROUP_COMMIT_DELAY_US_DEFAULT`].
    pub group_commit_delay_us: u64,
    /// Time slice the writer thread asks the scheduler for, in µs; 0 = the
    /// kernel's default. A short slice lets the writer preempt a busy I/O
    /// thread when its sync completes or its delay ends, instead of
    /// queueing behind it (see `sched.rs`). Linux 6.12+ (EEVDF) honours
    /// it, no privilege needed; the kernel clamps it to 100–100 000.
    /// Default [`Self::WRITER_SLICE_US_DEFAULT`].
    pub writer_slice_us: u64,
    /// Nice value for the writer thread (-20 highest priority .. 19), 0 =
    /// leave it as inherited. A negative value needs `CAP_SYS_NICE` (or a
    /// raised `RLIMIT_NICE`); without it the writer logs that and keeps its
    /// priority. Default [`Self::WRITER_NICE_DEFAULT`]: with the short slice, the writer then waits
    /// almost not at all for a CPU when it wakes.
    pub writer_nice: i32,
}

impl WalConfig {
    pub const FSYNC_DEFAULT: FsyncMode = FsyncMode::Always;
    pub const FSYNC_INTERVAL_MS_DEFAULT: u64 = 5;
    /// A zero interval would make `Interval` a busy loop.
    pub const FSYNC_INTERVAL_MS_MIN: u64 = 1;
    pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;
    /// Room for a segment's header and footer and a few records; any smaller
    /// and nearly every record would open a segment of its own.
    pub const SEGMENT_BYTES_MIN: u64 = 256;
    pub const QUEUE_CAPACITY_DEFAULT: u32 = 65_536;
    /// The queue is a fixed-size ring; it needs at least one slot.
    pub const QUEUE_CAPACITY_MIN: u32 = 1;
    pub const SNAPSHOT_EVERY_RECORDS_DEFAULT: u64 = 1_000_000;
    pub const GROUP_COMMIT_DELAY_US_DEFAULT: u64 = 500;
    pub const WRITER_SLICE_US_DEFAULT: u64 = 100;
    pub const WRITER_NICE_DEFAULT: i32 = -10;

    /// The defaults, logging to `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WalConfig {
            dir: dir.into(),
            fsync: Self::FSYNC_DEFAULT,
            fsync_interval_ms: Self::FSYNC_INTERVAL_MS_DEFAULT,
            segment_bytes: Self::SEGMENT_BYTES_DEFAULT,
            queue_capacity: Self::QUEUE_CAPACITY_DEFAULT,
            snapshot_every_records: Self::SNAPSHOT_EVERY_RECORDS_DEFAULT,
            group_commit_delay_us: Self::GROUP_COMMIT_DELAY_US_DEFAULT,
            writer_slice_us: Self::WRITER_SLICE_US_DEFAULT,
            writer_nice: Self::WRITER_NICE_DEFAULT,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{open_with_storage, SimStorage, WalError};

    #[test]
    fn all_lists_every_mode() {
        for mode in FsyncMode::ALL {
            // Exhaustive on purpose: a new variant stops this compiling,
            // which is the reminder to add it to `ALL`.
            match mode {
                FsyncMode::Always | FsyncMode::Interval | FsyncMode::Never => {}
            }
            assert_eq!(mode.as_str().parse::<FsyncMode>(), Ok(mode));
        }
        assert_eq!(FsyncMode::ALL.len(), 3);
    }

    /// Opens a simulated log with `config`: `Ok` if `open` accepts it.
    fn opens(config: WalConfig) -> Result<(), WalError> {
        let storage = Arc::new(SimStorage::new());
        let (_engine, wal, _) =
            open_with_storage(config, engine::EngineConfig::with_shards(1), storage)?;
        wal.shutdown()
    }

    fn sim_config() -> WalConfig {
        let mut c = WalConfig::new("/sim/wal");
        c.snapshot_every_records = 0;
        c
    }

    /// The minimums declared here are the ones `open` enforces: the minimum
    /// opens, one below is refused. (The gateway's table uses these consts,
    /// so the two cannot disagree.)
    #[test]
    fn declared_minimums_are_the_ones_open_enforces() {
        let mut c = sim_config();
        c.segment_bytes = WalConfig::SEGMENT_BYTES_MIN;
        opens(c.clone()).unwrap();
        c.segment_bytes -= 1;
        assert!(matches!(opens(c), Err(WalError::Config(_))));

        let mut c = sim_config();
        c.queue_capacity = WalConfig::QUEUE_CAPACITY_MIN;
        opens(c.clone()).unwrap();
        c.queue_capacity -= 1;
        assert!(matches!(opens(c), Err(WalError::Config(_))));

        let mut c = sim_config();
        c.fsync = FsyncMode::Interval;
        c.fsync_interval_ms = WalConfig::FSYNC_INTERVAL_MS_MIN;
        opens(c.clone()).unwrap();
        c.fsync_interval_ms -= 1;
        assert!(matches!(opens(c), Err(WalError::Config(_))));
    }

    #[test]
    fn new_is_the_declared_defaults() {
        let c = WalConfig::new("d");
        assert_eq!(c.dir, PathBuf::from("d"));
        assert_eq!(c.fsync, WalConfig::FSYNC_DEFAULT);
        assert_eq!(c.fsync_interval_ms, WalConfig::FSYNC_INTERVAL_MS_DEFAULT);
        assert_eq!(c.segment_bytes, WalConfig::SEGMENT_BYTES_DEFAULT);
        assert_eq!(c.queue_capacity, WalConfig::QUEUE_CAPACITY_DEFAULT);
        assert_eq!(
            c.snapshot_every_records,
            WalConfig::SNAPSHOT_EVERY_RECORDS_DEFAULT
        );
        assert_eq!(
            c.group_commit_delay_us,
            WalConfig::GROUP_COMMIT_DELAY_US_DEFAULT
        );
        assert_eq!(c.writer_slice_us, WalConfig::WRITER_SLICE_US_DEFAULT);
        assert_eq!(c.writer_nice, WalConfig::WRITER_NICE_DEFAULT);
    }
}

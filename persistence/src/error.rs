//! The log's error type.

use std::path::PathBuf;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Bytes on disk that are not what the log wrote: a checksum mismatch, a
    /// bad header, a missing range of records. Start-up stops here.
    #[error("corrupted log file {} at offset {offset}: {reason}", segment.display())]
    Corrupted {
        segment: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error(
        "{} has log format version {version}; this build reads versions {} and {} (and writes {})",
        path.display(),
        crate::layout::FORMAT_VERSION_V1,
        crate::layout::FORMAT_VERSION,
        crate::layout::FORMAT_VERSION
    )]
    UnsupportedVersion { path: PathBuf, version: u32 },
    /// A record that decodes but that the engine refuses to apply.
    #[error("record in {} at offset {offset} cannot be replayed: {source}", segment.display())]
    Replay {
        segment: PathBuf,
        offset: u64,
        #[source]
        source: engine::ApplyError,
    },
    /// A consumer of the log (`LogTailer`) needs record `missing`, and the
    /// directory holds it in no segment and covers it by no snapshot: the
    /// segments were deleted without a retention hold, or never written.
    /// Never skipped: the consumer would silently lose events.
    #[error("log {} has no record {missing} and no snapshot covering it (oldest segment starts at {oldest_segment:?})", dir.display())]
    Gap {
        dir: PathBuf,
        missing: u64,
        oldest_segment: Option<u64>,
    },
    /// A consumer's cursor names a record the log does not hold: it ends at
    /// `end`. The cursor belongs to another log, or records it took were
    /// never durable and were lost in a crash.
    #[error("consumer cursor {after} is past the end of log {} (last record {end})", dir.display())]
    CursorAhead { dir: PathBuf, after: u64, end: u64 },
    /// The log failed earlier (a write or fsync error) and refuses work.
    #[error("the write-ahead log has failed and refuses work")]
    Failed,
    #[error("the write-ahead log is shut down")]
    ShutDown,
    #[error("invalid log configuration: {0}")]
    Config(String),
}

impl WalError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> WalError {
        WalError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn gap(
        dir: &std::path::Path,
        missing: u64,
        oldest_segment: Option<u64>,
    ) -> WalError {
        WalError::Gap {
            dir: dir.to_path_buf(),
            missing,
            oldest_segment,
        }
    }

    pub(crate) fn corrupted(
        segment: &std::path::Path,
        offset: u64,
        reason: impl Into<String>,
    ) -> WalError {
        WalError::Corrupted {
            segment: segment.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }
}

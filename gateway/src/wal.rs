//! The write-ahead log as the gateway sees it: the `persistence` crate's API,
//! re-exported so the rest of the gateway names it in one place.

pub use persistence::{
    dump, open, verify, FsyncMode, RecoveryReport, Ticket, VerifyReport, Wal, WalConfig, WalError,
    WalSink, WalStats,
};

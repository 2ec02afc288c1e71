//! [`ExportError`]: what can go wrong between the log and PostgreSQL, and
//! which of it heals by itself ([`ExportError::is_transient`]).
//!
//! Every message names where it went wrong as [`PgTarget`] (host, port,
//! database, user) and never the password: the reasons are copied out of
//! tokio-postgres' errors as text, with the password struck out should it
//! ever appear, rather than kept as a `source` whose text we do not control.

use std::fmt;
use std::sync::Arc;

use engine::ApplyError;
use tokio_postgres::error::SqlState;

/// Where the export writes: `export.postgres_url` without its password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgTarget {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
}

impl fmt::Display for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "host={} port={} dbname={} user={}",
            self.host, self.port, self.dbname, self.user
        )
    }
}

/// Why an export call failed. The relay retries (with backoff) what
/// [`ExportError::is_transient`] says may heal by itself; the rest needs an
/// operator (a setting, a table, a newer binary), and retrying it only helps
/// once they have acted. Retrying a batch is always safe: writes are
/// idempotent (see [`crate::export`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    #[error("export.postgres_url is not a valid PostgreSQL URL: {reason}")]
    BadUrl { reason: String },
    #[error(
        "export.table_prefix {prefix:?} is not a valid prefix: \
         1 to 32 characters of [a-z0-9_], not starting with a digit"
    )]
    BadPrefix { prefix: String },
    #[error("export.postgres_url: cannot reach PostgreSQL ({target}): {reason}")]
    Unreachable {
        target: Arc<PgTarget>,
        reason: String,
    },
    #[error(
        "export.postgres_url: PostgreSQL refused the login ({target}); \
         check the user and password: {reason}"
    )]
    Authentication {
        target: Arc<PgTarget>,
        reason: String,
    },
    #[error("export.postgres_url: database {:?} does not exist ({target})", target.dbname)]
    NoDatabase { target: Arc<PgTarget> },
    #[error(
        "the export tables in {target} are at schema version {found}, newer than the \
         {known} this flashsale knows: upgrade flashsale, or use another export.table_prefix"
    )]
    SchemaTooNew {
        target: Arc<PgTarget>,
        found: i32,
        known: i32,
    },
    /// PostgreSQL refused a statement: e.g. someone altered or dropped a table.
    #[error("PostgreSQL refused {what} ({target}): {reason} [SQLSTATE {code}]")]
    Statement {
        target: Arc<PgTarget>,
        what: &'static str,
        code: String,
        reason: String,
    },
    /// The statement timeout (or the client's own deadline) passed: a lock
    /// held by someone else, an overloaded server, a stalled network.
    #[error("PostgreSQL did not finish {what} within {timeout_ms} ms ({target})")]
    Timeout {
        target: Arc<PgTarget>,
        what: &'static str,
        timeout_ms: u64,
    },
    #[error("lost the connection to PostgreSQL during {what} ({target}): {reason}")]
    ConnectionLost {
        target: Arc<PgTarget>,
        what: &'static str,
        reason: String,
    },
    /// The event stream does not fit the replica: a corrupt, foreign or
    /// out-of-order stream. The replica is unusable after this.
    #[error("the event at LSN {lsn} cannot be applied to the export's replica: {source}")]
    Apply { lsn: u64, source: ApplyError },
    /// A batch broke the LSN contract of [`crate::export::ExportReplica::apply`].
    #[error("export batch out of order: {reason}")]
    BatchOrder { reason: String },
    /// A value PostgreSQL cannot hold (an LSN or a time past its range).
    #[error("{what} is out of PostgreSQL's range")]
    OutOfRange { what: &'static str },
}

impl ExportError {
    /// Whether retrying the same call, unchanged, may succeed once time has
    /// passed: the server was down, restarted, busy or slow, or a
    /// transaction lost a race. False for what needs someone to act.
    pub fn is_transient(&self) -> bool {
        // Every variant named: a new one must decide.
        match self {
            ExportError::Unreachable { .. }
            | ExportError::Timeout { .. }
            | ExportError::ConnectionLost { .. } => true,
            ExportError::Statement { code, .. } => transient_sqlstate(code),
            ExportError::BadUrl { .. }
            | ExportError::BadPrefix { .. }
            | ExportError::Authentication { .. }
            | ExportError::NoDatabase { .. }
            | ExportError::SchemaTooNew { .. }
            | ExportError::Apply { .. }
            | ExportError::BatchOrder { .. }
            | ExportError::OutOfRange { .. } => false,
        }
    }

    /// Whether the connection is unusable after this error, so the next
    /// call must open a new one.
    pub(crate) fn breaks_connection(&self) -> bool {
        matches!(
            self,
            ExportError::Timeout { .. } | ExportError::ConnectionLost { .. }
        )
    }
}

/// Serialization failures, deadlocks, a unique violation, lack of
/// resources and the server going away are worth a retry; any other
/// SQLSTATE needs a change.
fn transient_sqlstate(code: &str) -> bool {
    code == SqlState::T_R_SERIALIZATION_FAILURE.code()
        || code == SqlState::T_R_DEADLOCK_DETECTED.code()
        // A row inserted as new met one already there: another writer
        // got in first. The exporter forgets what it knew of the rows, so
        // the retry learns it again and upserts.
        || code == SqlState::UNIQUE_VIOLATION.code()
        || code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources
        || code.starts_with("57P") // operator intervention: shutdown, restart
}

/// What a statement was doing, the server, the password to strike out, and
/// the statement timeout: what [`classify`] needs to turn a tokio-postgres
/// error into an [`ExportError`].
#[derive(Clone, Copy)]
pub(crate) struct ErrorContext<'a> {
    pub target: &'a Arc<PgTarget>,
    pub password: Option<&'a [u8]>,
    pub timeout_ms: u64,
}

impl ErrorContext<'_> {
    /// An error of a statement (or of the connection under it) during `what`.
    pub(crate) fn classify(&self, what: &'static str, err: &tokio_postgres::Error) -> ExportError {
        let target = self.target.clone();
        let reason = self.reason(err);
        let Some(code) = err.code() else {
            // No SQLSTATE: the socket, not the server, said no.
            return ExportError::ConnectionLost {
                target,
                what,
                reason,
            };
        };
        if *code == SqlState::QUERY_CANCELED || *code == SqlState::LOCK_NOT_AVAILABLE {
            return ExportError::Timeout {
                target,
                what,
                timeout_ms: self.timeout_ms,
            };
        }
        if *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || code.code().starts_with("08")
            || err.is_closed()
        {
            return ExportError::ConnectionLost {
                target,
                what,
                reason,
            };
        }
        ExportError::Statement {
            target,
            what,
            code: code.code().to_string(),
            reason,
        }
    }

    /// An error of opening a connection, sorted by what the operator must fix.
    pub(crate) fn classify_connect(&self, err: &tokio_postgres::Error) -> ExportError {
        let target = self.target.clone();
        let reason = self.reason(err);
        let code = err.code();
        if code == Some(&SqlState::INVALID_CATALOG_NAME) {
            return ExportError::NoDatabase { target };
        }
        let auth_code = code == Some(&SqlState::INVALID_PASSWORD)
            || code == Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION);
        // tokio-postgres has no code for these two: the server asked for a
        // password the URL lacks, or the exchange itself failed.
        let auth_text =
            reason.contains("password missing") || reason.starts_with("authentication error");
        if auth_code || auth_text {
            return ExportError::Authentication { target, reason };
        }
        ExportError::Unreachable { target, reason }
    }

    /// The error's text with its sources, the password struck out.
    pub(crate) fn reason(&self, err: &tokio_postgres::Error) -> String {
        error_text(err, self.password)
    }
}

/// `err`'s text followed by its sources', the password struck out.
pub(crate) fn error_text(err: &tokio_postgres::Error, password: Option<&[u8]>) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    redact(text, password)
}

/// `text` with every occurrence of `password` replaced. Passwords shorter
/// than 4 bytes are left alone: striking out every "ab" would garble the
/// message and such a password is not worth hiding anyway.
pub(crate) fn redact(text: String, password: Option<&[u8]>) -> String {
    let Some(password) = password.and_then(|p| std::str::from_utf8(p).ok()) else {
        return text;
    };
    if password.len() < 4 || !text.contains(password) {
        return text;
    }
    text.replace(password, "***")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_strikes_the_password_out() {
        let pw = Some(&b"hunter22"[..]);
        assert_eq!(redact("a hunter22 b".into(), pw), "a *** b");
        assert_eq!(redact("nothing".into(), pw), "nothing");
        assert_eq!(redact("a ab".into(), Some(&b"ab"[..])), "a ab");
    }

    #[test]
    fn transient_codes() {
        assert!(transient_sqlstate("40001"));
        assert!(transient_sqlstate("57P01"));
        assert!(transient_sqlstate("53300"));
        assert!(
            !transient_sqlstate("42703"),
            "undefined column needs a person"
        );
        assert!(
            !transient_sqlstate("23514"),
            "check violation needs a person"
        );
    }
}

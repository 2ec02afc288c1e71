//! The export of orders to PostgreSQL: every order event of the log
//! reaches a table exactly once, in order. This module is the PostgreSQL
//! side, the relay that tails the log into it (`relay`), and the state
//! both report (`status`).
//!
//! A relay uses it like this:
//! 1. [`PgExporter::connect`] (creates the tables if absent, refuses a
//!    schema newer than this binary), then [`PgExporter::cursor`]: the
//!    last LSN already in the database.
//! 2. Build an [`ExportReplica`] and feed it, through
//!    [`ExportReplica::apply`], a snapshot at or before the cursor (or the
//!    log from its start) and every record after it, in batches. Each
//!    batch gives its [`BatchRows`]. A snapshot's LSN is that of the last
//!    log record it includes; a long one may come in parts
//!    ([`BatchSource::SnapshotPart`], then [`BatchSource::SnapshotEnd`]).
//! 3. [`PgExporter::write_batch`] each batch's rows, skipping those
//!    wholly at or before the cursor ([`BatchRows::needs_writing`]).
//!    On an error, wait and write the same rows again; never apply the
//!    batch to the replica twice.
//!
//! **Exactly once.** A batch's rows and its cursor commit in one
//! transaction. A row changes only for a newer LSN than it holds, so a
//! batch written twice (a retry after a lost commit acknowledgement, or a
//! restart from a cursor behind the rows) leaves the rows as they were;
//! and since the relay resumes after the cursor that committed with the
//! rows, nothing is skipped. A snapshot's parts leave the cursor behind
//! until its end, so a relay that dies halfway writes all of it again.
//!
//! **Lanes.** The relay writes each batch over `export.connections`
//! connections at once, each lane with its share of the orders and a
//! cursor of its own (see `lanes`), because PostgreSQL runs a statement
//! on one core.
//!
//! Files, each depending only on those after it: `relay` (the session
//! loop, retries, lanes side by side), `rush` (yielding to a rush), `feed` (the tailer and the replica
//! on their own thread), `exporter` (connection, retry contract,
//! timeouts), `lanes` (the split and the lanes' cursors), `write` (the
//! batch's statements), `copy` (order rows by binary COPY, new ones
//! without a conflict check), `schema` (tables, prefix, version), `time`
//! (values in PostgreSQL's types), `rows` (events to rows through the
//! replica engine, and its memory cost), `error` ([`ExportError`]).
mod copy;
mod error;
mod exporter;
mod feed;
mod lanes;
pub mod relay;
mod rows;
mod rush;
mod schema;
mod status;
mod time;
mod write;

pub use error::{ExportError, PgTarget};
pub use exporter::{ExportOptions, PgExporter, CONNECT_TIMEOUT_DEFAULT, STATEMENT_TIMEOUT_DEFAULT};
pub use lanes::{lane_of, lane_stream, LANES_MAX};
pub use rows::{BatchRows, BatchSource, ExportBatch, ExportReplica, OrderRow, SaleRow};
pub use schema::{TablePrefix, SCHEMA_VERSION, TABLE_PREFIX_DEFAULT, TABLE_PREFIX_LEN_MAX};
pub use status::{ExportSnapshot, ExportStatus};
pub use write::WriteReport;

//! [`PgExporter`]: one connection to PostgreSQL that creates the schema,
//! reads the cursor and writes batches, each batch one transaction. It
//! opens a new connection on the next call after one broke, so the relay
//! only has to call again (after a backoff) when
//! [`ExportError::is_transient`] says so.
//!
//! **Timeouts.** The session's `statement_timeout` bounds each statement
//! on the server, lock waits included, and `idle_in_transaction_session_
//! timeout` ends a transaction whose client went quiet. A stalled network
//! is caught by the client: TCP's user timeout, and a deadline on the
//! whole batch, after which the connection is dropped, not reused.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

use super::copy::FreshAfter;
use super::error::{error_text, ErrorContext, ExportError, PgTarget};
use super::lanes::settle_cursors;
use super::rows::BatchRows;
use super::schema::{ensure_schema, TablePrefix, TABLE_PREFIX_DEFAULT};
use super::write::{cursor_from_bigint, write_rows, Statements, WriteReport};

/// Default [`ExportOptions::statement_timeout`].
pub const STATEMENT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Default [`ExportOptions::connect_timeout`].
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// What the exporter needs to know; the `[export]` settings it stands for
/// are named in brackets.
#[derive(Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// `postgres://user:password@host:port/dbname` or libpq's key=value
    /// form (`export.postgres_url`). Never printed.
    pub postgres_url: String,
    /// Prefix of every table (`export.table_prefix`, default `flashsale_`).
    pub table_prefix: String,
    /// Longest a statement may run, lock waits included, before the
    /// server cancels it: a transient [`ExportError::Timeout`].
    pub statement_timeout: Duration,
    /// Longest a connection may take to open.
    pub connect_timeout: Duration,
}

impl ExportOptions {
    /// The defaults, writing to `postgres_url`.
    pub fn new(postgres_url: impl Into<String>) -> ExportOptions {
        ExportOptions {
            postgres_url: postgres_url.into(),
            table_prefix: TABLE_PREFIX_DEFAULT.to_string(),
            statement_timeout: STATEMENT_TIMEOUT_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
        }
    }
}

/// Hand-written so the URL, and its password, stay out of `{:?}`.
impl std::fmt::Debug for ExportOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportOptions")
            .field("postgres_url", &"<hidden>")
            .field("table_prefix", &self.table_prefix)
            .field("statement_timeout", &self.statement_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// A connection in use: the client, its prepared statements, and the
/// task that drives its socket (ended with it).
struct Live {
    client: Client,
    statements: Statements,
    task: JoinHandle<()>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes export batches to PostgreSQL. Needs a tokio runtime.
pub struct PgExporter {
    config: Config,
    target: Arc<PgTarget>,
    prefix: TablePrefix,
    statement_timeout: Duration,
    connect_timeout: Duration,
    live: Option<Live>,
    /// What this exporter knows of the order rows' highest LSN: learnt
    /// from the database before a batch when unknown, moved by each
    /// commit, forgotten on any failure (a lost commit acknowledgement
    /// leaves unknown what the database holds, and so does another
    /// writer, whose rows a fresh insert would then collide with).
    fresh_after: FreshAfter,
}

impl PgExporter {
    /// Connects, creates the schema if absent and checks its version.
    pub async fn connect(options: ExportOptions) -> Result<PgExporter, ExportError> {
        let prefix = TablePrefix::new(&options.table_prefix)?;
        let mut config: Config =
            options
                .postgres_url
                .parse()
                .map_err(|e: tokio_postgres::Error| ExportError::BadUrl {
                    // The parser names the option, never its value.
                    reason: error_text(&e, None),
                })?;
        if config.get_user().is_none() {
            return Err(ExportError::BadUrl {
                reason: "it names no user".into(),
            });
        }
        if config.get_hosts().is_empty() {
            return Err(ExportError::BadUrl {
                reason: "it names no host".into(),
            });
        }
        config
            .connect_timeout(options.connect_timeout)
            .tcp_user_timeout(options.statement_timeout)
            .keepalives_idle(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("flashsale-export");
        }
        let mut exporter = PgExporter {
            target: Arc::new(target_of(&config)),
            config,
            prefix,
            statement_timeout: options.statement_timeout,
            connect_timeout: options.connect_timeout,
            live: None,
            fresh_after: FreshAfter(None),
        };
        exporter.live = Some(exporter.open().await?);
        Ok(exporter)
    }

    /// Where it writes, without the password: for logs.
    pub fn target(&self) -> &PgTarget {
        &self.target
    }

    pub fn prefix(&self) -> &TablePrefix {
        &self.prefix
    }

    /// Whether a connection is open now (it reopens on the next call).
    pub fn is_connected(&self) -> bool {
        self.live.as_ref().is_some_and(|l| !l.client.is_closed())
    }

    /// The LSN `stream` has been exported up to; 0 before its first batch
    /// (LSNs start at 1). The relay resumes after it.
    pub async fn cursor(&mut self, stream: &str) -> Result<u64, ExportError> {
        let live = self.take_live().await?;
        let ctx = self.ctx();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&stream];
        let read = live.client.query_opt(&live.statements.read_cursor, &params);
        let result = match tokio::time::timeout(self.batch_deadline(), read).await {
            Err(_) => Err(self.deadline_passed("reading the export cursor")),
            Ok(Err(e)) => Err(ctx.classify("reading the export cursor", &e)),
            Ok(Ok(None)) => Ok(0),
            Ok(Ok(Some(row))) => cursor_from_bigint(row.get(0)),
        };
        self.put_back(live, &result);
        result
    }

    /// The cursors of `lanes` lanes writing `stream` side by side, in lane
    /// order, after making the stored cursor rows exactly theirs (see
    /// `lanes`). The relay resumes from the lowest.
    pub async fn lane_cursors(
        &mut self,
        stream: &str,
        lanes: usize,
    ) -> Result<Vec<u64>, ExportError> {
        let mut live = self.take_live().await?;
        let ctx = self.ctx();
        let prefix = &self.prefix;
        let settle = settle_cursors(&mut live.client, prefix, stream, lanes, |what, e| {
            ctx.classify(what, &e)
        });
        let result = match tokio::time::timeout(self.batch_deadline(), settle).await {
            Err(_) => Err(self.deadline_passed("reading the export cursors")),
            Ok(result) => result,
        };
        self.put_back(live, &result);
        result
    }

    /// Writes one batch's rows and moves `stream`'s cursor to
    /// `rows.last_lsn`, in one transaction: both or neither. Calling it
    /// again with the same rows, or with older ones, changes nothing, so
    /// after any error it is safe to retry, even when the error left it
    /// unknown whether the commit happened.
    pub async fn write_batch(
        &mut self,
        stream: &str,
        rows: &BatchRows,
    ) -> Result<WriteReport, ExportError> {
        let mut live = self.take_live().await?;
        let ctx = self.ctx();
        let known = self.fresh_after;
        let work = async {
            let fresh_after = match known {
                FreshAfter(Some(_)) => known,
                FreshAfter(None) => {
                    let row = (live
                        .client
                        .query_one(&live.statements.max_order_lsn, &[])
                        .await)
                        .map_err(|e| ctx.classify("reading the orders' highest LSN", &e))?;
                    FreshAfter(Some(cursor_from_bigint(row.get(0))?))
                }
            };
            let tx = (live.client.transaction().await)
                .map_err(|e| ctx.classify("beginning a batch", &e))?;
            let report = write_rows(
                &tx,
                &live.statements,
                stream,
                rows,
                fresh_after,
                |what, e| ctx.classify(what, &e),
            )
            .await?;
            tx.commit()
                .await
                .map_err(|e| ctx.classify("committing a batch", &e))?;
            Ok((report, fresh_after))
        };
        let result = match tokio::time::timeout(self.batch_deadline(), work).await {
            Ok(result) => result,
            Err(_) => Err(self.deadline_passed("writing a batch")),
        };
        self.fresh_after = match &result {
            // Every row it wrote is at or before the batch's last LSN.
            Ok((_, FreshAfter(known))) => FreshAfter(known.map(|k| k.max(rows.last_lsn))),
            Err(_) => FreshAfter(None),
        };
        let result = result.map(|(report, _)| report);
        self.put_back(live, &result);
        result
    }

    /// The open connection, or a new one if there is none or it closed.
    async fn take_live(&mut self) -> Result<Live, ExportError> {
        match self.live.take() {
            Some(live) if !live.client.is_closed() => Ok(live),
            _ => self.open().await,
        }
    }

    /// Keeps the connection for the next call unless `result` says it broke.
    fn put_back<T>(&mut self, live: Live, result: &Result<T, ExportError>) {
        let broken = matches!(result, Err(e) if e.breaks_connection());
        if !broken {
            self.live = Some(live);
        }
    }

    fn ctx(&self) -> ErrorContext<'_> {
        ErrorContext {
            target: &self.target,
            password: self.config.get_password(),
            timeout_ms: self.statement_timeout.as_millis() as u64,
        }
    }

    /// The client's own limit on a batch: past every statement's timeout
    /// (four statements and a commit), so the server's cancel, which
    /// leaves the connection usable, normally comes first.
    fn batch_deadline(&self) -> Duration {
        self.statement_timeout * 5 + Duration::from_secs(1)
    }

    fn deadline_passed(&self, what: &'static str) -> ExportError {
        ExportError::Timeout {
            target: self.target.clone(),
            what,
            timeout_ms: self.batch_deadline().as_millis() as u64,
        }
    }

    /// Opens a connection, sets up its session, ensures the schema and
    /// prepares the statements.
    async fn open(&self) -> Result<Live, ExportError> {
        let ctx = self.ctx();
        let deadline = self.connect_timeout + self.batch_deadline();
        let opening = async {
            let (mut client, connection) =
                (self.config.connect(NoTls).await).map_err(|e| ctx.classify_connect(&e))?;
            // Its error, if any, reaches us through the client's next call.
            let task = tokio::spawn(async move {
                let _ = connection.await;
            });
            let statements = self.set_up(&mut client, &ctx).await?;
            Ok(Live {
                client,
                statements,
                task,
            })
        };
        match tokio::time::timeout(deadline, opening).await {
            Ok(result) => result,
            Err(_) => Err(ExportError::Timeout {
                target: self.target.clone(),
                what: "opening a connection",
                timeout_ms: deadline.as_millis() as u64,
            }),
        }
    }

    async fn set_up(
        &self,
        client: &mut Client,
        ctx: &ErrorContext<'_>,
    ) -> Result<Statements, ExportError> {
        // The schema's DDL gets the connect timeout: it is rare, and may
        // wait for a lock a batch statement would not be allowed to.
        let ddl = ErrorContext {
            timeout_ms: self.connect_timeout.as_millis() as u64,
            ..*ctx
        };
        ensure_schema(client, &self.prefix, &ddl).await?;
        let ms = self.statement_timeout.as_millis();
        let session = format!(
            "SET statement_timeout = {ms}; SET idle_in_transaction_session_timeout = {}",
            ms * 2
        );
        (client.batch_execute(&session).await)
            .map_err(|e| ctx.classify("setting up the session", &e))?;
        (Statements::prepare(client, &self.prefix).await)
            .map_err(|e| ctx.classify("preparing the export statements", &e))
    }
}

/// The first host and port, the database and the user: what messages name.
fn target_of(config: &Config) -> PgTarget {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => String::new(),
    };
    let user = config.get_user().unwrap_or_default().to_string();
    PgTarget {
        host,
        port: config.get_ports().first().copied().unwrap_or(5432),
        // PostgreSQL's default database is the user's name.
        dbname: config.get_dbname().unwrap_or(&user).to_string(),
        user,
    }
}

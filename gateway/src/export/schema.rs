//! The export's tables: [`TablePrefix`] (validated, so names can be pasted
//! into SQL unquoted), the DDL, and [`ensure_schema`], which creates what is
//! missing and refuses a database whose schema is newer than this binary.
//!
//! The version lives in `<prefix>schema_version`, one row. Creation runs in
//! one transaction under an advisory lock keyed by the prefix, so two
//! exporters starting at once neither race nor see half a schema. A second
//! run finds the row at [`SCHEMA_VERSION`] and changes nothing.

use tokio_postgres::Client;

use super::error::{ErrorContext, ExportError};

/// The schema this binary writes. Raise it with a migration step in
/// [`ensure_schema`] whenever the tables change.
pub const SCHEMA_VERSION: i32 = 1;

/// Longest prefix: keeps every derived name (the longest is the prefix
/// plus `orders_updated_lsn`) well inside PostgreSQL's 63 bytes.
pub const TABLE_PREFIX_LEN_MAX: usize = 32;

/// Default `export.table_prefix`.
pub const TABLE_PREFIX_DEFAULT: &str = "flashsale_";

/// A table-name prefix: `[a-z_][a-z0-9_]*`, 1 to 32 bytes. Being that, it
/// needs no quoting and cannot inject SQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TablePrefix(String);

impl TablePrefix {
    pub fn new(prefix: &str) -> Result<TablePrefix, ExportError> {
        let bytes = prefix.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || *b == b'_');
        let rest_ok = bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if !first_ok || !rest_ok || bytes.len() > TABLE_PREFIX_LEN_MAX {
            return Err(ExportError::BadPrefix {
                prefix: prefix.to_string(),
            });
        }
        Ok(TablePrefix(prefix.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `<prefix><name>`.
    pub fn table(&self, name: &str) -> String {
        format!("{}{name}", self.0)
    }
}

/// Creates the tables if absent and checks the version. Returns the
/// version found (or written). Each statement may take up to
/// `ctx.timeout_ms`: DDL is rare and may wait for locks, so the caller
/// gives it longer than a batch's statements get.
pub(crate) async fn ensure_schema(
    client: &mut Client,
    prefix: &TablePrefix,
    ctx: &ErrorContext<'_>,
) -> Result<i32, ExportError> {
    let what = "creating the export schema";
    let err = |e: tokio_postgres::Error| ctx.classify(what, &e);
    let tx = client.transaction().await.map_err(err)?;
    let timeout = format!("SET LOCAL statement_timeout = {}", ctx.timeout_ms);
    tx.batch_execute(&timeout).await.map_err(err)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&prefix.table("schema")],
    )
    .await
    .map_err(err)?;
    tx.batch_execute(&version_table_sql(prefix))
        .await
        .map_err(err)?;
    let select = format!("SELECT version FROM {}", prefix.table("schema_version"));
    let found: Option<i32> = tx
        .query_opt(&select, &[])
        .await
        .map_err(err)?
        .map(|r| r.get(0));
    match found {
        Some(found) if found > SCHEMA_VERSION => {
            return Err(ExportError::SchemaTooNew {
                target: ctx.target.clone(),
                found,
                known: SCHEMA_VERSION,
            })
        }
        // Version 1 is the first: nothing older to migrate from yet.
        Some(found) => return Ok(found),
        None => {}
    }
    tx.batch_execute(&tables_sql(prefix)).await.map_err(err)?;
    let insert = format!(
        "INSERT INTO {} (version) VALUES ($1)",
        prefix.table("schema_version")
    );
    tx.execute(&insert, &[&SCHEMA_VERSION]).await.map_err(err)?;
    tx.commit().await.map_err(err)?;
    Ok(SCHEMA_VERSION)
}

/// The version table: one row (`one` is its key and can only be true).
fn version_table_sql(p: &TablePrefix) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {p}schema_version (
            one boolean PRIMARY KEY DEFAULT true CHECK (one),
            version integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )",
        p = p.as_str()
    )
}

/// The three tables and the indexes a consumer needs: orders by user, by
/// SKU and state, and by `updated_lsn` for change feeds.
fn tables_sql(p: &TablePrefix) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {p}sales (
            sku text PRIMARY KEY,
            stock bigint NOT NULL,
            remaining bigint NOT NULL,
            reserved bigint NOT NULL,
            paid bigint NOT NULL,
            per_user_limit integer NOT NULL,
            state text NOT NULL CHECK (state IN ('open', 'sold_out', 'paused', 'ended')),
            starts_at timestamptz NULL,
            ends_at timestamptz NULL,
            reservation_ttl_ms bigint NOT NULL,
            updated_lsn bigint NOT NULL
        );
        CREATE TABLE IF NOT EXISTS {p}orders (
            order_id text PRIMARY KEY,
            sku text NOT NULL,
            user_id text NOT NULL,
            qty integer NOT NULL,
            state text NOT NULL CHECK (state IN ('reserved', 'paid', 'cancelled', 'expired')),
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            paid_at timestamptz NULL,
            cancelled_at timestamptz NULL,
            expired_at timestamptz NULL,
            updated_lsn bigint NOT NULL
        );
        CREATE INDEX IF NOT EXISTS {p}orders_user_id ON {p}orders (user_id);
        CREATE INDEX IF NOT EXISTS {p}orders_sku_state ON {p}orders (sku, state);
        CREATE INDEX IF NOT EXISTS {p}orders_updated_lsn ON {p}orders (updated_lsn);
        CREATE TABLE IF NOT EXISTS {p}export_cursor (
            stream text PRIMARY KEY,
            lsn bigint NOT NULL,
            updated_at timestamptz NOT NULL
        );",
        p = p.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        for ok in ["flashsale_", "a", "_", "x1_", &"a".repeat(32)] {
            assert!(TablePrefix::new(ok).is_ok(), "{ok:?}");
        }
        for bad in ["", "1a", "A", "a-b", "a b", "a;drop", &"a".repeat(33), "é"] {
            let err = TablePrefix::new(bad).unwrap_err();
            assert!(err.to_string().contains("export.table_prefix"), "{err}");
        }
    }
}

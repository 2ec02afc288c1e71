//! Lanes: the export writes over several connections at once, each lane
//! owning a fixed share of the orders (by a hash of the order id) and a
//! cursor of its own. PostgreSQL runs one statement on one core, so one
//! connection leaves the others idle while it inserts and indexes rows;
//! with a lane per core the rows of one batch are written side by side.
//!
//! **Exactly once, per lane.** Lane `k` writes its share of a batch and
//! moves its own cursor (`<stream>` for lane 0, `<stream>.<k>` for the
//! others) in one transaction, so each lane is the single-connection
//! argument again: its rows and its cursor commit together, and a replay
//! changes none of its rows. Lane 0 also carries the sale rows. The relay
//! waits for every lane's commit before the next batch, so the lanes'
//! cursors differ by at most one batch, and the export's position is the
//! lowest of them: a change feed that reads rows with `updated_lsn` at or
//! below `min(lsn)` over the lanes' cursors has every row it will ever get
//! up to there.
//!
//! **Changing the number of lanes** moves orders between lanes. Every
//! session writes all its lanes' cursor rows before its first batch, so a
//! set of rows other than exactly lanes `0..n` means the layout changed:
//! [`settle_cursors`] then puts every lane at the lowest cursor found, in
//! one transaction. The lanes write again what lies past it, which the
//! rows' LSN guard makes harmless.

use tokio_postgres::Client;

use super::error::ExportError;
use super::rows::BatchRows;
use super::schema::TablePrefix;
use super::write::cursor_from_bigint;

/// Most lanes `export.connections` allows.
pub const LANES_MAX: usize = 16;

/// The cursor's stream name of lane `k` writing `stream`.
pub fn lane_stream(stream: &str, k: usize) -> String {
    match k {
        0 => stream.to_string(),
        _ => format!("{stream}.{k}"),
    }
}

/// The lane of an order among `lanes`: a multiplicative hash of its id, so
/// the consecutive ids of one sale spread evenly whatever the count.
pub fn lane_of(order_id: u64, lanes: usize) -> usize {
    debug_assert!(lanes > 0);
    ((order_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % lanes as u64) as usize
}

impl BatchRows {
    /// The batch as `lanes` batches: each order row in its lane's, the
    /// sale rows in lane 0's. Every part keeps the batch's LSN and source,
    /// so every lane's cursor moves to the same place, an empty part's
    /// too.
    pub fn split_lanes(self, lanes: usize) -> Vec<BatchRows> {
        let mut parts: Vec<BatchRows> = (0..lanes.max(1))
            .map(|_| BatchRows {
                sales: Vec::new(),
                orders: Vec::new(),
                last_lsn: self.last_lsn,
                source: self.source,
                events: 0,
            })
            .collect();
        let n = parts.len();
        parts[0].sales = self.sales;
        parts[0].events = self.events;
        for row in self.orders {
            parts[lane_of(row.order_id, n)].orders.push(row);
        }
        parts
    }
}

/// Reads the cursors of `lanes` lanes writing `stream`, in lane order,
/// first making the stored rows exactly those lanes' (see the module
/// docs): all at 0 in a new database, all at the lowest found after a
/// change of layout. One transaction, the rows locked while it decides.
pub(crate) async fn settle_cursors(
    client: &mut Client,
    p: &TablePrefix,
    stream: &str,
    lanes: usize,
    on_err: impl Fn(&'static str, tokio_postgres::Error) -> ExportError,
) -> Result<Vec<u64>, ExportError> {
    let what = "reading the export cursors";
    let table = p.table("export_cursor");
    let tx = client.transaction().await.map_err(|e| on_err(what, e))?;
    let pattern = format!("{}.%", like_escape(stream));
    let select =
        format!("SELECT stream, lsn FROM {table} WHERE stream = $1 OR stream LIKE $2 FOR UPDATE");
    let found = (tx.query(&select, &[&stream, &pattern]).await).map_err(|e| on_err(what, e))?;
    let mut by_lane: Vec<Option<u64>> = vec![None; lanes];
    let mut foreign = false;
    let mut lowest = u64::MAX;
    for row in &found {
        let name: &str = row.get(0);
        let lsn = cursor_from_bigint(row.get(1))?;
        lowest = lowest.min(lsn);
        match (0..lanes).find(|&k| lane_stream(stream, k) == name) {
            Some(k) => by_lane[k] = Some(lsn),
            None => foreign = true,
        }
    }
    if !foreign && by_lane.iter().all(Option::is_some) {
        tx.commit().await.map_err(|e| on_err(what, e))?;
        return Ok(by_lane.into_iter().flatten().collect());
    }
    // A new database, or another layout: every lane at the lowest cursor.
    let start = if found.is_empty() { 0 } else { lowest };
    let what = "settling the export cursors";
    let delete = format!("DELETE FROM {table} WHERE stream = $1 OR stream LIKE $2");
    (tx.execute(&delete, &[&stream, &pattern]).await).map_err(|e| on_err(what, e))?;
    let names: Vec<String> = (0..lanes).map(|k| lane_stream(stream, k)).collect();
    let insert = format!(
        "INSERT INTO {table} (stream, lsn, updated_at) SELECT unnest($1::text[]), $2, now()"
    );
    let start_i64 = i64::try_from(start).map_err(|_| ExportError::OutOfRange {
        what: "the export cursor",
    })?;
    (tx.execute(&insert, &[&names, &start_i64]).await).map_err(|e| on_err(what, e))?;
    tx.commit().await.map_err(|e| on_err(what, e))?;
    if !found.is_empty() {
        tracing::info!(
            lanes,
            from = start,
            "export: the number of lanes changed; every lane resumes from the lowest cursor"
        );
    }
    Ok(vec![start; lanes])
}

/// `s` with LIKE's wildcards escaped (the default escape is `\`).
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_share_a_sale_evenly() {
        for lanes in 1..=LANES_MAX {
            let mut counts = vec![0u32; lanes];
            for seq in 0..100_000u64 {
                counts[lane_of((3 << 40) | seq, lanes)] += 1;
            }
            let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            // Within 5 % of an even share.
            let even = 100_000 / lanes as u32;
            assert!(max - min < even / 20 + 1, "{lanes} lanes: {counts:?}");
        }
    }

    #[test]
    fn lane_streams() {
        assert_eq!(lane_stream("orders", 0), "orders");
        assert_eq!(lane_stream("orders", 3), "orders.3");
        assert_eq!(like_escape("a_b%c\\"), "a\\_b\\%c\\\\");
    }
}

//! How every query runs: through the connection's statement cache (prepared
//! once per connection, then one round trip each), with qun's unsigned ids
//! stored as `BIGINT`, and with the cluster-wide advisory locks in one place.

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::error::{corrupt, Outcome};

/// A transaction on a pooled connection.
pub(crate) type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// Query parameters.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Rows of a cached statement.
pub(crate) async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> Outcome<Vec<Row>> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query(&statement, params).await?)
}

/// The row of a cached statement, if any.
pub(crate) async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> Outcome<Option<Row>> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&statement, params).await?)
}

/// The one row of a cached statement.
pub(crate) async fn query_one<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> Outcome<Row> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query_one(&statement, params).await?)
}

/// Runs a cached statement; returns the number of rows it changed.
pub(crate) async fn execute<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> Outcome<u64> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.execute(&statement, params).await?)
}

/// A qun id or number as stored. Ids above `i64::MAX` cannot be stored, so
/// they name nothing: callers answer "none" or `NotFound`.
pub(crate) fn key(id: u64) -> Option<i64> {
    i64::try_from(id).ok()
}

/// A stored non-negative number.
pub(crate) fn u64_at(row: &Row, index: usize) -> Outcome<u64> {
    let value: i64 = row.try_get(index)?;
    u64::try_from(value).map_err(|_| corrupt(&format!("negative number {value}")))
}

/// A stored non-negative number or NULL.
pub(crate) fn opt_u64_at(row: &Row, index: usize) -> Outcome<Option<u64>> {
    let value: Option<i64> = row.try_get(index)?;
    value
        .map(|v| u64::try_from(v).map_err(|_| corrupt(&format!("negative number {v}"))))
        .transpose()
}

/// A stored count or setting that fits 32 bits.
pub(crate) fn u32_at(row: &Row, index: usize) -> Outcome<u32> {
    let value: i64 = row.try_get(index)?;
    u32::try_from(value).map_err(|_| corrupt(&format!("out-of-range number {value}")))
}

/// A stored count or setting that fits 32 bits, or NULL.
pub(crate) fn opt_u32_at(row: &Row, index: usize) -> Outcome<Option<u32>> {
    let value: Option<i64> = row.try_get(index)?;
    value
        .map(|v| u32::try_from(v).map_err(|_| corrupt(&format!("out-of-range number {v}"))))
        .transpose()
}

/// Transaction-scoped advisory locks: one per thing that every node must do
/// one at a time. Keys share a prefix ("qun" in ASCII) so that other users
/// of the same database are unlikely to collide with them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lock {
    /// Applying schema migrations.
    Migrations,
    /// Choosing user numbers (automatic and chosen ones alike).
    UserNumbers,
    /// Choosing group numbers and counting an owner's groups.
    GroupNumbers,
}

impl Lock {
    fn key(self) -> i64 {
        const PREFIX: i64 = 0x7175_6e00 << 32;
        PREFIX
            | match self {
                Lock::Migrations => 1,
                Lock::UserNumbers => 2,
                Lock::GroupNumbers => 3,
            }
    }
}

/// Takes `lock` until the end of the transaction, waiting for whichever
/// node holds it.
pub(crate) async fn lock<C: GenericClient>(c: &C, lock: Lock) -> Outcome<()> {
    execute(c, "SELECT pg_advisory_xact_lock($1)", &[&lock.key()]).await?;
    Ok(())
}

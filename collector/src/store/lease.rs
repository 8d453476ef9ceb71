//! Leases for scheduled work, so that among replicas sharing one database only one runs a
//! job at a time. A lease is held until `expires_ns`; the holder renews it before then, and
//! anyone may take it after.

use sqlx::AssertSqlSafe;

use super::dialect::ignore_duplicates;
use super::{Result, Store};

impl Store {
    /// Takes or renews the lease `name` for `holder` until `now + ttl`. True when held.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now_ns: i64,
        ttl_ns: i64,
    ) -> Result<bool> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO leases (name, holder, expires_ns) VALUES (?, ?, ?){}",
            ignore_duplicates(self.backend, "name")
        )))
        .bind(name)
        .bind(holder)
        .bind(now_ns + ttl_ns)
        .execute(&self.pool)
        .await?;
        let taken = sqlx::query("UPDATE leases SET holder = ?, expires_ns = ? WHERE name = ? AND (holder = ? OR expires_ns < ?)")
            .bind(holder)
            .bind(now_ns + ttl_ns)
            .bind(name)
            .bind(holder)
            .bind(now_ns)
            .execute(&self.pool)
            .await?;
        if taken.rows_affected() == 1 {
            return Ok(true);
        }
        // MySQL reports 0 affected rows when the values did not change (renewal in the same
        // nanosecond); read back to be sure.
        let row: Option<(String,)> = sqlx::query_as("SELECT holder FROM leases WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some_and(|(current,)| current == holder))
    }

    /// Gives the lease up (on shutdown), so another replica can take it at once.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = ? AND holder = ?")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

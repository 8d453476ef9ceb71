//! Rollups (5-minute and 1-hour averages and maxima of the raw samples) and retention.
//!
//! Rollups are recomputed from the raw rows, never accumulated: recomputing a bucket is
//! idempotent, so late or re-delivered samples only make the job redo some buckets. Ingest
//! lowers `rollup_state.dirty_from_ns` to the oldest sample it wrote. The job rolls up only
//! buckets that are over ([`SETTLE`] ago): it first takes the dirty range (moves the mark to
//! the end of what it will compute, keeping the start in `taken_from_ns`), recomputes it in
//! chunks, then clears `taken_from_ns`. A sample written meanwhile into a taken bucket
//! lowers the mark again, and a run that died leaves its range taken for the next one. The
//! buckets not rolled up yet are aggregated from the raw rows when read
//! ([`Store::rolled_up_to`]).
//!
//! A chunk is recomputed a slice of containers at a time (about [`ROWS_PER_STATEMENT`] raw
//! rows), each statement followed by a pause as long as it took: at 10,000 agents × 50
//! containers a 5-minute bucket holds 5 million raw rows, and one statement over all of them
//! ran for 40 s and held ingest up while it did.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Row};

use super::dialect::{by_primary_key, delete_limited};
use super::ingest::ABSENT_BITS;
use super::{Backend, Result, Store};

const NS_PER_S: i64 = 1_000_000_000;
/// Buckets recomputed per statement: a day of 5-minute buckets, a week of hourly ones.
const CHUNK_BUCKETS: i64 = 288;
/// How long after a bucket ends the job rolls it up: samples reach the store seconds after
/// they are taken, so a bucket is not recomputed for every sample that lands in it. Later
/// ones (an agent replaying its spool) mark it dirty again.
const SETTLE: i64 = 60 * NS_PER_S;
/// Attempts to take a dirty range that ingest keeps lowering, before waiting for the next run.
const TAKE_ATTEMPTS: usize = 5;
/// Raw rows one rollup statement is meant to read, at most: well under a second of the
/// database's time even on a saturated machine (0.56 s the longest seen; BENCHMARKS.md). A
/// statement reads a slice of containers by primary key, one contiguous stretch of
/// `(container_id, time_ns)` each.
const ROWS_PER_STATEMENT: i64 = 20_000;
/// The most containers one statement recomputes (a 5-minute bucket at 30-second sweeps is
/// 10 rows per container, 10,000 in all).
pub const SLICE_CONTAINERS: usize = 1000;
/// Rows deleted per statement by retention, so no statement holds locks for long.
const DELETE_CHUNK: u32 = 10_000;

/// The resolution of a stats series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Every sample (30 s apart by default).
    Raw,
    #[serde(rename = "5m")]
    FiveMinutes,
    #[serde(rename = "1h")]
    OneHour,
}

impl Resolution {
    /// The spacing of points; for raw data, the default sweep interval.
    pub fn step_ns(self) -> i64 {
        match self {
            Resolution::Raw => 30 * NS_PER_S,
            Resolution::FiveMinutes => 300 * NS_PER_S,
            Resolution::OneHour => 3600 * NS_PER_S,
        }
    }

    pub(super) fn table(self) -> &'static str {
        match self {
            Resolution::Raw => "container_stats",
            Resolution::FiveMinutes => "container_stats_5m",
            Resolution::OneHour => "container_stats_1h",
        }
    }

    fn state_name(self) -> &'static str {
        match self {
            Resolution::Raw => "raw",
            Resolution::FiveMinutes => "5m",
            Resolution::OneHour => "1h",
        }
    }

    pub fn coarser(self) -> Option<Resolution> {
        match self {
            Resolution::Raw => Some(Resolution::FiveMinutes),
            Resolution::FiveMinutes => Some(Resolution::OneHour),
            Resolution::OneHour => None,
        }
    }

    /// The finest resolution whose data still covers `from` and that keeps the range within
    /// `max_points`; hourly when none does.
    pub fn choose(
        from_ns: i64,
        to_ns: i64,
        now_ns: i64,
        max_points: u32,
        retention: &Retention,
    ) -> Resolution {
        let span = (to_ns - from_ns).max(0);
        [Resolution::Raw, Resolution::FiveMinutes]
            .into_iter()
            .find(|r| {
                let kept_since = now_ns.saturating_sub(retention.of(*r).as_nanos() as i64);
                from_ns >= kept_since && span / r.step_ns() <= i64::from(max_points)
            })
            .unwrap_or(Resolution::OneHour)
    }
}

/// How long each kind of data is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub raw: Duration,
    pub five_minutes: Duration,
    pub one_hour: Duration,
    pub activity: Duration,
    pub usage: Duration,
    pub profiles: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Retention {
            raw: Duration::from_secs(7 * DAY),
            five_minutes: Duration::from_secs(90 * DAY),
            one_hour: Duration::from_secs(400 * DAY),
            activity: Duration::from_secs(90 * DAY),
            usage: Duration::from_secs(90 * DAY),
            profiles: Duration::from_secs(30 * DAY),
        }
    }
}

impl Retention {
    pub fn of(&self, resolution: Resolution) -> Duration {
        match resolution {
            Resolution::Raw => self.raw,
            Resolution::FiveMinutes => self.five_minutes,
            Resolution::OneHour => self.one_hour,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RollupReport {
    /// Buckets (per container) written, per resolution: 5 m, 1 h.
    pub buckets: [u64; 2],
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    pub deleted: u64,
}

/// Gauges and rates rolled up, with the column names they have in the raw table, and the
/// `absent` bit of those that are not NULL when not measured (rates already are).
const ROLLED: &[(&str, &str, Option<i64>)] = &[
    ("cpu_percent", "cpu_percent", None),
    ("memory_usage", "memory_usage_bytes", Some(4)),
    ("memory_working_set", "memory_working_set_bytes", Some(4)),
    ("net_rx_bytes_per_s", "net_rx_bytes_per_s", None),
    ("net_tx_bytes_per_s", "net_tx_bytes_per_s", None),
    ("block_read_bytes_per_s", "block_read_bytes_per_s", None),
    ("block_write_bytes_per_s", "block_write_bytes_per_s", None),
    ("pids", "pids", Some(8)),
];

impl Store {
    /// Recomputes every bucket that has new raw data since the last run and ended at least
    /// [`SETTLE`] before `now_ns`.
    pub async fn run_rollups(&self, now_ns: i64) -> Result<RollupReport> {
        let mut report = RollupReport::default();
        for (i, resolution) in [Resolution::FiveMinutes, Resolution::OneHour]
            .into_iter()
            .enumerate()
        {
            let width = resolution.step_ns();
            let settled = now_ns - SETTLE;
            let limit = settled - settled.rem_euclid(width);
            let Some(from) = self.take_dirty(resolution, limit).await? else {
                continue;
            };
            let mut start = from - from.rem_euclid(width);
            while start < limit {
                let end = (start + CHUNK_BUCKETS * width).min(limit);
                report.buckets[i] += self.recompute(resolution, start, end).await?;
                start = end;
            }
            sqlx::query("UPDATE rollup_state SET taken_from_ns = ? WHERE name = ?")
                .bind(i64::MAX)
                .bind(resolution.state_name())
                .execute(&self.pool)
                .await?;
        }
        Ok(report)
    }

    /// Takes what `resolution` must recompute before `limit` (a bucket boundary): moves the
    /// dirty mark to `limit` and keeps where the work starts in `taken_from_ns` (with what
    /// an unfinished run left there). Returns where the work starts; `None` when nothing
    /// before `limit` is dirty, or ingest kept lowering the mark.
    async fn take_dirty(&self, resolution: Resolution, limit: i64) -> Result<Option<i64>> {
        for _ in 0..TAKE_ATTEMPTS {
            let Some(row) =
                sqlx::query("SELECT dirty_from_ns, taken_from_ns FROM rollup_state WHERE name = ?")
                    .bind(resolution.state_name())
                    .fetch_optional(&self.pool)
                    .await?
            else {
                return Ok(None);
            };
            let dirty: i64 = row.try_get(0)?;
            let taken: i64 = row.try_get(1)?;
            let from = dirty.min(taken);
            if from >= limit {
                return Ok(None);
            }
            // Only if ingest did not lower the mark since it was read: what it marked is
            // then part of the range taken, or at or after `limit` (still dirty).
            let took = sqlx::query(
                "UPDATE rollup_state SET dirty_from_ns = ?, taken_from_ns = ? \
                 WHERE name = ? AND dirty_from_ns = ?",
            )
            .bind(dirty.max(limit))
            .bind(from)
            .bind(resolution.state_name())
            .bind(dirty)
            .execute(&self.pool)
            .await?;
            if took.rows_affected() == 1 {
                return Ok(Some(from));
            }
        }
        Ok(None)
    }

    /// Where `resolution`'s rollup stops being complete: every bucket before this time
    /// (a bucket boundary) equals what its raw rows say; later ones (still filling, or
    /// marked dirty by late samples) must be aggregated from the raw rows. `i64::MAX` when
    /// no sample was ever written.
    pub(super) async fn rolled_up_to(&self, resolution: Resolution) -> Result<i64> {
        let row =
            sqlx::query("SELECT dirty_from_ns, taken_from_ns FROM rollup_state WHERE name = ?")
                .bind(resolution.state_name())
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else {
            return Ok(i64::MAX);
        };
        let from = row.try_get::<i64, _>(0)?.min(row.try_get::<i64, _>(1)?);
        Ok(if from == i64::MAX {
            from
        } else {
            from - from.rem_euclid(resolution.step_ns())
        })
    }

    /// Recomputes the buckets of `resolution` in [start, end) from the raw rows, for every
    /// container, a slice at a time in id order: as many containers as make about
    /// [`ROWS_PER_STATEMENT`] rows at the default sweep, at most [`SLICE_CONTAINERS`]. After
    /// each statement the job waits as long as the statement took, so that it takes at most
    /// half of the database's time from ingest. Containers registered meanwhile have higher
    /// ids and are still reached.
    async fn recompute(&self, resolution: Resolution, start: i64, end: i64) -> Result<u64> {
        let rows_per_container = ((end - start) / Resolution::Raw.step_ns()).max(1);
        let per_slice = (ROWS_PER_STATEMENT / rows_per_container).clamp(1, SLICE_CONTAINERS as i64);
        // Every slice but the last has `per_slice` containers: they share one statement text.
        let full_slice_sql: Arc<str> = self.rollup_sql(resolution, per_slice as usize).into();
        let mut buckets = 0;
        let mut after = 0_i64;
        loop {
            let slice: Vec<i64> =
                sqlx::query_scalar("SELECT id FROM containers WHERE id > ? ORDER BY id LIMIT ?")
                    .bind(after)
                    .bind(per_slice)
                    .fetch_all(&self.pool)
                    .await?;
            let Some(&last) = slice.last() else {
                return Ok(buckets);
            };
            let sql = if slice.len() as i64 == per_slice {
                full_slice_sql.clone()
            } else {
                self.rollup_sql(resolution, slice.len()).into()
            };
            let began = Instant::now();
            buckets += self.recompute_slice(sql, start, end, &slice).await?;
            tokio::time::sleep(began.elapsed()).await;
            after = last;
        }
    }

    /// Recomputes the buckets in [start, end) of the containers `slice`, with `sql` from
    /// [`Store::rollup_sql`] for as many containers.
    async fn recompute_slice(
        &self,
        sql: Arc<str>,
        start: i64,
        end: i64,
        slice: &[i64],
    ) -> Result<u64> {
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for id in slice {
            query = query.bind(id);
        }
        let result = query.bind(start).bind(end).execute(&self.pool).await?;
        Ok(result.rows_affected())
    }

    /// The statement that recomputes `resolution`'s buckets of `containers` containers from
    /// the raw rows; it binds their ids, then the range's start and end.
    fn rollup_sql(&self, resolution: Resolution, containers: usize) -> String {
        let width = resolution.step_ns();
        let mut columns = vec!["container_id", "bucket_ns", "samples"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        let mut selects = vec![
            "container_id".to_owned(),
            format!(
                "time_ns - {modulo} AS bucket",
                modulo = self.modulo("time_ns", width)
            ),
            "COUNT(*)".to_owned(),
        ];
        for (name, raw, absent_bit) in ROLLED {
            columns.push(format!("{name}_avg"));
            columns.push(format!("{name}_max"));
            // Samples that did not measure a group do not count towards it; a bucket where
            // none did reads 0 and carries the group's `absent` bit.
            let value = match absent_bit {
                Some(bit) => format!("CASE WHEN absent & {bit} = 0 THEN {raw} END"),
                None => (*raw).to_owned(),
            };
            let (avg, max) = match absent_bit {
                Some(_) => (
                    format!("COALESCE(AVG({value}), 0)"),
                    format!("COALESCE(MAX({value}), 0)"),
                ),
                None => (format!("AVG({value})"), format!("MAX({value})")),
            };
            selects.push(avg);
            selects.push(max);
        }
        columns.push("memory_limit_max".to_owned());
        selects.push("MAX(memory_limit_bytes)".to_owned());
        columns.push("absent".to_owned());
        selects.push(
            ABSENT_BITS
                .iter()
                .map(|(_, bit)| format!("MIN(absent & {bit})"))
                .collect::<Vec<_>>()
                .join(" + "),
        );
        let updated: Vec<&str> = columns[2..].iter().map(String::as_str).collect();
        format!(
            "INSERT INTO {table} ({columns}) SELECT {selects} FROM {raw} \
             WHERE container_id IN ({ids}) AND time_ns >= ? AND time_ns < ? \
             GROUP BY container_id, bucket{upsert}",
            table = resolution.table(),
            raw = by_primary_key(self.backend, Resolution::Raw.table()),
            ids = vec!["?"; containers].join(", "),
            columns = columns.join(", "),
            selects = selects.join(", "),
            upsert = super::dialect::upsert(self.backend, &["container_id", "bucket_ns"], &updated),
        )
    }

    fn modulo(&self, column: &str, width: i64) -> String {
        match self.backend {
            Backend::MySql => format!("MOD({column}, {width})"),
            Backend::Sqlite => format!("({column} % {width})"),
        }
    }

    /// Deletes what is older than its retention, in chunks.
    pub async fn apply_retention(
        &self,
        now_ns: i64,
        retention: &Retention,
    ) -> Result<RetentionReport> {
        let cutoff =
            |keep: Duration| now_ns.saturating_sub(keep.as_nanos().min(i64::MAX as u128) as i64);
        let targets: [(&str, &[&str], &str, Duration); 6] = [
            (
                "container_stats",
                &["container_id", "time_ns"],
                "time_ns",
                retention.raw,
            ),
            (
                "container_stats_5m",
                &["container_id", "bucket_ns"],
                "bucket_ns",
                retention.five_minutes,
            ),
            (
                "container_stats_1h",
                &["container_id", "bucket_ns"],
                "bucket_ns",
                retention.one_hour,
            ),
            ("activity", &["id"], "time_ns", retention.activity),
            (
                "host_usage",
                &["host_id", "time_ns"],
                "time_ns",
                retention.usage,
            ),
            (
                "profile_sessions",
                &["id"],
                "started_ns",
                retention.profiles,
            ),
        ];
        let mut report = RetentionReport::default();
        for (table, key, time_column, keep) in targets {
            let sql = delete_limited(
                self.backend,
                table,
                key,
                &format!("{time_column} < ?"),
                DELETE_CHUNK,
            );
            loop {
                let deleted = sqlx::query(AssertSqlSafe(sql.clone()))
                    .bind(cutoff(keep))
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                report.deleted += deleted;
                if deleted < u64::from(DELETE_CHUNK) {
                    break;
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600 * NS_PER_S;

    #[test]
    fn the_finest_resolution_that_fits_is_chosen() {
        let retention = Retention::default();
        let now = 1_000_000 * HOUR;
        let choose = |hours: i64, ago: i64| {
            Resolution::choose(
                now - ago * HOUR,
                now - ago * HOUR + hours * HOUR,
                now,
                1000,
                &retention,
            )
        };
        assert_eq!(choose(1, 1), Resolution::Raw, "1 h at 30 s is 120 points");
        assert_eq!(
            choose(24, 24),
            Resolution::FiveMinutes,
            "a day at 30 s is 2,880 points"
        );
        assert_eq!(
            choose(24 * 30, 24 * 30),
            Resolution::OneHour,
            "30 days at 5 min is 8,640 points"
        );
        assert_eq!(
            choose(1, 24 * 8),
            Resolution::FiveMinutes,
            "raw data is gone after 7 days"
        );
        assert_eq!(
            choose(1, 24 * 100),
            Resolution::OneHour,
            "5-minute data is gone after 90 days"
        );
    }
}

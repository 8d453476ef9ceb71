//! Rollups (5-minute and 1-hour averages and maxima of the raw samples) and retention.
//!
//! Rollups are recomputed, never accumulated: recomputing a bucket is idempotent, so late
//! or re-delivered samples only make the job redo some buckets. The 5-minute buckets are
//! computed from the raw rows and the hourly ones from the 5-minute buckets (a tenth of the
//! rows at 30-second sweeps; each 5-minute bucket counts the samples that measured each
//! figure, so that the hourly averages are weighted exactly). Ingest lowers the 5-minute
//! `rollup_state.dirty_from_ns` to the oldest sample it wrote, and the 5-minute job lowers
//! the hourly one to what it recomputed, so an hour is recomputed after its 5-minute
//! buckets. The job rolls up only buckets that are over ([`SETTLE`] ago): it first takes
//! the dirty range (moves the mark to the end of what it will compute, keeping the start in
//! `taken_from_ns`), recomputes it in chunks, then clears `taken_from_ns`. A sample written
//! meanwhile into a taken bucket lowers the mark again, and a run that died leaves its range
//! taken for the next one. The buckets not rolled up yet are aggregated from the raw rows
//! when read ([`Store::rolled_up_to`]).
//!
//! A chunk is recomputed a slice of containers at a time (about [`ROWS_PER_STATEMENT`]
//! source rows), each statement followed by a pause as long as it took: at 10,000 agents × 50
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
/// Source rows (raw or 5-minute) one rollup statement is meant to read, at most: well under
/// a second of the database's time even on a saturated machine (0.56 s the longest seen;
/// BENCHMARKS.md). A statement reads a slice of containers by primary key, one contiguous
/// stretch of `(container_id, time)` each.
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

    pub(super) fn state_name(self) -> &'static str {
        match self {
            Resolution::Raw => "raw",
            Resolution::FiveMinutes => "5m",
            Resolution::OneHour => "1h",
        }
    }

    /// What this resolution is rolled up from; `None` for raw samples.
    fn source(self) -> Option<Resolution> {
        match self {
            Resolution::Raw => None,
            Resolution::FiveMinutes => Some(Resolution::Raw),
            Resolution::OneHour => Some(Resolution::FiveMinutes),
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

/// The statement that lowers the dirty mark of a rollup (bound: its `rollup_state` name,
/// then the time from which its buckets are out of date), creating the mark if need be.
pub(super) fn lower_dirty_mark(backend: Backend) -> &'static str {
    match backend {
        Backend::MySql => {
            "INSERT INTO rollup_state (name, dirty_from_ns) VALUES (?, ?) \
             ON DUPLICATE KEY UPDATE dirty_from_ns = LEAST(dirty_from_ns, VALUES(dirty_from_ns))"
        }
        Backend::Sqlite => {
            "INSERT INTO rollup_state (name, dirty_from_ns) VALUES (?, ?) \
             ON CONFLICT(name) DO UPDATE SET dirty_from_ns = MIN(dirty_from_ns, excluded.dirty_from_ns)"
        }
    }
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
            // What is rolled up from these buckets is now out of date from `from` on.
            if let Some(coarser) = resolution.coarser() {
                sqlx::query(lower_dirty_mark(self.backend))
                    .bind(coarser.state_name())
                    .bind(from)
                    .execute(&self.pool)
                    .await?;
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
    /// no sample was ever written. An hour is complete only where its 5-minute buckets are:
    /// a late sample marks only those dirty until the job recomputes them.
    pub(super) async fn rolled_up_to(&self, resolution: Resolution) -> Result<i64> {
        let names: Vec<&str> = std::iter::successors(Some(resolution), |r| r.source())
            .filter(|r| r.source().is_some())
            .map(Resolution::state_name)
            .collect();
        let sql = format!(
            "SELECT MIN(dirty_from_ns), MIN(taken_from_ns) FROM rollup_state WHERE name IN ({})",
            vec!["?"; names.len()].join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for name in names {
            query = query.bind(name);
        }
        let row = query.fetch_one(&self.pool).await?;
        let from = [row.try_get::<Option<i64>, _>(0)?, row.try_get(1)?]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(i64::MAX);
        Ok(if from == i64::MAX {
            from
        } else {
            from - from.rem_euclid(resolution.step_ns())
        })
    }

    /// Recomputes the buckets of `resolution` in [start, end) from its source (raw rows or
    /// 5-minute buckets), for every container, a slice at a time in id order: as many
    /// containers as make about [`ROWS_PER_STATEMENT`] source rows at the default sweep, at
    /// most [`SLICE_CONTAINERS`]. After each statement the job waits as long as the
    /// statement took, so that it takes at most half of the database's time from ingest.
    /// Containers registered meanwhile have higher ids and are still reached.
    async fn recompute(&self, resolution: Resolution, start: i64, end: i64) -> Result<u64> {
        let source = resolution.source().expect("raw samples are not rolled up");
        let rows_per_container = ((end - start) / source.step_ns()).max(1);
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
    /// its source; it binds their ids, then the range's start and end.
    fn rollup_sql(&self, resolution: Resolution, containers: usize) -> String {
        let width = resolution.step_ns();
        let source = resolution.source().expect("raw samples are not rolled up");
        let from_raw = source == Resolution::Raw;
        let time = if from_raw { "time_ns" } else { "bucket_ns" };
        let mut columns = vec![
            "container_id".to_owned(),
            "bucket_ns".to_owned(),
            "samples".to_owned(),
        ];
        let mut selects = vec![
            "container_id".to_owned(),
            format!(
                "{time} - {modulo} AS bucket",
                modulo = self.modulo(time, width)
            ),
            if from_raw { "COUNT(*)" } else { "SUM(samples)" }.to_owned(),
        ];
        for (name, raw, absent_bit) in ROLLED {
            let (avg, max) = if from_raw {
                // Samples that did not measure a group do not count towards it.
                let value = match absent_bit {
                    Some(bit) => format!("CASE WHEN absent & {bit} = 0 THEN {raw} END"),
                    None => (*raw).to_owned(),
                };
                columns.push(format!("{name}_samples"));
                selects.push(format!("COUNT({value})"));
                (format!("AVG({value})"), format!("MAX({value})"))
            } else {
                // A bucket written without counts (before migration 0046, or by a replica
                // of an earlier version during a rolling upgrade) reads 0 for each: it
                // then counts all its samples for each figure it holds.
                let measured = match absent_bit {
                    Some(bit) => format!("absent & {bit} = 0"),
                    None => format!("{name}_avg IS NOT NULL"),
                };
                let weight = format!(
                    "CASE WHEN {name}_samples > 0 THEN {name}_samples \
                     WHEN {measured} THEN samples ELSE 0 END"
                );
                (
                    format!("SUM({name}_avg * {weight}) / NULLIF(SUM({weight}), 0)"),
                    format!("MAX({name}_max)"),
                )
            };
            // A bucket where no sample measured a group reads 0 and carries its `absent` bit;
            // CPU and rates read NULL.
            let (avg, max) = match absent_bit {
                Some(_) => (format!("COALESCE({avg}, 0)"), format!("COALESCE({max}, 0)")),
                None => (avg, max),
            };
            columns.push(format!("{name}_avg"));
            selects.push(avg);
            columns.push(format!("{name}_max"));
            selects.push(max);
        }
        columns.push("memory_limit_max".to_owned());
        selects.push(
            if from_raw {
                "MAX(memory_limit_bytes)"
            } else {
                "MAX(memory_limit_max)"
            }
            .to_owned(),
        );
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
            "INSERT INTO {table} ({columns}) SELECT {selects} FROM {source} \
             WHERE container_id IN ({ids}) AND {time} >= ? AND {time} < ? \
             GROUP BY container_id, bucket{upsert}",
            table = resolution.table(),
            source = by_primary_key(self.backend, source.table()),
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
    use crate::store::DatabaseUrl;

    const HOUR: i64 = 3600 * NS_PER_S;

    /// An hour is the 5-minute buckets' averages weighted by how many samples measured each
    /// figure; a bucket written without those counts (before migration 0046, or by a replica
    /// of the previous version during a rolling upgrade) counts all its samples for each
    /// figure it holds, and none for a figure it lacks.
    #[tokio::test]
    async fn an_hour_weights_its_buckets_by_the_samples_that_measured_each_figure() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&DatabaseUrl::sqlite_in(dir.path()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        // (bucket, CPU avg, CPU count, memory avg, memory count, absent): two buckets
        // without counts (the first measured neither CPU nor memory), one with them (CPU
        // in half its samples).
        let buckets = [
            (0, None, 0, 0.0, 0, 4),
            (300, Some(5.0), 0, 100.0, 0, 0),
            (600, Some(1.0), 5, 200.0, 10, 0),
        ];
        for (bucket, cpu, cpu_samples, memory, memory_samples, absent) in buckets {
            sqlx::query(
                "INSERT INTO container_stats_5m (container_id, bucket_ns, samples, \
                 cpu_percent_avg, cpu_percent_max, cpu_percent_samples, memory_usage_avg, \
                 memory_usage_max, memory_usage_samples, memory_working_set_avg, \
                 memory_working_set_max, memory_limit_max, pids_avg, pids_max, pids_samples, \
                 absent) VALUES (1, ?, 10, ?, ?, ?, ?, ?, ?, 0, 0, 0, 3, 3, ?, ?)",
            )
            .bind(bucket * NS_PER_S)
            .bind(cpu)
            .bind(cpu)
            .bind(cpu_samples)
            .bind(memory)
            .bind(memory as i64)
            .bind(memory_samples)
            .bind(if cpu_samples > 0 { 10 } else { 0 })
            .bind(absent)
            .execute(&store.pool)
            .await
            .unwrap();
        }
        let sql = store.rollup_sql(Resolution::OneHour, 1).into();
        let written = store.recompute_slice(sql, 0, HOUR, &[1]).await.unwrap();
        assert_eq!(written, 1);
        let row = sqlx::query(
            "SELECT samples, cpu_percent_avg, memory_usage_avg, memory_usage_max, pids_avg, \
             absent FROM container_stats_1h",
        )
        .fetch_one(&store.pool)
        .await
        .unwrap();
        assert_eq!(row.get::<i64, _>(0), 30);
        let close = |actual: f64, expected: f64| (actual - expected).abs() < 1e-9;
        let cpu: f64 = row.get(1);
        assert!(close(cpu, (5.0 * 10.0 + 1.0 * 5.0) / 15.0), "CPU {cpu}");
        let memory: f64 = row.get(2);
        assert!(close(memory, 150.0), "memory {memory}");
        assert_eq!(row.get::<i64, _>(3), 200);
        let pids: f64 = row.get(4);
        assert!(close(pids, 3.0), "pids {pids}");
        assert_eq!(row.get::<i64, _>(5), 0, "memory was measured in the hour");
    }

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

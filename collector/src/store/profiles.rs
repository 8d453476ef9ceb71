//! Profile sessions and their samples.
//!
//! A session row is created `running` by the collector before its agent is asked to start
//! it, and ends exactly once: the first of the agent's last batch (committed with the last
//! samples, see ingest) or the collector (stopped while the agent is away, interrupted)
//! moves it to `ended` with a reason; later attempts change nothing. While running, the row
//! holds its container's id in the unique `running_container` column, so two replicas
//! cannot start two sessions for one container.
//!
//! Samples are keyed by (session, time): a batch delivered twice is stored once. An agent
//! only ever writes samples into its own host's sessions.

use std::collections::HashMap;
use std::fmt::Write as _;

use dockermon_proto::{ProfileBatch, ProfileEndReason, ProfileSample};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, QueryBuilder, Row};
use utoipa::ToSchema;

use super::containers::{fit, saturating_i64};
use super::dialect::ignore_duplicates;
use super::ingest::Writer;
use super::queries::{Page, Paged, push_page};
use super::{ContainerKey, HostId, Result, Store, StoreError};

/// Rows per multi-row insert of samples (17 columns).
const ROWS_PER_INSERT: usize = 500;

/// Where a session was started, which decides when it ends on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProfileOrigin {
    /// `POST /api/v1/containers/{id}/profiles`: runs until stopped or its duration ends.
    Api,
    /// A WebSocket `profile` subscription: also ends when nobody watches.
    Websocket,
}

impl ProfileOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileOrigin::Api => "api",
            ProfileOrigin::Websocket => "websocket",
        }
    }

    fn parse(text: &str) -> ProfileOrigin {
        match text {
            "websocket" => ProfileOrigin::Websocket,
            _ => ProfileOrigin::Api,
        }
    }
}

/// Whether a session is still sampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProfileState {
    Running,
    Ended,
}

impl ProfileState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileState::Running => "running",
            ProfileState::Ended => "ended",
        }
    }
}

/// A session to create.
#[derive(Debug, Clone)]
pub struct NewProfile {
    pub host: HostId,
    pub container: ContainerKey,
    pub docker_id: String,
    pub started_by: Option<i64>,
    pub origin: ProfileOrigin,
    pub interval_ms: u64,
    /// The longest it may run, in seconds.
    pub duration_s: u64,
    pub started_ns: i64,
}

/// How a session ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileEnding {
    pub reason: ProfileEndReason,
    pub message: Option<String>,
    /// Who stopped it, when someone did.
    pub stopped_by: Option<i64>,
    /// Samples the agent says it read, when it said.
    pub samples_read: Option<u64>,
    pub ended_ns: i64,
}

/// A session that a batch of samples ended (reported after the commit, for watchers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedProfile {
    pub id: i64,
    pub host: HostId,
    pub container: ContainerKey,
    pub reason: ProfileEndReason,
    pub samples_read: u64,
}

/// A profile session as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProfileRow {
    pub id: i64,
    pub host_id: HostId,
    pub container_id: ContainerKey,
    /// The Docker id of the container instance profiled.
    pub docker_id: String,
    pub container_name: String,
    pub state: ProfileState,
    /// Why it ended: `stopped`, `duration`, `no_watchers`, `container_stopped`,
    /// `interrupted` or `failed`.
    pub reason: Option<String>,
    /// What failed, for `failed`.
    pub message: Option<String>,
    pub origin: ProfileOrigin,
    /// The user who started it (`None` when a user was since deleted).
    pub started_by: Option<i64>,
    /// The user who stopped it, when someone did.
    pub stopped_by: Option<i64>,
    /// Time between samples, in milliseconds.
    pub interval_ms: i64,
    /// The longest the session may run, in seconds.
    pub duration_s: i64,
    pub started_ns: i64,
    pub ended_ns: Option<i64>,
    /// Samples stored.
    pub samples: i64,
    /// Samples the agent read, as it reported at the end (equal to `samples` when none was
    /// lost).
    pub samples_read: Option<i64>,
    /// Figures over the stored samples; `None` before the first sample.
    pub summary: Option<ProfileSummary>,
}

/// What a session measured, over its stored samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct ProfileSummary {
    /// Time-weighted average CPU use, where 100 is one full core.
    pub cpu_percent_avg: f64,
    pub cpu_percent_max: f64,
    pub memory_usage_max_bytes: i64,
    pub memory_working_set_max_bytes: i64,
    /// Bytes received and sent over the session (rate × interval, summed).
    pub net_rx_bytes: f64,
    pub net_tx_bytes: f64,
    /// Bytes read from and written to block devices over the session.
    pub block_read_bytes: f64,
    pub block_write_bytes: f64,
}

/// One stored sample.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProfileSampleRow {
    pub time_ns: i64,
    /// The time the rates cover, in nanoseconds.
    pub interval_ns: i64,
    /// 100 is one full core.
    pub cpu_percent: f64,
    pub memory_usage_bytes: i64,
    pub memory_working_set_bytes: i64,
    pub memory_limit_bytes: i64,
    pub net_rx_bytes_per_s: f64,
    pub net_tx_bytes_per_s: f64,
    pub block_read_bytes_per_s: f64,
    pub block_write_bytes_per_s: f64,
    pub pids: i64,
}

impl From<&ProfileSample> for ProfileSampleRow {
    /// The row a sample is stored as, and shown live as: the same values either way.
    fn from(sample: &ProfileSample) -> Self {
        let (c, r) = (&sample.counters, &sample.rates);
        ProfileSampleRow {
            time_ns: sample.time_ns,
            interval_ns: r.interval_ns,
            cpu_percent: finite(r.cpu_percent),
            memory_usage_bytes: saturating_i64(c.memory_usage_bytes),
            memory_working_set_bytes: saturating_i64(c.memory_working_set_bytes),
            memory_limit_bytes: saturating_i64(c.memory_limit_bytes),
            net_rx_bytes_per_s: finite(r.net_rx_bytes_per_s),
            net_tx_bytes_per_s: finite(r.net_tx_bytes_per_s),
            block_read_bytes_per_s: finite(r.block_read_bytes_per_s),
            block_write_bytes_per_s: finite(r.block_write_bytes_per_s),
            pids: saturating_i64(c.pids),
        }
    }
}

impl ProfileSampleRow {
    /// The columns of [`ProfileSampleRow::csv_row`], in order.
    pub const CSV_HEADER: &'static str = "time,time_ns,interval_ns,cpu_percent,memory_usage_bytes,\
        memory_working_set_bytes,memory_limit_bytes,net_rx_bytes_per_s,net_tx_bytes_per_s,\
        block_read_bytes_per_s,block_write_bytes_per_s,pids";

    /// One CSV line (no newline): an RFC 3339 time first, for spreadsheets, then every
    /// figure. Every field is a number or a time, so nothing needs quoting.
    pub fn csv_row(&self, out: &mut String) {
        let time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.time_ns))
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let _ = write!(
            out,
            "{time},{},{},{},{},{},{},{},{},{},{},{}",
            self.time_ns,
            self.interval_ns,
            self.cpu_percent,
            self.memory_usage_bytes,
            self.memory_working_set_bytes,
            self.memory_limit_bytes,
            self.net_rx_bytes_per_s,
            self.net_tx_bytes_per_s,
            self.block_read_bytes_per_s,
            self.block_write_bytes_per_s,
            self.pids
        );
    }
}

/// Which sessions to list.
#[derive(Debug, Clone, Default)]
pub struct ProfileFilter {
    pub host: Option<HostId>,
    pub container: Option<ContainerKey>,
    pub state: Option<ProfileState>,
    /// Started at or after.
    pub from_ns: Option<i64>,
    /// Started before.
    pub to_ns: Option<i64>,
}

const PROFILE_COLUMNS: &str = "p.id, p.host_id, p.container_id, p.docker_id, c.name AS container_name, \
     p.status, p.reason, p.message, p.origin, p.requested_by, p.stopped_by, p.interval_ms, p.duration_s, \
     p.started_ns, p.ended_ns, p.samples_read";

const SAMPLE_COLUMNS: &str = "time_ns, interval_ns, cpu_percent, memory_usage_bytes, memory_working_set_bytes, \
     memory_limit_bytes, net_rx_bytes_per_s, net_tx_bytes_per_s, block_read_bytes_per_s, \
     block_write_bytes_per_s, pids";

fn profile_row(row: &AnyRow) -> Result<ProfileRow> {
    let status: String = row.try_get("status")?;
    Ok(ProfileRow {
        id: row.try_get("id")?,
        host_id: HostId(row.try_get("host_id")?),
        container_id: ContainerKey(row.try_get("container_id")?),
        docker_id: row.try_get("docker_id")?,
        container_name: row
            .try_get::<Option<String>, _>("container_name")?
            .unwrap_or_default(),
        state: if status == "running" {
            ProfileState::Running
        } else {
            ProfileState::Ended
        },
        reason: row.try_get("reason")?,
        message: row.try_get("message")?,
        origin: ProfileOrigin::parse(&row.try_get::<String, _>("origin")?),
        started_by: row.try_get("requested_by")?,
        stopped_by: row.try_get("stopped_by")?,
        interval_ms: row.try_get("interval_ms")?,
        duration_s: row.try_get("duration_s")?,
        started_ns: row.try_get("started_ns")?,
        ended_ns: row.try_get("ended_ns")?,
        samples: 0,
        samples_read: row.try_get("samples_read")?,
        summary: None,
    })
}

fn sample_row(row: &AnyRow) -> Result<ProfileSampleRow> {
    Ok(ProfileSampleRow {
        time_ns: row.try_get("time_ns")?,
        interval_ns: row.try_get("interval_ns")?,
        cpu_percent: row.try_get::<Option<f64>, _>("cpu_percent")?.unwrap_or(0.0),
        memory_usage_bytes: row.try_get("memory_usage_bytes")?,
        memory_working_set_bytes: row.try_get("memory_working_set_bytes")?,
        memory_limit_bytes: row.try_get("memory_limit_bytes")?,
        net_rx_bytes_per_s: row
            .try_get::<Option<f64>, _>("net_rx_bytes_per_s")?
            .unwrap_or(0.0),
        net_tx_bytes_per_s: row
            .try_get::<Option<f64>, _>("net_tx_bytes_per_s")?
            .unwrap_or(0.0),
        block_read_bytes_per_s: row
            .try_get::<Option<f64>, _>("block_read_bytes_per_s")?
            .unwrap_or(0.0),
        block_write_bytes_per_s: row
            .try_get::<Option<f64>, _>("block_write_bytes_per_s")?
            .unwrap_or(0.0),
        pids: row.try_get("pids")?,
    })
}

impl Store {
    /// Creates a running session. [`StoreError::Conflict`] when the container already has
    /// one (on any replica): join that one instead.
    pub async fn create_profile(&self, new: &NewProfile) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO profile_sessions (host_id, container_id, docker_id, requested_by, status, \
             duration_s, started_ns, interval_ms, origin, running_container) \
             VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)",
        )
        .bind(new.host.0)
        .bind(new.container.0)
        .bind(fit(&new.docker_id, 128))
        .bind(new.started_by)
        .bind(saturating_i64(new.duration_s))
        .bind(new.started_ns)
        .bind(saturating_i64(new.interval_ms))
        .bind(new.origin.as_str())
        .bind(new.container.0)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT id FROM profile_sessions WHERE running_container = ?")
            .bind(new.container.0)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.try_get(0)?)
    }

    /// Removes a session that never started (its agent refused it).
    pub async fn forget_profile(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM profile_sessions WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records who asked a running session to stop, before its agent ends it.
    pub async fn set_profile_stopper(&self, id: i64, user: i64) -> Result<()> {
        sqlx::query(
            "UPDATE profile_sessions SET stopped_by = ? WHERE id = ? AND status = 'running'",
        )
        .bind(user)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends a running session. True if this call ended it; false if it had already ended
    /// (the first ending wins).
    pub async fn end_profile(&self, id: i64, ending: &ProfileEnding) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE profile_sessions SET status = 'ended', reason = ?, message = ?, \
             stopped_by = COALESCE(?, stopped_by), samples_read = COALESCE(?, samples_read), \
             ended_ns = ?, running_container = NULL WHERE id = ? AND status = 'running'",
        )
        .bind(ending.reason.as_str())
        .bind(ending.message.as_deref().map(|m| fit(m, 1024)))
        .bind(ending.stopped_by)
        .bind(ending.samples_read.map(saturating_i64))
        .bind(ending.ended_ns)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// One session, with its sample count and summary.
    pub async fn profile(&self, id: i64) -> Result<ProfileRow> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PROFILE_COLUMNS} FROM profile_sessions p \
             LEFT JOIN containers c ON c.id = p.container_id WHERE p.id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let mut profile = profile_row(&row)?;
        self.summarise(std::slice::from_mut(&mut profile)).await?;
        Ok(profile)
    }

    /// The running session of a container, if it has one.
    pub async fn running_profile_of(&self, container: ContainerKey) -> Result<Option<ProfileRow>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PROFILE_COLUMNS} FROM profile_sessions p \
             LEFT JOIN containers c ON c.id = p.container_id WHERE p.running_container = ?"
        )))
        .bind(container.0)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => {
                let mut profile = profile_row(&row)?;
                self.summarise(std::slice::from_mut(&mut profile)).await?;
                Ok(Some(profile))
            }
            None => Ok(None),
        }
    }

    /// Every running session (without summaries): what a collector picks up at start.
    pub async fn running_profiles(&self) -> Result<Vec<ProfileRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PROFILE_COLUMNS} FROM profile_sessions p \
             LEFT JOIN containers c ON c.id = p.container_id WHERE p.status = 'running' ORDER BY p.id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(profile_row).collect()
    }

    /// Running sessions on a host, and started by a user.
    pub async fn running_profile_counts(
        &self,
        host: HostId,
        user: Option<i64>,
    ) -> Result<(u64, u64)> {
        let row = sqlx::query(
            // COUNT, not SUM: MySQL sums integers as DECIMAL.
            "SELECT COUNT(CASE WHEN host_id = ? THEN 1 END), \
             COUNT(CASE WHEN requested_by = ? THEN 1 END) \
             FROM profile_sessions WHERE status = 'running'",
        )
        .bind(host.0)
        .bind(user.unwrap_or(-1))
        .fetch_one(&self.pool)
        .await?;
        let count = |i: usize| -> Result<u64> { Ok(row.try_get::<i64, _>(i)?.max(0) as u64) };
        Ok((count(0)?, count(1)?))
    }

    /// Sessions, newest first, with their sample counts and summaries.
    pub async fn profiles(&self, filter: &ProfileFilter, page: Page) -> Result<Paged<ProfileRow>> {
        let push_where = |query: &mut QueryBuilder<Any>| {
            query.push(" WHERE 1 = 1");
            if let Some(host) = filter.host {
                query.push(" AND p.host_id = ").push_bind(host.0);
            }
            if let Some(container) = filter.container {
                query.push(" AND p.container_id = ").push_bind(container.0);
            }
            if let Some(state) = filter.state {
                query
                    .push(" AND p.status = ")
                    .push_bind(state.as_str().to_owned());
            }
            if let Some(from) = filter.from_ns {
                query.push(" AND p.started_ns >= ").push_bind(from);
            }
            if let Some(to) = filter.to_ns {
                query.push(" AND p.started_ns < ").push_bind(to);
            }
        };
        let mut select: QueryBuilder<Any> = QueryBuilder::new(format!(
            "SELECT {PROFILE_COLUMNS} FROM profile_sessions p LEFT JOIN containers c ON c.id = p.container_id"
        ));
        push_where(&mut select);
        push_page(&mut select, " ORDER BY p.started_ns DESC, p.id DESC", page);
        let rows = select.build().fetch_all(&self.pool).await?;
        let mut items: Vec<ProfileRow> = rows.iter().map(profile_row).collect::<Result<_>>()?;
        self.summarise(&mut items).await?;
        let mut count: QueryBuilder<Any> =
            QueryBuilder::new("SELECT COUNT(*) FROM profile_sessions p");
        push_where(&mut count);
        self.with_total(page, items, count).await
    }

    /// Fills in sample counts and summaries, one grouped query for all of `profiles`.
    async fn summarise(&self, profiles: &mut [ProfileRow]) -> Result<()> {
        if profiles.is_empty() {
            return Ok(());
        }
        let mut query: QueryBuilder<Any> = QueryBuilder::new(
            "SELECT session_id, COUNT(*) AS samples, \
             SUM(cpu_percent * interval_ns) AS cpu_weighted, SUM(interval_ns * 1e0) AS covered_ns, \
             MAX(cpu_percent) AS cpu_max, MAX(memory_usage_bytes) AS memory_max, \
             MAX(memory_working_set_bytes) AS working_set_max, \
             SUM(net_rx_bytes_per_s * interval_ns) AS rx, SUM(net_tx_bytes_per_s * interval_ns) AS tx, \
             SUM(block_read_bytes_per_s * interval_ns) AS block_read, \
             SUM(block_write_bytes_per_s * interval_ns) AS block_write \
             FROM profile_samples WHERE session_id IN (",
        );
        let mut ids = query.separated(", ");
        for profile in profiles.iter() {
            ids.push_bind(profile.id);
        }
        query.push(") GROUP BY session_id");
        let rows = query.build().fetch_all(&self.pool).await?;
        let mut found: HashMap<i64, (i64, ProfileSummary)> = HashMap::new();
        for row in &rows {
            // Every sum involves a DOUBLE (`* 1e0` for the integer one), so both backends
            // answer DOUBLE: MySQL would sum integers as DECIMAL, which `Any` cannot read.
            let float = |column: &str| -> Result<f64> {
                Ok(row.try_get::<Option<f64>, _>(column)?.unwrap_or(0.0))
            };
            let covered = float("covered_ns")?;
            let per_second = |column: &str| -> Result<f64> { Ok(float(column)? / 1e9) };
            found.insert(
                row.try_get("session_id")?,
                (
                    row.try_get("samples")?,
                    ProfileSummary {
                        cpu_percent_avg: if covered > 0.0 {
                            float("cpu_weighted")? / covered
                        } else {
                            0.0
                        },
                        cpu_percent_max: float("cpu_max")?,
                        memory_usage_max_bytes: row.try_get("memory_max")?,
                        memory_working_set_max_bytes: row.try_get("working_set_max")?,
                        net_rx_bytes: per_second("rx")?,
                        net_tx_bytes: per_second("tx")?,
                        block_read_bytes: per_second("block_read")?,
                        block_write_bytes: per_second("block_write")?,
                    },
                ),
            );
        }
        for profile in profiles.iter_mut() {
            if let Some((samples, summary)) = found.remove(&profile.id) {
                profile.samples = samples;
                profile.summary = Some(summary);
            }
        }
        Ok(())
    }

    /// A page of a session's samples, oldest first.
    pub async fn profile_samples(&self, id: i64, page: Page) -> Result<Paged<ProfileSampleRow>> {
        self.profile(id).await?;
        let mut select: QueryBuilder<Any> = QueryBuilder::new(format!(
            "SELECT {SAMPLE_COLUMNS} FROM profile_samples WHERE session_id = "
        ));
        select.push_bind(id);
        push_page(&mut select, " ORDER BY time_ns", page);
        let rows = select.build().fetch_all(&self.pool).await?;
        let items = rows.iter().map(sample_row).collect::<Result<_>>()?;
        let mut count: QueryBuilder<Any> =
            QueryBuilder::new("SELECT COUNT(*) FROM profile_samples WHERE session_id = ");
        count.push_bind(id);
        self.with_total(page, items, count).await
    }

    /// Every sample of a session, oldest first (a session is bounded by its duration).
    pub async fn all_profile_samples(&self, id: i64) -> Result<Vec<ProfileSampleRow>> {
        self.profile(id).await?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SAMPLE_COLUMNS} FROM profile_samples WHERE session_id = ? ORDER BY time_ns"
        )))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(sample_row).collect()
    }
}

impl Writer<'_> {
    /// Stores a batch of an agent's profile session, and ends the session if the batch is
    /// its last. Batches for sessions that are not this host's are dropped: an agent
    /// writes only into its own host's sessions.
    pub(super) async fn apply_profile(
        &mut self,
        host: HostId,
        batch: &ProfileBatch,
    ) -> Result<Option<EndedProfile>> {
        let Ok(id) = i64::try_from(batch.profile_id) else {
            return Ok(None);
        };
        let Some(row) =
            sqlx::query("SELECT container_id FROM profile_sessions WHERE id = ? AND host_id = ?")
                .bind(id)
                .bind(host.0)
                .fetch_optional(&mut *self.conn)
                .await?
        else {
            return Ok(None);
        };
        let container = ContainerKey(row.try_get(0)?);
        for chunk in batch.samples.chunks(ROWS_PER_INSERT) {
            let mut insert: QueryBuilder<Any> = QueryBuilder::new(
                "INSERT INTO profile_samples (session_id, time_ns, interval_ns, cpu_percent, \
                 memory_usage_bytes, memory_working_set_bytes, memory_limit_bytes, net_rx_bytes_per_s, \
                 net_tx_bytes_per_s, block_read_bytes_per_s, block_write_bytes_per_s, pids, cpu_total_ns, \
                 net_rx_bytes, net_tx_bytes, block_read_bytes, block_write_bytes) ",
            );
            insert.push_values(chunk, |mut row, sample: &ProfileSample| {
                let shown = ProfileSampleRow::from(sample);
                let c = &sample.counters;
                row.push_bind(id)
                    .push_bind(shown.time_ns)
                    .push_bind(shown.interval_ns)
                    .push_bind(shown.cpu_percent)
                    .push_bind(shown.memory_usage_bytes)
                    .push_bind(shown.memory_working_set_bytes)
                    .push_bind(shown.memory_limit_bytes)
                    .push_bind(shown.net_rx_bytes_per_s)
                    .push_bind(shown.net_tx_bytes_per_s)
                    .push_bind(shown.block_read_bytes_per_s)
                    .push_bind(shown.block_write_bytes_per_s)
                    .push_bind(shown.pids)
                    .push_bind(saturating_i64(c.cpu_total_ns))
                    .push_bind(saturating_i64(c.network.rx_bytes))
                    .push_bind(saturating_i64(c.network.tx_bytes))
                    .push_bind(saturating_i64(c.block_io.read_bytes))
                    .push_bind(saturating_i64(c.block_io.write_bytes));
            });
            insert.push(ignore_duplicates(self.store.backend, "session_id"));
            insert.build().execute(&mut *self.conn).await?;
        }
        let Some(end) = &batch.ended else {
            return Ok(None);
        };
        let ended = sqlx::query(
            "UPDATE profile_sessions SET status = 'ended', reason = ?, message = ?, samples_read = ?, \
             ended_ns = ?, running_container = NULL WHERE id = ? AND status = 'running'",
        )
        .bind(end.reason.as_str())
        .bind(end.message.as_deref().map(|m| fit(m, 1024)))
        .bind(saturating_i64(end.samples))
        .bind(end.time_ns)
        .bind(id)
        .execute(&mut *self.conn)
        .await?
        .rows_affected()
            > 0;
        if !ended {
            // Ended by the collector meanwhile (interrupted): keep the agent's count.
            sqlx::query(
                "UPDATE profile_sessions SET samples_read = ? WHERE id = ? AND samples_read IS NULL",
            )
            .bind(saturating_i64(end.samples))
            .bind(id)
            .execute(&mut *self.conn)
            .await?;
            return Ok(None);
        }
        Ok(Some(EndedProfile {
            id,
            host,
            container,
            reason: end.reason,
            samples_read: end.samples,
        }))
    }
}

/// Databases store no NaN or infinity; a rate that is not finite is stored as 0.
fn finite(value: f64) -> f64 {
    if value.is_finite() { value } else { 0.0 }
}

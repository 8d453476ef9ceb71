//! Writing what agents report. [`Store::ingest`] takes records from any number of hosts and
//! writes them in one transaction, so a caller acknowledges exactly what was committed.
//!
//! Events and stats are written with multi-row inserts; re-delivered ones are skipped by key
//! (an event's hash, a sample's (container, time)). Inventory updates are applied in the
//! order they arrived, before the samples of the same batch, so samples land on the
//! containers the batch describes.

use std::collections::HashMap;

use dockermon_proto::transport::Dropped;
use dockermon_proto::{
    CounterGroup, DiskUsage, DockerEvent, HostInfo, HostName, ProfileBatch, Record, StatsSample,
    now_ns,
};
use sha2::{Digest, Sha256};
use sqlx::{Any, AnyConnection, AssertSqlSafe, QueryBuilder, Row};

use super::containers::{Learned, fit, saturating_i64};
use super::dialect::ignore_duplicates;
use super::{Backend, ContainerKey, HostId, Resolution, Result, Store};

/// Rows per multi-row insert: well under MySQL's 65,535 placeholders and SQLite's 32,766
/// at 18 columns, and a fixed size keeps prepared statements reusable.
const ROWS_PER_INSERT: usize = 500;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestReport {
    pub records: usize,
    pub events: usize,
    pub samples: usize,
    /// Records of hosts deleted before they could be written.
    pub discarded: usize,
    /// Profile sessions whose last batch this write stored.
    pub profiles_ended: Vec<super::profiles::EndedProfile>,
}

const STATS_COLUMNS: &[&str] = &[
    "cpu_percent",
    "cpu_total_ns",
    "memory_usage_bytes",
    "memory_working_set_bytes",
    "memory_limit_bytes",
    "net_rx_bytes",
    "net_tx_bytes",
    "net_rx_bytes_per_s",
    "net_tx_bytes_per_s",
    "block_read_bytes",
    "block_write_bytes",
    "block_read_bytes_per_s",
    "block_write_bytes_per_s",
    "pids",
    "absent",
];

/// The `absent` bit of each counter group that may not be measured.
pub(super) const ABSENT_BITS: [(CounterGroup, i64); 4] = [
    (CounterGroup::Network, 1),
    (CounterGroup::BlockIo, 2),
    (CounterGroup::Memory, 4),
    (CounterGroup::Pids, 8),
];

/// The groups a sample did not measure, as the `absent` column's bitmask.
fn absent_bits(counters: &dockermon_proto::StatsCounters) -> i64 {
    ABSENT_BITS
        .iter()
        .filter(|(group, _)| !counters.has(*group))
        .map(|(_, bit)| bit)
        .sum()
}

/// How stale a host's `last_seen_ns` may get while its agent delivers.
const LAST_SEEN_EVERY_NS: i64 = 10_000_000_000;

impl Store {
    /// The id of the host with this name, registering it on first sight.
    pub async fn register_host(&self, name: &HostName) -> Result<HostId> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO hosts (name, created_ns) VALUES (?, ?){}",
            ignore_duplicates(self.backend, "name")
        )))
        .bind(name.as_str())
        .bind(now_ns())
        .execute(&mut *conn)
        .await?;
        let row = sqlx::query("SELECT id FROM hosts WHERE name = ?")
            .bind(name.as_str())
            .fetch_one(&mut *conn)
            .await?;
        Ok(HostId(row.get::<i64, _>(0)))
    }

    /// Writes `batches` (records per host, in the order they were reported) in one
    /// transaction.
    pub async fn ingest(&self, batches: &[(HostId, &[Record])]) -> Result<IngestReport> {
        self.write(batches, &[]).await
    }

    /// Writes agents' data frames in one transaction, together with each host's newest
    /// committed sequence number: a frame is stored if and only if its number is.
    pub async fn ingest_frames(&self, frames: &[Frame<'_>]) -> Result<IngestReport> {
        let batches: Vec<(HostId, &[Record])> =
            frames.iter().map(|f| (f.host, f.records)).collect();
        self.write(&batches, frames).await
    }

    async fn write(
        &self,
        batches: &[(HostId, &[Record])],
        frames: &[Frame<'_>],
    ) -> Result<IngestReport> {
        let mut tx = self.begin_write().await?;
        // Records of a host deleted meanwhile (its agent not yet disconnected) are
        // discarded: there is nothing left to attach them to.
        let mut hosts: Vec<i64> = batches.iter().map(|(host, _)| host.0).collect();
        hosts.sort_unstable();
        hosts.dedup();
        let mut existing_query: QueryBuilder<Any> =
            QueryBuilder::new("SELECT id FROM hosts WHERE id IN (");
        let mut ids = existing_query.separated(", ");
        for id in &hosts {
            ids.push_bind(*id);
        }
        existing_query.push(")");
        let existing: std::collections::HashSet<i64> = existing_query
            .build()
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()?;
        let discarded: usize = batches
            .iter()
            .filter(|(host, _)| !existing.contains(&host.0))
            .map(|(_, records)| records.len())
            .sum();
        let kept_frames: Vec<Frame<'_>> = frames
            .iter()
            .filter(|f| existing.contains(&f.host.0))
            .copied()
            .collect();
        let frames = kept_frames.as_slice();
        let now = now_ns();
        // A host is seen whenever its agent delivers, not only when it describes the host:
        // stamped at most every LAST_SEEN_EVERY, so steady ingest does not rewrite it.
        if !existing.is_empty() {
            let mut seen: QueryBuilder<Any> = QueryBuilder::new("UPDATE hosts SET last_seen_ns = ");
            seen.push_bind(now)
                .push(" WHERE (last_seen_ns IS NULL OR last_seen_ns < ")
                .push_bind(now - LAST_SEEN_EVERY_NS)
                .push(") AND id IN (");
            let mut ids = seen.separated(", ");
            for id in &existing {
                ids.push_bind(*id);
            }
            seen.push(")");
            seen.build().execute(&mut *tx).await?;
        }
        let mut writer = Writer {
            store: self,
            conn: &mut tx,
            now,
            learned: Learned::default(),
        };
        let mut events: Vec<(HostId, &DockerEvent)> = Vec::new();
        let mut samples: Vec<(HostId, &StatsSample)> = Vec::new();
        let mut profiles: Vec<(HostId, &ProfileBatch)> = Vec::new();
        let mut report = IngestReport {
            discarded,
            ..IngestReport::default()
        };
        for (host, records) in batches
            .iter()
            .filter(|(host, _)| existing.contains(&host.0))
        {
            report.records += records.len();
            for record in records.iter() {
                match record {
                    Record::Host(info) => writer.update_host(*host, info).await?,
                    Record::Inventory(update) => writer.apply_inventory(*host, update).await?,
                    Record::Event(event) => events.push((*host, event)),
                    Record::Stats(sample) => samples.push((*host, sample)),
                    Record::Usage(usage) => writer.insert_usage(*host, usage).await?,
                    Record::Profile(batch) => profiles.push((*host, batch)),
                }
            }
        }
        report.events = events.len();
        report.samples = samples.len();
        writer.insert_events(&events).await?;
        writer.insert_stats(&samples).await?;
        for (host, batch) in profiles {
            if let Some(ended) = writer.apply_profile(host, batch).await? {
                report.profiles_ended.push(ended);
            }
        }
        writer.record_streams(frames).await?;
        if let Some(oldest) = samples.iter().map(|(_, s)| s.time_ns).min() {
            // Last in the transaction: this hot row stays locked only until the commit.
            writer.mark_rollups_dirty(oldest).await?;
        }
        let learned = writer.learned;
        tx.commit().await?;
        self.remember_instances(learned);
        Ok(report)
    }
}

/// One data frame of an agent's stream.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub host: HostId,
    pub seq: u64,
    pub records: &'a [Record],
    pub dropped: Dropped,
}

/// One ingest transaction: its connection, the time it writes, and the Docker ids it
/// learned (remembered in the store's cache only after the commit).
pub(super) struct Writer<'a> {
    pub(super) store: &'a Store,
    pub(super) conn: &'a mut AnyConnection,
    pub(super) now: i64,
    pub(super) learned: Learned,
}

impl Writer<'_> {
    async fn insert_events(&mut self, events: &[(HostId, &DockerEvent)]) -> Result<()> {
        let mut rows = Vec::with_capacity(events.len());
        for (host, event) in events {
            let container = self.container_of_event(*host, event).await?;
            rows.push((
                *host,
                *event,
                container,
                serde_json::to_string(&event.attributes)?,
            ));
        }
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut insert: QueryBuilder<Any> = QueryBuilder::new(
                "INSERT INTO activity (entry_key, host_id, time_ns, kind, action, action_name, \
                 actor_id, actor_name, container_id, attributes) ",
            );
            insert.push_values(chunk, |mut row, (host, event, container, attributes)| {
                let action_name = event.action.split(':').next().unwrap_or_default();
                row.push_bind(event_key(*host, event))
                    .push_bind(host.0)
                    .push_bind(event.time_ns)
                    .push_bind(event.kind.as_str())
                    .push_bind(fit(&event.action, 1024))
                    .push_bind(fit(action_name, 64))
                    .push_bind(fit(&event.actor_id, 256))
                    .push_bind(event.actor_name.as_deref().map(|n| fit(n, 256)))
                    .push_bind(container.map(|c| c.0))
                    .push_bind(attributes.clone());
            });
            insert.push(ignore_duplicates(self.store.backend, "entry_key"));
            insert.build().execute(&mut *self.conn).await?;
        }
        Ok(())
    }

    async fn insert_stats(&mut self, samples: &[(HostId, &StatsSample)]) -> Result<()> {
        self.register_sampled(samples).await?;
        let mut rows: Vec<(ContainerKey, &StatsSample)> = Vec::with_capacity(samples.len());
        for (host, sample) in samples {
            let key = self
                .resolve_container(
                    *host,
                    sample.container_id.as_str(),
                    &sample.name,
                    None,
                    // A sample means it runs; its inventory says more when it comes.
                    "unknown",
                )
                .await?;
            rows.push((key, *sample));
        }
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut insert: QueryBuilder<Any> =
                QueryBuilder::new("INSERT INTO container_stats (container_id, time_ns, ");
            insert.push(STATS_COLUMNS.join(", ")).push(") ");
            insert.push_values(chunk, |mut row, (key, sample)| {
                row.push_bind(key.0).push_bind(sample.time_ns);
                bind_stats(&mut row, sample);
            });
            insert.push(ignore_duplicates(self.store.backend, "container_id"));
            insert.build().execute(&mut *self.conn).await?;
        }
        Ok(())
    }

    async fn update_host(&mut self, host: HostId, info: &HostInfo) -> Result<()> {
        sqlx::query(
            "UPDATE hosts SET engine_id = ?, docker_version = ?, agent_version = ?, info = ?, \
             last_seen_ns = ? WHERE id = ?",
        )
        .bind(fit(&info.engine_id, 255))
        .bind(fit(&info.docker_version, 64))
        .bind(fit(&info.agent_version, 64))
        .bind(serde_json::to_string(info)?)
        .bind(self.now)
        .bind(host.0)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn insert_usage(&mut self, host: HostId, usage: &DiskUsage) -> Result<()> {
        let detail = super::queries::usage_detail(usage);
        let mut insert: QueryBuilder<Any> = QueryBuilder::new(
            "INSERT INTO host_usage (host_id, time_ns, layers_bytes, \
             images_count, images_active, images_bytes, images_reclaimable_bytes, \
             containers_count, containers_active, containers_bytes, containers_reclaimable_bytes, \
             volumes_count, volumes_active, volumes_bytes, volumes_reclaimable_bytes, \
             build_cache_count, build_cache_active, build_cache_bytes, build_cache_reclaimable_bytes, \
             detail) VALUES (",
        );
        let mut values = insert.separated(", ");
        values
            .push_bind(host.0)
            .push_bind(usage.time_ns)
            .push_bind(saturating_i64(usage.layers_bytes));
        for summary in [
            &usage.images,
            &usage.containers,
            &usage.volumes,
            &usage.build_cache,
        ] {
            values
                .push_bind(saturating_i64(summary.count))
                .push_bind(saturating_i64(summary.active))
                .push_bind(saturating_i64(summary.size_bytes))
                .push_bind(saturating_i64(summary.reclaimable_bytes));
        }
        values.push_bind(detail.to_string());
        insert.push(")");
        insert.push(ignore_duplicates(self.store.backend, "host_id"));
        insert.build().execute(&mut *self.conn).await?;
        Ok(())
    }

    /// The newest frame per host (frames of one host arrive in order) and its drop counts.
    async fn record_streams(&mut self, frames: &[Frame<'_>]) -> Result<()> {
        let mut newest: HashMap<HostId, &Frame<'_>> = HashMap::new();
        for frame in frames {
            let entry = newest.entry(frame.host).or_insert(frame);
            if frame.seq > entry.seq {
                *entry = frame;
            }
        }
        let tail = match self.store.backend {
            Backend::MySql => {
                " ON DUPLICATE KEY UPDATE last_seq = GREATEST(last_seq, VALUES(last_seq)), \
                 dropped_stats = VALUES(dropped_stats), dropped_usage = VALUES(dropped_usage), \
                 dropped_events = VALUES(dropped_events), dropped_other = VALUES(dropped_other), \
                 updated_ns = VALUES(updated_ns)"
            }
            Backend::Sqlite => {
                " ON CONFLICT(host_id) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq), \
                 dropped_stats = excluded.dropped_stats, dropped_usage = excluded.dropped_usage, \
                 dropped_events = excluded.dropped_events, dropped_other = excluded.dropped_other, \
                 updated_ns = excluded.updated_ns"
            }
        };
        let mut newest: Vec<&Frame<'_>> = newest.into_values().collect();
        // In host order, so two writers' transactions never lock the same rows in
        // opposite orders.
        newest.sort_unstable_by_key(|frame| frame.host);
        for chunk in newest.chunks(ROWS_PER_INSERT) {
            let mut insert: QueryBuilder<Any> = QueryBuilder::new(
                "INSERT INTO agent_streams (host_id, last_seq, dropped_stats, dropped_usage, \
                 dropped_events, dropped_other, updated_ns) ",
            );
            insert.push_values(chunk, |mut row, frame| {
                row.push_bind(frame.host.0)
                    .push_bind(saturating_i64(frame.seq))
                    .push_bind(saturating_i64(frame.dropped.stats))
                    .push_bind(saturating_i64(frame.dropped.usage))
                    .push_bind(saturating_i64(frame.dropped.events))
                    .push_bind(saturating_i64(frame.dropped.other))
                    .push_bind(self.now);
            });
            insert.push(tail);
            insert.build().execute(&mut *self.conn).await?;
        }
        Ok(())
    }

    /// Marks the 5-minute rollup out of date from `oldest_ns`; the hourly one follows when
    /// the job recomputes those buckets.
    async fn mark_rollups_dirty(&mut self, oldest_ns: i64) -> Result<()> {
        sqlx::query(super::rollup::lower_dirty_mark(self.store.backend))
            .bind(Resolution::FiveMinutes.state_name())
            .bind(oldest_ns)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }
}

/// Binds a sample's values in [`STATS_COLUMNS`] order.
fn bind_stats(
    row: &mut sqlx::query_builder::Separated<'_, Any, &'static str>,
    sample: &StatsSample,
) {
    let c = &sample.counters;
    let rates = sample.rates.as_ref();
    // A rate of what was not measured is no rate (NULL), not 0 bytes per second.
    let net = rates.filter(|_| c.has(CounterGroup::Network));
    let block = rates.filter(|_| c.has(CounterGroup::BlockIo));
    row.push_bind(rates.map(|r| r.cpu_percent))
        .push_bind(saturating_i64(c.cpu_total_ns))
        .push_bind(saturating_i64(c.memory_usage_bytes))
        .push_bind(saturating_i64(c.memory_working_set_bytes))
        .push_bind(saturating_i64(c.memory_limit_bytes))
        .push_bind(saturating_i64(c.network.rx_bytes))
        .push_bind(saturating_i64(c.network.tx_bytes))
        .push_bind(net.map(|r| r.net_rx_bytes_per_s))
        .push_bind(net.map(|r| r.net_tx_bytes_per_s))
        .push_bind(saturating_i64(c.block_io.read_bytes))
        .push_bind(saturating_i64(c.block_io.write_bytes))
        .push_bind(block.map(|r| r.block_read_bytes_per_s))
        .push_bind(block.map(|r| r.block_write_bytes_per_s))
        .push_bind(saturating_i64(c.pids))
        .push_bind(absent_bits(c));
}

/// A stable key for an event on a host: equal for re-deliveries, different for different
/// events (see `DockerEvent::key`).
pub(super) fn event_key(host: HostId, event: &DockerEvent) -> String {
    hex_sha256(&format!("{}/{}", host.0, event.key()))
}

pub(super) fn hex_sha256(text: &str) -> String {
    hex_sha256_bytes(text.as_bytes())
}

pub(super) fn hex_sha256_bytes(bytes: &[u8]) -> String {
    dockermon_proto::transport::to_hex(&Sha256::digest(bytes))
}

//! Logical containers and the rest of a host's inventory.
//!
//! The identity rule (see ARCHITECTURE.md, "Two live containers are never one"): a logical
//! container is a succession of Docker instances (ids), named on its host by its compose
//! project/service/number when it has them, else by its name. A new instance with the same
//! identity continues the logical container (its history is one series) unless the
//! current instance is live (running, paused, restarting, or known only from its samples)
//! while the new one is live too: two containers that run at the same time are never one
//! record. Such a newcomer gets its own logical container, named by its identity and its
//! Docker id; when the one holding the plain identity is removed, the live one takes the
//! identity over (the removed one keeps its history under its own id). A newcomer that
//! joined while only created (compose's re-creation creates the new container before
//! stopping the old) and then starts while the old one still runs is split off before its
//! first sample.
//!
//! The mapping from every Docker id to its logical container lives in
//! `container_instances`. Updates from an older instance never overwrite a newer one
//! (guarded by the Docker creation time), and removing an old instance after its
//! replacement exists does not mark the logical container removed. A container known only
//! from events (created and removed while its agent was cut off) still gets a record.

use std::collections::{BTreeMap, HashMap};

use dockermon_proto::limits::truncate;
use dockermon_proto::{
    Compose, Container, DockerEvent, EventKind, InventoryUpdate, ObjectKind, StatsSample, Truncated,
};
use sqlx::{Any, AssertSqlSafe, QueryBuilder, Row};

use super::dialect::upsert;
use super::ingest::Writer;
use super::{ContainerKey, DockerIds, HostId, Result, StoreError};

/// Rows per multi-row statement of [`Writer::register_sampled`]: at 9 columns, well under
/// MySQL's 65,535 placeholders and SQLite's 32,766.
const ROWS_PER_STATEMENT: usize = 500;

/// Docker ids learned in the current transaction, by host, remembered in the cache after
/// commit. Looked up by `&str`, so resolving a sample's container allocates nothing.
#[derive(Debug, Default)]
pub(super) struct Learned(HashMap<HostId, DockerIds>);

impl Learned {
    pub(super) fn get(&self, host: HostId, docker_id: &str) -> Option<ContainerKey> {
        self.0.get(&host)?.get(docker_id).copied()
    }

    pub(super) fn contains(&self, host: HostId, docker_id: &str) -> bool {
        self.get(host, docker_id).is_some()
    }

    /// Remembers that `docker_id` of `host` is `key`; the id is copied only when new.
    pub(super) fn insert(&mut self, host: HostId, docker_id: &str, key: ContainerKey) {
        let ids = self.0.entry(host).or_default();
        match ids.get_mut(docker_id) {
            Some(known) => *known = key,
            None => {
                ids.insert(docker_id.into(), key);
            }
        }
    }

    /// Per host, the ids learned.
    pub(super) fn into_hosts(self) -> impl Iterator<Item = (HostId, DockerIds)> {
        self.0.into_iter()
    }
}

/// The identity a container keeps across re-creation.
pub(super) fn identity_of(name: &str, compose: Option<&Compose>) -> String {
    match compose {
        Some(c) => format!(
            "compose/{}/{}/{}",
            c.project,
            c.service,
            c.number.unwrap_or(1)
        ),
        None => format!("name/{name}"),
    }
}

/// The `truncated` column of an object: JSON, or NULL when the bounds cut nothing.
fn truncated_column(truncated: &Truncated) -> Result<Option<String>> {
    Ok(if truncated.is_none() {
        None
    } else {
        Some(serde_json::to_string(truncated)?)
    })
}

/// Strings are cut to their column's size on the way in: a value a strict-mode database
/// refused would fail the whole batch, and with it every later delivery of that batch.
pub(super) fn fit(s: &str, max: usize) -> String {
    truncate(s.to_owned(), max)
}

impl Writer<'_> {
    /// The logical container a Docker id belongs to, if known (learned by this transaction
    /// when it is read from the database).
    pub(super) async fn known_container(
        &mut self,
        host: HostId,
        docker_id: &str,
    ) -> Result<Option<ContainerKey>> {
        if let Some(found) = self
            .learned
            .get(host, docker_id)
            .or_else(|| self.store.cached_instance(host, docker_id))
        {
            return Ok(Some(found));
        }
        let row = sqlx::query(
            "SELECT container_id FROM container_instances WHERE host_id = ? AND docker_id = ?",
        )
        .bind(host.0)
        .bind(fit(docker_id, 128))
        .fetch_optional(&mut *self.conn)
        .await?;
        let found = row.map(|r| ContainerKey(r.get::<i64, _>(0)));
        if let Some(key) = found {
            self.learned.insert(host, docker_id, key);
        }
        Ok(found)
    }

    /// Looks up, in one query per host (and per 500 ids), the logical containers of the
    /// Docker ids in `ids` that neither this transaction nor the cache knows, so that
    /// resolving them afterwards takes no round trip each. A collector that just started
    /// knows none: without this, a fleet's first sweeps after a restart cost one query per
    /// container, one after the other in the single writer (BENCHMARKS.md, "one collector,
    /// 10,000 agents").
    pub(super) async fn prefetch_instances<'i>(
        &mut self,
        ids: impl IntoIterator<Item = (HostId, &'i str)>,
    ) -> Result<()> {
        let mut unknown: HashMap<HostId, Vec<String>> = HashMap::new();
        for (host, docker_id) in ids {
            if !self.learned.contains(host, docker_id)
                && self.store.cached_instance(host, docker_id).is_none()
            {
                unknown.entry(host).or_default().push(fit(docker_id, 128));
            }
        }
        for (host, mut docker_ids) in unknown {
            docker_ids.sort_unstable();
            docker_ids.dedup();
            for chunk in docker_ids.chunks(500) {
                let mut query: QueryBuilder<Any> = QueryBuilder::new(
                    "SELECT docker_id, container_id FROM container_instances WHERE host_id = ",
                );
                query.push_bind(host.0).push(" AND docker_id IN (");
                let mut list = query.separated(", ");
                for docker_id in chunk {
                    list.push_bind(docker_id.clone());
                }
                query.push(")");
                for row in query.build().fetch_all(&mut *self.conn).await? {
                    let docker_id: String = row.try_get(0)?;
                    let key = ContainerKey(row.try_get(1)?);
                    self.learned.insert(host, &docker_id, key);
                }
            }
        }
        Ok(())
    }

    /// Registers, in a few multi-row statements per host, the containers that samples name
    /// and nobody knows yet: a new fleet's first sweeps (and any restart's) otherwise cost
    /// about five round trips per container in one writer, which held a 10,000-host fleet
    /// to 1,000 new containers a second (BENCHMARKS.md, "one collector, 10,000 agents").
    ///
    /// The identity rule is [`Writer::resolve_container`]'s, for an instance in state
    /// `unknown` (live): it joins the logical container holding its identity unless that
    /// one is live, and gets one of its own otherwise. Several unknown instances claiming
    /// one identity in the same batch are left to `resolve_container`, one by one.
    pub(super) async fn register_sampled(
        &mut self,
        samples: &[(HostId, &StatsSample)],
    ) -> Result<()> {
        self.prefetch_instances(
            samples
                .iter()
                .map(|(host, sample)| (*host, sample.container_id.as_str())),
        )
        .await?;
        // Per host, per fitted identity: the unknown Docker ids (fitted) and their names.
        let mut unknown: BTreeMap<HostId, BTreeMap<String, BTreeMap<String, &str>>> =
            BTreeMap::new();
        for (host, sample) in samples {
            let docker_id = sample.container_id.as_str();
            if self.learned.contains(*host, docker_id)
                || self.store.cached_instance(*host, docker_id).is_some()
            {
                continue;
            }
            unknown
                .entry(*host)
                .or_default()
                .entry(fit(&identity_of(&sample.name, None), 600))
                .or_default()
                .entry(fit(docker_id, 128))
                .or_insert(sample.name.as_str());
        }
        for (host, identities) in unknown {
            let single: Vec<(String, String, &str)> = identities
                .into_iter()
                .filter(|(_, ids)| ids.len() == 1)
                .flat_map(|(identity, ids)| {
                    ids.into_iter()
                        .map(move |(docker_id, name)| (identity.clone(), docker_id, name))
                })
                .collect();
            for chunk in single.chunks(ROWS_PER_STATEMENT) {
                self.register_chunk(host, chunk).await?;
            }
        }
        Ok(())
    }

    /// [`Writer::register_sampled`] for up to [`ROWS_PER_STATEMENT`] instances of one
    /// host, each the only one claiming its identity: (identity, Docker id, name).
    async fn register_chunk(
        &mut self,
        host: HostId,
        chunk: &[(String, String, &str)],
    ) -> Result<()> {
        let mut holders_query: QueryBuilder<Any> = QueryBuilder::new(
            "SELECT identity, id, state, removed_ns FROM containers WHERE host_id = ",
        );
        holders_query.push_bind(host.0).push(" AND identity IN (");
        let mut list = holders_query.separated(", ");
        for (identity, _, _) in chunk {
            list.push_bind(identity.clone());
        }
        holders_query.push(")");
        let mut holders: HashMap<String, (ContainerKey, bool)> = HashMap::new();
        for row in holders_query.build().fetch_all(&mut *self.conn).await? {
            let live = row.try_get::<Option<i64>, _>(3)?.is_none()
                && is_live(&row.try_get::<String, _>(2)?);
            holders.insert(row.try_get(0)?, (ContainerKey(row.try_get(1)?), live));
        }
        // (Docker id, logical container) of instances joining an existing one, and
        // (identity, Docker id, name) of those needing a new one.
        let mut mapped: Vec<(&str, ContainerKey)> = Vec::new();
        let mut created: Vec<(String, &str, &str)> = Vec::new();
        for (identity, docker_id, name) in chunk {
            match holders.get(identity) {
                // Both run at once: never one record.
                Some((_, true)) => created.push((
                    fit(&own_identity(identity, docker_id), 600),
                    docker_id,
                    name,
                )),
                Some((key, false)) => mapped.push((docker_id, *key)),
                None => created.push((identity.clone(), docker_id, name)),
            }
        }
        if !created.is_empty() {
            let now = self.now;
            let mut insert: QueryBuilder<Any> = QueryBuilder::new(
                "INSERT INTO containers (host_id, identity, docker_id, name, state, created_ns, \
                 detail, first_seen_ns, last_seen_ns) ",
            );
            insert.push_values(&created, |mut row, (identity, docker_id, name)| {
                row.push_bind(host.0)
                    .push_bind(identity.clone())
                    .push_bind(docker_id.to_string())
                    .push_bind(fit(name, 256))
                    // A sample means it runs; its inventory says more when it comes.
                    .push_bind("unknown")
                    .push_bind(0_i64)
                    .push_bind("{}")
                    .push_bind(now)
                    .push_bind(now);
            });
            insert.build().execute(&mut *self.conn).await?;
            let mut ids_query: QueryBuilder<Any> =
                QueryBuilder::new("SELECT identity, id FROM containers WHERE host_id = ");
            ids_query.push_bind(host.0).push(" AND identity IN (");
            let mut list = ids_query.separated(", ");
            for (identity, _, _) in &created {
                list.push_bind(identity.clone());
            }
            ids_query.push(")");
            let mut ids: HashMap<String, ContainerKey> = HashMap::new();
            for row in ids_query.build().fetch_all(&mut *self.conn).await? {
                ids.insert(row.try_get(0)?, ContainerKey(row.try_get(1)?));
            }
            for (identity, docker_id, _) in &created {
                let key = ids.get(identity).copied().ok_or_else(|| {
                    StoreError::Invalid(format!("container {identity} vanished while created"))
                })?;
                mapped.push((docker_id, key));
            }
        }
        let mut map: QueryBuilder<Any> = QueryBuilder::new(
            "INSERT INTO container_instances (host_id, docker_id, container_id, first_seen_ns) ",
        );
        map.push_values(&mapped, |mut row, (docker_id, key)| {
            row.push_bind(host.0)
                .push_bind(docker_id.to_string())
                .push_bind(key.0)
                .push_bind(self.now);
        });
        map.push(upsert(
            self.store.backend,
            &["host_id", "docker_id"],
            &["container_id"],
        ));
        map.build().execute(&mut *self.conn).await?;
        for (docker_id, key) in mapped {
            self.learned.insert(host, docker_id, key);
        }
        Ok(())
    }

    /// The logical container for a Docker id, created (with what is known of it) when new.
    /// `state` is what the instance is known to be doing (a sample means running).
    pub(super) async fn resolve_container(
        &mut self,
        host: HostId,
        docker_id: &str,
        name: &str,
        compose: Option<&Compose>,
        state: &str,
    ) -> Result<ContainerKey> {
        if let Some(found) = self.known_container(host, docker_id).await? {
            return Ok(found);
        }
        let identity = fit(&identity_of(name, compose), 600);
        let holder = sqlx::query(
            "SELECT id, state, removed_ns FROM containers WHERE host_id = ? AND identity = ?",
        )
        .bind(host.0)
        .bind(&identity)
        .fetch_optional(&mut *self.conn)
        .await?;
        let key = match holder {
            Some(row) => {
                let holder_live =
                    row.get::<Option<i64>, _>(2).is_none() && is_live(&row.get::<String, _>(1));
                if holder_live && is_live(state) {
                    // Both run at once: never one record.
                    let own = fit(&own_identity(&identity, docker_id), 600);
                    self.create_container(host, &own, docker_id, name, compose, state)
                        .await?
                } else {
                    ContainerKey(row.get::<i64, _>(0))
                }
            }
            None => {
                self.create_container(host, &identity, docker_id, name, compose, state)
                    .await?
            }
        };
        self.map_instance(host, docker_id, key).await?;
        Ok(key)
    }

    /// A new logical container, its current instance `docker_id`.
    async fn create_container(
        &mut self,
        host: HostId,
        identity: &str,
        docker_id: &str,
        name: &str,
        compose: Option<&Compose>,
        state: &str,
    ) -> Result<ContainerKey> {
        let now = self.now;
        sqlx::query(
            "INSERT INTO containers (host_id, identity, docker_id, name, state, created_ns, \
             compose_project, compose_service, compose_number, detail, first_seen_ns, last_seen_ns) \
             VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, '{}', ?, ?)",
        )
        .bind(host.0)
        .bind(identity)
        .bind(fit(docker_id, 128))
        .bind(fit(name, 256))
        .bind(state)
        .bind(compose.map(|c| fit(&c.project, 256)))
        .bind(compose.map(|c| fit(&c.service, 256)))
        .bind(compose.and_then(|c| c.number).map(i64::from))
        .bind(now)
        .bind(now)
        .execute(&mut *self.conn)
        .await?;
        let row = sqlx::query("SELECT id FROM containers WHERE host_id = ? AND identity = ?")
            .bind(host.0)
            .bind(identity)
            .fetch_one(&mut *self.conn)
            .await?;
        Ok(ContainerKey(row.get::<i64, _>(0)))
    }

    /// Records (or moves) the mapping of a Docker id to its logical container.
    async fn map_instance(
        &mut self,
        host: HostId,
        docker_id: &str,
        key: ContainerKey,
    ) -> Result<()> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO container_instances (host_id, docker_id, container_id, first_seen_ns) VALUES (?, ?, ?, ?){}",
            super::dialect::upsert(self.store.backend, &["host_id", "docker_id"], &["container_id"])
        )))
        .bind(host.0)
        .bind(fit(docker_id, 128))
        .bind(key.0)
        .bind(self.now)
        .execute(&mut *self.conn)
        .await?;
        self.learned.insert(host, docker_id, key);
        Ok(())
    }

    /// An instance that joined a logical container while only created, now live while that
    /// container's current instance runs too, leaves for a logical container of its own.
    /// It has no samples yet (the agent samples it only once it is running); its events go
    /// with it.
    async fn split_off(
        &mut self,
        host: HostId,
        from: ContainerKey,
        container: &Container,
    ) -> Result<ContainerKey> {
        let identity = identity_of(&container.name, container.compose.as_ref());
        let own = fit(&own_identity(&identity, container.id.as_str()), 600);
        let key = self
            .create_container(
                host,
                &own,
                container.id.as_str(),
                &container.name,
                container.compose.as_ref(),
                container.state.as_str(),
            )
            .await?;
        self.map_instance(host, container.id.as_str(), key).await?;
        sqlx::query("UPDATE activity SET container_id = ? WHERE container_id = ? AND actor_id = ?")
            .bind(key.0)
            .bind(from.0)
            .bind(fit(container.id.as_str(), 256))
            .execute(&mut *self.conn)
            .await?;
        Ok(key)
    }

    /// Writes one container as the agent describes it.
    async fn upsert_container(
        &mut self,
        host: HostId,
        container: &Container,
    ) -> Result<ContainerKey> {
        let now = self.now;
        let mut key = self
            .resolve_container(
                host,
                container.id.as_str(),
                &container.name,
                container.compose.as_ref(),
                container.state.as_str(),
            )
            .await?;
        if is_live(container.state.as_str()) {
            let current = sqlx::query(
                "SELECT docker_id, state, removed_ns, created_ns FROM containers WHERE id = ?",
            )
            .bind(key.0)
            .fetch_one(&mut *self.conn)
            .await?;
            // A late update from an older instance is history, not a second live one.
            let other_live = current.get::<String, _>(0) != fit(container.id.as_str(), 128)
                && current.get::<Option<i64>, _>(2).is_none()
                && is_live(&current.get::<String, _>(1))
                && container.created_ns >= current.get::<i64, _>(3);
            if other_live {
                key = self.split_off(host, key, container).await?;
            }
        }
        let compose = container.compose.as_ref();
        // An update from an older instance (created before the current one) is ignored, and
        // a newer one takes over only from a current instance that no longer runs.
        sqlx::query(
            "UPDATE containers SET docker_id = ?, name = ?, image = ?, image_id = ?, state = ?, health = ?, \
             restart_count = ?, exit_code = ?, created_ns = ?, started_ns = ?, finished_ns = ?, \
             compose_project = ?, compose_service = ?, compose_number = ?, detail = ?, last_seen_ns = ?, \
             oom_killed = ?, truncated = ?, labels_dropped = ?, removed_ns = NULL WHERE id = ? AND created_ns <= ? AND (docker_id = ? OR removed_ns IS NOT NULL \
             OR state NOT IN ('running', 'paused', 'restarting', 'unknown'))",
        )
        .bind(fit(container.id.as_str(), 128))
        .bind(fit(&container.name, 256))
        .bind(fit(&container.image, 256))
        .bind(fit(&container.image_id, 128))
        .bind(container.state.as_str())
        .bind(container.health.map(health_str))
        .bind(i64::from(container.restart_count))
        .bind(container.exit_code)
        .bind(container.created_ns)
        .bind(container.started_at_ns)
        .bind(container.finished_at_ns)
        .bind(compose.map(|c| fit(&c.project, 256)))
        .bind(compose.map(|c| fit(&c.service, 256)))
        .bind(compose.and_then(|c| c.number).map(i64::from))
        .bind(serde_json::to_string(container)?)
        .bind(now)
        .bind(i64::from(container.oom_killed))
        .bind(truncated_column(&container.truncated)?)
        .bind(i64::from(container.truncated.labels))
        .bind(key.0)
        .bind(container.created_ns)
        .bind(fit(container.id.as_str(), 128))
        .execute(&mut *self.conn)
        .await?;
        self.claim_identity(host, key, container).await?;
        Ok(key)
    }

    /// The current instance of a logical container takes the identity its name (or compose
    /// labels) stand for: after a rename, or once the one that held it while both ran is
    /// removed. A live holder keeps it; a removed holder keeps its history under its own id.
    async fn claim_identity(
        &mut self,
        host: HostId,
        key: ContainerKey,
        container: &Container,
    ) -> Result<()> {
        let identity = fit(
            &identity_of(&container.name, container.compose.as_ref()),
            600,
        );
        let docker_id = fit(container.id.as_str(), 128);
        let holder = sqlx::query(
            "SELECT id, docker_id, removed_ns FROM containers WHERE host_id = ? AND identity = ?",
        )
        .bind(host.0)
        .bind(&identity)
        .fetch_optional(&mut *self.conn)
        .await?;
        match holder {
            Some(row) if row.get::<i64, _>(0) == key.0 => return Ok(()),
            Some(row) if row.get::<Option<i64>, _>(2).is_none() => return Ok(()),
            Some(row) => {
                let own = fit(&own_identity(&identity, &row.get::<String, _>(1)), 600);
                sqlx::query("UPDATE containers SET identity = ? WHERE id = ?")
                    .bind(&own)
                    .bind(row.get::<i64, _>(0))
                    .execute(&mut *self.conn)
                    .await?;
            }
            None => {}
        }
        sqlx::query("UPDATE containers SET identity = ? WHERE id = ? AND docker_id = ?")
            .bind(&identity)
            .bind(key.0)
            .bind(&docker_id)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// A container instance is gone. Only the current instance's removal removes the
    /// logical container (shown as `removed`, its history kept).
    async fn remove_container(&mut self, host: HostId, docker_id: &str) -> Result<()> {
        if let Some(key) = self.known_container(host, docker_id).await? {
            sqlx::query(
                "UPDATE containers SET removed_ns = ?, state = 'removed' \
                 WHERE id = ? AND docker_id = ? AND removed_ns IS NULL",
            )
            .bind(self.now)
            .bind(key.0)
            .bind(fit(docker_id, 128))
            .execute(&mut *self.conn)
            .await?;
        }
        Ok(())
    }

    /// The logical container of a container event's actor, created from what the event
    /// says (its name, compose labels, what it did) when the inventory never described
    /// it: a container created and removed while its agent was cut off still has a record,
    /// and its events link to it. `None` for an event that names no container.
    pub(super) async fn container_of_event(
        &mut self,
        host: HostId,
        event: &DockerEvent,
    ) -> Result<Option<ContainerKey>> {
        if event.kind != EventKind::Container || event.actor_id.is_empty() {
            return Ok(None);
        }
        if let Some(key) = self.known_container(host, &event.actor_id).await? {
            self.follow_event(key, event).await?;
            return Ok(Some(key));
        }
        let Some(name) = event
            .actor_name
            .clone()
            .or_else(|| event.attributes.get("name").cloned())
        else {
            return Ok(None);
        };
        let attribute = |key: &str| event.attributes.get(key).cloned();
        let compose = match (
            attribute("com.docker.compose.project"),
            attribute("com.docker.compose.service"),
        ) {
            (Some(project), Some(service)) => Some(Compose {
                project,
                service,
                number: attribute("com.docker.compose.container-number")
                    .and_then(|n| n.parse().ok()),
            }),
            _ => None,
        };
        let state = state_after(event).unwrap_or("created");
        let key = self
            .resolve_container(host, &event.actor_id, &name, compose.as_ref(), state)
            .await?;
        self.follow_event(key, event).await?;
        Ok(Some(key))
    }

    /// Keeps the state of a container known only from events in step with them; the
    /// inventory's description, once there is one, is left alone.
    async fn follow_event(&mut self, key: ContainerKey, event: &DockerEvent) -> Result<()> {
        let Some(state) = state_after(event) else {
            return Ok(());
        };
        let removed = (state == "removed").then_some(event.time_ns);
        sqlx::query(
            "UPDATE containers SET state = ?, removed_ns = COALESCE(?, removed_ns), \
             image = COALESCE(?, image), last_seen_ns = ? \
             WHERE id = ? AND docker_id = ? AND detail = '{}'",
        )
        .bind(state)
        .bind(removed)
        .bind(event.attributes.get("image").map(|image| fit(image, 256)))
        .bind(self.now)
        .bind(key.0)
        .bind(fit(&event.actor_id, 128))
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    /// Applies a full inventory (replacing what was known) or a change set.
    pub(super) async fn apply_inventory(
        &mut self,
        host: HostId,
        update: &InventoryUpdate,
    ) -> Result<()> {
        let now = self.now;
        let backend = self.store.backend;
        // The order within an update is Docker's hint order, which says nothing; apply the
        // removal of an old instance, then instances that do not run, then those that do, so
        // a re-created container takes over from its predecessor rather than split from it.
        for removed in update
            .removed
            .iter()
            .filter(|r| r.kind == ObjectKind::Container)
        {
            self.remove_container(host, &removed.id).await?;
        }
        if update.full {
            // A full snapshot removes what it does not mention, first for the same reason.
            let current = sqlx::query(
                "SELECT docker_id FROM containers WHERE host_id = ? AND removed_ns IS NULL",
            )
            .bind(host.0)
            .fetch_all(&mut *self.conn)
            .await?;
            let listed: std::collections::HashSet<&str> =
                update.containers.iter().map(|c| c.id.as_str()).collect();
            for row in current {
                let docker_id: String = row.get(0);
                if !listed.contains(docker_id.as_str()) {
                    self.remove_container(host, &docker_id).await?;
                }
            }
        }
        let mut containers: Vec<&Container> = update.containers.iter().collect();
        containers.sort_by_key(|c| is_live(c.state.as_str()));
        for container in containers {
            self.upsert_container(host, container).await?;
        }
        for image in &update.images {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO images (host_id, image_id, tags, size_bytes, created_ns, labels, truncated, last_seen_ns) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?){}",
                upsert(backend, &["host_id", "image_id"], &["tags", "size_bytes", "created_ns", "labels", "truncated", "last_seen_ns"])
            )))
            .bind(host.0)
            .bind(fit(&image.id, 128))
            .bind(serde_json::to_string(&image.tags)?)
            .bind(saturating_i64(image.size_bytes))
            .bind(image.created_ns)
            .bind(serde_json::to_string(&image.labels)?)
            .bind(truncated_column(&image.truncated)?)
            .bind(now)
            .execute(&mut *self.conn)
            .await?;
        }
        for volume in &update.volumes {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO volumes (host_id, name, driver, mountpoint, scope, created_ns, labels, truncated, last_seen_ns) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?){}",
                upsert(backend, &["host_id", "name"], &["driver", "mountpoint", "scope", "created_ns", "labels", "truncated", "last_seen_ns"])
            )))
            .bind(host.0)
            .bind(fit(&volume.name, 256))
            .bind(fit(&volume.driver, 256))
            .bind(fit(&volume.mountpoint, 4096))
            .bind(fit(&volume.scope, 16))
            .bind(volume.created_ns)
            .bind(serde_json::to_string(&volume.labels)?)
            .bind(truncated_column(&volume.truncated)?)
            .bind(now)
            .execute(&mut *self.conn)
            .await?;
        }
        for network in &update.networks {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO networks (host_id, network_id, name, driver, scope, internal, created_ns, labels, truncated, last_seen_ns) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?){}",
                upsert(
                    backend,
                    &["host_id", "network_id"],
                    &["name", "driver", "scope", "internal", "created_ns", "labels", "truncated", "last_seen_ns"]
                )
            )))
            .bind(host.0)
            .bind(fit(&network.id, 128))
            .bind(fit(&network.name, 256))
            .bind(fit(&network.driver, 256))
            .bind(fit(&network.scope, 16))
            .bind(i64::from(network.internal))
            .bind(network.created_ns)
            .bind(serde_json::to_string(&network.labels)?)
            .bind(truncated_column(&network.truncated)?)
            .bind(now)
            .execute(&mut *self.conn)
            .await?;
        }

        if update.full {
            // Everything the snapshot did not mention is gone. Rows it mentioned carry
            // exactly `now`, so `<>` (not `<`) is immune to clock differences between replicas.
            sqlx::query("UPDATE containers SET removed_ns = ?, state = 'removed' WHERE host_id = ? AND removed_ns IS NULL AND last_seen_ns <> ?")
                .bind(now)
                .bind(host.0)
                .bind(now)
                .execute(&mut *self.conn)
                .await?;
            for table in ["images", "volumes", "networks"] {
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE host_id = ? AND last_seen_ns <> ?"
                )))
                .bind(host.0)
                .bind(now)
                .execute(&mut *self.conn)
                .await?;
            }
        }

        for removed in &update.removed {
            match removed.kind {
                ObjectKind::Container => {}
                ObjectKind::Image => {
                    sqlx::query("DELETE FROM images WHERE host_id = ? AND image_id = ?")
                        .bind(host.0)
                        .bind(fit(&removed.id, 128))
                        .execute(&mut *self.conn)
                        .await?;
                }
                ObjectKind::Volume => {
                    sqlx::query("DELETE FROM volumes WHERE host_id = ? AND name = ?")
                        .bind(host.0)
                        .bind(fit(&removed.id, 256))
                        .execute(&mut *self.conn)
                        .await?;
                }
                ObjectKind::Network => {
                    sqlx::query("DELETE FROM networks WHERE host_id = ? AND network_id = ?")
                        .bind(host.0)
                        .bind(fit(&removed.id, 128))
                        .execute(&mut *self.conn)
                        .await?;
                }
            }
        }
        Ok(())
    }
}

/// Whether an instance in this state counts as live for the identity rule: it runs (or
/// could at once), or is known only from its samples (`unknown`), which means it ran.
fn is_live(state: &str) -> bool {
    matches!(state, "running" | "paused" | "restarting" | "unknown")
}

/// The identity of a logical container that could not have its plain one (another, live,
/// held it): the plain identity and the Docker id, unique on the host.
fn own_identity(identity: &str, docker_id: &str) -> String {
    format!("{identity}@{docker_id}")
}

/// The state a container event leaves its container in, where it says.
fn state_after(event: &DockerEvent) -> Option<&'static str> {
    Some(match event.action.split(':').next().unwrap_or_default() {
        "create" => "created",
        "start" | "restart" | "unpause" => "running",
        "pause" => "paused",
        "die" | "stop" | "kill" | "oom" => "exited",
        "destroy" => "removed",
        _ => return None,
    })
}

fn health_str(health: dockermon_proto::Health) -> &'static str {
    match health {
        dockermon_proto::Health::Starting => "starting",
        dockermon_proto::Health::Healthy => "healthy",
        dockermon_proto::Health::Unhealthy => "unhealthy",
        dockermon_proto::Health::Unknown => "unknown",
    }
}

/// Counters are `u64` on the wire and `BIGINT` (signed) in both databases; no real counter
/// reaches 2^63.
pub(super) fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

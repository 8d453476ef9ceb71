//! Logical containers and the rest of a host's inventory.
//!
//! A logical container is identified on its host by its compose project/service/number
//! when it has them, else by its name. Re-creating a container (new Docker id, same
//! identity) continues the same logical container, so its history is one series. The
//! mapping from every Docker id ever seen to its logical container lives in
//! `container_instances` and never changes.
//!
//! Updates from an older instance never overwrite a newer one (guarded by the Docker
//! creation time), and removing an old instance after its replacement exists does not
//! mark the logical container removed.

use std::collections::HashMap;

use dockermon_proto::limits::truncate;
use dockermon_proto::{Compose, Container, InventoryUpdate, ObjectKind};
use sqlx::{AssertSqlSafe, Row};

use super::dialect::upsert;
use super::ingest::Writer;
use super::{ContainerKey, HostId, Result};

/// Docker ids learned in the current transaction, remembered in the cache after commit.
pub(super) type Learned = HashMap<(HostId, String), ContainerKey>;

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

/// Strings are cut to their column's size on the way in: a value a strict-mode database
/// refused would fail the whole batch, and with it every later delivery of that batch.
pub(super) fn fit(s: &str, max: usize) -> String {
    truncate(s.to_owned(), max)
}

impl Writer<'_> {
    /// The logical container a Docker id belongs to, if known.
    pub(super) async fn known_container(
        &mut self,
        host: HostId,
        docker_id: &str,
    ) -> Result<Option<ContainerKey>> {
        let key = (host, docker_id.to_owned());
        if let Some(found) = self
            .learned
            .get(&key)
            .copied()
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
        Ok(row.map(|r| ContainerKey(r.get::<i64, _>(0))))
    }

    /// The logical container for a Docker id, created (with what is known of it) when new.
    pub(super) async fn resolve_container(
        &mut self,
        host: HostId,
        docker_id: &str,
        name: &str,
        compose: Option<&Compose>,
    ) -> Result<ContainerKey> {
        let now = self.now;
        if let Some(found) = self.known_container(host, docker_id).await? {
            self.learned.insert((host, docker_id.to_owned()), found);
            return Ok(found);
        }
        let identity = fit(&identity_of(name, compose), 600);
        let existing = sqlx::query("SELECT id FROM containers WHERE host_id = ? AND identity = ?")
            .bind(host.0)
            .bind(&identity)
            .fetch_optional(&mut *self.conn)
            .await?;
        let key = match existing {
            Some(row) => ContainerKey(row.get::<i64, _>(0)),
            None => {
                sqlx::query(
                    "INSERT INTO containers (host_id, identity, docker_id, name, state, created_ns, \
                     compose_project, compose_service, compose_number, detail, first_seen_ns, last_seen_ns) \
                     VALUES (?, ?, ?, ?, 'unknown', 0, ?, ?, ?, '{}', ?, ?)",
                )
                .bind(host.0)
                .bind(&identity)
                .bind(fit(docker_id, 128))
                .bind(fit(name, 256))
                .bind(compose.map(|c| fit(&c.project, 256)))
                .bind(compose.map(|c| fit(&c.service, 256)))
                .bind(compose.and_then(|c| c.number).map(i64::from))
                .bind(now)
                .bind(now)
                .execute(&mut *self.conn)
                .await?;
                let row =
                    sqlx::query("SELECT id FROM containers WHERE host_id = ? AND identity = ?")
                        .bind(host.0)
                        .bind(&identity)
                        .fetch_one(&mut *self.conn)
                        .await?;
                ContainerKey(row.get::<i64, _>(0))
            }
        };
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO container_instances (host_id, docker_id, container_id, first_seen_ns) VALUES (?, ?, ?, ?){}",
            super::dialect::ignore_duplicates(self.store.backend, "host_id")
        )))
        .bind(host.0)
        .bind(fit(docker_id, 128))
        .bind(key.0)
        .bind(now)
        .execute(&mut *self.conn)
        .await?;
        self.learned.insert((host, docker_id.to_owned()), key);
        Ok(key)
    }

    /// Writes one container as the agent describes it.
    async fn upsert_container(
        &mut self,
        host: HostId,
        container: &Container,
    ) -> Result<ContainerKey> {
        let now = self.now;
        let key = self
            .resolve_container(
                host,
                container.id.as_str(),
                &container.name,
                container.compose.as_ref(),
            )
            .await?;
        let compose = container.compose.as_ref();
        // An update from an older instance (created before the current one) is ignored.
        sqlx::query(
            "UPDATE containers SET docker_id = ?, name = ?, image = ?, image_id = ?, state = ?, health = ?, \
             restart_count = ?, exit_code = ?, created_ns = ?, started_ns = ?, finished_ns = ?, \
             compose_project = ?, compose_service = ?, compose_number = ?, detail = ?, last_seen_ns = ?, \
             removed_ns = NULL WHERE id = ? AND created_ns <= ?",
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
        .bind(key.0)
        .bind(container.created_ns)
        .execute(&mut *self.conn)
        .await?;
        // A rename moves the identity too, unless another logical container holds it.
        let identity = fit(&identity_of(&container.name, compose), 600);
        let holder = sqlx::query("SELECT id FROM containers WHERE host_id = ? AND identity = ?")
            .bind(host.0)
            .bind(&identity)
            .fetch_optional(&mut *self.conn)
            .await?;
        if holder.is_none() {
            sqlx::query("UPDATE containers SET identity = ? WHERE id = ? AND docker_id = ?")
                .bind(&identity)
                .bind(key.0)
                .bind(fit(container.id.as_str(), 128))
                .execute(&mut *self.conn)
                .await?;
        }
        Ok(key)
    }

    /// Applies a full inventory (replacing what was known) or a change set.
    pub(super) async fn apply_inventory(
        &mut self,
        host: HostId,
        update: &InventoryUpdate,
    ) -> Result<()> {
        let now = self.now;
        let backend = self.store.backend;
        for container in &update.containers {
            self.upsert_container(host, container).await?;
        }
        for image in &update.images {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO images (host_id, image_id, tags, size_bytes, created_ns, labels, last_seen_ns) \
                 VALUES (?, ?, ?, ?, ?, ?, ?){}",
                upsert(backend, &["host_id", "image_id"], &["tags", "size_bytes", "created_ns", "labels", "last_seen_ns"])
            )))
            .bind(host.0)
            .bind(fit(&image.id, 128))
            .bind(serde_json::to_string(&image.tags)?)
            .bind(saturating_i64(image.size_bytes))
            .bind(image.created_ns)
            .bind(serde_json::to_string(&image.labels)?)
            .bind(now)
            .execute(&mut *self.conn)
            .await?;
        }
        for volume in &update.volumes {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO volumes (host_id, name, driver, mountpoint, scope, created_ns, labels, last_seen_ns) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?){}",
                upsert(backend, &["host_id", "name"], &["driver", "mountpoint", "scope", "created_ns", "labels", "last_seen_ns"])
            )))
            .bind(host.0)
            .bind(fit(&volume.name, 256))
            .bind(fit(&volume.driver, 256))
            .bind(fit(&volume.mountpoint, 4096))
            .bind(fit(&volume.scope, 16))
            .bind(volume.created_ns)
            .bind(serde_json::to_string(&volume.labels)?)
            .bind(now)
            .execute(&mut *self.conn)
            .await?;
        }
        for network in &update.networks {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO networks (host_id, network_id, name, driver, scope, internal, created_ns, labels, last_seen_ns) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?){}",
                upsert(
                    backend,
                    &["host_id", "network_id"],
                    &["name", "driver", "scope", "internal", "created_ns", "labels", "last_seen_ns"]
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
            .bind(now)
            .execute(&mut *self.conn)
            .await?;
        }

        if update.full {
            // Everything the snapshot did not mention is gone. Rows it mentioned carry
            // exactly `now`, so `<>` (not `<`) is immune to clock differences between replicas.
            sqlx::query("UPDATE containers SET removed_ns = ? WHERE host_id = ? AND removed_ns IS NULL AND last_seen_ns <> ?")
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
                ObjectKind::Container => {
                    if let Some(key) = self.known_container(host, &removed.id).await? {
                        // Only the current instance's removal removes the logical container.
                        sqlx::query(
                            "UPDATE containers SET removed_ns = ? \
                             WHERE id = ? AND docker_id = ? AND removed_ns IS NULL",
                        )
                        .bind(now)
                        .bind(key.0)
                        .bind(fit(&removed.id, 128))
                        .execute(&mut *self.conn)
                        .await?;
                    }
                }
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

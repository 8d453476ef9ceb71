//! Kubernetes-style resources held in the store when no API server holds them.
//!
//! The store knows only rows: kind, namespace (`""` for cluster-scoped kinds), name, and
//! JSON text for labels, annotations, spec and status; [`crate::resources`] owns what the
//! JSON means. Writes follow the API server's rules: `generation` moves only when the spec
//! changes, `resource_version` on every change, an unchanged apply writes nothing, and a
//! concurrent writer is detected by `resource_version` (optimistic concurrency) instead of
//! locks, so both backends behave the same.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Result, Store, StoreError};

/// A resource as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRow {
    pub kind: String,
    /// `""` for cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// JSON object.
    pub labels: String,
    /// JSON object.
    pub annotations: String,
    /// JSON object.
    pub spec: String,
    /// JSON object; `None` until a controller first wrote it.
    pub status: Option<String>,
    pub generation: i64,
    pub resource_version: i64,
    pub created_ns: i64,
    /// When deletion was asked; the row stays until its cleanup ran.
    pub deleting_ns: Option<i64>,
}

/// What an apply wants a resource to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredResource<'a> {
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub labels: &'a str,
    pub annotations: &'a str,
    pub spec: &'a str,
}

/// What an apply did, in kubectl's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    Configured,
    Unchanged,
}

impl Applied {
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Created => "created",
            Applied::Configured => "configured",
            Applied::Unchanged => "unchanged",
        }
    }
}

/// Why an apply was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApplyRefusal {
    /// The spec may not change (a profile session's); carries the kind.
    #[error("{0}'s spec cannot change once created; delete it and create a new one")]
    Immutable(String),
    /// The resource is being deleted.
    #[error("it is being deleted")]
    Deleting,
    #[error(transparent)]
    Store(#[from] StoreError),
}

const COLUMNS: &str = "kind, namespace, name, uid, labels, annotations, spec, status, generation, \
                       resource_version, created_ns, deleting_ns";
/// Concurrent writers to one resource are rare; this many lost races is a real conflict.
const APPLY_ATTEMPTS: usize = 5;

impl Store {
    /// Creates or updates a resource. `immutable_spec`: a changed spec is refused.
    pub async fn apply_resource(
        &self,
        desired: &DesiredResource<'_>,
        immutable_spec: bool,
        now_ns: i64,
    ) -> std::result::Result<(Applied, ResourceRow), ApplyRefusal> {
        for _ in 0..APPLY_ATTEMPTS {
            let Some(current) = self
                .resource(desired.kind, desired.namespace, desired.name)
                .await?
            else {
                // A random UUID, as Kubernetes gives every object.
                let uid = uuid::Uuid::new_v4().to_string();
                let inserted = sqlx::query(
                    "INSERT INTO resources (kind, namespace, name, uid, labels, annotations, spec, \
                     generation, resource_version, created_ns) VALUES (?, ?, ?, ?, ?, ?, ?, 1, 1, ?)",
                )
                .bind(desired.kind)
                .bind(desired.namespace)
                .bind(desired.name)
                .bind(&uid)
                .bind(desired.labels)
                .bind(desired.annotations)
                .bind(desired.spec)
                .bind(now_ns)
                .execute(&self.pool)
                .await;
                match inserted.map_err(StoreError::from) {
                    Ok(_) => {}
                    // Created by someone else meanwhile: apply over theirs.
                    Err(StoreError::Conflict(_)) => continue,
                    Err(error) => return Err(error.into()),
                }
                let row = self
                    .resource(desired.kind, desired.namespace, desired.name)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                return Ok((Applied::Created, row));
            };
            if current.deleting_ns.is_some() {
                return Err(ApplyRefusal::Deleting);
            }
            let spec_changed = current.spec != desired.spec;
            if spec_changed && immutable_spec {
                return Err(ApplyRefusal::Immutable(desired.kind.to_string()));
            }
            if !spec_changed
                && current.labels == desired.labels
                && current.annotations == desired.annotations
            {
                return Ok((Applied::Unchanged, current));
            }
            let updated = sqlx::query(
                "UPDATE resources SET labels = ?, annotations = ?, spec = ?, generation = ?, \
                 resource_version = resource_version + 1 \
                 WHERE kind = ? AND namespace = ? AND name = ? AND resource_version = ?",
            )
            .bind(desired.labels)
            .bind(desired.annotations)
            .bind(desired.spec)
            .bind(current.generation + i64::from(spec_changed))
            .bind(desired.kind)
            .bind(desired.namespace)
            .bind(desired.name)
            .bind(current.resource_version)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from)?;
            if updated.rows_affected() == 1 {
                let row = self
                    .resource(desired.kind, desired.namespace, desired.name)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                return Ok((Applied::Configured, row));
            }
        }
        Err(StoreError::Conflict(sqlx::Error::Protocol(
            "the resource kept changing under this apply".into(),
        ))
        .into())
    }

    /// Keeps a copy of a resource another API server holds (the operator's mirror of a
    /// Kubernetes `DockerHost`): its spec, and its `generation` as that server counts it.
    pub async fn mirror_resource(
        &self,
        desired: &DesiredResource<'_>,
        generation: i64,
        now_ns: i64,
    ) -> Result<()> {
        match self.apply_resource(desired, false, now_ns).await {
            Ok(_) | Err(ApplyRefusal::Deleting) => {}
            Err(ApplyRefusal::Store(error)) => return Err(error),
            Err(ApplyRefusal::Immutable(_)) => unreachable!("mirrored specs are mutable"),
        }
        sqlx::query(
            "UPDATE resources SET generation = ? WHERE kind = ? AND namespace = ? AND name = ? AND generation <> ?",
        )
        .bind(generation)
        .bind(desired.kind)
        .bind(desired.namespace)
        .bind(desired.name)
        .bind(generation)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One resource, if it exists.
    pub async fn resource(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ResourceRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM resources WHERE kind = ? AND namespace = ? AND name = ?"
        )))
        .bind(kind)
        .bind(namespace)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| resource_row(&row)).transpose()
    }

    /// Every resource of `kind`, in one namespace or all (`None`), by namespace and name.
    pub async fn resources(&self, kind: &str, namespace: Option<&str>) -> Result<Vec<ResourceRow>> {
        let rows = match namespace {
            Some(namespace) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM resources WHERE kind = ? AND namespace = ? ORDER BY namespace, name"
                )))
                .bind(kind)
                .bind(namespace)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM resources WHERE kind = ? ORDER BY namespace, name"
                )))
                .bind(kind)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(resource_row).collect()
    }

    /// Writes a resource's status if it differs from the stored one. True when written.
    /// `generation`: the write is skipped if the spec moved on meanwhile (the caller's status
    /// was computed for an older spec).
    pub async fn set_resource_status(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        generation: i64,
        status: &str,
    ) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE resources SET status = ?, resource_version = resource_version + 1 \
             WHERE kind = ? AND namespace = ? AND name = ? AND generation = ? \
             AND (status IS NULL OR status <> ?)",
        )
        .bind(status)
        .bind(kind)
        .bind(namespace)
        .bind(name)
        .bind(generation)
        .bind(status)
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Asks for a resource's deletion: it is marked, and goes once its cleanup ran
    /// ([`Store::remove_resource`]). `None` when there is no such resource.
    pub async fn mark_resource_deleting(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        now_ns: i64,
    ) -> Result<Option<ResourceRow>> {
        sqlx::query(
            "UPDATE resources SET deleting_ns = ?, resource_version = resource_version + 1 \
             WHERE kind = ? AND namespace = ? AND name = ? AND deleting_ns IS NULL",
        )
        .bind(now_ns)
        .bind(kind)
        .bind(namespace)
        .bind(name)
        .execute(&self.pool)
        .await?;
        self.resource(kind, namespace, name).await
    }

    /// Removes a resource whose cleanup ran. `uid` guards against removing a newer
    /// resource of the same name. True when removed.
    pub async fn remove_resource(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> Result<bool> {
        let deleted = sqlx::query(
            "DELETE FROM resources WHERE kind = ? AND namespace = ? AND name = ? AND uid = ?",
        )
        .bind(kind)
        .bind(namespace)
        .bind(name)
        .bind(uid)
        .execute(&self.pool)
        .await?;
        Ok(deleted.rows_affected() == 1)
    }
}

fn resource_row(row: &AnyRow) -> Result<ResourceRow> {
    Ok(ResourceRow {
        kind: row.try_get("kind")?,
        namespace: row.try_get("namespace")?,
        name: row.try_get("name")?,
        uid: row.try_get("uid")?,
        labels: row.try_get("labels")?,
        annotations: row.try_get("annotations")?,
        spec: row.try_get("spec")?,
        status: row.try_get("status")?,
        generation: row.try_get("generation")?,
        resource_version: row.try_get("resource_version")?,
        created_ns: row.try_get("created_ns")?,
        deleting_ns: row.try_get("deleting_ns")?,
    })
}

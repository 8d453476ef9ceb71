//! Reading: inventory lists, activity, stats series and latest stats.
//!
//! Every filter value is bound as a parameter, never spliced into SQL; only fixed column
//! names and keywords are. Lists are paginated with a total, and pages are bounded.

use std::collections::BTreeMap;

use dockermon_proto::{Container, HostInfo, Truncated};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, QueryBuilder, Row};
use utoipa::ToSchema;

use super::rollup::{Resolution, Retention};
use super::{Backend, ContainerKey, HostId, Result, Store, StoreError};

/// A page of a list: `limit` items after skipping `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub offset: u64,
    pub limit: u32,
}

impl Page {
    pub const MAX_LIMIT: u32 = 1000;
    /// Deeper offsets are refused: walking that far is a scan, and no person pages there.
    pub const MAX_OFFSET: u64 = 1_000_000;

    pub fn new(offset: u64, limit: u32) -> Result<Page, InvalidPage> {
        if limit == 0 || limit > Self::MAX_LIMIT {
            return Err(InvalidPage(format!(
                "limit must be between 1 and {}",
                Self::MAX_LIMIT
            )));
        }
        if offset > Self::MAX_OFFSET {
            return Err(InvalidPage(format!(
                "offset must be at most {}",
                Self::MAX_OFFSET
            )));
        }
        Ok(Page { offset, limit })
    }

    pub fn first(limit: u32) -> Page {
        Page {
            offset: 0,
            limit: limit.clamp(1, Self::MAX_LIMIT),
        }
    }
}

/// A page that is out of bounds; the message says which bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPage(pub String);

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Paged<T> {
    pub total: u64,
    pub offset: u64,
    pub limit: u32,
    pub items: Vec<T>,
    /// Why the page may not be the whole answer (a label filter over containers whose
    /// labels were cut); absent when there is no doubt.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// What a label filter says when `count` containers it looked at had labels left out
/// beyond [`dockermon_proto::limits::MAX_LABELS`]: they may carry the label unseen.
pub fn label_filter_warning(count: u64) -> Option<String> {
    (count > 0).then(|| {
        format!(
            "{count} container(s) in scope had more than {} labels and some were left out; \
             the label filter may miss them (see `truncated.labels` on each container)",
            dockermon_proto::limits::MAX_LABELS
        )
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HostRow {
    pub id: HostId,
    pub name: String,
    pub engine_id: String,
    pub docker_version: String,
    pub agent_version: String,
    /// The latest host description from the agent.
    #[schema(value_type = Option<Object>)]
    pub info: Option<HostInfo>,
    pub created_ns: i64,
    pub last_seen_ns: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ContainerRow {
    pub id: ContainerKey,
    pub host_id: HostId,
    pub docker_id: String,
    pub name: String,
    pub image: String,
    pub state: String,
    pub health: Option<String>,
    pub compose_project: Option<String>,
    pub compose_service: Option<String>,
    pub compose_number: Option<i64>,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
    pub removed_ns: Option<i64>,
    /// The last exit code (`State.ExitCode`); `None` while it has never exited.
    pub exit_code: Option<i64>,
    /// Docker's `State.OOMKilled`: the kernel's OOM killer ended the last run (exit code
    /// 137 alone does not say so: `docker kill` gives it too).
    pub oom_killed: bool,
    /// Docker's `RestartCount`: restarts by the restart policy since the container started.
    pub restart_count: i64,
    /// What the bounds on container-controlled text cut from the record (`name`: the name
    /// was cut; `labels`, `ports`, `mounts`, `networks`: how many were left out); absent
    /// when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub truncated: Option<Truncated>,
    /// The container as the agent last described it (`None` for a container known only
    /// from its samples).
    #[schema(value_type = Option<Object>)]
    pub detail: Option<Container>,
}

#[derive(Debug, Clone, Default)]
pub struct ContainerFilter {
    pub host: Option<HostId>,
    pub state: Option<String>,
    pub name: Option<String>,
    /// A label key, and optionally the value it must have.
    pub label: Option<(String, Option<String>)>,
    pub compose_project: Option<String>,
    /// Text the name or the image contains, whatever its case.
    pub search: Option<String>,
    pub include_removed: bool,
    /// Include each container's full description (`detail`); lists leave it out by
    /// default, as it is most of a row's size.
    pub detail: bool,
}

/// How people name a container on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerSelector {
    Name(String),
    Compose {
        project: String,
        service: String,
        /// The replica; the first when not given.
        number: Option<u32>,
    },
}

#[derive(Debug, Clone, Default)]
pub struct ActivityFilter {
    pub host: Option<HostId>,
    pub kind: Option<String>,
    /// The action's name (`start`, `exec_start`), without its arguments.
    pub action: Option<String>,
    pub container: Option<ContainerKey>,
    pub user: Option<i64>,
    pub from_ns: Option<i64>,
    pub to_ns: Option<i64>,
    /// Include sign-in events (kind `auth`: emails and addresses, for admins only).
    pub include_auth: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ActivityEntry {
    pub id: i64,
    pub host_id: Option<HostId>,
    pub time_ns: i64,
    pub kind: String,
    pub action: String,
    pub actor_id: String,
    pub actor_name: Option<String>,
    pub container_id: Option<ContainerKey>,
    pub user_id: Option<i64>,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct StatsQuery {
    pub container: ContainerKey,
    pub from_ns: i64,
    pub to_ns: i64,
    /// `None`: the finest resolution that keeps the series within `max_points`.
    pub resolution: Option<Resolution>,
    pub max_points: u32,
}

/// Average and maximum over a point's samples (equal for raw points).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Agg {
    pub avg: f64,
    pub max: f64,
}

/// One point of a stats series. A figure is `null` where it was not measured (the
/// network of a container on the host's network, memory on a host without memory
/// accounting) or, for rates, where there was no earlier sample to compute it from.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StatsPoint {
    pub time_ns: i64,
    pub samples: i64,
    pub cpu_percent: Option<Agg>,
    pub memory_usage_bytes: Option<Agg>,
    pub memory_working_set_bytes: Option<Agg>,
    pub memory_limit_bytes: Option<f64>,
    pub net_rx_bytes_per_s: Option<Agg>,
    pub net_tx_bytes_per_s: Option<Agg>,
    pub block_read_bytes_per_s: Option<Agg>,
    pub block_write_bytes_per_s: Option<Agg>,
    pub pids: Option<Agg>,
}

/// The `absent` bits of memory and pids (see `container_stats.absent`).
const ABSENT_MEMORY: i64 = 4;
const ABSENT_PIDS: i64 = 8;

/// `value` unless `absent` has `bit`.
fn measured<T>(absent: i64, bit: i64, value: T) -> Option<T> {
    (absent & bit == 0).then_some(value)
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StatsSeries {
    pub resolution: Resolution,
    pub points: Vec<StatsPoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LatestStats {
    pub container_id: ContainerKey,
    pub name: String,
    pub docker_id: String,
    pub time_ns: i64,
    pub cpu_percent: Option<f64>,
    /// `null` where not measured, as in [`StatsPoint`].
    pub memory_usage_bytes: Option<i64>,
    pub memory_working_set_bytes: Option<i64>,
    pub memory_limit_bytes: Option<i64>,
    pub net_rx_bytes_per_s: Option<f64>,
    pub net_tx_bytes_per_s: Option<f64>,
    pub block_read_bytes_per_s: Option<f64>,
    pub block_write_bytes_per_s: Option<f64>,
    pub pids: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ImageRow {
    pub host_id: HostId,
    pub id: String,
    pub tags: Vec<String>,
    pub size_bytes: i64,
    pub created_ns: i64,
    pub labels: BTreeMap<String, String>,
    /// What the bounds cut (`name`: cut; `labels`, `tags`: how many were left out);
    /// absent when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub truncated: Option<Truncated>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct VolumeRow {
    pub host_id: HostId,
    pub name: String,
    pub driver: String,
    pub mountpoint: String,
    pub scope: String,
    pub created_ns: Option<i64>,
    pub labels: BTreeMap<String, String>,
    /// What the bounds cut (`name`: cut; `labels`, `tags`: how many were left out);
    /// absent when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub truncated: Option<Truncated>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct NetworkRow {
    pub host_id: HostId,
    pub id: String,
    pub name: String,
    pub driver: String,
    pub scope: String,
    pub internal: bool,
    pub created_ns: Option<i64>,
    pub labels: BTreeMap<String, String>,
    /// What the bounds cut (`name`: cut; `labels`, `tags`: how many were left out);
    /// absent when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub truncated: Option<Truncated>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UsageRow {
    pub host_id: HostId,
    pub time_ns: i64,
    pub layers_bytes: i64,
    /// Count, active, bytes, reclaimable bytes.
    #[schema(value_type = Vec<i64>)]
    pub images: [i64; 4],
    /// Count, active, bytes, reclaimable bytes.
    #[schema(value_type = Vec<i64>)]
    pub containers: [i64; 4],
    /// Count, active, bytes, reclaimable bytes.
    #[schema(value_type = Vec<i64>)]
    pub volumes: [i64; 4],
    /// Count, active, bytes, reclaimable bytes.
    #[schema(value_type = Vec<i64>)]
    pub build_cache: [i64; 4],
    /// The largest container layers and volumes.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

const CONTAINER_COLUMNS: &str = "id, host_id, docker_id, name, image, state, health, compose_project, \
     compose_service, compose_number, first_seen_ns, last_seen_ns, removed_ns, exit_code, oom_killed, \
     restart_count, truncated, detail";
/// Without the full description: what lists show unless asked for more.
const CONTAINER_SUMMARY_COLUMNS: &str = "id, host_id, docker_id, name, image, state, health, \
     compose_project, compose_service, compose_number, first_seen_ns, last_seen_ns, removed_ns, \
     exit_code, oom_killed, restart_count, truncated";

/// A container row; `detail` is read only when the query selected it.
fn container_row_with(row: &AnyRow, with_detail: bool) -> Result<ContainerRow> {
    let detail: String = if with_detail {
        row.try_get("detail")?
    } else {
        String::new()
    };
    Ok(ContainerRow {
        id: ContainerKey(row.try_get("id")?),
        host_id: HostId(row.try_get("host_id")?),
        docker_id: row.try_get("docker_id")?,
        name: row.try_get("name")?,
        image: row.try_get("image")?,
        state: row.try_get("state")?,
        health: row.try_get("health")?,
        compose_project: row.try_get("compose_project")?,
        compose_service: row.try_get("compose_service")?,
        compose_number: row.try_get("compose_number")?,
        first_seen_ns: row.try_get("first_seen_ns")?,
        last_seen_ns: row.try_get("last_seen_ns")?,
        removed_ns: row.try_get("removed_ns")?,
        exit_code: row.try_get("exit_code")?,
        oom_killed: row.try_get::<i64, _>("oom_killed")? != 0,
        restart_count: row.try_get("restart_count")?,
        truncated: truncated(row)?,
        detail: serde_json::from_str(&detail).ok(),
    })
}

fn usage_row(host: HostId, row: &AnyRow) -> Result<UsageRow> {
    let four = |prefix: &str| -> Result<[i64; 4]> {
        Ok([
            row.try_get(format!("{prefix}_count").as_str())?,
            row.try_get(format!("{prefix}_active").as_str())?,
            row.try_get(format!("{prefix}_bytes").as_str())?,
            row.try_get(format!("{prefix}_reclaimable_bytes").as_str())?,
        ])
    };
    Ok(UsageRow {
        host_id: host,
        time_ns: row.try_get("time_ns")?,
        layers_bytes: row.try_get("layers_bytes")?,
        images: four("images")?,
        containers: four("containers")?,
        volumes: four("volumes")?,
        build_cache: four("build_cache")?,
        detail: serde_json::from_str(&row.try_get::<String, _>("detail")?)?,
    })
}

impl UsageRow {
    /// The row a disk usage record is stored as.
    pub fn from_record(host: HostId, usage: &dockermon_proto::DiskUsage) -> UsageRow {
        let four = |s: &dockermon_proto::UsageSummary| {
            [s.count, s.active, s.size_bytes, s.reclaimable_bytes]
                .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
        };
        UsageRow {
            host_id: host,
            time_ns: usage.time_ns,
            layers_bytes: i64::try_from(usage.layers_bytes).unwrap_or(i64::MAX),
            images: four(&usage.images),
            containers: four(&usage.containers),
            volumes: four(&usage.volumes),
            build_cache: four(&usage.build_cache),
            detail: usage_detail(usage),
        }
    }
}

/// What of a disk usage record is kept as JSON: the largest containers and volumes.
pub(super) fn usage_detail(usage: &dockermon_proto::DiskUsage) -> serde_json::Value {
    serde_json::json!({
        "per_container": usage.per_container,
        "per_volume": usage.per_volume,
    })
}

fn container_row(row: &AnyRow) -> Result<ContainerRow> {
    container_row_with(row, true)
}

/// The `truncated` column: what the bounds cut, `None` when nothing.
fn truncated(row: &AnyRow) -> Result<Option<Truncated>> {
    Ok(row
        .try_get::<Option<String>, _>("truncated")?
        .and_then(|text| serde_json::from_str(&text).ok()))
}

fn json_map(text: &str) -> Result<BTreeMap<String, String>> {
    Ok(serde_json::from_str(text)?)
}

/// A JSON path to one label, with the key quoted so any key is just a key.
fn label_path(key: &str) -> String {
    format!(
        "$.labels.\"{}\"",
        key.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

impl Store {
    pub async fn hosts(&self) -> Result<Vec<HostRow>> {
        let rows = sqlx::query(
            "SELECT id, name, engine_id, docker_version, agent_version, info, created_ns, last_seen_ns FROM hosts ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(host_row).collect()
    }

    /// A page of hosts, by name.
    pub async fn hosts_page(&self, page: Page) -> Result<Paged<HostRow>> {
        let mut select: QueryBuilder<Any> = QueryBuilder::new(
            "SELECT id, name, engine_id, docker_version, agent_version, info, created_ns, last_seen_ns FROM hosts",
        );
        push_page(&mut select, " ORDER BY name", page);
        let rows = select.build().fetch_all(&self.pool).await?;
        let items = rows.iter().map(host_row).collect::<Result<_>>()?;
        self.with_total(page, items, QueryBuilder::new("SELECT COUNT(*) FROM hosts"))
            .await
    }

    pub async fn host(&self, id: HostId) -> Result<HostRow> {
        let row = sqlx::query(
            "SELECT id, name, engine_id, docker_version, agent_version, info, created_ns, last_seen_ns FROM hosts WHERE id = ?",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        host_row(&row)
    }

    pub async fn container(&self, key: ContainerKey) -> Result<ContainerRow> {
        let mut query: QueryBuilder<Any> = QueryBuilder::new(format!(
            "SELECT {CONTAINER_COLUMNS} FROM containers WHERE id = "
        ));
        query.push_bind(key.0);
        let row = query
            .build()
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        container_row(&row)
    }

    /// The logical container a person names on a host.
    pub async fn find_container(
        &self,
        host: HostId,
        selector: &ContainerSelector,
    ) -> Result<ContainerRow> {
        let mut query: QueryBuilder<Any> = QueryBuilder::new(format!(
            "SELECT {CONTAINER_COLUMNS} FROM containers WHERE host_id = "
        ));
        query.push_bind(host.0);
        match selector {
            ContainerSelector::Name(name) => {
                // The current holder of the name first, then the most recently seen.
                query.push(" AND name = ").push_bind(name.clone());
                query.push(" ORDER BY removed_ns IS NULL DESC, last_seen_ns DESC LIMIT 1");
            }
            ContainerSelector::Compose {
                project,
                service,
                number,
            } => {
                query
                    .push(" AND identity = ")
                    .push_bind(super::containers::identity_of(
                        "",
                        Some(&dockermon_proto::Compose {
                            project: project.clone(),
                            service: service.clone(),
                            number: Some(number.unwrap_or(1)),
                        }),
                    ));
            }
        }
        let row = query
            .build()
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        container_row(&row)
    }

    pub async fn containers(
        &self,
        filter: &ContainerFilter,
        page: Page,
    ) -> Result<Paged<ContainerRow>> {
        let backend = self.backend;
        let push_where = |query: &mut QueryBuilder<Any>, with_label: bool| {
            query.push(" WHERE 1 = 1");
            if let Some(host) = filter.host {
                query.push(" AND host_id = ").push_bind(host.0);
            }
            if let Some(state) = &filter.state {
                query.push(" AND state = ").push_bind(state.clone());
            }
            if let Some(name) = &filter.name {
                query.push(" AND name = ").push_bind(name.clone());
            }
            if let Some(project) = &filter.compose_project {
                query
                    .push(" AND compose_project = ")
                    .push_bind(project.clone());
            }
            if let Some(search) = &filter.search {
                // `!` escapes LIKE's wildcards the same way on both backends (a backslash
                // would itself need escaping in MySQL's string literals).
                let escaped: String = search
                    .to_lowercase()
                    .chars()
                    .flat_map(|c| match c {
                        '!' | '%' | '_' => vec!['!', c],
                        c => vec![c],
                    })
                    .collect();
                let pattern = format!("%{escaped}%");
                query
                    .push(" AND (LOWER(name) LIKE ")
                    .push_bind(pattern.clone())
                    .push(" ESCAPE '!' OR LOWER(image) LIKE ")
                    .push_bind(pattern)
                    .push(" ESCAPE '!')");
            }
            if !filter.include_removed {
                query.push(" AND removed_ns IS NULL");
            }
            if let Some((key, value)) = filter.label.as_ref().filter(|_| with_label) {
                let path = label_path(key);
                match (value, backend) {
                    (None, _) => {
                        query
                            .push(" AND json_extract(detail, ")
                            .push_bind(path)
                            .push(") IS NOT NULL");
                    }
                    (Some(value), Backend::MySql) => {
                        query
                            .push(" AND JSON_UNQUOTE(JSON_EXTRACT(detail, ")
                            .push_bind(path)
                            .push(")) = ")
                            .push_bind(value.clone());
                    }
                    (Some(value), Backend::Sqlite) => {
                        query
                            .push(" AND json_extract(detail, ")
                            .push_bind(path)
                            .push(") = ")
                            .push_bind(value.clone());
                    }
                }
            }
        };
        let columns = if filter.detail {
            CONTAINER_COLUMNS
        } else {
            CONTAINER_SUMMARY_COLUMNS
        };
        let mut select: QueryBuilder<Any> =
            QueryBuilder::new(format!("SELECT {columns} FROM containers"));
        push_where(&mut select, true);
        push_page(&mut select, " ORDER BY name, id", page);
        let rows = select.build().fetch_all(&self.pool).await?;
        let items = rows
            .iter()
            .map(|row| container_row_with(row, filter.detail))
            .collect::<Result<_>>()?;
        let mut count: QueryBuilder<Any> = QueryBuilder::new("SELECT COUNT(*) FROM containers");
        push_where(&mut count, true);
        let mut paged = self.with_total(page, items, count).await?;
        if filter.label.is_some() {
            let mut dropped: QueryBuilder<Any> =
                QueryBuilder::new("SELECT COUNT(*) FROM containers");
            push_where(&mut dropped, false);
            dropped.push(" AND labels_dropped > 0");
            let dropped: i64 = dropped.build().fetch_one(&self.pool).await?.try_get(0)?;
            paged.warnings.extend(label_filter_warning(dropped as u64));
        }
        Ok(paged)
    }

    /// A host's containers not removed, with their descriptions, by name then id.
    pub async fn current_containers_of(&self, host: HostId) -> Result<Vec<ContainerRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CONTAINER_COLUMNS} FROM containers WHERE host_id = ? AND removed_ns IS NULL \
             ORDER BY name, id"
        )))
        .bind(host.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(container_row).collect()
    }

    /// Every container not removed, with its description, by name then id: what the
    /// in-memory inventory holds.
    pub async fn current_containers(&self) -> Result<Vec<ContainerRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CONTAINER_COLUMNS} FROM containers WHERE removed_ns IS NULL ORDER BY name, id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(container_row).collect()
    }

    pub async fn images(&self, host: HostId, page: Page) -> Result<Paged<ImageRow>> {
        self.host_list(
            "images",
            "image_id, tags, size_bytes, created_ns, labels, truncated",
            "image_id",
            host,
            page,
            |row| {
                Ok(ImageRow {
                    host_id: host,
                    id: row.try_get("image_id")?,
                    tags: serde_json::from_str(&row.try_get::<String, _>("tags")?)?,
                    size_bytes: row.try_get("size_bytes")?,
                    created_ns: row.try_get("created_ns")?,
                    labels: json_map(&row.try_get::<String, _>("labels")?)?,
                    truncated: truncated(row)?,
                })
            },
        )
        .await
    }

    pub async fn volumes(&self, host: HostId, page: Page) -> Result<Paged<VolumeRow>> {
        self.host_list(
            "volumes",
            "name, driver, mountpoint, scope, created_ns, labels, truncated",
            "name",
            host,
            page,
            |row| {
                Ok(VolumeRow {
                    host_id: host,
                    name: row.try_get("name")?,
                    driver: row.try_get("driver")?,
                    mountpoint: row.try_get("mountpoint")?,
                    scope: row.try_get("scope")?,
                    created_ns: row.try_get("created_ns")?,
                    labels: json_map(&row.try_get::<String, _>("labels")?)?,
                    truncated: truncated(row)?,
                })
            },
        )
        .await
    }

    pub async fn networks(&self, host: HostId, page: Page) -> Result<Paged<NetworkRow>> {
        let columns = "network_id, name, driver, scope, internal, created_ns, labels, truncated";
        self.host_list("networks", columns, "name, network_id", host, page, |row| {
            Ok(NetworkRow {
                host_id: host,
                id: row.try_get("network_id")?,
                name: row.try_get("name")?,
                driver: row.try_get("driver")?,
                scope: row.try_get("scope")?,
                internal: row.try_get::<i64, _>("internal")? != 0,
                created_ns: row.try_get("created_ns")?,
                labels: json_map(&row.try_get::<String, _>("labels")?)?,
                truncated: truncated(row)?,
            })
        })
        .await
    }

    /// A page of one of a host's inventory tables, with its total.
    async fn host_list<T>(
        &self,
        table: &'static str,
        columns: &'static str,
        order_by: &'static str,
        host: HostId,
        page: Page,
        item: impl Fn(&AnyRow) -> Result<T>,
    ) -> Result<Paged<T>> {
        let mut select: QueryBuilder<Any> =
            QueryBuilder::new(format!("SELECT {columns} FROM {table} WHERE host_id = "));
        select.push_bind(host.0);
        push_page(&mut select, &format!(" ORDER BY {order_by}"), page);
        let rows = select.build().fetch_all(&self.pool).await?;
        let items = rows.iter().map(item).collect::<Result<_>>()?;
        let mut count: QueryBuilder<Any> =
            QueryBuilder::new(format!("SELECT COUNT(*) FROM {table} WHERE host_id = "));
        count.push_bind(host.0);
        self.with_total(page, items, count).await
    }

    /// The newest disk usage record of a host.
    pub async fn latest_usage(&self, host: HostId) -> Result<Option<UsageRow>> {
        let row =
            sqlx::query("SELECT * FROM host_usage WHERE host_id = ? ORDER BY time_ns DESC LIMIT 1")
                .bind(host.0)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(|row| usage_row(host, row)).transpose()
    }

    /// Disk usage of a host over a time range, oldest first, at most `limit` records.
    pub async fn usage(
        &self,
        host: HostId,
        from_ns: i64,
        to_ns: i64,
        limit: u32,
    ) -> Result<Vec<UsageRow>> {
        let rows = sqlx::query(
            "SELECT * FROM host_usage WHERE host_id = ? AND time_ns >= ? AND time_ns < ? ORDER BY time_ns LIMIT ?",
        )
        .bind(host.0)
        .bind(from_ns)
        .bind(to_ns)
        .bind(i64::from(limit.min(Page::MAX_LIMIT)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| usage_row(host, row)).collect()
    }

    /// The activity log, newest first.
    pub async fn activity(
        &self,
        filter: &ActivityFilter,
        page: Page,
    ) -> Result<Paged<ActivityEntry>> {
        let push_where = |query: &mut QueryBuilder<Any>| {
            query.push(" WHERE 1 = 1");
            if let Some(host) = filter.host {
                query.push(" AND host_id = ").push_bind(host.0);
            }
            if let Some(kind) = &filter.kind {
                query.push(" AND kind = ").push_bind(kind.clone());
            }
            if let Some(action) = &filter.action {
                query.push(" AND action_name = ").push_bind(action.clone());
            }
            if let Some(container) = filter.container {
                query.push(" AND container_id = ").push_bind(container.0);
            }
            if let Some(user) = filter.user {
                query.push(" AND user_id = ").push_bind(user);
            }
            if let Some(from) = filter.from_ns {
                query.push(" AND time_ns >= ").push_bind(from);
            }
            if let Some(to) = filter.to_ns {
                query.push(" AND time_ns < ").push_bind(to);
            }
            if !filter.include_auth {
                query.push(" AND kind <> 'auth'");
            }
        };
        let mut select: QueryBuilder<Any> = QueryBuilder::new(
            "SELECT id, host_id, time_ns, kind, action, actor_id, actor_name, container_id, user_id, attributes FROM activity",
        );
        push_where(&mut select);
        push_page(&mut select, " ORDER BY time_ns DESC, id DESC", page);
        let rows = select.build().fetch_all(&self.pool).await?;
        let items = rows
            .iter()
            .map(|row| {
                // Rows stored before the redaction rule (or by an older agent through an
                // older collector) are shown under it too.
                let mut attributes = json_map(&row.try_get::<String, _>("attributes")?)?;
                let user_id: Option<i64> = row.try_get("user_id")?;
                let kind: String = row.try_get("kind")?;
                if user_id.is_none() && kind != "auth" {
                    dockermon_proto::redact::attributes(&mut attributes);
                }
                Ok(ActivityEntry {
                    id: row.try_get("id")?,
                    host_id: row.try_get::<Option<i64>, _>("host_id")?.map(HostId),
                    time_ns: row.try_get("time_ns")?,
                    kind,
                    action: dockermon_proto::redact::action(&row.try_get::<String, _>("action")?)
                        .to_owned(),
                    actor_id: row.try_get("actor_id")?,
                    actor_name: row.try_get("actor_name")?,
                    container_id: row
                        .try_get::<Option<i64>, _>("container_id")?
                        .map(ContainerKey),
                    user_id,
                    attributes,
                })
            })
            .collect::<Result<_>>()?;
        let mut count: QueryBuilder<Any> = QueryBuilder::new("SELECT COUNT(*) FROM activity");
        push_where(&mut count);
        self.with_total(page, items, count).await
    }

    /// A page with its total. The total is counted only when the page cannot tell: a page
    /// that is not full and not past the end holds everything up to the end.
    pub(super) async fn with_total<T>(
        &self,
        page: Page,
        items: Vec<T>,
        mut count: QueryBuilder<Any>,
    ) -> Result<Paged<T>> {
        let len = items.len() as u64;
        let total = if len < u64::from(page.limit) && (page.offset == 0 || len > 0) {
            page.offset + len
        } else {
            let total: i64 = count.build().fetch_one(&self.pool).await?.try_get(0)?;
            total as u64
        };
        Ok(Paged {
            total,
            offset: page.offset,
            limit: page.limit,
            items,
            warnings: Vec::new(),
        })
    }

    /// The newest raw sample of every current container on a host, by name; a container
    /// without one in the raw table (none yet, or none within the raw retention) is left
    /// out. One index lookup per container: the newest key under the container's prefix
    /// of `container_stats`' primary key (docs/ARCHITECTURE.md, "The newest sample").
    pub async fn latest_stats(&self, host: HostId) -> Result<Vec<LatestStats>> {
        // `ORDER BY … DESC LIMIT 1`, not `MAX()`: MariaDB reads a correlated MAX by
        // scanning every sample of the container, this reads one index entry.
        let rows = sqlx::query(
            "SELECT c.id AS container_id, c.name, c.docker_id, s.time_ns, s.cpu_percent, s.memory_usage_bytes, \
             s.memory_working_set_bytes, s.memory_limit_bytes, s.net_rx_bytes_per_s, s.net_tx_bytes_per_s, \
             s.block_read_bytes_per_s, s.block_write_bytes_per_s, s.pids, s.absent \
             FROM containers c JOIN container_stats s ON s.container_id = c.id AND s.time_ns = \
             (SELECT n.time_ns FROM container_stats n WHERE n.container_id = c.id ORDER BY n.time_ns DESC LIMIT 1) \
             WHERE c.host_id = ? AND c.removed_ns IS NULL ORDER BY c.name, c.id",
        )
        .bind(host.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let absent: i64 = row.try_get("absent")?;
                let memory = |column: &str| -> Result<Option<i64>> {
                    Ok(measured(absent, ABSENT_MEMORY, row.try_get(column)?))
                };
                Ok(LatestStats {
                    container_id: ContainerKey(row.try_get("container_id")?),
                    name: row.try_get("name")?,
                    docker_id: row.try_get("docker_id")?,
                    time_ns: row.try_get("time_ns")?,
                    cpu_percent: row.try_get("cpu_percent")?,
                    memory_usage_bytes: memory("memory_usage_bytes")?,
                    memory_working_set_bytes: memory("memory_working_set_bytes")?,
                    memory_limit_bytes: memory("memory_limit_bytes")?,
                    net_rx_bytes_per_s: row.try_get("net_rx_bytes_per_s")?,
                    net_tx_bytes_per_s: row.try_get("net_tx_bytes_per_s")?,
                    block_read_bytes_per_s: row.try_get("block_read_bytes_per_s")?,
                    block_write_bytes_per_s: row.try_get("block_write_bytes_per_s")?,
                    pids: measured(absent, ABSENT_PIDS, row.try_get("pids")?),
                })
            })
            .collect()
    }

    /// A container's stats over a range, at the requested resolution or the finest one
    /// that keeps the series within `max_points` and within that resolution's retention.
    pub async fn container_stats(
        &self,
        query: &StatsQuery,
        now_ns: i64,
        retention: &Retention,
    ) -> Result<StatsSeries> {
        let max_points = query.max_points.clamp(1, Page::MAX_LIMIT * 10);
        let mut resolution = query.resolution.unwrap_or_else(|| {
            Resolution::choose(query.from_ns, query.to_ns, now_ns, max_points, retention)
        });
        loop {
            let points = match resolution {
                Resolution::Raw => self.raw_points(query, max_points).await?,
                rolled => self.rollup_points(query, rolled, max_points).await?,
            };
            // Agents sampling faster than the nominal 30 s can overflow a raw series:
            // an automatic choice then steps up to the next resolution.
            if points.len() as u64 > u64::from(max_points) {
                match (query.resolution, resolution.coarser()) {
                    (None, Some(coarser)) => {
                        resolution = coarser;
                        continue;
                    }
                    _ => {
                        let mut points = points;
                        points.truncate(max_points as usize);
                        return Ok(StatsSeries { resolution, points });
                    }
                }
            }
            return Ok(StatsSeries { resolution, points });
        }
    }

    async fn raw_points(&self, query: &StatsQuery, max_points: u32) -> Result<Vec<StatsPoint>> {
        let rows = sqlx::query(
            "SELECT time_ns, cpu_percent, memory_usage_bytes, memory_working_set_bytes, memory_limit_bytes, \
             net_rx_bytes_per_s, net_tx_bytes_per_s, block_read_bytes_per_s, block_write_bytes_per_s, pids, absent \
             FROM container_stats WHERE container_id = ? AND time_ns >= ? AND time_ns < ? ORDER BY time_ns LIMIT ?",
        )
        .bind(query.container.0)
        .bind(query.from_ns)
        .bind(query.to_ns)
        .bind(i64::from(max_points) + 1)
        .fetch_all(&self.pool)
        .await?;
        let same = |v: f64| Agg { avg: v, max: v };
        let opt = |row: &AnyRow, column: &str| -> Result<Option<Agg>> {
            Ok(row.try_get::<Option<f64>, _>(column)?.map(same))
        };
        rows.iter()
            .map(|row| {
                let absent: i64 = row.try_get("absent")?;
                let gauge = |column: &str, bit: i64| -> Result<Option<Agg>> {
                    Ok(measured(
                        absent,
                        bit,
                        same(row.try_get::<i64, _>(column)? as f64),
                    ))
                };
                Ok(StatsPoint {
                    time_ns: row.try_get("time_ns")?,
                    samples: 1,
                    cpu_percent: opt(row, "cpu_percent")?,
                    memory_usage_bytes: gauge("memory_usage_bytes", ABSENT_MEMORY)?,
                    memory_working_set_bytes: gauge("memory_working_set_bytes", ABSENT_MEMORY)?,
                    memory_limit_bytes: measured(
                        absent,
                        ABSENT_MEMORY,
                        row.try_get::<i64, _>("memory_limit_bytes")? as f64,
                    ),
                    net_rx_bytes_per_s: opt(row, "net_rx_bytes_per_s")?,
                    net_tx_bytes_per_s: opt(row, "net_tx_bytes_per_s")?,
                    block_read_bytes_per_s: opt(row, "block_read_bytes_per_s")?,
                    block_write_bytes_per_s: opt(row, "block_write_bytes_per_s")?,
                    pids: gauge("pids", ABSENT_PIDS)?,
                })
            })
            .collect()
    }

    async fn rollup_points(
        &self,
        query: &StatsQuery,
        resolution: Resolution,
        max_points: u32,
    ) -> Result<Vec<StatsPoint>> {
        let width = resolution.step_ns();
        let from_bucket = query.from_ns - query.from_ns.rem_euclid(width);
        // Buckets the job has not rolled up yet (the newest, still filling) come from the
        // raw rows, aggregated as the job would.
        let rolled_up_to = self.rolled_up_to(resolution).await?;
        let mut points = self
            .rolled_points(
                query,
                resolution,
                from_bucket,
                rolled_up_to.min(query.to_ns),
                max_points,
            )
            .await?;
        if rolled_up_to < query.to_ns && points.len() <= max_points as usize {
            let tail = StatsQuery {
                from_ns: rolled_up_to.max(from_bucket),
                ..query.clone()
            };
            points.extend(aggregate(
                &self.raw_points(&tail, UNROLLED_ROWS).await?,
                width,
            ));
            points.truncate(max_points as usize + 1);
        }
        Ok(points)
    }

    /// The rollup table's points of buckets in [`from_bucket`, `to_ns`).
    async fn rolled_points(
        &self,
        query: &StatsQuery,
        resolution: Resolution,
        from_bucket: i64,
        to_ns: i64,
        max_points: u32,
    ) -> Result<Vec<StatsPoint>> {
        let mut select: QueryBuilder<Any> = QueryBuilder::new(
            "SELECT bucket_ns, samples, cpu_percent_avg, cpu_percent_max, memory_usage_avg, memory_usage_max, \
             memory_working_set_avg, memory_working_set_max, memory_limit_max, net_rx_bytes_per_s_avg, \
             net_rx_bytes_per_s_max, net_tx_bytes_per_s_avg, net_tx_bytes_per_s_max, block_read_bytes_per_s_avg, \
             block_read_bytes_per_s_max, block_write_bytes_per_s_avg, block_write_bytes_per_s_max, pids_avg, pids_max, \
             absent FROM ",
        );
        select.push(resolution.table());
        select
            .push(" WHERE container_id = ")
            .push_bind(query.container.0)
            .push(" AND bucket_ns >= ")
            .push_bind(from_bucket)
            .push(" AND bucket_ns < ")
            .push_bind(to_ns)
            .push(" ORDER BY bucket_ns LIMIT ")
            .push_bind(i64::from(max_points) + 1);
        let rows = select.build().fetch_all(&self.pool).await?;
        let agg = |row: &AnyRow, prefix: &str| -> Result<Option<Agg>> {
            let avg: Option<f64> = row.try_get(format!("{prefix}_avg").as_str())?;
            let max: Option<f64> = row.try_get(format!("{prefix}_max").as_str())?;
            Ok(avg.zip(max).map(|(avg, max)| Agg { avg, max }))
        };
        rows.iter()
            .map(|row| {
                let absent: i64 = row.try_get("absent")?;
                let gauge = |prefix: &str, bit: i64| -> Result<Option<Agg>> {
                    let agg = Agg {
                        avg: row.try_get(format!("{prefix}_avg").as_str())?,
                        max: row.try_get::<i64, _>(format!("{prefix}_max").as_str())? as f64,
                    };
                    Ok(measured(absent, bit, agg))
                };
                Ok(StatsPoint {
                    time_ns: row.try_get("bucket_ns")?,
                    samples: row.try_get("samples")?,
                    cpu_percent: agg(row, "cpu_percent")?,
                    memory_usage_bytes: gauge("memory_usage", ABSENT_MEMORY)?,
                    memory_working_set_bytes: gauge("memory_working_set", ABSENT_MEMORY)?,
                    memory_limit_bytes: measured(
                        absent,
                        ABSENT_MEMORY,
                        row.try_get::<i64, _>("memory_limit_max")? as f64,
                    ),
                    net_rx_bytes_per_s: agg(row, "net_rx_bytes_per_s")?,
                    net_tx_bytes_per_s: agg(row, "net_tx_bytes_per_s")?,
                    block_read_bytes_per_s: agg(row, "block_read_bytes_per_s")?,
                    block_write_bytes_per_s: agg(row, "block_write_bytes_per_s")?,
                    pids: gauge("pids", ABSENT_PIDS)?,
                })
            })
            .collect()
    }
}

/// Raw rows read at most to aggregate the buckets not rolled up yet: the newest bucket or
/// two while the rollup job keeps up (at most 240 rows of a 30 s series), a day of them when
/// it stopped for that long.
const UNROLLED_ROWS: u32 = 10_000;

/// Raw points (in time order) aggregated into buckets of `width`, as the rollup job does:
/// per figure, the average and maximum of the samples that measured it.
fn aggregate(raw: &[StatsPoint], width: i64) -> Vec<StatsPoint> {
    raw.chunk_by(|a, b| {
        a.time_ns - a.time_ns.rem_euclid(width) == b.time_ns - b.time_ns.rem_euclid(width)
    })
    .map(|bucket| {
        let combine = |figure: fn(&StatsPoint) -> Option<Agg>| -> Option<Agg> {
            let measured: Vec<Agg> = bucket.iter().filter_map(figure).collect();
            (!measured.is_empty()).then(|| Agg {
                avg: measured.iter().map(|a| a.avg).sum::<f64>() / measured.len() as f64,
                max: measured.iter().map(|a| a.max).fold(f64::MIN, f64::max),
            })
        };
        let first = bucket[0].time_ns;
        StatsPoint {
            time_ns: first - first.rem_euclid(width),
            samples: bucket.len() as i64,
            cpu_percent: combine(|p| p.cpu_percent),
            memory_usage_bytes: combine(|p| p.memory_usage_bytes),
            memory_working_set_bytes: combine(|p| p.memory_working_set_bytes),
            memory_limit_bytes: bucket
                .iter()
                .filter_map(|p| p.memory_limit_bytes)
                .reduce(f64::max),
            net_rx_bytes_per_s: combine(|p| p.net_rx_bytes_per_s),
            net_tx_bytes_per_s: combine(|p| p.net_tx_bytes_per_s),
            block_read_bytes_per_s: combine(|p| p.block_read_bytes_per_s),
            block_write_bytes_per_s: combine(|p| p.block_write_bytes_per_s),
            pids: combine(|p| p.pids),
        }
    })
    .collect()
}

fn host_row(row: &AnyRow) -> Result<HostRow> {
    let info: Option<String> = row.try_get("info")?;
    Ok(HostRow {
        id: HostId(row.try_get("id")?),
        name: row.try_get("name")?,
        engine_id: row.try_get("engine_id")?,
        docker_version: row.try_get("docker_version")?,
        agent_version: row.try_get("agent_version")?,
        info: info.as_deref().map(serde_json::from_str).transpose()?,
        created_ns: row.try_get("created_ns")?,
        last_seen_ns: row.try_get("last_seen_ns")?,
    })
}

pub(super) fn push_page(query: &mut QueryBuilder<Any>, order_by: &str, page: Page) {
    query
        .push(order_by)
        .push(" LIMIT ")
        .push_bind(i64::from(page.limit))
        .push(" OFFSET ")
        .push_bind(page.offset as i64);
}

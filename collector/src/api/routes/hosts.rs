//! Hosts: their live status, what is on them (images, volumes, networks, disk usage,
//! latest stats), and deleting (revoking) them.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use dockermon_proto::{HostName, now_ns};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::users::PageParams;
use crate::api::ApiState;
use crate::api::auth::{Admin, AuthUser};
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::params::{self, Path, Query};
use crate::inventory::ContainerCounts;
use crate::store::{
    HostId, HostRow, ImageRow, LatestStats, NetworkRow, Paged, UsageRow, UserAction, VolumeRow,
};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/hosts", get(list))
        .route("/hosts/{id}", get(one).delete(delete))
        .route("/hosts/{id}/images", get(images))
        .route("/hosts/{id}/volumes", get(volumes))
        .route("/hosts/{id}/networks", get(networks))
        .route("/hosts/{id}/usage", get(usage))
        .route("/hosts/{id}/usage/latest", get(latest_usage))
        .route("/hosts/{id}/stats/latest", get(latest_stats))
}

/// A host and whether its agent is connected now.
#[derive(Debug, Serialize, ToSchema)]
pub struct HostView {
    #[serde(flatten)]
    pub host: HostRow,
    pub connected: bool,
    /// What the connected agent says about itself; `None` while it is not connected.
    pub agent: Option<AgentView>,
    /// The labels of the host's DockerHost (`spec.labels`); empty without one.
    pub labels: BTreeMap<String, String>,
    /// Its current containers, as container lists show them (at most a second behind).
    pub containers: ContainerCounts,
}

/// A connected agent's own report.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentView {
    /// What it can do beyond the base protocol (`profile`).
    pub capabilities: Vec<String>,
    /// Profile sessions it runs now.
    pub profiles: Vec<u64>,
    /// Docker stats streams it holds open (one per profiled container).
    pub docker_streams: u32,
    /// Frames in its spool not yet acknowledged, and their bytes.
    pub spool_frames: u64,
    pub spool_bytes: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// Start of the range (RFC 3339); default a day before `to`.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End of the range (RFC 3339); default now.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Most records returned (1 to 1000, default 100), oldest first.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

const DAY_NS: i64 = 86_400 * 1_000_000_000;

fn view(
    state: &ApiState,
    host: HostRow,
    labels: &HashMap<String, BTreeMap<String, String>>,
    counts: &HashMap<HostId, ContainerCounts>,
) -> HostView {
    let agent = state.registry.agent(host.id).map(|agent| AgentView {
        capabilities: agent.capabilities,
        profiles: agent.status.profiles,
        docker_streams: agent.status.docker_streams,
        spool_frames: agent.status.spool_frames,
        spool_bytes: agent.status.spool_bytes,
    });
    HostView {
        connected: agent.is_some(),
        agent,
        labels: labels.get(&host.name).cloned().unwrap_or_default(),
        containers: counts.get(&host.id).copied().unwrap_or_default(),
        host,
    }
}

/// Hosts, by name, paginated like every list.
#[utoipa::path(get, path = "/api/v1/hosts", tag = "hosts", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = Paged<HostView>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    _: AuthUser,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<Paged<HostView>>> {
    let page = params::page(page.offset, page.limit)?;
    let hosts = state.store.hosts_page(page).await?;
    let labels = crate::resources::objects::docker_host_labels(&state.store, None).await?;
    let counts = state.inventory.counts_by_host().await?;
    Ok(Json(Paged {
        total: hosts.total,
        offset: hosts.offset,
        limit: hosts.limit,
        items: hosts
            .items
            .into_iter()
            .map(|h| view(&state, h, &labels, &counts))
            .collect(),
        warnings: hosts.warnings,
    }))
}

/// One host.
#[utoipa::path(get, path = "/api/v1/hosts/{id}", tag = "hosts", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = HostView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn one(
    State(state): State<ApiState>,
    _: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<HostView>> {
    let host = state.store.host(HostId(id)).await?;
    let labels =
        crate::resources::objects::docker_host_labels(&state.store, Some(&host.name)).await?;
    let counts = state.inventory.counts_by_host().await?;
    Ok(Json(view(&state, host, &labels, &counts)))
}

/// Deletes a host: its certificates are revoked, its agent disconnected and refused, and
/// what was stored about it removed.
#[utoipa::path(delete, path = "/api/v1/hosts/{id}", tag = "hosts", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    Admin(admin): Admin,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let host = state.store.host(HostId(id)).await?;
    let name = HostName::new(host.name.clone()).map_err(|error| {
        ApiError::internal(&crate::store::StoreError::Invalid(error.to_string()))
    })?;
    let now = now_ns();
    state.store.delete_host(&name, now).await?;
    state.registry.close_matching(
        std::slice::from_ref(&host.name),
        &[],
        "the host was deleted",
    );
    state
        .store
        .record_user_action(
            &UserAction {
                user_id: Some(admin.id),
                user_email: &admin.email,
                host: None,
                container: None,
                target_id: &host.name,
                target_name: Some(&host.name),
                kind: "host",
                action: "delete",
                attributes: BTreeMap::new(),
            },
            now,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A host's images.
#[utoipa::path(get, path = "/api/v1/hosts/{id}/images", tag = "hosts", security(("bearer" = [])),
    params(("id" = i64, Path), PageParams),
    responses((status = 200, body = Paged<ImageRow>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn images(
    State(state): State<ApiState>,
    _: AuthUser,
    Path(id): Path<i64>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<Paged<ImageRow>>> {
    let page = params::page(page.offset, page.limit)?;
    Ok(Json(state.store.images(HostId(id), page).await?))
}

/// A host's volumes.
#[utoipa::path(get, path = "/api/v1/hosts/{id}/volumes", tag = "hosts", security(("bearer" = [])),
    params(("id" = i64, Path), PageParams),
    responses((status = 200, body = Paged<VolumeRow>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn volumes(
    State(state): State<ApiState>,
    _: AuthUser,
    Path(id): Path<i64>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<Paged<VolumeRow>>> {
    let page = params::page(page.offset, page.limit)?;
    Ok(Json(state.store.volumes(HostId(id), page).await?))
}

/// A host's networks.
#[utoipa::path(get, path = "/api/v1/hosts/{id}/networks", tag = "hosts", security(("bearer" = [])),
    params(("id" = i64, Path), PageParams),
    responses((status = 200, body = Paged<NetworkRow>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn networks(
    State(state): State<ApiState>,
    _: AuthUser,
    Path(id): Path<i64>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<Paged<NetworkRow>>> {
    let page = params::page(page.offset, page.limit)?;
    Ok(Json(state.store.networks(HostId(id), page).await?))
}

/// A host's disk usage (`docker system df`) over a range.
#[utoipa::path(get, path = "/api/v1/hosts/{id}/usage", tag = "hosts", security(("bearer" = [])),
    params(("id" = i64, Path), UsageParams),
    responses((status = 200, body = Vec<UsageRow>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn usage(
    State(state): State<ApiState>,
    _: AuthUser,
    Path(id): Path<i64>,
    Query(query): Query<UsageParams>,
) -> ApiResult<Json<Vec<UsageRow>>> {
    let (from, to) = params::range(query.from.as_deref(), query.to.as_deref(), now_ns(), DAY_NS)?;
    let limit = params::page(None, query.limit)?.limit;
    Ok(Json(state.store.usage(HostId(id), from, to, limit).await?))
}

/// A host's newest disk usage record; `null` before its agent reported one.
#[utoipa::path(get, path = "/api/v1/hosts/{id}/usage/latest", tag = "hosts",
    security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Option<UsageRow>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn latest_usage(
    State(state): State<ApiState>,
    _: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<Option<UsageRow>>> {
    Ok(Json(state.store.latest_usage(HostId(id)).await?))
}

/// The newest stats of every current container on a host (its newest raw sample; containers
/// with none within the raw retention are left out), by name.
#[utoipa::path(get, path = "/api/v1/hosts/{id}/stats/latest", tag = "hosts",
    security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Vec<LatestStats>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn latest_stats(
    State(state): State<ApiState>,
    _: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<LatestStats>>> {
    Ok(Json(state.store.latest_stats(HostId(id)).await?))
}

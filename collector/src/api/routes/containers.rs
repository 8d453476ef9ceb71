//! Containers across the fleet: lists with filters, one container, its stats over a range
//! at a chosen or automatic resolution, and actions on it (carried out by its host's agent
//! and written to the activity log with the acting user, whatever the outcome).

use axum::extract::State;
use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use dockermon_proto::now_ns;
use dockermon_proto::transport::{CommandAction, CommandOutcome, ContainerAction};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::ApiState;
use crate::api::auth::AuthUser;
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::params::{self, Path, Query};
use crate::store::{
    ContainerFilter, ContainerKey, ContainerRow, HostId, Paged, Resolution, Role, StatsQuery,
    StatsSeries, UserAction,
};
use crate::transport::CommandError;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/containers", get(list))
        .route("/containers/{id}", get(one))
        .route("/containers/{id}/stats", get(stats))
        .route("/containers/{id}/actions/{action}", post(act))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContainerParams {
    /// Only containers of this host.
    pub host: Option<i64>,
    /// Only containers in this state (`running`, `exited`, …).
    pub state: Option<String>,
    /// Only the container with this name.
    pub name: Option<String>,
    /// Only containers with this label: `key` or `key=value`.
    pub label: Option<String>,
    /// Only containers of this compose project.
    pub compose_project: Option<String>,
    /// Only containers whose name or image contains this text (case-insensitive).
    pub search: Option<String>,
    /// Also list removed containers (they keep their history).
    pub include_removed: Option<bool>,
    /// Include each container's full description (ports, mounts, networks, labels), as
    /// `GET /containers/{id}` has it.
    pub detail: Option<bool>,
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<u64>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// Start of the range (RFC 3339); default an hour before `to`.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End of the range (RFC 3339); default now.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// `raw`, `5m` or `1h`; by default the finest that fits `max_points`.
    pub resolution: Option<Resolution>,
    /// The most points wanted when choosing the resolution (1 to 10000, default 1000).
    #[param(minimum = 1, maximum = 10000)]
    pub max_points: Option<u32>,
}

const HOUR_NS: i64 = 3_600 * 1_000_000_000;
const MAX_POINTS: u32 = 10_000;

/// Containers, filtered and paginated, by name and id. Current containers are listed from
/// memory and may be up to a second behind the agents' reports; removed ones
/// (`include_removed`) are read from the database.
#[utoipa::path(get, path = "/api/v1/containers", tag = "containers", security(("bearer" = [])),
    params(ContainerParams),
    responses((status = 200, body = Paged<ContainerRow>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    _: AuthUser,
    Query(query): Query<ContainerParams>,
) -> ApiResult<Json<Paged<ContainerRow>>> {
    let page = params::page(query.offset, query.limit)?;
    let label = query.label.map(|label| match label.split_once('=') {
        Some((key, value)) => (key.to_owned(), Some(value.to_owned())),
        None => (label, None),
    });
    let filter = ContainerFilter {
        host: query.host.map(HostId),
        state: query.state,
        name: query.name,
        label,
        compose_project: query.compose_project,
        search: query.search.filter(|search| !search.is_empty()),
        include_removed: query.include_removed.unwrap_or(false),
        detail: query.detail.unwrap_or(false),
    };
    Ok(Json(state.inventory.containers(&filter, page).await?))
}

/// One container.
#[utoipa::path(get, path = "/api/v1/containers/{id}", tag = "containers",
    security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = ContainerRow), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn one(
    State(state): State<ApiState>,
    _: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<ContainerRow>> {
    Ok(Json(state.store.container(ContainerKey(id)).await?))
}

/// A container's stats over a range: one continuous series across re-creations.
#[utoipa::path(get, path = "/api/v1/containers/{id}/stats", tag = "containers",
    security(("bearer" = [])), params(("id" = i64, Path), StatsParams),
    responses((status = 200, body = StatsSeries), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn stats(
    State(state): State<ApiState>,
    _: AuthUser,
    Path(id): Path<i64>,
    Query(query): Query<StatsParams>,
) -> ApiResult<Json<StatsSeries>> {
    let now = now_ns();
    let (from_ns, to_ns) = params::range(query.from.as_deref(), query.to.as_deref(), now, HOUR_NS)?;
    let max_points = query.max_points.unwrap_or(1000);
    if !(1..=MAX_POINTS).contains(&max_points) {
        return Err(ApiError::bad_request(format!(
            "max_points must be between 1 and {MAX_POINTS}"
        )));
    }
    let container = state.store.container(ContainerKey(id)).await?;
    let query = StatsQuery {
        container: container.id,
        from_ns,
        to_ns,
        resolution: query.resolution,
        max_points,
    };
    Ok(Json(
        state
            .store
            .container_stats(&query, now, &state.retention)
            .await?,
    ))
}

/// What happened to a container action.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionResult {
    pub container_id: i64,
    pub action: String,
    /// What the agent said, when it said more than "done".
    pub detail: Option<String>,
    /// The activity log entry that records it.
    pub activity_id: i64,
}

/// Starts, stops, restarts, pauses, unpauses, kills or removes a container, through the
/// agent of its host. The agent refuses actions outside its allowlist (`remove` is off by
/// default). Every attempt is written to the activity log with the acting user.
#[utoipa::path(post, path = "/api/v1/containers/{id}/actions/{action}", tag = "containers",
    security(("bearer" = [])),
    params(("id" = i64, Path),
        ("action" = String, Path, pattern = "^(start|stop|restart|pause|unpause|kill|remove)$")),
    responses((status = 200, body = ActionResult),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the host's agent is not connected, or the container was removed"),
        (status = 422, body = ErrorBody, description = "the agent or Docker refused the action"),
        (status = 503, body = ErrorBody, description = "the agent is busy or went away"),
        (status = 504, body = ErrorBody, description = "the agent did not answer in time")))]
pub async fn act(
    State(state): State<ApiState>,
    user: AuthUser,
    Path((id, action)): Path<(i64, String)>,
) -> ApiResult<Json<ActionResult>> {
    let action = ContainerAction::parse(&action).ok_or_else(|| {
        ApiError::bad_request("action must be start, stop, restart, pause, unpause, kill or remove")
    })?;
    let container = state.store.container(ContainerKey(id)).await?;
    let record = |outcome: String| UserAction {
        user_id: Some(user.id),
        user_email: &user.email,
        host: Some(container.host_id),
        container: Some(container.id),
        target_id: &container.docker_id,
        target_name: Some(&container.name),
        kind: "container",
        action: action.as_str(),
        attributes: BTreeMap::from([("outcome".to_owned(), outcome)]),
    };
    // A refused attempt is part of the record too: who tried what.
    if let Err(refused) = user.require(Role::Operator) {
        state
            .store
            .record_user_action(&record(format!("refused: {}", refused.message)), now_ns())
            .await?;
        return Err(refused);
    }
    if container.removed_ns.is_some() {
        return Err(ApiError::conflict("the container was removed"));
    }
    let host = state.store.host(container.host_id).await?;
    if !crate::resources::reconcile::action_allowed(&state.store, &host.name, action).await? {
        let refused = ApiError::forbidden(format!(
            "{} is not among the allowed actions of DockerHost {} (spec.allowedActions)",
            action.as_str(),
            host.name
        ));
        state
            .store
            .record_user_action(&record(format!("refused: {}", refused.message)), now_ns())
            .await?;
        return Err(refused);
    }
    let command = CommandAction::Container {
        container_id: container.docker_id.clone(),
        action,
    };
    let answer = state
        .registry
        .command(container.host_id, command, state.action_timeout)
        .await;
    let (outcome, result) = match answer {
        Ok(CommandOutcome::Done { detail }) => ("done".to_owned(), Ok(detail)),
        Ok(CommandOutcome::Failed { message }) => (
            format!("failed: {message}"),
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "action_failed",
                message,
            )),
        ),
        Err(error) => {
            let (status, code) = match error {
                CommandError::NotConnected => (StatusCode::CONFLICT, "agent_not_connected"),
                CommandError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "agent_timeout"),
                CommandError::Disconnected | CommandError::Busy | CommandError::Unreachable(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "agent_unavailable")
                }
            };
            (
                error.to_string(),
                Err(ApiError::new(status, code, error.to_string())),
            )
        }
    };
    let activity_id = state
        .store
        .record_user_action(&record(outcome), now_ns())
        .await?;
    let detail = result?;
    Ok(Json(ActionResult {
        container_id: container.id.0,
        action: action.as_str().to_owned(),
        detail,
        activity_id,
    }))
}

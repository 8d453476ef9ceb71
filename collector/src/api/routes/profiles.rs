//! Profile sessions: 1-second samples of one container, started by operators (here or by
//! subscribing over the WebSocket), read by everyone, as JSON or CSV.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dockermon_proto::ProfileEndReason;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::api::ApiState;
use crate::api::auth::{AuthUser, Operator};
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::params::{self, Path, Query};
use crate::profiles::{Actor, ProfileError, StartRequest};
use crate::store::{
    ContainerKey, HostId, Paged, ProfileFilter, ProfileOrigin, ProfileRow, ProfileSampleRow,
    ProfileState,
};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/containers/{id}/profiles", post(start))
        .route("/profiles", get(list))
        .route("/profiles/{id}", get(one).delete(stop))
        .route("/profiles/{id}/samples", get(samples))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartProfile {
    /// How long to sample, in seconds (default and at most: the collector's maximum, 1 h
    /// unless configured).
    #[schema(minimum = 1)]
    pub duration: Option<u64>,
    /// Seconds between samples, 1 to 10 (default 1).
    #[schema(minimum = 1, maximum = 10)]
    pub interval: Option<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProfileParams {
    /// Only sessions on this host.
    pub host: Option<i64>,
    /// Only sessions of this container.
    pub container: Option<i64>,
    /// `running` or `ended`.
    pub state: Option<ProfileState>,
    /// Started at or after this time (RFC 3339).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Started before this time (RFC 3339).
    #[param(format = DateTime)]
    pub to: Option<String>,
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<u64>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SampleParams {
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<u64>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

impl From<ProfileError> for ApiError {
    fn from(error: ProfileError) -> Self {
        let message = error.to_string();
        match error {
            ProfileError::BadRequest(_) => ApiError::bad_request(message),
            ProfileError::NotFound => ApiError::not_found(message),
            ProfileError::ContainerRemoved => {
                ApiError::new(StatusCode::CONFLICT, "container_removed", message)
            }
            ProfileError::ContainerNotRunning => {
                ApiError::new(StatusCode::CONFLICT, "container_not_running", message)
            }
            ProfileError::AgentNotConnected => {
                ApiError::new(StatusCode::CONFLICT, "agent_not_connected", message)
            }
            ProfileError::AgentTooOld => {
                ApiError::new(StatusCode::CONFLICT, "agent_too_old", message)
            }
            ProfileError::HostBusy(_) => {
                ApiError::new(StatusCode::CONFLICT, "too_many_profiles", message)
            }
            ProfileError::UserBusy(_) => ApiError {
                retry_after: Some(60),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_profiles", message)
            },
            ProfileError::Refused(_) => {
                ApiError::new(StatusCode::CONFLICT, "profile_refused", message)
            }
            ProfileError::Agent(crate::transport::CommandError::Timeout(_)) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "agent_timeout", message)
            }
            ProfileError::Agent(crate::transport::CommandError::NotConnected) => {
                ApiError::new(StatusCode::CONFLICT, "agent_not_connected", message)
            }
            ProfileError::Agent(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "agent_unavailable",
                message,
            ),
            ProfileError::Store(error) => error.into(),
        }
    }
}

fn actor(user: &AuthUser) -> Actor {
    Actor {
        id: Some(user.id),
        name: user.email.clone(),
    }
}

/// Starts profiling a container: its host's agent samples it every `interval` seconds
/// from Docker's streaming stats until stopped or `duration` is over. If the container
/// already has a running session, that session is answered (200) and nothing new starts.
#[utoipa::path(post, path = "/api/v1/containers/{id}/profiles", tag = "profiles",
    security(("bearer" = [])), params(("id" = i64, Path)), request_body = StartProfile,
    responses((status = 201, body = ProfileRow, description = "started"),
        (status = 200, body = ProfileRow, description = "joined the running session"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the container is not running or removed, its agent is not connected or cannot profile, the host's limit is reached, or the agent refused"),
        (status = 429, body = ErrorBody, description = "you run as many sessions as one user may"),
        (status = 504, body = ErrorBody, description = "the agent did not answer in time")))]
pub async fn start(
    State(state): State<ApiState>,
    Operator(user): Operator,
    Path(id): Path<i64>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<ProfileRow>)> {
    let body = body?;
    // The body is optional: `POST` with nothing profiles with the defaults.
    let request: StartProfile = if body.iter().all(u8::is_ascii_whitespace) {
        StartProfile::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|error| ApiError::bad_request(format!("invalid body: {error}")))?
    };
    let started = state
        .profiler
        .start(StartRequest {
            container: ContainerKey(id),
            actor: actor(&user),
            origin: ProfileOrigin::Api,
            duration: request.duration.map(Duration::from_secs),
            interval: request.interval.map(Duration::from_secs),
        })
        .await?;
    let status = if started.joined {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(started.profile)))
}

/// Profile sessions, newest first, with their summaries.
#[utoipa::path(get, path = "/api/v1/profiles", tag = "profiles", security(("bearer" = [])),
    params(ProfileParams),
    responses((status = 200, body = Paged<ProfileRow>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    _: AuthUser,
    Query(query): Query<ProfileParams>,
) -> ApiResult<Json<Paged<ProfileRow>>> {
    let page = params::page(query.offset, query.limit)?;
    let filter = ProfileFilter {
        host: query.host.map(HostId),
        container: query.container.map(ContainerKey),
        state: query.state,
        from_ns: params::time_ns("from", query.from.as_deref())?,
        to_ns: params::time_ns("to", query.to.as_deref())?,
    };
    Ok(Json(state.store.profiles(&filter, page).await?))
}

/// One profile session: state, why it ended, who started and stopped it, and the summary
/// of its samples.
#[utoipa::path(get, path = "/api/v1/profiles/{id}", tag = "profiles", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = ProfileRow), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn one(
    State(state): State<ApiState>,
    _: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<ProfileRow>> {
    Ok(Json(state.store.profile(id).await?))
}

/// Stops a profile session; answers it once ended, with its last samples stored when its
/// agent could send them. Stopping an ended session answers it as it is.
#[utoipa::path(delete, path = "/api/v1/profiles/{id}", tag = "profiles", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = ProfileRow), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn stop(
    State(state): State<ApiState>,
    Operator(user): Operator,
    Path(id): Path<i64>,
) -> ApiResult<Json<ProfileRow>> {
    let profile = state
        .profiler
        .stop(id, Some(&actor(&user)), ProfileEndReason::Stopped)
        .await?;
    Ok(Json(profile))
}

/// A profile session's samples, oldest first, paginated; with `Accept: text/csv`, all of
/// them as CSV (one header line, then one line per sample).
#[utoipa::path(get, path = "/api/v1/profiles/{id}/samples", tag = "profiles",
    security(("bearer" = [])), params(("id" = i64, Path), SampleParams),
    responses((status = 200, description = "a page of samples, or with Accept: text/csv every sample",
            content((Paged<ProfileSampleRow> = "application/json"), (String = "text/csv"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn samples(
    State(state): State<ApiState>,
    _: AuthUser,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Query(query): Query<SampleParams>,
) -> ApiResult<Response> {
    if wants_csv(&headers) {
        return csv(&state, id).await;
    }
    let page = params::page(query.offset, query.limit)?;
    Ok(Json(state.store.profile_samples(id, page).await?).into_response())
}

fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| {
            accept
                .split(',')
                .any(|kind| kind.split(';').next().map(str::trim) == Some("text/csv"))
        })
}

async fn csv(state: &ApiState, id: i64) -> ApiResult<Response> {
    let samples = state.store.all_profile_samples(id).await?;
    let mut body = String::with_capacity(64 + samples.len() * 128);
    body.push_str(ProfileSampleRow::CSV_HEADER);
    body.push('\n');
    for sample in &samples {
        sample.csv_row(&mut body);
        body.push('\n');
    }
    let disposition = format!("attachment; filename=\"profile-{id}.csv\"");
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

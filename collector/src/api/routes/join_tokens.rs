//! Join tokens for new hosts (admins only): create, list the ones that can still be used,
//! revoke one. The same rules as the shell's `token` commands
//! ([`crate::transport::join_tokens`]).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use dockermon_proto::{HostName, now_ns};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::ApiState;
use crate::api::auth::Admin;
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::params::{self, Path, Query};
use crate::store::{JoinTokenRow, StoreError};
use crate::transport::join_tokens::{self, JoinTokenError, TokenRequest};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/join-tokens", get(list).post(create))
        .route("/join-tokens/{id}", delete(revoke))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinTokenRequest {
    /// The name the host will be known by.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")]
    pub host: String,
    /// How long the token stays valid, in seconds (default 3600, at most 7 days).
    #[schema(minimum = 1, maximum = 604800)]
    pub ttl_seconds: Option<u64>,
    /// The host is enrolled and its agent is to be replaced (default false: refused with
    /// 409). The replaced agent's certificate is revoked when the new agent enrolls.
    #[serde(default)]
    pub replace: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JoinTokenResponse {
    /// Give it to `dockermon-agent --join-token`. It works once.
    pub token: String,
    pub host: String,
    pub expires_ns: i64,
}

/// A join token as listed: never its secret (only a hash is stored).
#[derive(Debug, Serialize, ToSchema)]
pub struct JoinTokenView {
    #[serde(flatten)]
    pub token: JoinTokenRow,
    /// `unused`, `used`, `expired` or `revoked`.
    pub state: &'static str,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JoinTokenParams {
    /// Include used, expired and revoked tokens (default: only those that can be used).
    pub all: Option<bool>,
}

/// Creates a one-time join token for a new host, a deleted one (to re-admit it), or an
/// enrolled one when `replace` is set.
#[utoipa::path(post, path = "/api/v1/join-tokens", tag = "hosts", security(("bearer" = [])),
    request_body = JoinTokenRequest,
    responses((status = 201, body = JoinTokenResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody,
            description = "the host is enrolled (pass replace), or the collector has no built-in CA")))]
pub async fn create(
    State(state): State<ApiState>,
    Admin(admin): Admin,
    params::Json(request): params::Json<JoinTokenRequest>,
) -> ApiResult<(StatusCode, Json<JoinTokenResponse>)> {
    let host = HostName::new(request.host).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let authority = state.authority.as_ref().ok_or_else(|| {
        ApiError::conflict(
            "join tokens need the built-in CA; this collector uses certificate files",
        )
    })?;
    let token_request = TokenRequest {
        host: &host,
        ttl: Duration::from_secs(request.ttl_seconds.unwrap_or(3600)),
        replace: request.replace,
        created_by: Some(admin.id),
    };
    let (token, expires_ns) = join_tokens::create(&state.store, authority, token_request)
        .await
        .map_err(|error| match error {
            JoinTokenError::Ttl => ApiError::bad_request(format!(
                "ttl_seconds must be between 1 and {}",
                join_tokens::MAX_TTL.as_secs()
            )),
            JoinTokenError::Enrolled { .. } => ApiError::conflict(error.to_string()),
            JoinTokenError::Store(error) => error.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(JoinTokenResponse {
            token: token.to_string(),
            host: host.to_string(),
            expires_ns,
        }),
    ))
}

/// Join tokens, newest first: those that can still be used, or all with `all=true`.
#[utoipa::path(get, path = "/api/v1/join-tokens", tag = "hosts", security(("bearer" = [])),
    params(JoinTokenParams),
    responses((status = 200, body = Vec<JoinTokenView>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    Admin(_): Admin,
    Query(query): Query<JoinTokenParams>,
) -> ApiResult<Json<Vec<JoinTokenView>>> {
    let now = now_ns();
    let tokens = state
        .store
        .join_tokens(query.all.unwrap_or(false), now)
        .await?;
    Ok(Json(
        tokens
            .into_iter()
            .map(|token| JoinTokenView {
                state: token.state(now),
                token,
            })
            .collect(),
    ))
}

/// Revokes a join token that was not used: enrolling with it is refused from now on.
#[utoipa::path(delete, path = "/api/v1/join-tokens/{id}", tag = "hosts", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the token was already used")))]
pub async fn revoke(
    State(state): State<ApiState>,
    Admin(_): Admin,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    match state.store.revoke_join_token(id, now_ns()).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::Invalid(message)) => Err(ApiError::conflict(message)),
        Err(error) => Err(error.into()),
    }
}

//! Login, refresh, logout, and the signed-in user's own account.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use dockermon_proto::now_ns;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::auth::{
    Admin, AuthUser, cookie, password, random_token, refresh_hash, tokens::unix_now,
};
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::params;
use crate::api::params::Query;
use crate::api::{ApiState, ClientAddress};
use crate::live::{AccessChange, LiveUpdate};
use crate::store::{UserRow, UserUpdate};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/me", get(me).patch(update_me))
        .route("/me/password", post(change_password))
        .route("/auth/locks", delete(clear_locks))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LockParams {
    /// Clear the locks of this account only (from every address); default every lock.
    pub email: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LocksCleared {
    /// Counts cleared on the replica that answered (the others clear theirs too).
    pub cleared: u64,
}

/// Lifts failed-login locks (admins only): an account's, from every address, or all.
/// Every replica clears its own; the action is in the activity log.
#[utoipa::path(delete, path = "/api/v1/auth/locks", tag = "auth", security(("bearer" = [])),
    params(LockParams),
    responses((status = 200, body = LocksCleared), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn clear_locks(
    State(state): State<ApiState>,
    Admin(admin): Admin,
    Query(query): Query<LockParams>,
) -> ApiResult<Json<LocksCleared>> {
    let cleared = state.throttle.clear(query.email.as_deref());
    state.live.publish(LiveUpdate::LoginLocksCleared {
        replica: state.throttle.replica(),
        account: query.email.clone(),
    });
    let mut attributes = BTreeMap::from([("cleared".to_owned(), cleared.to_string())]);
    attributes.insert("by".into(), admin.email.clone());
    state
        .store
        .record_sign_in(
            query.email.as_deref().unwrap_or("*"),
            None,
            "login_unlocked",
            attributes,
            now_ns(),
        )
        .await?;
    Ok(Json(LocksCleared {
        cleared: cleared as u64,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// Set the refresh token as an `HttpOnly`, `SameSite=Strict` cookie instead of
    /// answering it (for browsers: no script can read it). Default `false`.
    #[serde(default)]
    pub refresh_cookie: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token; absent: the refresh cookie's, which also needs the
    /// `X-Dockermon-Client` header (and then the new one is set as the cookie too).
    #[serde(default)]
    pub refresh_token: Option<String>,
}

/// A session's tokens. The access token goes in `Authorization: Bearer …`; the refresh
/// token buys a new pair once, before the session expires.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Absent when it was set as the refresh cookie instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub user: UserRow,
}

/// Tokens, with the refresh token moved into a cookie when the client asked for one.
type TokenAnswer = ([(HeaderName, HeaderValue); 1], Json<TokenResponse>);

/// Answers `tokens`: the refresh token in the body, or (`cookie`) in a `Set-Cookie`.
fn answer(
    state: &ApiState,
    mut tokens: TokenResponse,
    cookie: bool,
    headers: &HeaderMap,
) -> Response {
    if !cookie {
        return Json(tokens).into_response();
    }
    let token = tokens.refresh_token.take().unwrap_or_default();
    let set = cookie::set(&token, state.refresh_ttl, cookie::over_https(headers));
    let answer: TokenAnswer = ([(SET_COOKIE, set)], Json(tokens));
    answer.into_response()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    #[schema(min_length = 10, max_length = 1024)]
    pub new_password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsUpdate {
    /// Replaces the user's settings.
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
}

/// The largest settings document a user may keep.
const MAX_SETTINGS: usize = 16 * 1024;

/// A refresh token is `<session id>.<secret>`: the id finds the session, the secret proves it.
fn split_refresh(token: &str) -> Option<(&str, &str)> {
    token
        .split_once('.')
        .filter(|(sid, secret)| !sid.is_empty() && !secret.is_empty())
}

fn tokens_for(state: &ApiState, user: UserRow, session: &str, secret: &str) -> TokenResponse {
    TokenResponse {
        access_token: state.tokens.issue(user.id, session, user.role, unix_now()),
        token_type: "Bearer",
        expires_in: state.tokens.access_ttl.as_secs(),
        refresh_token: Some(format!("{session}.{secret}")),
        user,
    }
}

/// Signs in with email and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "too many failed logins; see Retry-After")))]
pub async fn login(
    State(state): State<ApiState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    params::Json(request): params::Json<LoginRequest>,
) -> ApiResult<Response> {
    state
        .throttle
        .check(address, &request.email, Instant::now())
        .map_err(ApiError::too_many_requests)?;
    let credentials = state.store.credentials(&request.email).await?;
    let hash = credentials.as_ref().map(|c| c.password_hash.clone());
    let matches = password::verify(request.password, hash).await;
    let from = BTreeMap::from([("address".to_owned(), address.to_string())]);
    let now = now_ns();
    let user = match credentials {
        Some(credentials) if matches && !credentials.user.disabled => credentials.user,
        credentials => {
            // Who tried, from where, and why it failed: for admins, in the activity log.
            let user_id = credentials.as_ref().map(|c| c.user.id);
            let reason = match &credentials {
                None => "unknown email",
                Some(c) if c.user.disabled => "account disabled",
                Some(_) => "wrong password",
            };
            let mut attributes = from.clone();
            attributes.insert("reason".into(), reason.into());
            state
                .store
                .record_sign_in(&request.email, user_id, "login_failed", attributes, now)
                .await?;
            if state
                .throttle
                .failed(address, &request.email, Instant::now())
            {
                let mut attributes = from;
                attributes.insert(
                    "locked_for_s".into(),
                    crate::api::auth::throttle::WINDOW.as_secs().to_string(),
                );
                state
                    .store
                    .record_sign_in(&request.email, user_id, "login_locked", attributes, now)
                    .await?;
            }
            return Err(ApiError::unauthorized(
                "wrong email or password, or the account is disabled",
            ));
        }
    };
    state.throttle.succeeded(address, &request.email);
    state
        .store
        .record_sign_in(&user.email, Some(user.id), "login", from, now)
        .await?;
    let session = random_token();
    let secret = random_token();
    let expires = now + state.refresh_ttl.as_nanos() as i64;
    state
        .store
        .create_session(&session, user.id, &refresh_hash(&secret), now, expires)
        .await?;
    let tokens = tokens_for(&state, user, &session, &secret);
    Ok(answer(&state, tokens, request.refresh_cookie, &headers))
}

/// Exchanges a refresh token for a new pair. Each refresh token works once: presenting
/// one again ends its session (it was stolen, or the client is confused).
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "the cookie came without the client header or from another origin")))]
pub async fn refresh(
    State(state): State<ApiState>,
    headers: HeaderMap,
    params::Json(request): params::Json<RefreshRequest>,
) -> ApiResult<Response> {
    let ended = || ApiError::unauthorized("the session has ended; sign in again");
    let from_cookie = request.refresh_token.is_none();
    let token = match request.refresh_token.as_deref() {
        Some(token) => token,
        None => {
            cookie::check_same_origin(&headers)?;
            cookie::read(&headers).ok_or_else(ended)?
        }
    };
    let (session, secret) = split_refresh(token).ok_or_else(ended)?;
    let now = now_ns();
    let new_secret = random_token();
    let expires = now + state.refresh_ttl.as_nanos() as i64;
    let rotated = state
        .store
        .rotate_refresh(
            session,
            &refresh_hash(secret),
            &refresh_hash(&new_secret),
            now,
            expires,
        )
        .await?;
    if !rotated {
        state.store.revoke_session(session, now).await?;
        state
            .sessions
            .end(AccessChange::Session(session.to_owned()));
        return Err(ended());
    }
    let user = state
        .store
        .session_user(session, now)
        .await?
        .ok_or_else(ended)?;
    let tokens = tokens_for(&state, user, session, &new_secret);
    Ok(answer(&state, tokens, from_cookie, &headers))
}

/// Ends the session: its access and refresh tokens stop working at once, and the
/// refresh cookie, if any, is deleted.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn logout(
    State(state): State<ApiState>,
    user: AuthUser,
) -> ApiResult<([(HeaderName, HeaderValue); 1], StatusCode)> {
    state.store.revoke_session(&user.session, now_ns()).await?;
    state
        .sessions
        .end(AccessChange::Session(user.session.clone()));
    Ok(([(SET_COOKIE, cookie::clear())], StatusCode::NO_CONTENT))
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = UserRow), (status = 401, body = ErrorBody)))]
pub async fn me(State(state): State<ApiState>, user: AuthUser) -> ApiResult<Json<UserRow>> {
    Ok(Json(state.store.user(user.id).await?))
}

/// Replaces the signed-in user's settings.
#[utoipa::path(patch, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    request_body = SettingsUpdate,
    responses((status = 200, body = UserRow), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn update_me(
    State(state): State<ApiState>,
    user: AuthUser,
    params::Json(update): params::Json<SettingsUpdate>,
) -> ApiResult<Json<UserRow>> {
    if !update.settings.is_object() {
        return Err(ApiError::bad_request("settings must be a JSON object"));
    }
    if update.settings.to_string().len() > MAX_SETTINGS {
        return Err(ApiError::bad_request(format!(
            "settings must be at most {MAX_SETTINGS} bytes"
        )));
    }
    let changes = UserUpdate {
        settings: Some(update.settings),
        ..UserUpdate::default()
    };
    Ok(Json(
        state.store.update_user(user.id, &changes, now_ns()).await?,
    ))
}

/// Changes the signed-in user's password. Every session of the user ends, this one too.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "auth", security(("bearer" = [])),
    request_body = PasswordChange,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "the current password is wrong")))]
pub async fn change_password(
    State(state): State<ApiState>,
    user: AuthUser,
    params::Json(change): params::Json<PasswordChange>,
) -> ApiResult<StatusCode> {
    password::check_new(&change.new_password).map_err(ApiError::bad_request)?;
    let stored = state.store.password_hash(user.id).await?;
    if !password::verify(change.current_password, Some(stored)).await {
        return Err(ApiError::forbidden("the current password is wrong"));
    }
    let changes = UserUpdate {
        password_hash: Some(password::hash(change.new_password).await),
        ..UserUpdate::default()
    };
    state.store.update_user(user.id, &changes, now_ns()).await?;
    state.sessions.end(AccessChange::User(user.id));
    Ok(StatusCode::NO_CONTENT)
}

//! Users, managed by admins.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use dockermon_proto::now_ns;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::api::ApiState;
use crate::api::auth::{Admin, password};
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::params::{self, Path, Query};
use crate::live::AccessChange;
use crate::store::{Paged, Role, StoreError, UserRow, UserUpdate, is_valid_email};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/users", get(list).post(create))
        .route("/users/{id}", get(one).patch(update))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items to skip.
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<u64>,
    /// Items per page (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    #[schema(max_length = 254, pattern = "^[^@\\s]+@[^@\\s]+$")]
    pub email: String,
    #[schema(min_length = 10, max_length = 1024)]
    pub password: String,
    pub role: Role,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    /// A new password; every session of the user ends.
    #[schema(min_length = 10, max_length = 1024)]
    pub password: Option<String>,
}

fn check_email(email: &str) -> Result<(), ApiError> {
    if is_valid_email(email) {
        Ok(())
    } else {
        Err(ApiError::bad_request("email must look like name@domain"))
    }
}

/// Every user.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = Paged<UserRow>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    _: Admin,
    Query(query): Query<PageParams>,
) -> ApiResult<Json<Paged<UserRow>>> {
    let page = params::page(query.offset, query.limit)?;
    Ok(Json(state.store.users(page).await?))
}

/// Creates a user.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    request_body = NewUser,
    responses((status = 201, body = UserRow), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the email is taken")))]
pub async fn create(
    State(state): State<ApiState>,
    _: Admin,
    params::Json(user): params::Json<NewUser>,
) -> ApiResult<(StatusCode, Json<UserRow>)> {
    check_email(&user.email)?;
    password::check_new(&user.password).map_err(ApiError::bad_request)?;
    let hash = password::hash(user.password).await;
    match state
        .store
        .create_user(&user.email, &hash, user.role, now_ns())
        .await
    {
        Ok(created) => Ok((StatusCode::CREATED, Json(created))),
        Err(StoreError::Conflict(_)) => Err(ApiError::conflict("a user with this email exists")),
        Err(error) => Err(error.into()),
    }
}

/// One user.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = UserRow), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn one(
    State(state): State<ApiState>,
    _: Admin,
    Path(id): Path<i64>,
) -> ApiResult<Json<UserRow>> {
    Ok(Json(state.store.user(id).await?))
}

/// Changes a user's role, disables or enables them, or sets a new password. Admins cannot
/// demote or disable themselves, so the collector always keeps an admin.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = UserChange,
    responses((status = 200, body = UserRow), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn update(
    State(state): State<ApiState>,
    Admin(admin): Admin,
    Path(id): Path<i64>,
    params::Json(change): params::Json<UserChange>,
) -> ApiResult<Json<UserRow>> {
    if id == admin.id
        && (change.disabled == Some(true) || change.role.is_some_and(|r| r != Role::Admin))
    {
        return Err(ApiError::bad_request(
            "admins cannot demote or disable themselves; another admin can",
        ));
    }
    // One's own password changes only with the current one: a stolen access token must
    // not become a permanent takeover.
    if id == admin.id && change.password.is_some() {
        return Err(ApiError::forbidden(
            "change your own password with POST /api/v1/me/password, which needs the current one",
        ));
    }
    let password_hash = match change.password {
        Some(password) => {
            password::check_new(&password).map_err(ApiError::bad_request)?;
            Some(password::hash(password).await)
        }
        None => None,
    };
    let update = UserUpdate {
        role: change.role,
        disabled: change.disabled,
        password_hash,
        settings: None,
    };
    let user = state.store.update_user(id, &update, now_ns()).await?;
    // A new role, a new password or disabling takes effect at once.
    state.sessions.end(AccessChange::User(id));
    Ok(Json(user))
}

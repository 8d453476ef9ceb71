//! The activity log: Docker events and people's actions, filtered and paginated.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::api::ApiState;
use crate::api::auth::AuthUser;
use crate::api::error::{ApiResult, ErrorBody};
use crate::api::params::{self, Query};
use crate::store::{ActivityEntry, ActivityFilter, ContainerKey, HostId, Paged, Role};

pub fn router() -> Router<ApiState> {
    Router::new().route("/activity", get(list))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActivityParams {
    pub host: Option<i64>,
    /// `container`, `image`, `volume`, `network`, `daemon`; for people's actions `host`,
    /// `profile`, `auth` or `resource` (DockerHost and ProfileSession changes); `gap`.
    pub kind: Option<String>,
    /// The action's name: `start`, `die`, `exec_start`, `stop`, …
    pub action: Option<String>,
    pub container: Option<i64>,
    /// Only what this user did.
    pub user: Option<i64>,
    /// From this time (RFC 3339), inclusive.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Until this time (RFC 3339), exclusive.
    #[param(format = DateTime)]
    pub to: Option<String>,
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<u64>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// The activity log, newest first, with the total of matching entries. Sign-in events
/// (kind `auth`: who tried to sign in, from where, and lockouts) and the email of who acted
/// (`attributes.user`; everyone sees `user_id`) are shown to admins only.
#[utoipa::path(get, path = "/api/v1/activity", tag = "activity", security(("bearer" = [])),
    params(ActivityParams),
    responses((status = 200, body = Paged<ActivityEntry>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    user: AuthUser,
    Query(query): Query<ActivityParams>,
) -> ApiResult<Json<Paged<ActivityEntry>>> {
    let page = params::page(query.offset, query.limit)?;
    let filter = ActivityFilter {
        host: query.host.map(HostId),
        kind: query.kind,
        action: query.action,
        container: query.container.map(ContainerKey),
        user: query.user,
        from_ns: params::time_ns("from", query.from.as_deref())?,
        to_ns: params::time_ns("to", query.to.as_deref())?,
        include_auth: user.role == Role::Admin,
    };
    let mut page = state.store.activity(&filter, page).await?;
    if user.role != Role::Admin {
        // Who acted is the user's id (`user_id`); their email is for admins.
        for entry in &mut page.items {
            entry.attributes.remove("user");
        }
    }
    Ok(Json(page))
}

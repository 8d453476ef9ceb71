//! DockerHost and ProfileSession resources over REST, for deployments without Kubernetes
//! (and for a UI): apply YAML or JSON documents, list, get and delete, with the same
//! validation and the same store operations as `dockermon-collector apply|get|delete`.
//!
//! Roles: anyone signed in reads; operators apply and delete ProfileSessions; admins
//! apply and delete DockerHosts (a host's settings, and its revocation). Every apply and
//! deletion is in the activity log (`kind=resource`) with the user who made it.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use dockermon_proto::now_ns;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api::ApiState;
use crate::api::auth::AuthUser;
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::params::{Path, Query};
use crate::resources::objects::{self, Deleted};
use crate::resources::{Document, Kind, parse_documents};
use crate::store::{ApplyRefusal, Role, UserAction};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/resources", post(apply))
        .route("/resources/{kind}", get(list))
        .route("/resources/{kind}/{name}", get(read).delete(remove))
}

/// What applying one document did.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppliedResource {
    /// `DockerHost` or `ProfileSession`.
    pub kind: String,
    /// Empty for DockerHosts (cluster-scoped).
    pub namespace: String,
    pub name: String,
    /// `created`, `configured` or `unchanged`.
    pub result: String,
    /// The object as stored now.
    #[schema(value_type = Object)]
    pub object: Value,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NamespaceParams {
    /// The namespace of ProfileSessions (default `default`); ignored for DockerHosts.
    #[param(pattern = "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]
    pub namespace: Option<String>,
    /// ProfileSessions of every namespace (lists only).
    pub all_namespaces: Option<bool>,
}

/// Applies one or more `---`-separated documents (YAML or JSON) as `kubectl apply` does:
/// every document is checked first, then each is created, updated or left unchanged.
/// Unknown fields, wrong types and out-of-range values are refused (422) with the document
/// and the field named.
#[utoipa::path(post, path = "/api/v1/resources", tag = "resources", security(("bearer" = [])),
    request_body(content = String, content_type = "application/yaml",
        description = "DockerHost and ProfileSession documents, `---`-separated"),
    responses((status = 200, body = [AppliedResource]), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "a ProfileSession's spec changed, or the resource is being deleted"),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn apply(
    State(state): State<ApiState>,
    user: AuthUser,
    body: String,
) -> ApiResult<Json<Vec<AppliedResource>>> {
    refuse_in_kubernetes(&state)?;
    let documents = parse_documents(&body).map_err(|error| {
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_resource",
            error.to_string(),
        )
    })?;
    if documents.is_empty() {
        return Err(ApiError::bad_request("the body holds no document"));
    }
    for document in &documents {
        user.require(required_role(document.kind()))?;
    }
    let mut applied = Vec::with_capacity(documents.len());
    for document in &documents {
        let (result, row) = objects::apply(&state.store, document, now_ns())
            .await
            .map_err(|refusal| refused(document, refusal))?;
        audit(
            &state,
            &user,
            &row.kind,
            &document.key(),
            "apply",
            result.as_str(),
        )
        .await?;
        applied.push(AppliedResource {
            kind: row.kind.clone(),
            namespace: row.namespace.clone(),
            name: row.name.clone(),
            result: result.as_str().to_owned(),
            object: objects::to_object(&row),
        });
    }
    state.resources_wake.notify_one();
    Ok(Json(applied))
}

/// Lists the resources of a kind (`dockerhosts` or `profilesessions`) as a Kubernetes
/// `List`.
#[utoipa::path(get, path = "/api/v1/resources/{kind}", tag = "resources", security(("bearer" = [])),
    params(("kind" = String, Path, pattern = "^(dockerhosts|profilesessions)$"), NamespaceParams),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    _user: AuthUser,
    Path(kind): Path<String>,
    Query(params): Query<NamespaceParams>,
) -> ApiResult<Json<Value>> {
    let kind = kind_of(&kind)?;
    let namespace = namespace_of(kind, &params)?;
    let namespace = match (kind.namespaced(), params.all_namespaces.unwrap_or(false)) {
        (true, true) => None,
        _ => Some(namespace.as_str()),
    };
    let rows = state.store.resources(kind.as_str(), namespace).await?;
    let items: Vec<Value> = rows.iter().map(objects::to_object).collect();
    Ok(Json(
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}),
    ))
}

/// One resource.
#[utoipa::path(get, path = "/api/v1/resources/{kind}/{name}", tag = "resources", security(("bearer" = [])),
    params(("kind" = String, Path, pattern = "^(dockerhosts|profilesessions)$"),
        ("name" = String, Path), NamespaceParams),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn read(
    State(state): State<ApiState>,
    _user: AuthUser,
    Path((kind, name)): Path<(String, String)>,
    Query(params): Query<NamespaceParams>,
) -> ApiResult<Json<Value>> {
    let kind = kind_of(&kind)?;
    let namespace = namespace_of(kind, &params)?;
    let row = state
        .store
        .resource(kind.as_str(), &namespace, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{} {name:?} not found", kind.plural())))?;
    Ok(Json(objects::to_object(&row)))
}

/// What a deletion did.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedResource {
    /// `deleted`, or `deleting` while a running ProfileSession's profile is being stopped.
    pub result: String,
}

/// Deletes a resource: a DockerHost revokes its host (certificates revoked, agent
/// disconnected and refused, data removed); a running ProfileSession's profile stops.
#[utoipa::path(delete, path = "/api/v1/resources/{kind}/{name}", tag = "resources", security(("bearer" = [])),
    params(("kind" = String, Path, pattern = "^(dockerhosts|profilesessions)$"),
        ("name" = String, Path), NamespaceParams),
    responses((status = 200, body = DeletedResource), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(state): State<ApiState>,
    user: AuthUser,
    Path((kind, name)): Path<(String, String)>,
    Query(params): Query<NamespaceParams>,
) -> ApiResult<Json<DeletedResource>> {
    let kind = kind_of(&kind)?;
    user.require(required_role(kind))?;
    refuse_in_kubernetes(&state)?;
    let namespace = namespace_of(kind, &params)?;
    let key = if namespace.is_empty() {
        name.clone()
    } else {
        format!("{namespace}/{name}")
    };
    let result = match objects::delete(&state.store, kind, &namespace, &name, now_ns()).await? {
        Deleted::Deleted => "deleted",
        Deleted::Deleting => "deleting",
        Deleted::NotFound => {
            return Err(ApiError::not_found(format!(
                "{} {name:?} not found",
                kind.plural()
            )));
        }
    };
    audit(&state, &user, kind.as_str(), &key, "delete", result).await?;
    state.resources_wake.notify_one();
    Ok(Json(DeletedResource {
        result: result.to_owned(),
    }))
}

/// Writes a resource change to the activity log, with the user who made it.
async fn audit(
    state: &ApiState,
    user: &AuthUser,
    kind: &str,
    key: &str,
    action: &str,
    result: &str,
) -> Result<(), ApiError> {
    let entry = UserAction {
        user_id: Some(user.id),
        user_email: &user.email,
        host: None,
        container: None,
        target_id: key,
        target_name: Some(kind),
        kind: "resource",
        action,
        attributes: BTreeMap::from([("result".to_owned(), result.to_owned())]),
    };
    state.store.record_user_action(&entry, now_ns()).await?;
    Ok(())
}

/// Under `serve --kubernetes` the resources live in the cluster: writing the store's copy
/// would be overwritten, or never reconciled.
fn refuse_in_kubernetes(state: &ApiState) -> Result<(), ApiError> {
    if state.resources_in_kubernetes {
        return Err(ApiError::conflict(
            "this collector runs the Kubernetes operator: change DockerHosts and ProfileSessions with kubectl",
        ));
    }
    Ok(())
}

fn required_role(kind: Kind) -> Role {
    match kind {
        Kind::DockerHost => Role::Admin,
        Kind::ProfileSession => Role::Operator,
    }
}

fn kind_of(text: &str) -> Result<Kind, ApiError> {
    Kind::ALL
        .into_iter()
        .find(|kind| kind.plural() == text)
        .ok_or_else(|| {
            ApiError::not_found("no such resource kind: use dockerhosts or profilesessions")
        })
}

fn namespace_of(kind: Kind, params: &NamespaceParams) -> Result<String, ApiError> {
    if !kind.namespaced() {
        return Ok(String::new());
    }
    let namespace = params
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    crate::resources::document::is_dns_label(&namespace)
        .map_err(|why| ApiError::bad_request(format!("namespace: {why}")))?;
    Ok(namespace)
}

fn refused(document: &Document, refusal: ApplyRefusal) -> ApiError {
    match refusal {
        ApplyRefusal::Store(error) => error.into(),
        other => ApiError::conflict(format!("{} {}: {other}", document.kind(), document.key())),
    }
}

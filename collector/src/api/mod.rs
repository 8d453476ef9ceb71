//! The REST API for people, under `/api/v1` on :3810, and its OpenAPI document.
//!
//! Routers are functions of the state: [`router`] is what `serve` listens with and what
//! tests call with `oneshot`. Every handler answers JSON, and every error leaves as an
//! [`error::ApiError`]. Bodies are capped at [`MAX_BODY`]; larger ones answer 413.

pub mod auth;
pub mod error;
pub mod openapi;
pub mod params;
pub mod routes;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};

use crate::inventory::Inventory;
use crate::pki::Authority;
use crate::store::{Retention, Store};
use crate::transport::Registry;

pub use openapi::ApiDoc;

/// The largest request body accepted. The API takes small JSON documents only.
pub const MAX_BODY: usize = 64 * 1024;

/// What handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    /// The current containers, in memory, for lists.
    pub inventory: Arc<Inventory>,
    pub tokens: Arc<auth::TokenKeys>,
    pub throttle: Arc<auth::LoginThrottle>,
    /// Sessions recently found live.
    pub sessions: Arc<auth::SessionCache>,
    /// What replicas tell each other (lifted login locks).
    pub live: crate::live::LiveBus,
    /// The connected agents, for live status and commands.
    pub registry: Registry,
    /// Profile sessions: start, stop, watch.
    pub profiler: crate::profiles::Profiler,
    /// The collector's own metrics (requests are counted by route template).
    pub metrics: Arc<crate::metrics::CollectorMetrics>,
    pub retention: Retention,
    /// The built-in CA, when the collector has one: join tokens pin its fingerprint.
    pub authority: Option<Arc<Authority>>,
    /// How long a session lasts without a refresh.
    pub refresh_ttl: Duration,
    /// How long an agent has to carry out a container action.
    pub action_timeout: Duration,
    /// Wakes the resource controller after the API changed a resource.
    pub resources_wake: Arc<tokio::sync::Notify>,
    /// Resources live in Kubernetes (`serve --kubernetes`): the API does not write them.
    pub resources_in_kubernetes: bool,
}

pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .merge(routes::auth::router())
        .merge(routes::users::router())
        .merge(routes::hosts::router())
        .merge(routes::join_tokens::router())
        .merge(routes::resources::router())
        .merge(routes::containers::router())
        .merge(routes::activity::router())
        .merge(routes::profiles::router())
        .route("/openapi.json", get(|| async { Json(openapi::document()) }));
    Router::new()
        .nest("/api/v1", api)
        .fallback(|| async { error::ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            count_request,
        ))
        .with_state(state)
}

/// Counts every request by route template (never the raw path), method and status.
async fn count_request(
    State(metrics): State<Arc<crate::metrics::CollectorMetrics>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .api_requests
        .with_label_values(&[route.as_str(), method, response.status().as_str()])
        .inc();
    metrics
        .api_seconds
        .with_label_values(&[route.as_str(), method])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The client's address, for throttling. Taken from the connection (a proxy in front
/// should be trusted explicitly, which the collector does not do); unspecified when the
/// router runs without a socket, as in tests.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip())
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        ))
    }
}

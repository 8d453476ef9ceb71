//! `GET /metrics` on the health listener (:9810): the fleet's containers under cAdvisor's
//! names, so the usual Docker/cAdvisor Grafana dashboards work unchanged, plus
//! `dockermon_*` series for hosts, agents and the collector itself.
//!
//! Each replica exports the hosts whose agents are connected to it ([`fleet`]); the replica
//! holding the scheduler's lease also reports the known hosts connected to none as down,
//! so a Prometheus that scrapes every replica sees every series once. Series carry `host`
//! and `instance` (the Docker host's name): with `honor_labels: true` in the scrape
//! configuration, dashboards that pick a host by `instance` list Docker hosts. The
//! exposition streams out ([`render`]); gzip when the scraper accepts it; an optional
//! bearer token guards it.

pub mod encode;
mod families;
pub mod fleet;
pub mod own;
pub mod render;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use tower_http::compression::CompressionLayer;

pub use encode::Format;
pub use fleet::{FleetMetrics, MetricsConfig};
pub use own::CollectorMetrics;
pub use render::{HostEntry, Renderer, Scrape};

use crate::transport::Registry;

/// What the endpoint serves from.
#[derive(Clone)]
pub struct MetricsEndpoint {
    pub fleet: Arc<FleetMetrics>,
    pub registry: Registry,
    pub own: Arc<CollectorMetrics>,
    /// Scrapers must present `Authorization: Bearer <token>` when set.
    pub token: Option<Arc<str>>,
    /// Whether this replica holds the scheduler's lease (reports hosts that are down).
    pub leader: Arc<AtomicBool>,
}

impl MetricsEndpoint {
    /// A consistent snapshot of what to render.
    pub fn scrape(&self, format: Format) -> Scrape {
        let views = self.fleet.snapshot();
        self.own
            .agents_connected
            .set(i64::try_from(self.registry.connected()).unwrap_or(i64::MAX));
        let mut profiles = 0;
        let hosts: Vec<HostEntry> = views
            .into_iter()
            .map(|(id, view)| {
                let agent = self.registry.agent(id);
                profiles += agent.as_ref().map_or(0, |a| a.status.profiles.len());
                HostEntry { view, agent }
            })
            .collect();
        self.own.profiles_running.set(profiles as i64);
        let down = if self.leader.load(Ordering::Relaxed) {
            self.fleet
                .down_hosts(&hosts, |host| self.registry.is_connected(host))
        } else {
            Vec::new()
        };
        Scrape {
            format,
            hosts,
            down,
            collector: self.own.gather(),
        }
    }
}

pub fn router(endpoint: MetricsEndpoint) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .layer(CompressionLayer::new().gzip(true))
        .with_state(endpoint)
}

async fn metrics(State(endpoint): State<MetricsEndpoint>, headers: HeaderMap) -> Response {
    if let Some(token) = &endpoint.token
        && !authorized(&headers, token)
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required (--metrics-token-file)\n",
        )
            .into_response();
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let started = Instant::now();
    let scrape = endpoint.scrape(format);
    let own = endpoint.own.clone();
    let mut renderer = Renderer::new(scrape);
    let chunks = futures::stream::poll_fn(move |_| {
        let chunk = renderer.next();
        if chunk.is_none() {
            own.scrape_seconds.observe(started.elapsed().as_secs_f64());
        }
        std::task::Poll::Ready(chunk.map(|text| Ok::<_, Infallible>(text.into_bytes())))
    });
    let mut response = Body::from_stream(chunks).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    response
}

/// Compares hashes, so the comparison takes as long whatever the token sent.
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .trim();
    Sha256::digest(presented.as_bytes()) == Sha256::digest(token.as_bytes())
}

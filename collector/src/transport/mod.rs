//! The agent listener (`:3812`): mutually authenticated TLS 1.3, then HTTP/1.1 with four
//! routes: `/v1/agent` (the WebSocket session), `/v1/enroll`, `/v1/enroll/service-account`
//! and `/v1/renew`.
//!
//! The host identity is the verified client certificate's common name, attached to each
//! connection as a [`Peer`]; nothing an agent sends can change it. Before a session or a
//! renewal is accepted, the host and certificate are checked against revocations in the
//! store; a background task closes open sessions of hosts revoked since (on any replica,
//! since it reads the store).

pub mod enroll;
pub mod join_tokens;
mod pipeline;
pub mod presence;
pub mod registry;
mod session;
pub mod tls;
pub mod token_review;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use dockermon_proto::now_ns;
use dockermon_proto::transport::{
    AGENT_PATH, AgentConfig, ENROLL_PATH, MAX_FRAME_BYTES, RENEW_PATH, SERVICE_ACCOUNT_ENROLL_PATH,
};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

pub use pipeline::{AGENT_BUDGET_BYTES, COLLECTOR_BUDGET_BYTES, MemoryBudget, Pipeline};
pub use registry::{CommandError, ConnectedAgent, Registry};
pub use tls::{Peer, TlsFiles};

use crate::pki::Authority;
use crate::store::Store;
use enroll::Refusal;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often open sessions are checked against revocations.
const REVOCATION_CHECK: Duration = Duration::from_secs(2);
/// Largest enrollment or renewal request.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// What each agent connection reads into at a time. tungstenite's default, 128 KiB, is
/// allocated and zeroed per connection: 1.25 GiB for 10,000 agents that send a frame of
/// about 36 KiB every 30 s. The buffer grows for a larger frame (up to
/// [`MAX_FRAME_BYTES`]), so this only sets what an idle connection holds (BENCHMARKS.md,
/// "one collector, 10,000 agents").
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// What the agent listener works with.
pub struct AgentService {
    pub store: Store,
    pub pipeline: Pipeline,
    pub registry: Registry,
    /// Profile sessions: live samples and reconnects of agents go here.
    pub profiler: crate::profiles::Profiler,
    /// What `/metrics` shows of the hosts connected here: loaded when an agent connects.
    pub metrics: Arc<crate::metrics::FleetMetrics>,
    /// The built-in CA; `None` when agents bring certificates from elsewhere.
    pub authority: Option<Arc<Authority>>,
    /// Reviews ServiceAccount tokens of agents enrolling in a Kubernetes cluster; `None`
    /// outside one (or without `--agent-service-account`).
    pub token_reviewer: Option<token_review::TokenReviewer>,
    pub agent_config: AgentConfig,
    pub agent_cert_ttl: Duration,
    /// What all agents' frames in flight may hold together.
    pub budget: MemoryBudget,
    pub shutdown: CancellationToken,
}

/// Accepts agent connections until `cancel` fires.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    service: Arc<AgentService>,
    cancel: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls);
    let router = router(service.clone());
    let connections = TaskTracker::new();
    connections.spawn(watch_revocations(service.clone(), cancel.clone()));
    loop {
        let (tcp, address) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "cannot accept agent connections");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        connections.spawn(connection(
            tcp,
            address,
            acceptor.clone(),
            router.clone(),
            cancel.clone(),
        ));
    }
    connections.close();
    connections.wait().await;
}

async fn connection(
    tcp: tokio::net::TcpStream,
    address: SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
    cancel: CancellationToken,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            // Wrong CA, expired certificate, not TLS at all: the client sees the alert.
            debug!(%address, %error, "TLS handshake refused");
            return;
        }
        Err(_) => {
            debug!(%address, "TLS handshake timed out");
            return;
        }
    };
    let peer = match tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
    {
        None => None,
        Some(certificate) => match tls::peer_of(certificate) {
            Ok(peer) => Some(peer),
            Err(error) => {
                warn!(%address, %error, "client certificate refused");
                return;
            }
        },
    };
    let service = TowerToHyperService::new(router.layer(Extension(peer)));
    let http = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades();
    tokio::pin!(http);
    tokio::select! {
        result = &mut http => if let Err(error) = result { debug!(%address, %error, "agent connection ended") },
        () = cancel.cancelled() => {
            http.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), http).await;
        }
    }
}

fn router(service: Arc<AgentService>) -> Router {
    Router::new()
        .route(AGENT_PATH, get(session))
        .route(ENROLL_PATH, post(enroll::enroll))
        .route(
            SERVICE_ACCOUNT_ENROLL_PATH,
            post(enroll::enroll_service_account),
        )
        .route(RENEW_PATH, post(enroll::renew))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(service)
}

/// Refuses unknown, revoked or unidentified peers before anything else happens.
async fn admit(service: &AgentService, peer: &Peer) -> Result<(), Refusal> {
    let admission = service
        .store
        .admission(&peer.host, &peer.serial)
        .await
        .map_err(|error| {
            warn!(%error, "cannot check admission");
            Refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the collector cannot check this agent right now".into(),
            )
        })?;
    match enroll::refusal_for(admission) {
        None => Ok(()),
        Some(refusal) => {
            warn!(host = %peer.host, reason = %refusal.2, "agent refused");
            Err(refusal)
        }
    }
}

async fn session(
    State(service): State<Arc<AgentService>>,
    Extension(peer): Extension<Option<Peer>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(peer) = peer else {
        return Refusal(
            StatusCode::UNAUTHORIZED,
            "certificate_required",
            "a client certificate is required; enroll first".into(),
        )
        .into_response();
    };
    if let Err(refusal) = admit(&service, &peer).await {
        return refusal.into_response();
    }
    let shutdown = service.shutdown.clone();
    upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| session::run(socket, peer, service, shutdown))
}

/// Closes sessions of hosts and certificates revoked since the last check.
async fn watch_revocations(service: Arc<AgentService>, cancel: CancellationToken) {
    let mut since = now_ns() - REVOCATION_CHECK.as_nanos() as i64;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(REVOCATION_CHECK) => {}
        }
        let checked_at = now_ns();
        let Some(revoked) = cancel
            .run_until_cancelled(service.store.revocations_since(since))
            .await
        else {
            return;
        };
        match revoked {
            Ok((hosts, serials)) => {
                if !hosts.is_empty() || !serials.is_empty() {
                    service.registry.close_matching(
                        &hosts,
                        &serials,
                        "host deleted: certificate revoked",
                    );
                }
                // Overlap by one period: a revocation committed just before `checked_at`
                // by another replica is not missed.
                since = checked_at - REVOCATION_CHECK.as_nanos() as i64;
            }
            Err(error) => debug!(%error, "cannot check revocations"),
        }
    }
}

//! `/healthz` (the process is alive) and `/readyz` (it can do its job: it has started, the
//! database is reachable and migrated, and with `--nats-url` the broker that links the
//! replicas is connected).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::watch;

/// What readiness depends on; each is reported on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dependency {
    /// The listeners are not all up yet.
    Startup,
    Database,
    /// The NATS server of `--nats-url`: without it this replica's watchers miss what
    /// agents on other replicas send, and its commands cannot reach them.
    Nats,
}

impl Dependency {
    pub fn name(self) -> &'static str {
        match self {
            Dependency::Startup => "startup",
            Dependency::Database => "database",
            Dependency::Nats => "nats",
        }
    }
}

/// Whether the collector is ready, and if not, why: the reason of each dependency that
/// fails.
#[derive(Clone)]
pub struct Readiness {
    failing: Arc<watch::Sender<BTreeMap<Dependency, String>>>,
}

impl Default for Readiness {
    fn default() -> Self {
        let starting = BTreeMap::from([(Dependency::Startup, "starting".to_owned())]);
        Readiness {
            failing: Arc::new(watch::Sender::new(starting)),
        }
    }
}

impl Readiness {
    /// `dependency` works (again).
    pub fn ready(&self, dependency: Dependency) {
        self.failing
            .send_if_modified(|failing| failing.remove(&dependency).is_some());
    }

    /// `dependency` fails, for `reason`.
    pub fn not_ready(&self, dependency: Dependency, reason: impl Into<String>) {
        let reason = reason.into();
        self.failing.send_modify(|failing| {
            failing.insert(dependency, reason);
        });
    }

    /// Whether nothing fails.
    pub fn is_ready(&self) -> bool {
        self.failing.borrow().is_empty()
    }

    /// Whether `dependency` works.
    pub fn works(&self, dependency: Dependency) -> bool {
        !self.failing.borrow().contains_key(&dependency)
    }
}

pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .with_state(readiness)
}

/// 200 `{"ready": true}`, or 503 `{"ready": false, "reason": "…", "failing": ["database",
/// "nats"]}`: `reason` joins the reasons of the failing dependencies with "; " (leaving out
/// "starting" when something else says why).
async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    let failing = readiness.failing.borrow();
    if failing.is_empty() {
        return (StatusCode::OK, Json(json!({"ready": true})));
    }
    let causes: Vec<&str> = failing
        .iter()
        .filter(|(dependency, _)| **dependency != Dependency::Startup || failing.len() == 1)
        .map(|(_, reason)| reason.as_str())
        .collect();
    let names: Vec<&str> = failing.keys().map(|dependency| dependency.name()).collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"ready": false, "reason": causes.join("; "), "failing": names})),
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn get(router: &Router, path: &str) -> (StatusCode, serde_json::Value) {
        let response = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn readiness_follows_the_database() {
        let readiness = Readiness::default();
        let router = router(readiness.clone());
        assert_eq!(get(&router, "/healthz").await.0, StatusCode::OK);

        let (status, body) = get(&router, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["reason"], "starting");

        readiness.ready(Dependency::Startup);
        assert_eq!(get(&router, "/readyz").await.0, StatusCode::OK);

        readiness.not_ready(
            Dependency::Database,
            "database unavailable: connection refused",
        );
        let (status, body) = get(&router, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["reason"], "database unavailable: connection refused");
        assert_eq!(
            get(&router, "/healthz").await.0,
            StatusCode::OK,
            "alive even when not ready"
        );
    }

    #[tokio::test]
    async fn each_dependency_is_ready_or_not_on_its_own() {
        let readiness = Readiness::default();
        let router = router(readiness.clone());
        // While starting, a dependency that fails says why; "starting" adds nothing.
        readiness.not_ready(Dependency::Database, "connection refused");
        let (_, body) = get(&router, "/readyz").await;
        assert_eq!(body["reason"], "connection refused");
        assert_eq!(body["failing"], json!(["startup", "database"]));
        readiness.ready(Dependency::Startup);
        readiness.not_ready(Dependency::Nats, "NATS nats://10.0.0.5:4222: disconnected");
        readiness.not_ready(Dependency::Database, "connection refused");
        let (status, body) = get(&router, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body["reason"],
            "connection refused; NATS nats://10.0.0.5:4222: disconnected"
        );
        assert_eq!(body["failing"], json!(["database", "nats"]));

        // The database coming back does not hide that NATS is still gone.
        readiness.ready(Dependency::Database);
        let (status, body) = get(&router, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["reason"], "NATS nats://10.0.0.5:4222: disconnected");
        assert!(readiness.works(Dependency::Database));
        assert!(!readiness.works(Dependency::Nats));

        readiness.ready(Dependency::Nats);
        assert_eq!(get(&router, "/readyz").await.0, StatusCode::OK);
    }
}

//! `/healthz` (the process is alive) and `/readyz` (it can do its job: the database is
//! reachable and migrated) on the health listener.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::watch;

/// Whether the collector is ready, and if not, why.
#[derive(Clone)]
pub struct Readiness {
    state: Arc<watch::Sender<Result<(), String>>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            state: Arc::new(watch::Sender::new(Err("starting".to_owned()))),
        }
    }
}

impl Readiness {
    pub fn ready(&self) {
        self.state.send_if_modified(|state| {
            let changed = state.is_err();
            *state = Ok(());
            changed
        });
    }

    pub fn not_ready(&self, reason: impl Into<String>) {
        let reason = reason.into();
        self.state.send_modify(|state| *state = Err(reason));
    }

    pub fn is_ready(&self) -> bool {
        self.state.borrow().is_ok()
    }
}

pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .with_state(readiness)
}

async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    match &*readiness.state.borrow() {
        Ok(()) => (StatusCode::OK, Json(json!({"ready": true}))),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": reason})),
        ),
    }
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

        readiness.ready();
        assert_eq!(get(&router, "/readyz").await.0, StatusCode::OK);

        readiness.not_ready("database unavailable: connection refused");
        let (status, body) = get(&router, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["reason"], "database unavailable: connection refused");
        assert_eq!(
            get(&router, "/healthz").await.0,
            StatusCode::OK,
            "alive even when not ready"
        );
    }
}

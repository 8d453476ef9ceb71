//! The `ProfileSession` controller.
//!
//! - Apply: a pending session starts its profile through the profiler (as `POST
//!   /api/v1/containers/{id}/profiles` does, joining a running one), a running one is
//!   followed until it ends, and the status is written when it changed. Completion is a
//!   Kubernetes Event. A finished session is deleted `ttlSecondsAfterFinished` after it
//!   ended.
//! - Cleanup (finalizer `dockermon.io/stop-profile`): a running profile is stopped.

use std::sync::Arc;
use std::time::Duration;

use dockermon_proto::now_ns;
use futures::StreamExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalize, finalizer};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{instrument, warn};

use super::{FIELD_MANAGER, Operator, OperatorError};
use crate::resources::host_status::parse_time;
use crate::resources::reconcile::session_expired;
use crate::resources::{Phase, ProfileSession, ProfileSessionStatus};

pub const FINALIZER: &str = "dockermon.io/stop-profile";
/// How often a pending or running session is looked at.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    operator: Arc<Operator>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<ProfileSession> = Api::all(operator.client.clone());
    Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, operator)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(error = %dockermon_agent::process::error_chain(&error), "ProfileSession reconcile failed");
            }
        })
        .await;
}

fn key_of(session: &ProfileSession) -> String {
    format!(
        "{}/{}",
        session.namespace().unwrap_or_default(),
        session.name_any()
    )
}

/// Reconciles one `ProfileSession` through its finalizer.
#[instrument(skip_all, fields(session = %key_of(&session)))]
pub async fn reconcile(
    session: Arc<ProfileSession>,
    operator: Arc<Operator>,
) -> Result<Action, OperatorError> {
    let namespace = session.namespace().unwrap_or_else(|| "default".into());
    let api: Api<ProfileSession> = Api::namespaced(operator.client.clone(), &namespace);
    let key = format!("profilesession/{}", key_of(&session));
    let action = finalizer(&api, FINALIZER, session, |event| async {
        match event {
            Finalize::Apply(session) => apply(&session, &api, &operator).await,
            Finalize::Cleanup(session) => {
                operator
                    .reconcile
                    .stop_session(&key_of(&session), session.status.as_ref())
                    .await?;
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|error| OperatorError::Finalizer(Box::new(error)))?;
    operator.succeeded(&key);
    Ok(action)
}

pub fn error_policy(
    session: Arc<ProfileSession>,
    error: &OperatorError,
    operator: Arc<Operator>,
) -> Action {
    warn!(session = %key_of(&session), error = %dockermon_agent::process::error_chain(error), "ProfileSession reconcile failed; retrying with backoff");
    operator.backoff(&format!("profilesession/{}", key_of(&session)))
}

async fn apply(
    session: &ProfileSession,
    api: &Api<ProfileSession>,
    operator: &Operator,
) -> Result<Action, OperatorError> {
    let now = now_ns();
    if session_expired(&session.spec, session.status.as_ref(), now) {
        api.delete(&session.name_any(), &DeleteParams::default())
            .await?;
        return Ok(Action::await_change());
    }
    let status = operator
        .reconcile
        .reconcile_session(&key_of(session), &session.spec, session.status.as_ref())
        .await?;
    if session.status.as_ref() != Some(&status) {
        let patch = json!({
            "apiVersion": crate::resources::API_VERSION,
            "kind": "ProfileSession",
            "status": status,
        });
        let written = api
            .patch_status(
                &session.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await;
        if !super::written(written)? {
            // Deleted meanwhile: its cleanup comes as its own event.
            return Ok(Action::await_change());
        }
        let was_finished = session
            .status
            .as_ref()
            .is_some_and(|s| s.phase.is_finished());
        if status.phase.is_finished() && !was_finished {
            announce_end(operator, session, &status).await;
        }
    }
    Ok(
        match (status.phase, session.spec.ttl_seconds_after_finished) {
            (Phase::Pending | Phase::Running, _) => Action::requeue(FOLLOW_EVERY),
            (_, Some(ttl)) => {
                let ended = status
                    .completion_time
                    .as_deref()
                    .and_then(parse_time)
                    .unwrap_or(now);
                let left = ended
                    .saturating_add(ttl.saturating_mul(1_000_000_000))
                    .saturating_sub(now)
                    .max(0);
                Action::requeue(Duration::from_nanos(left as u64) + Duration::from_secs(1))
            }
            (_, None) => Action::await_change(),
        },
    )
}

async fn announce_end(
    operator: &Operator,
    session: &ProfileSession,
    status: &ProfileSessionStatus,
) {
    let succeeded = status.phase == Phase::Succeeded;
    let event = Event {
        type_: if succeeded {
            EventType::Normal
        } else {
            EventType::Warning
        },
        reason: if succeeded {
            "ProfileCompleted".into()
        } else {
            "ProfileFailed".into()
        },
        note: Some(match (&status.message, status.samples) {
            (Some(message), _) => message.clone(),
            (None, Some(samples)) => format!("{samples} samples stored"),
            (None, None) => status.reason.clone().unwrap_or_default(),
        }),
        action: "Profile".into(),
        secondary: None,
    };
    if let Err(error) = operator
        .recorder
        .publish(&event, &session.object_ref(&()))
        .await
    {
        warn!(%error, "cannot publish a ProfileSession event");
    }
}

//! The `DockerHost` controller.
//!
//! - Apply: the spec is mirrored into the store (with the object's generation, so the
//!   agent's acknowledgement and `status.observedGeneration` speak of the same number),
//!   the connected agent is brought to it, and the status is written with server-side
//!   apply when it changed. Connecting and disconnecting agents are Kubernetes Events.
//! - Cleanup (finalizer `dockermon.io/revoke-host`): the host is revoked, as `host delete`
//!   does: certificates revoked, name refused until a new join token names it, agent
//!   disconnected, data removed. An agent still running on a node then stays refused: the
//!   DockerHost does not come back until someone re-admits the host with a join token.
//!   When the CRD itself is being deleted (an uninstall), hosts are not revoked.
//! - Enrolled hosts without a `DockerHost` get one ([`create_missing`]).

use std::sync::Arc;

use dockermon_proto::now_ns;
use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalize, finalizer};
use kube::runtime::watcher;
use kube::{CustomResourceExt, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument, warn};

use super::{FIELD_MANAGER, Operator, OperatorError, RESYNC};
use crate::resources::controller::to_json;
use crate::resources::document::is_dns_subdomain;
use crate::resources::{DockerHost, DockerHostSpec, DockerHostStatus, Kind};
use crate::store::DesiredResource;

pub const FINALIZER: &str = "dockermon.io/revoke-host";

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    operator: Arc<Operator>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<DockerHost> = Api::all(operator.client.clone());
    Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, operator)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(error = %dockermon_agent::process::error_chain(&error), "DockerHost reconcile failed");
            }
        })
        .await;
}

/// Reconciles one `DockerHost` through its finalizer.
#[instrument(skip_all, fields(host = %host.name_any()))]
pub async fn reconcile(
    host: Arc<DockerHost>,
    operator: Arc<Operator>,
) -> Result<Action, OperatorError> {
    let api: Api<DockerHost> = Api::all(operator.client.clone());
    let key = format!("dockerhost/{}", host.name_any());
    let action = finalizer(&api, FINALIZER, host, |event| async {
        match event {
            Finalize::Apply(host) => apply(&host, &operator).await,
            Finalize::Cleanup(host) => cleanup(&host, &operator).await,
        }
    })
    .await
    .map_err(|error| OperatorError::Finalizer(Box::new(error)))?;
    operator.succeeded(&key);
    Ok(action)
}

pub fn error_policy(
    host: Arc<DockerHost>,
    error: &OperatorError,
    operator: Arc<Operator>,
) -> Action {
    warn!(host = %host.name_any(), error = %dockermon_agent::process::error_chain(error), "DockerHost reconcile failed; retrying with backoff");
    operator.backoff(&format!("dockerhost/{}", host.name_any()))
}

async fn apply(host: &DockerHost, operator: &Operator) -> Result<Action, OperatorError> {
    let name = host.name_any();
    let generation = host.metadata.generation.unwrap_or(1);
    let store = &operator.reconcile.store;
    let spec = to_json(&host.spec);
    let desired = DesiredResource {
        kind: Kind::DockerHost.as_str(),
        namespace: "",
        name: &name,
        labels: "{}",
        annotations: "{}",
        spec: &spec,
    };
    store
        .mirror_resource(&desired, generation, now_ns())
        .await?;
    let hosts = store.hosts().await?;
    let row = hosts.iter().find(|row| row.name == name);
    let status = operator
        .reconcile
        .reconcile_host(&name, &host.spec, generation, row, host.status.as_ref())
        .await?;
    if host.status.as_ref() != Some(&status) {
        if !patch_status(operator, &name, &status).await? {
            // Deleted meanwhile: its cleanup comes as its own event.
            return Ok(Action::await_change());
        }
        announce_connection(operator, host, &status).await;
    }
    Ok(Action::requeue(RESYNC))
}

async fn cleanup(host: &DockerHost, operator: &Operator) -> Result<Action, OperatorError> {
    let name = host.name_any();
    if crd_is_going(operator).await? {
        // Every DockerHost goes with its CRD (an uninstall): that is not a decision to
        // revoke the fleet, so the hosts stay enrolled.
        warn!(host = %name, "the DockerHost CRD is being deleted: the host is kept, not revoked");
        return Ok(Action::await_change());
    }
    operator.reconcile.revoke_host(&name).await?;
    if let Some(row) = operator
        .reconcile
        .store
        .resource(Kind::DockerHost.as_str(), "", &name)
        .await?
    {
        operator
            .reconcile
            .store
            .remove_resource(&row.kind, "", &name, &row.uid)
            .await?;
    }
    info!(host = %name, "DockerHost deleted: host revoked");
    Ok(Action::await_change())
}

/// Whether the DockerHost CRD itself is gone or being deleted.
async fn crd_is_going(operator: &Operator) -> Result<bool, OperatorError> {
    let api: Api<CustomResourceDefinition> = Api::all(operator.client.clone());
    Ok(match api.get_opt(DockerHost::crd_name()).await? {
        None => true,
        Some(crd) => crd.metadata.deletion_timestamp.is_some(),
    })
}

/// Writes the status with server-side apply (the operator owns `.status`). False when the
/// object is gone (404).
async fn patch_status(
    operator: &Operator,
    name: &str,
    status: &DockerHostStatus,
) -> Result<bool, OperatorError> {
    let api: Api<DockerHost> = Api::all(operator.client.clone());
    let patch = json!({
        "apiVersion": crate::resources::API_VERSION,
        "kind": "DockerHost",
        "status": status,
    });
    let written = api
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await;
    super::written(written)
}

/// A Kubernetes Event when the agent connected or disconnected.
async fn announce_connection(operator: &Operator, host: &DockerHost, status: &DockerHostStatus) {
    let connected = |status: Option<&DockerHostStatus>| {
        status
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Connected"))
            .map(|c| c.status == "True")
    };
    let (before, now) = (connected(host.status.as_ref()), connected(Some(status)));
    if before == now || now.is_none() {
        return;
    }
    let (reason, note) = if now == Some(true) {
        ("AgentConnected", "the host's agent connected")
    } else {
        ("AgentDisconnected", "the host's agent disconnected")
    };
    let event = Event {
        type_: if now == Some(true) {
            EventType::Normal
        } else {
            EventType::Warning
        },
        reason: reason.into(),
        note: Some(note.into()),
        action: "Connection".into(),
        secondary: None,
    };
    if let Err(error) = operator
        .recorder
        .publish(&event, &host.object_ref(&()))
        .await
    {
        warn!(%error, "cannot publish a DockerHost event");
    }
}

/// Creates a `DockerHost` (empty spec) for each enrolled host that has none, so that
/// `kubectl get dockerhosts` lists the fleet. Hosts whose names are not Kubernetes object
/// names are skipped (and said so).
pub async fn create_missing(operator: &Operator) -> Result<usize, OperatorError> {
    let api: Api<DockerHost> = Api::all(operator.client.clone());
    let existing = api.list(&Default::default()).await?;
    let mut created = 0;
    for host in operator.reconcile.store.hosts().await? {
        if existing
            .items
            .iter()
            .any(|object| object.name_any() == host.name)
        {
            continue;
        }
        if let Err(why) = is_dns_subdomain(&host.name) {
            warn!(host = %host.name, %why, "this host's name cannot name a DockerHost");
            continue;
        }
        let object = DockerHost::new(&host.name, DockerHostSpec::default());
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => created += 1,
            // Created meanwhile (another replica's last act, or a person).
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(created)
}

//! The Kubernetes operator (`serve --kubernetes`): kube-runtime controllers for
//! `DockerHost` and `ProfileSession`, run only by the replica holding a
//! `coordination.k8s.io` Lease; the others stand by and take over when it expires.
//!
//! The collector's own truth stays in its store: a `DockerHost`'s spec is mirrored into
//! the store (where every replica reads it when an agent connects, and where container
//! actions are checked against it), and the status is computed by the same functions as
//! without Kubernetes ([`crate::resources::reconcile`]) and written back with server-side
//! apply when it changed. Reconcile functions are thin: everything they do is what the REST
//! API path does too.

pub mod docker_hosts;
pub mod leadership;
pub mod pki_secret;
pub mod profile_sessions;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};

use crate::resources::reconcile::{Context as ReconcileContext, ReconcileError};

/// The field manager of the operator's server-side applies.
pub const FIELD_MANAGER: &str = "dockermon-operator";
/// How often a resource is reconciled without a change to it (the status follows the
/// agent's connection this quickly).
pub const RESYNC: Duration = Duration::from_secs(10);
/// First and longest wait before retrying a failed reconcile; it doubles in between.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(300));

/// What the operator's reconcilers share.
pub struct Operator {
    pub client: Client,
    pub reconcile: ReconcileContext,
    pub recorder: Recorder,
    /// Failed reconciles in a row, per object (`kind/namespace/name`), for backoff.
    failures: Mutex<HashMap<String, u32>>,
}

/// Why a reconcile failed; the error policy retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("kubernetes API")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    #[error("finalizer")]
    Finalizer(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("a stored resource does not parse")]
    Json(#[from] serde_json::Error),
    #[error("store")]
    Store(#[from] crate::store::StoreError),
}

impl Operator {
    pub fn new(client: Client, reconcile: ReconcileContext, instance: Option<String>) -> Operator {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance,
        };
        Operator {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            reconcile,
            failures: Mutex::default(),
        }
    }

    /// The requeue after a failure of `key`: 2 s, 4 s, 8 s… up to 5 minutes.
    pub fn backoff(&self, key: &str) -> Action {
        let mut failures = self.failures.lock().expect("failures lock");
        let count = failures.entry(key.to_owned()).or_insert(0);
        *count = count.saturating_add(1);
        let delay = BACKOFF
            .0
            .saturating_mul(1 << (*count - 1).min(16))
            .min(BACKOFF.1);
        Action::requeue(delay)
    }

    /// Forgets `key`'s failures after a success.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("failures lock").remove(key);
    }
}

/// Whether a status write landed: `false` when the object is gone (404, deleted since it
/// was read), which is not an error.
fn written<T>(result: Result<T, kube::Error>) -> Result<bool, OperatorError> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// The Lease that elects the replica running the controllers.
pub const LEASE_NAME: &str = "dockermon-operator";
/// How often enrolled hosts without a `DockerHost` are looked for.
const CREATE_MISSING_EVERY: Duration = Duration::from_secs(30);

/// Runs the operator until `cancel` fires: takes part in the election and, while leading,
/// runs both controllers and gives enrolled hosts their `DockerHost`. Fails if Kubernetes
/// cannot be reached at start.
pub async fn run(
    reconcile: ReconcileContext,
    identity: String,
    cancel: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use anyhow::Context as _;

    let client = Client::try_default()
        .await
        .context("cannot reach Kubernetes (no in-cluster service account and no kubeconfig)")?;
    let namespace = client.default_namespace().to_owned();
    let lease = leadership::LeaseSettings {
        client: client.clone(),
        namespace: namespace.clone(),
        identity: identity.clone(),
    };
    // The first attempt says at once whether the Lease can be used at all (RBAC, namespace).
    let manager = lease
        .manager()
        .await
        .with_context(|| format!("cannot use the Lease {namespace}/{LEASE_NAME}"))?;
    let (lead, leader) = tokio::sync::watch::channel(false);
    let lease_task = tokio::spawn(leadership::hold_lease(lease, manager, lead, cancel.clone()));
    tracing::info!(%namespace, lease = LEASE_NAME, %identity, "operator standing for the lease");
    let operator = Arc::new(Operator::new(client, reconcile, Some(identity)));
    leadership::run_while_leader(leader, cancel, |stop| {
        let operator = operator.clone();
        async move {
            let (hosts_stop, sessions_stop) = (stop.clone(), stop.clone());
            tokio::join!(
                docker_hosts::run(operator.clone(), async move { hosts_stop.cancelled().await }),
                profile_sessions::run(operator.clone(), async move {
                    sessions_stop.cancelled().await
                }),
                async {
                    let mut tick = tokio::time::interval(CREATE_MISSING_EVERY);
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => break,
                            _ = tick.tick() => {}
                        }
                        if let Err(error) = docker_hosts::create_missing(&operator).await {
                            tracing::warn!(error = %dockermon_agent::process::error_chain(&error), "cannot create DockerHosts for enrolled hosts");
                        }
                    }
                },
            );
        }
    })
    .await;
    // The lease task ends with `cancel` and releases the lease.
    let _ = lease_task.await;
    Ok(())
}

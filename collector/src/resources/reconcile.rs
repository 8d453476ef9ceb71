//! What reconciling a resource does, shared by the store's controller
//! ([`super::controller`]) and the Kubernetes operator: each function takes a resource's
//! spec and last status, acts through the same paths the REST API uses (the registry's
//! command channel, the profiler, the store), and returns the status to write. Writing it
//! is the caller's job, which is all that differs between the two.

use std::time::Duration;

use dockermon_proto::transport::{AgentConfig, CAPABILITY_PAUSE};
use dockermon_proto::{HostName, ProfileEndReason, now_ns};
use tracing::{info, instrument, warn};

use super::docker_host::{DockerHostSpec, DockerHostStatus};
use super::host_status::{HostFacts, format_time, host_status, parse_time};
use super::profile_session::{Phase, ProfileSessionSpec, ProfileSessionStatus, Summary};
use crate::profiles::{Actor, ProfileError, Profiler, StartRequest};
use crate::store::{
    ContainerSelector, HostRow, Page, ProfileOrigin, ProfileRow, ProfileState, Store, StoreError,
};
use crate::transport::registry::{AppliedSpec, CommandError, Registry};

/// How long an agent has to acknowledge new settings.
const SETTINGS_TIMEOUT: Duration = Duration::from_secs(10);

/// What reconciling needs: the collector's own services.
#[derive(Clone)]
pub struct Context {
    pub store: Store,
    pub registry: Registry,
    pub profiler: Profiler,
    /// The collector's agent settings, which a `DockerHost` spec overrides.
    pub defaults: AgentConfig,
}

/// Why a reconcile failed: the caller retries later.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("store")]
    Store(#[from] StoreError),
}

impl Context {
    /// Brings a host's agent to `spec` (generation `generation`) if it is connected here
    /// and runs another one, then computes the host's status. `host`: the host's row, if
    /// an agent of this name has enrolled.
    #[instrument(skip_all, fields(host = name))]
    pub async fn reconcile_host(
        &self,
        name: &str,
        spec: &DockerHostSpec,
        generation: i64,
        host: Option<&HostRow>,
        previous: Option<&DockerHostStatus>,
    ) -> Result<DockerHostStatus, ReconcileError> {
        let now = now_ns();
        let mut connected = false;
        let mut applied = AppliedSpec::default();
        if let Some(host) = host
            && let Some(agent) = self.registry.agent(host.id)
        {
            connected = true;
            applied = agent.spec;
            if applied.generation != Some(generation) {
                let can_pause = agent.capabilities.iter().any(|c| c == CAPABILITY_PAUSE);
                if spec.paused && !can_pause {
                    // An older agent would ignore the field and keep collecting: not sent,
                    // refused here (on whichever replica reconciles, each time).
                    applied = AppliedSpec {
                        generation: Some(generation),
                        error: Some(
                            "this agent cannot pause collection (it predates spec.paused); upgrade it"
                                .into(),
                        ),
                    };
                    if let Some(connection) = self.registry.connection_id(host.id) {
                        self.registry
                            .set_applied_spec(host.id, connection, applied.clone());
                    }
                } else {
                    applied = self.push_settings(host, spec, generation).await;
                }
            }
        }
        let certificate_expires_ns = match HostName::new(name) {
            Ok(host_name) => self
                .store
                .live_certificates(&host_name, now)
                .await?
                .first()
                .map(|certificate| certificate.not_after_ns),
            Err(_) => None,
        };
        let volumes = match host {
            Some(host) => Some(
                self.store
                    .volumes(host.id, Page::new(0, 1).expect("a valid page"))
                    .await?
                    .total as i64,
            ),
            None => None,
        };
        let facts = HostFacts {
            host,
            connected,
            certificate_expires_ns,
            volumes,
            generation,
            applied_generation: applied.generation,
            apply_error: applied.error,
        };
        Ok(host_status(&facts, previous, now))
    }

    /// Sends the settings of `spec` to the host's agent, wherever it is connected; what it
    /// runs afterwards (recorded by the replica holding its session).
    async fn push_settings(
        &self,
        host: &HostRow,
        spec: &DockerHostSpec,
        generation: i64,
    ) -> AppliedSpec {
        let config = spec.agent_config(&self.defaults);
        let answer = self
            .registry
            .apply_spec(host.id, config, generation, SETTINGS_TIMEOUT)
            .await;
        match answer {
            Ok(applied) => {
                match &applied.error {
                    None => {
                        info!(host = %host.name, generation, "agent runs the new DockerHost spec")
                    }
                    Some(message) => {
                        warn!(host = %host.name, generation, %message, "agent refused the DockerHost spec")
                    }
                }
                applied
            }
            // Not acknowledged: tried again at the next reconcile.
            Err(error) => {
                warn!(host = %host.name, generation, %error, "agent did not take the DockerHost spec");
                self.registry
                    .agent(host.id)
                    .map(|agent| agent.spec)
                    .unwrap_or_default()
            }
        }
    }

    /// Revokes a host whose `DockerHost` is deleted: its certificates are revoked, its name
    /// refused until a new join token names it, its agent disconnected and its data removed
    /// (what `dockermon-collector host delete` does).
    #[instrument(skip_all, fields(host = name))]
    pub async fn revoke_host(&self, name: &str) -> Result<(), ReconcileError> {
        let Ok(host) = HostName::new(name) else {
            return Ok(());
        };
        if self.store.delete_host(&host, now_ns()).await? {
            info!(host = name, "host revoked: its DockerHost was deleted");
        }
        self.registry
            .close_matching(&[name.to_owned()], &[], "the host's DockerHost was deleted");
        Ok(())
    }

    /// Moves a profile session on: starts its profile when pending, follows it while
    /// running. `key` (`namespace/name`) names it in the activity log.
    #[instrument(skip_all, fields(session = key))]
    pub async fn reconcile_session(
        &self,
        key: &str,
        spec: &ProfileSessionSpec,
        previous: Option<&ProfileSessionStatus>,
    ) -> Result<ProfileSessionStatus, ReconcileError> {
        let previous = previous.cloned().unwrap_or_default();
        if previous.phase.is_finished() {
            return Ok(previous);
        }
        if let Some(id) = previous.profile_id {
            return match self.store.profile(id).await {
                Ok(profile) => Ok(ProfileSessionStatus {
                    joined: previous.joined,
                    ..session_status(&profile)
                }),
                Err(StoreError::NotFound) => Ok(failed(
                    "ProfileGone",
                    "the profile was deleted (its host was deleted, or retention removed it)",
                )),
                Err(error) => Err(error.into()),
            };
        }
        let (duration, interval) = match spec.validate() {
            Ok(bounds) => bounds,
            Err(message) => return Ok(failed("InvalidSpec", &message)),
        };
        let hosts = self.store.hosts().await?;
        let Some(host) = hosts.iter().find(|host| host.name == spec.host) else {
            return Ok(failed(
                "HostNotFound",
                &format!("no host is named {:?}", spec.host),
            ));
        };
        let selector = ContainerSelector::Name(spec.container.clone());
        let container = match self.store.find_container(host.id, &selector).await {
            Ok(container) => container,
            Err(StoreError::NotFound) => {
                return Ok(failed(
                    "ContainerNotFound",
                    &format!("{} has no container named {:?}", spec.host, spec.container),
                ));
            }
            Err(error) => return Err(error.into()),
        };
        let request = StartRequest {
            container: container.id,
            actor: resource_actor(key),
            origin: ProfileOrigin::Api,
            duration: Some(duration),
            interval: Some(interval),
        };
        match self.profiler.start(request).await {
            Ok(started) => Ok(ProfileSessionStatus {
                joined: started.joined,
                ..session_status(&started.profile)
            }),
            // Busy hosts free up: stay pending and try again.
            Err(error @ (ProfileError::HostBusy(_) | ProfileError::UserBusy(_))) => {
                Ok(ProfileSessionStatus {
                    phase: Phase::Pending,
                    reason: Some("Waiting".into()),
                    message: Some(error.to_string()),
                    ..ProfileSessionStatus::default()
                })
            }
            Err(ProfileError::Store(error)) => Err(error.into()),
            Err(ProfileError::Agent(CommandError::Busy)) => Ok(previous),
            Err(error) => Ok(failed(refusal_reason(&error), &error.to_string())),
        }
    }

    /// Stops a deleted session's profile if it still runs.
    #[instrument(skip_all, fields(session = key))]
    pub async fn stop_session(
        &self,
        key: &str,
        status: Option<&ProfileSessionStatus>,
    ) -> Result<(), ReconcileError> {
        let Some(id) = status.and_then(|status| status.profile_id) else {
            return Ok(());
        };
        // A finished profile needs no stop; a joined one belongs to whoever started it.
        if status.is_some_and(|status| status.phase.is_finished() || status.joined) {
            return Ok(());
        }
        let actor = resource_actor(key);
        match self
            .profiler
            .stop(id, Some(&actor), ProfileEndReason::Stopped)
            .await
        {
            Ok(_) | Err(ProfileError::NotFound) => Ok(()),
            Err(ProfileError::Store(error)) => Err(error.into()),
            // The agent is gone: the profiler ends the session after its grace period.
            Err(error) => {
                warn!(%error, profile = id, "cannot stop the profile of a deleted ProfileSession");
                Ok(())
            }
        }
    }
}

/// Whether a finished session's `ttlSecondsAfterFinished` has run out.
pub fn session_expired(
    spec: &ProfileSessionSpec,
    status: Option<&ProfileSessionStatus>,
    now_ns: i64,
) -> bool {
    let Some(ttl) = spec.ttl_seconds_after_finished else {
        return false;
    };
    let Some(status) = status.filter(|status| status.phase.is_finished()) else {
        return false;
    };
    let finished = status
        .completion_time
        .as_deref()
        .and_then(parse_time)
        .unwrap_or(0);
    now_ns >= finished.saturating_add(ttl.saturating_mul(1_000_000_000))
}

/// The actor a resource acts as, for the activity log.
fn resource_actor(key: &str) -> Actor {
    Actor {
        id: None,
        name: format!("ProfileSession {key}"),
    }
}

fn failed(reason: &str, message: &str) -> ProfileSessionStatus {
    ProfileSessionStatus {
        phase: Phase::Failed,
        reason: Some(reason.into()),
        message: Some(message.into()),
        completion_time: Some(format_time(now_ns())),
        ..ProfileSessionStatus::default()
    }
}

fn refusal_reason(error: &ProfileError) -> &'static str {
    match error {
        ProfileError::AgentNotConnected => "AgentNotConnected",
        ProfileError::AgentTooOld => "AgentTooOld",
        ProfileError::ContainerRemoved | ProfileError::NotFound => "ContainerNotFound",
        ProfileError::ContainerNotRunning => "ContainerNotRunning",
        ProfileError::Refused(_) => "AgentRefused",
        ProfileError::Agent(_) => "AgentUnreachable",
        _ => "Failed",
    }
}

/// A session's status from its profile's row.
fn session_status(profile: &ProfileRow) -> ProfileSessionStatus {
    let running = profile.state == ProfileState::Running;
    let (phase, reason) = match (running, profile.reason.as_deref()) {
        (true, _) => (Phase::Running, "Sampling"),
        (false, Some("duration")) => (Phase::Succeeded, "Completed"),
        (false, Some("stopped")) => (Phase::Succeeded, "Stopped"),
        (false, Some("container_stopped")) => (Phase::Succeeded, "ContainerStopped"),
        (false, Some("no_watchers")) => (Phase::Succeeded, "NoWatchers"),
        (false, Some("interrupted")) => (Phase::Failed, "Interrupted"),
        (false, _) => (Phase::Failed, "Failed"),
    };
    ProfileSessionStatus {
        phase,
        reason: Some(reason.into()),
        message: profile.message.clone(),
        joined: false,
        profile_id: Some(profile.id),
        start_time: Some(format_time(profile.started_ns)),
        completion_time: profile.ended_ns.map(format_time),
        // While it runs the count is left out, so that the status changes only when the
        // phase does (never once a second).
        samples: (!running).then_some(profile.samples),
        summary: (!running)
            .then_some(profile.summary)
            .flatten()
            .map(|summary| Summary {
                cpu_percent_avg: summary.cpu_percent_avg,
                cpu_percent_max: summary.cpu_percent_max,
                memory_usage_max_bytes: summary.memory_usage_max_bytes,
                memory_working_set_max_bytes: summary.memory_working_set_max_bytes,
                network_rx_bytes: summary.net_rx_bytes,
                network_tx_bytes: summary.net_tx_bytes,
                block_read_bytes: summary.block_read_bytes,
                block_write_bytes: summary.block_write_bytes,
            }),
    }
}

/// The settings a host's agent gets when it connects: its `DockerHost`'s spec over the
/// collector's `defaults`, and that spec's generation; the defaults alone (generation
/// `None`) when it has no `DockerHost` or the store cannot say (the controller sends the
/// spec later).
pub async fn settings_for(
    store: &Store,
    host: &str,
    defaults: &AgentConfig,
) -> (AgentConfig, Option<i64>) {
    let row = match store
        .resource(super::Kind::DockerHost.as_str(), "", host)
        .await
    {
        Ok(Some(row)) if row.deleting_ns.is_none() => row,
        Ok(_) => return (defaults.clone(), None),
        Err(error) => {
            warn!(%error, host, "cannot read the host's DockerHost; the agent starts with the defaults");
            return (defaults.clone(), None);
        }
    };
    match serde_json::from_str::<DockerHostSpec>(&row.spec) {
        Ok(spec) => (spec.agent_config(defaults), Some(row.generation)),
        Err(_) => (defaults.clone(), None),
    }
}

/// Whether the `DockerHost` of `host` (if it has one) allows operators to run `action`.
pub async fn action_allowed(
    store: &Store,
    host: &str,
    action: dockermon_proto::transport::ContainerAction,
) -> Result<bool, StoreError> {
    let Some(row) = store
        .resource(super::Kind::DockerHost.as_str(), "", host)
        .await?
    else {
        return Ok(true);
    };
    Ok(serde_json::from_str::<DockerHostSpec>(&row.spec).map_or(true, |spec| spec.allows(action)))
}

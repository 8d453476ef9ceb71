//! `DockerHost`: one monitored Docker host and its agent, as a Kubernetes-style resource.
//!
//! The spec is what people want of the host (collection settings, allowed container
//! actions, labels, a pause switch); the status is what the collector knows of it, written
//! only when it changes. The resource's name is the host's fleet name (its certificate's
//! name), which is why the kind is cluster-scoped.

// kube's KubeSchema derive declares a private copy of the spec type next to it, which
// the workspace's unreachable_pub lint would flag.
#![allow(unreachable_pub)]
// Repeated `printcolumn(type_ = …)` arguments are kube's syntax, not duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;
use std::time::Duration;

use dockermon_proto::transport::{AgentConfig, ContainerAction};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration;

/// Bounds of `spec.statsInterval` (the agent's own bounds).
pub const STATS_INTERVAL: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(3600));
/// Bounds of `spec.diskUsageInterval`: `docker system df` is expensive, so not faster than
/// once a minute.
pub const DISK_USAGE_INTERVAL: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(7 * 24 * 3600));

/// What people want of one Docker host. Every field is optional: an empty spec means the
/// collector's defaults (`--agent-stats-interval`, `--agent-usage-interval`), every action
/// allowed.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "dockermon.io",
    version = "v1alpha1",
    kind = "DockerHost",
    plural = "dockerhosts",
    shortname = "dh",
    category = "dockermon",
    status = "DockerHostStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(
        name = "Connected",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Connected\")].status"
    ),
    printcolumn(
        name = "Running",
        type_ = "integer",
        json_path = ".status.containers.running"
    ),
    printcolumn(name = "Docker", type_ = "string", json_path = ".status.dockerVersion"),
    printcolumn(
        name = "Last Seen",
        type_ = "date",
        json_path = ".status.lastReportTime"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DockerHostSpec {
    /// How often the agent reads every running container's counters: `30s`, `1m`… (1 s to
    /// 1 h). Default: the collector's `--agent-stats-interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[0-9]{1,7}(ms|s|m|h)$"), length(max = 9))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('1h')").message("must be between 1s and 1h"))]
    pub stats_interval: Option<String>,
    /// How often the agent measures disk usage (`docker system df`): a duration (1 m to 7
    /// d) or `off`. Default: the collector's `--agent-usage-interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^(off|[0-9]{1,7}(ms|s|m|h))$"), length(max = 9))]
    #[x_kube(validation = Rule::new("self == 'off' || (duration(self) >= duration('1m') && duration(self) <= duration('168h'))").message("must be off or between 1m and 168h"))]
    pub disk_usage_interval: Option<String>,
    /// The container actions operators may run on this host. Absent: all of them; empty:
    /// none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub allowed_actions: Option<Vec<ActionName>>,
    /// Labels of the host (team, site, …), shown by the API with the host.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `true` stops stats and disk-usage collection on the host; events and the container
    /// list keep flowing so the host's state stays true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// A container action's name, as the API and `allowedActions` spell it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ActionName {
    Start,
    Stop,
    Restart,
    Pause,
    Unpause,
    Kill,
    Remove,
}

impl From<ActionName> for ContainerAction {
    fn from(name: ActionName) -> ContainerAction {
        match name {
            ActionName::Start => ContainerAction::Start,
            ActionName::Stop => ContainerAction::Stop,
            ActionName::Restart => ContainerAction::Restart,
            ActionName::Pause => ContainerAction::Pause,
            ActionName::Unpause => ContainerAction::Unpause,
            ActionName::Kill => ContainerAction::Kill,
            ActionName::Remove => ContainerAction::Remove,
        }
    }
}

impl DockerHostSpec {
    /// Checks what the schema's patterns and CEL rules check, for documents that do not go
    /// through an API server; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(text) = &self.stats_interval {
            duration::parse_within(text, STATS_INTERVAL.0, STATS_INTERVAL.1)
                .map_err(|error| format!("spec.statsInterval: {error}"))?;
        }
        if let Some(text) = &self.disk_usage_interval
            && text != "off"
        {
            duration::parse_within(text, DISK_USAGE_INTERVAL.0, DISK_USAGE_INTERVAL.1)
                .map_err(|error| format!("spec.diskUsageInterval: {error}"))?;
        }
        if let Some(actions) = &self.allowed_actions {
            for (i, action) in actions.iter().enumerate() {
                if actions[..i].contains(action) {
                    return Err(format!(
                        "spec.allowedActions[{i}]: {} is repeated",
                        ContainerAction::from(*action).as_str()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The agent settings this spec asks for, over the collector's `defaults`. Call on a
    /// validated spec (an invalid field keeps the default).
    pub fn agent_config(&self, defaults: &AgentConfig) -> AgentConfig {
        let mut config = defaults.clone();
        if let Some(Ok(interval)) = self.stats_interval.as_deref().map(duration::parse) {
            config.stats_interval_ms = interval.as_millis() as u64;
        }
        match self.disk_usage_interval.as_deref() {
            Some("off") => config.usage_interval_ms = None,
            Some(text) => {
                if let Ok(interval) = duration::parse(text) {
                    config.usage_interval_ms = Some(interval.as_millis() as u64);
                }
            }
            None => {}
        }
        config.paused = self.paused;
        config
    }

    /// Whether operators may run `action` on this host.
    pub fn allows(&self, action: ContainerAction) -> bool {
        match &self.allowed_actions {
            None => true,
            Some(allowed) => allowed
                .iter()
                .any(|name| ContainerAction::from(*name) == action),
        }
    }
}

/// What the collector knows of the host. Written when it changes, never once per sweep.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DockerHostStatus {
    /// `Enrolled` (the host holds a valid certificate), `Connected` (its agent is connected
    /// now) and `Ready` (connected and running this spec).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` whose spec the agent acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// Docker's `ServerVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_version: Option<String>,
    /// Docker's `OperatingSystem` (e.g. `Debian GNU/Linux 12 (bookworm)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// Docker's `Architecture` (e.g. `x86_64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// Where the agent reads counters: `cgroup` or `docker`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<ContainerCounts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<i64>,
    /// When the agent last reported (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_report_time: Option<String>,
    /// When the host's newest certificate expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expiry: Option<String>,
}

/// Containers on the host by state, as Docker's `/info` counts them.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerCounts {
    pub total: i64,
    pub running: i64,
    pub paused: i64,
    pub stopped: i64,
}

//! `ProfileSession`: a 1-second profile of one container, as a Kubernetes-style resource.
//!
//! Creating one starts a profile through the same path as `POST
//! /api/v1/containers/{id}/profiles` (joining the container's running session if it has
//! one); the status follows the profile until it ends; deleting a running one stops it. As
//! with Jobs, a finished session is deleted `ttlSecondsAfterFinished` after it ended.

// kube's KubeSchema derive declares a private copy of the spec type next to it, which
// the workspace's unreachable_pub lint would flag.
#![allow(unreachable_pub)]
// Repeated `printcolumn(type_ = …)` arguments are kube's syntax, not duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::time::Duration;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration;

/// Bounds of `spec.duration`: the profiler's longest session is an hour.
pub const DURATION: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3600));
/// Bounds of `spec.interval` (the profiler's `INTERVAL_RANGE`).
pub const INTERVAL: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(10));

/// The longest `spec.ttlSecondsAfterFinished`: a year.
pub const MAX_TTL_SECONDS: i64 = 31_536_000;

/// Which container to profile, for how long, how often.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "dockermon.io",
    version = "v1alpha1",
    kind = "ProfileSession",
    plural = "profilesessions",
    shortname = "ps",
    category = "dockermon",
    namespaced,
    status = "ProfileSessionStatus",
    derive = "PartialEq",
    printcolumn(name = "Host", type_ = "string", json_path = ".spec.host"),
    printcolumn(name = "Container", type_ = "string", json_path = ".spec.container"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Samples", type_ = "integer", json_path = ".status.samples"),
    printcolumn(
        name = "CPU Max %",
        type_ = "number",
        json_path = ".status.summary.cpuPercentMax"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("a profile session's spec cannot change; create a new session"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileSessionSpec {
    /// The host's fleet name (its `DockerHost`'s name).
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// The container's name on that host (without Docker's leading `/`).
    #[schemars(length(min = 1, max = 255))]
    pub container: String,
    /// How long to profile: `30s`, `5m`, `1h` (1 s to 1 h).
    #[schemars(regex(pattern = "^[0-9]{1,7}(ms|s|m|h)$"), length(max = 9))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('1h')").message("must be between 1s and 1h"))]
    pub duration: String,
    /// Time between samples (1 s to 10 s). Default `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[0-9]{1,7}(ms|s|m|h)$"), length(max = 9))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('10s')").message("must be between 1s and 10s"))]
    pub interval: Option<String>,
    /// Delete the session this many seconds after it finished; kept until deleted when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 31_536_000))]
    pub ttl_seconds_after_finished: Option<i64>,
}

impl ProfileSessionSpec {
    /// Checks what the schema and its CEL rules check (except immutability, which the
    /// store enforces on apply); the error names the field.
    pub fn validate(&self) -> Result<(Duration, Duration), String> {
        if self.host.is_empty() || self.host.len() > 253 {
            return Err("spec.host: must be 1 to 253 characters".into());
        }
        if self.container.is_empty() || self.container.len() > 255 {
            return Err("spec.container: must be 1 to 255 characters".into());
        }
        let length = duration::parse_within(&self.duration, DURATION.0, DURATION.1)
            .map_err(|error| format!("spec.duration: {error}"))?;
        let interval = match &self.interval {
            None => Duration::from_secs(1),
            Some(text) => duration::parse_within(text, INTERVAL.0, INTERVAL.1)
                .map_err(|error| format!("spec.interval: {error}"))?,
        };
        if self
            .ttl_seconds_after_finished
            .is_some_and(|ttl| !(0..=MAX_TTL_SECONDS).contains(&ttl))
        {
            return Err(format!(
                "spec.ttlSecondsAfterFinished: must be 0 to {MAX_TTL_SECONDS} (a year)"
            ));
        }
        Ok((length, interval))
    }
}

/// Where a session is in its life, as Jobs and Pods name it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Not started yet (the host's agent is being asked).
    #[default]
    Pending,
    Running,
    /// Ran for its duration, or was stopped.
    Succeeded,
    /// Could not start, or ended without its samples (see `reason`).
    Failed,
}

impl Phase {
    pub fn is_finished(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// What happened to the session.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProfileSessionStatus {
    pub phase: Phase,
    /// One word for why the phase is what it is (`AgentNotConnected`, `ContainerNotFound`,
    /// `Completed`, `Stopped`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The container was already being profiled (by a person or another session), and this
    /// session follows that profile: deleting the session does not stop it, and the
    /// profile's own duration and interval apply.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub joined: bool,
    /// The profile's id in the API (`/api/v1/profiles/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_id: Option<i64>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// Samples stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
}

/// What the profile measured, over its stored samples (the profiler's summary).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Time-weighted average CPU use, where 100 is one full core.
    pub cpu_percent_avg: f64,
    pub cpu_percent_max: f64,
    pub memory_usage_max_bytes: i64,
    pub memory_working_set_max_bytes: i64,
    /// Bytes received and sent over the session.
    pub network_rx_bytes: f64,
    pub network_tx_bytes: f64,
    /// Bytes read from and written to block devices over the session.
    pub block_read_bytes: f64,
    pub block_write_bytes: f64,
}

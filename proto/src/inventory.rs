//! What exists on a Docker host: containers, images, volumes and networks.
//!
//! An [`InventoryUpdate`] is either the full inventory (`full: true`, it replaces what the
//! receiver knew about this host) or a change set (`full: false`: upserts plus removals).
//! Agents send a full one at start and after any gap in the events stream, change sets
//! as events arrive.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ContainerId;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InventoryUpdate {
    pub time_ns: i64,
    /// True when this update is the whole inventory of the host.
    pub full: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<Network>,
    /// Objects that no longer exist (only in change sets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<ObjectRef>,
}

impl InventoryUpdate {
    pub fn is_empty(&self) -> bool {
        !self.full
            && self.containers.is_empty()
            && self.images.is_empty()
            && self.volumes.is_empty()
            && self.networks.is_empty()
            && self.removed.is_empty()
    }
}

/// The kinds of inventory object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Container,
    Image,
    Volume,
    Network,
}

/// A reference to an inventory object: its kind and id (volumes are identified by name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    pub kind: ObjectKind,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    pub id: ContainerId,
    /// The name without Docker's leading `/`.
    pub name: String,
    /// The image as the container was created with it (`nginx:1.27`).
    pub image: String,
    /// The image's content id (`sha256:…`).
    pub image_id: String,
    pub created_ns: i64,
    pub state: ContainerState,
    pub health: Option<Health>,
    pub restart_count: u32,
    /// The last exit code; `None` while the container has never exited.
    pub exit_code: Option<i64>,
    pub started_at_ns: Option<i64>,
    pub finished_at_ns: Option<i64>,
    pub compose: Option<Compose>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub ports: Vec<Port>,
    #[serde(default)]
    pub mounts: Vec<ContainerMount>,
    #[serde(default)]
    pub networks: Vec<ContainerNetwork>,
    /// Docker's `State.OOMKilled`: the kernel's OOM killer ended the last run. Kept in the
    /// state, not only as an event, so it is known whatever events were missed.
    #[serde(default)]
    pub oom_killed: bool,
    /// `HostConfig.RestartPolicy.Name` (`no`, `always`, `unless-stopped`, `on-failure`).
    #[serde(default)]
    pub restart_policy: Option<String>,
    /// `HostConfig.NetworkMode` (`bridge`, `host`, `none`, `container:<id>`, a network's
    /// name): whether the container has network counters of its own.
    #[serde(default)]
    pub network_mode: Option<String>,
    /// The resources Docker grants the container (`HostConfig`); `None` from agents that
    /// predate it.
    #[serde(default)]
    pub resources: Option<ContainerResources>,
    /// What the bounds on container-controlled text cut from this record.
    #[serde(default, skip_serializing_if = "Truncated::is_none")]
    pub truncated: Truncated,
}

/// What the bounds of [`crate::limits`] cut from a record: nothing is dropped silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Truncated {
    /// The name was longer than [`crate::limits::MAX_NAME_BYTES`] and was cut.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub name: bool,
    /// Labels left out beyond [`crate::limits::MAX_LABELS`] (and label keys or values cut).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub labels: u32,
    /// Image tags left out beyond [`crate::limits::MAX_LIST_ENTRIES`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tags: u32,
    /// Ports, mounts and networks left out beyond [`crate::limits::MAX_LIST_ENTRIES`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ports: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mounts: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub networks: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Truncated {
    pub fn is_none(&self) -> bool {
        *self == Truncated::default()
    }
}

/// What Docker grants a container, from its `HostConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContainerResources {
    /// Memory limit in bytes (`Memory`); `None`: unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// Memory plus swap limit in bytes (`MemorySwap`); `None`: unlimited or unset.
    pub memory_swap_limit_bytes: Option<u64>,
    /// CFS quota in microseconds per period (`CpuQuota`, or `NanoCpus` × period); `None`:
    /// no CPU limit.
    pub cpu_quota_us: Option<u64>,
    /// CFS period in microseconds (`CpuPeriod`; the kernel's 100000 when unset).
    pub cpu_period_us: u64,
    /// Relative CPU weight (`CpuShares`; 1024 when unset).
    pub cpu_shares: u64,
    /// The cgroup parent (`CgroupParent`), when set.
    pub cgroup_parent: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    #[serde(other)]
    Unknown,
}

impl ContainerState {
    pub fn parse(s: &str) -> Self {
        match s {
            "created" => Self::Created,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "restarting" => Self::Restarting,
            "removing" => Self::Removing,
            "exited" => Self::Exited,
            "dead" => Self::Dead,
            _ => Self::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Removing => "removing",
            Self::Exited => "exited",
            Self::Dead => "dead",
            Self::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
    #[serde(other)]
    Unknown,
}

/// Docker Compose's view of a container, from its `com.docker.compose.*` labels. History
/// follows a compose service across container re-creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compose {
    pub project: String,
    pub service: String,
    /// The replica number (`com.docker.compose.container-number`).
    pub number: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub private_port: u16,
    pub public_port: Option<u16>,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub host_ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerMount {
    /// `bind`, `volume`, `tmpfs`, `npipe`, `cluster`.
    pub kind: String,
    /// The volume name, for volume mounts.
    pub name: Option<String>,
    pub source: String,
    pub destination: String,
    pub read_write: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerNetwork {
    pub name: String,
    pub network_id: String,
    pub ip_address: Option<String>,
    pub mac_address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// Content id (`sha256:…`).
    pub id: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub size_bytes: u64,
    pub created_ns: i64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// What the bounds cut (tags, labels).
    #[serde(default, skip_serializing_if = "Truncated::is_none")]
    pub truncated: Truncated,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    /// Volumes are identified by name.
    pub name: String,
    pub driver: String,
    pub mountpoint: String,
    pub scope: String,
    pub created_ns: Option<i64>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// What the bounds cut (name, labels).
    #[serde(default, skip_serializing_if = "Truncated::is_none")]
    pub truncated: Truncated,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub scope: String,
    pub internal: bool,
    pub created_ns: Option<i64>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// What the bounds cut (name, labels).
    #[serde(default, skip_serializing_if = "Truncated::is_none")]
    pub truncated: Truncated,
}

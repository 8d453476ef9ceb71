//! Docker disk usage (`docker system df`).

use serde::{Deserialize, Serialize};

use crate::ContainerId;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DiskUsage {
    pub time_ns: i64,
    /// Bytes held by image layers, shared layers counted once.
    pub layers_bytes: u64,
    pub images: UsageSummary,
    pub containers: UsageSummary,
    pub volumes: UsageSummary,
    pub build_cache: UsageSummary,
    /// Writable-layer size per container, largest first, bounded.
    #[serde(default)]
    pub per_container: Vec<ContainerDisk>,
    /// Size per volume, largest first, bounded.
    #[serde(default)]
    pub per_volume: Vec<VolumeDisk>,
}

/// One category of `docker system df`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UsageSummary {
    pub count: u64,
    /// How many are in use (images used by a container, running containers, mounted volumes).
    pub active: u64,
    pub size_bytes: u64,
    pub reclaimable_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerDisk {
    pub container_id: ContainerId,
    pub name: String,
    /// Bytes written to the container's writable layer.
    pub size_rw_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeDisk {
    pub name: String,
    pub size_bytes: u64,
    pub containers: u64,
}

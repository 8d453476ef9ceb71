//! What an agent says about the Docker host it watches.

use serde::{Deserialize, Serialize};

/// The Docker engine and machine an agent watches, sent at start and whenever the agent
/// reconnects to Docker (the engine may have been upgraded in between).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub time_ns: i64,
    pub agent_version: String,
    pub protocol_version: u32,
    /// Docker's engine id: stable across restarts of one engine.
    pub engine_id: String,
    /// The host name the engine reports (informational; the fleet identity of a host comes
    /// from its certificate, never from here).
    pub hostname: String,
    pub docker_version: String,
    pub api_version: String,
    pub os: String,
    pub os_type: String,
    pub kernel_version: String,
    pub architecture: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    /// `1` or `2`: which cgroup hierarchy the engine uses, which decides how working-set
    /// memory is computed.
    pub cgroup_version: u8,
    pub cgroup_driver: String,
    pub storage_driver: String,
    /// Where the agent reads container counters: `cgroup` (the kernel's cgroup and `/proc`
    /// files, no cost to dockerd) or `docker` (the Engine's stats API). Empty from agents
    /// that predate it.
    #[serde(default)]
    pub stats_source: String,
    pub containers: u32,
    pub containers_running: u32,
    pub containers_paused: u32,
    pub containers_stopped: u32,
    pub images: u32,
}

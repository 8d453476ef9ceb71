//! Container resource samples: cumulative counters plus the rates over the sweep interval.
//!
//! Counters are what Prometheus wants (it derives rates itself and survives restarts of
//! the counter); rates are what people read. Counters restart from zero when a container
//! restarts, so a rate is only computed between two samples of the same run of a container
//! (see the agent's stats module).

use serde::{Deserialize, Serialize};

use crate::ContainerId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsSample {
    /// When Docker read the counters.
    pub time_ns: i64,
    pub container_id: ContainerId,
    pub name: String,
    pub counters: StatsCounters,
    /// Rates since this container's previous sample; `None` for the first sample of a run.
    pub rates: Option<StatsRates>,
}

/// The counters of one container at one moment. The summed figures (CPU, memory, network,
/// block IO, pids) are always there; a group Docker did not report is listed in `absent`,
/// and its figures then read 0 but are not data ("no data" is not zero: a container on the
/// host's network has no network counters of its own). `detail` carries the finer
/// counters, where the agent could read them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatsCounters {
    /// CPU time the container used, all cores, in nanoseconds.
    pub cpu_total_ns: u64,
    /// CPU time the whole host used, all cores, in nanoseconds (Docker's `system_cpu_usage`).
    pub cpu_system_ns: u64,
    pub online_cpus: u32,
    pub memory_usage_bytes: u64,
    /// Usage minus inactive file cache: what the kernel cannot reclaim, and what the OOM
    /// killer and cAdvisor's `container_memory_working_set_bytes` count.
    pub memory_working_set_bytes: u64,
    /// The memory limit Docker reports (the host's memory when the container is unlimited).
    pub memory_limit_bytes: u64,
    pub network: NetworkCounters,
    pub block_io: BlockIo,
    pub pids: u64,
    /// Groups of counters that were not measured for this container; their fields above
    /// read 0. Empty from agents that predate it (they reported 0 for "not measured").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<CounterGroup>,
    /// Finer counters: CPU by mode and throttling, the memory breakdown, network per
    /// interface, block IO per device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Box<CounterDetail>>,
}

impl StatsCounters {
    /// Whether a group was measured.
    pub fn has(&self, group: CounterGroup) -> bool {
        !self.absent.contains(&group)
    }
}

/// A group of counters that may be missing for a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CounterGroup {
    /// No network of its own (`--network host`, `--network container:…`).
    Network,
    /// No block IO accounting (the cgroup controller is not there).
    BlockIo,
    /// No memory accounting.
    Memory,
    /// No pids accounting.
    Pids,
    #[serde(other)]
    Unknown,
}

/// Counters Docker's summary leaves out, each `None` where the agent could not read it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CounterDetail {
    /// CPU time in user mode, all cores, in nanoseconds (`usage_in_usermode`).
    #[serde(default)]
    pub cpu_user_ns: Option<u64>,
    /// CPU time in kernel mode, all cores, in nanoseconds (`usage_in_kernelmode`).
    #[serde(default)]
    pub cpu_kernel_ns: Option<u64>,
    /// CFS bandwidth control, where the container has a CPU limit (`throttling_data`).
    #[serde(default)]
    pub cpu_throttling: Option<CpuThrottling>,
    /// Anonymous memory: cgroup v1 `total_rss`, v2 `anon`.
    #[serde(default)]
    pub memory_rss_bytes: Option<u64>,
    /// Page cache: cgroup v1 `total_cache`, v2 `file`.
    #[serde(default)]
    pub memory_cache_bytes: Option<u64>,
    /// Swap in use: cgroup v1 `total_swap` (with swap accounting).
    #[serde(default)]
    pub memory_swap_bytes: Option<u64>,
    /// Times the memory limit was hit: cgroup v1 `memory.failcnt`.
    #[serde(default)]
    pub memory_failcnt: Option<u64>,
    /// Highest memory usage seen: cgroup v1 `memory.max_usage_in_bytes`.
    #[serde(default)]
    pub memory_max_usage_bytes: Option<u64>,
    /// Network counters per interface, by name.
    #[serde(default)]
    pub interfaces: Vec<InterfaceCounters>,
    /// Block IO per device.
    #[serde(default)]
    pub devices: Vec<DeviceIo>,
}

/// CFS bandwidth control counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CpuThrottling {
    /// Enforcement periods that elapsed.
    pub periods: u64,
    /// Periods in which the container was throttled.
    pub throttled_periods: u64,
    /// Time the container was throttled, in nanoseconds.
    pub throttled_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InterfaceCounters {
    /// The interface's name inside the container (`eth0`).
    pub name: String,
    pub counters: NetworkCounters,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeviceIo {
    pub major: u64,
    pub minor: u64,
    /// `/dev/sda`, where the agent could resolve the device number.
    #[serde(default)]
    pub name: Option<String>,
    pub io: BlockIo,
}

/// Network counters summed over all of a container's interfaces.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NetworkCounters {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

/// Block IO summed over all devices, by operation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BlockIo {
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub read_ops: u64,
    pub write_ops: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StatsRates {
    /// The time between the two samples the rates come from.
    pub interval_ns: i64,
    /// CPU use where 100.0 is one fully used core (Docker's convention).
    pub cpu_percent: f64,
    pub net_rx_bytes_per_s: f64,
    pub net_tx_bytes_per_s: f64,
    pub block_read_bytes_per_s: f64,
    pub block_write_bytes_per_s: f64,
}

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

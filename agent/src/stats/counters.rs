//! Docker's stats answer → cumulative counters.
//!
//! Working-set memory follows cAdvisor and the Docker CLI: usage minus inactive file
//! cache, where the inactive file figure is `total_inactive_file` on cgroup v1 (the
//! hierarchical one; v1 also has a non-hierarchical `inactive_file`) and `inactive_file`
//! on cgroup v2. Block IO entries are per device and operation; cgroup v1 spells the
//! operations `Read`/`Write`, v2 `read`/`write`.

use bollard::models::{ContainerBlkioStatEntry, ContainerStatsResponse};
use dockermon_proto::{BlockIo, NetworkCounters, StatsCounters};

use crate::docker::parse_time_ns;

/// One sample of a container's counters, at the time Docker read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub time_ns: i64,
    pub counters: StatsCounters,
}

/// The counters in a one-shot stats answer. `None` when the container was not running
/// when Docker read it (Docker then answers with an all-zero sample dated year 1).
pub fn reading_from(stats: &ContainerStatsResponse) -> Option<Reading> {
    let time_ns = stats.read.as_deref().and_then(parse_time_ns)?;
    let cpu = stats.cpu_stats.as_ref()?;
    let cpu_total_ns = cpu.cpu_usage.as_ref()?.total_usage?;
    let memory = stats.memory_stats.clone().unwrap_or_default();
    let memory_stat = memory.stats.unwrap_or_default();
    let usage = memory.usage.unwrap_or(0);
    let inactive_file = memory_stat
        .get("total_inactive_file")
        .or_else(|| memory_stat.get("inactive_file"))
        .copied()
        .unwrap_or(0);

    let mut network = NetworkCounters::default();
    for interface in stats.networks.iter().flat_map(|n| n.values()) {
        let add =
            |total: &mut u64, value: Option<u64>| *total = total.saturating_add(value.unwrap_or(0));
        add(&mut network.rx_bytes, interface.rx_bytes);
        add(&mut network.tx_bytes, interface.tx_bytes);
        add(&mut network.rx_packets, interface.rx_packets);
        add(&mut network.tx_packets, interface.tx_packets);
        add(&mut network.rx_errors, interface.rx_errors);
        add(&mut network.tx_errors, interface.tx_errors);
        add(&mut network.rx_dropped, interface.rx_dropped);
        add(&mut network.tx_dropped, interface.tx_dropped);
    }

    let blkio = stats.blkio_stats.clone().unwrap_or_default();
    let (read_bytes, write_bytes) = sum_by_op(blkio.io_service_bytes_recursive.as_deref());
    let (read_ops, write_ops) = sum_by_op(blkio.io_serviced_recursive.as_deref());

    Some(Reading {
        time_ns,
        counters: StatsCounters {
            cpu_total_ns,
            cpu_system_ns: cpu.system_cpu_usage.unwrap_or(0),
            online_cpus: cpu
                .online_cpus
                .filter(|n| *n > 0)
                .or_else(|| {
                    let per_cpu = cpu.cpu_usage.as_ref()?.percpu_usage.as_ref()?;
                    u32::try_from(per_cpu.len()).ok()
                })
                .unwrap_or(1),
            memory_usage_bytes: usage,
            memory_working_set_bytes: usage.saturating_sub(inactive_file),
            memory_limit_bytes: memory.limit.unwrap_or(0),
            network,
            block_io: BlockIo {
                read_bytes,
                write_bytes,
                read_ops,
                write_ops,
            },
            pids: stats
                .pids_stats
                .as_ref()
                .and_then(|p| p.current)
                .unwrap_or(0),
        },
    })
}

/// (read, write) summed over devices.
fn sum_by_op(entries: Option<&[ContainerBlkioStatEntry]>) -> (u64, u64) {
    let mut read = 0u64;
    let mut write = 0u64;
    for entry in entries.unwrap_or_default() {
        let value = entry.value.unwrap_or(0);
        match entry.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => read = read.saturating_add(value),
            Some("write") => write = write.saturating_add(value),
            _ => {}
        }
    }
    (read, write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> ContainerStatsResponse {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn cgroup_v1_sample() {
        // Shape of a one-shot answer from Docker 20.10 on cgroup v1.
        let stats = parse(serde_json::json!({
            "read": "2024-05-01T12:00:00.250000000Z",
            "pids_stats": {"current": 3},
            "blkio_stats": {
                "io_service_bytes_recursive": [
                    {"major": 8, "minor": 0, "op": "Read", "value": 4096},
                    {"major": 8, "minor": 0, "op": "Write", "value": 1000},
                    {"major": 8, "minor": 16, "op": "Write", "value": 24},
                    {"major": 8, "minor": 0, "op": "Sync", "value": 99},
                    {"major": 8, "minor": 0, "op": "Total", "value": 5120}
                ],
                "io_serviced_recursive": [
                    {"major": 8, "minor": 0, "op": "Read", "value": 1},
                    {"major": 8, "minor": 0, "op": "Write", "value": 2}
                ]
            },
            "cpu_stats": {
                "cpu_usage": {"total_usage": 5_000_000_000u64, "percpu_usage": [1, 2]},
                "system_cpu_usage": 900_000_000_000u64,
                "online_cpus": 2
            },
            "memory_stats": {
                "usage": 10_000_000,
                "limit": 67_108_864,
                "stats": {"total_inactive_file": 3_000_000, "inactive_file": 1_000_000}
            },
            "networks": {
                "eth0": {"rx_bytes": 100, "tx_bytes": 200, "rx_packets": 1, "tx_packets": 2,
                         "rx_errors": 0, "tx_errors": 0, "rx_dropped": 1, "tx_dropped": 0},
                "eth1": {"rx_bytes": 1000, "tx_bytes": 2000, "rx_packets": 10, "tx_packets": 20,
                         "rx_errors": 1, "tx_errors": 2, "rx_dropped": 0, "tx_dropped": 3}
            }
        }));
        let reading = reading_from(&stats).unwrap();
        assert_eq!(reading.time_ns, 1_714_564_800_250_000_000);
        let c = reading.counters;
        assert_eq!(c.cpu_total_ns, 5_000_000_000);
        assert_eq!(c.cpu_system_ns, 900_000_000_000);
        assert_eq!(c.online_cpus, 2);
        assert_eq!(c.memory_usage_bytes, 10_000_000);
        assert_eq!(
            c.memory_working_set_bytes, 7_000_000,
            "v1 subtracts total_inactive_file"
        );
        assert_eq!(c.memory_limit_bytes, 67_108_864);
        assert_eq!(c.network.rx_bytes, 1100);
        assert_eq!(c.network.tx_bytes, 2200);
        assert_eq!(c.network.rx_packets, 11);
        assert_eq!(c.network.tx_dropped, 3);
        assert_eq!(c.network.rx_errors, 1);
        assert_eq!(
            c.block_io,
            BlockIo {
                read_bytes: 4096,
                write_bytes: 1024,
                read_ops: 1,
                write_ops: 2
            }
        );
        assert_eq!(c.pids, 3);
    }

    #[test]
    fn cgroup_v2_sample() {
        let stats = parse(serde_json::json!({
            "read": "2024-05-01T12:00:00Z",
            "cpu_stats": {"cpu_usage": {"total_usage": 10}, "system_cpu_usage": 20, "online_cpus": 4},
            "memory_stats": {"usage": 5000, "limit": 9000, "stats": {"inactive_file": 1200, "file": 3000}},
            "blkio_stats": {"io_service_bytes_recursive": [
                {"major": 259, "minor": 0, "op": "read", "value": 7},
                {"major": 259, "minor": 0, "op": "write", "value": 9}
            ]}
        }));
        let c = reading_from(&stats).unwrap().counters;
        assert_eq!(
            c.memory_working_set_bytes, 3800,
            "v2 subtracts inactive_file"
        );
        assert_eq!(c.block_io.read_bytes, 7);
        assert_eq!(c.block_io.write_bytes, 9);
        assert_eq!(c.network, NetworkCounters::default(), "no networks: zeros");
    }

    #[test]
    fn a_stopped_container_has_no_reading() {
        let stats = parse(serde_json::json!({
            "read": "0001-01-01T00:00:00Z",
            "cpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
            "memory_stats": {}
        }));
        assert_eq!(reading_from(&stats), None);
    }

    #[test]
    fn working_set_never_underflows() {
        let stats = parse(serde_json::json!({
            "read": "2024-05-01T12:00:00Z",
            "cpu_stats": {"cpu_usage": {"total_usage": 1}},
            "memory_stats": {"usage": 100, "stats": {"inactive_file": 500}}
        }));
        assert_eq!(
            reading_from(&stats)
                .unwrap()
                .counters
                .memory_working_set_bytes,
            0
        );
    }
}

//! Docker's stats answer → cumulative counters.
//!
//! Working-set memory follows cAdvisor and the Docker CLI: usage minus inactive file
//! cache, where the inactive file figure is `total_inactive_file` on cgroup v1 (the
//! hierarchical one; v1 also has a non-hierarchical `inactive_file`) and `inactive_file`
//! on cgroup v2. Block IO entries are per device and operation; cgroup v1 spells the
//! operations `Read`/`Write`, v2 `read`/`write`.

use std::collections::BTreeMap;

use bollard::models::{ContainerBlkioStatEntry, ContainerNetworkStats, ContainerStatsResponse};
use dockermon_proto::limits::{MAX_LIST_ENTRIES, MAX_NAME_BYTES, truncate};
use dockermon_proto::{
    BlockIo, CounterDetail, CounterGroup, CpuThrottling, DeviceIo, InterfaceCounters,
    NetworkCounters, StatsCounters,
};

use crate::docker::parse_time_ns;

/// One sample of a container's counters, at the time Docker read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub time_ns: i64,
    pub counters: StatsCounters,
}

/// Whether a container has a network namespace of its own, from its network mode: one on
/// the host's network or sharing another container's has no counters of its own, whatever
/// Docker says (Docker omits `networks` for `host` and `none` alike; `none` has only `lo`,
/// which Docker leaves out, so its counters are truly zero).
pub fn has_own_network(network_mode: Option<&str>) -> bool {
    !matches!(network_mode, Some(mode) if mode == "host" || mode.starts_with("container:"))
}

/// The counters in a one-shot stats answer. `None` when the container was not running
/// when Docker read it (Docker then answers with an all-zero sample dated year 1).
/// `own_network`: see [`has_own_network`].
pub fn reading_from(stats: &ContainerStatsResponse, own_network: bool) -> Option<Reading> {
    let time_ns = stats.read.as_deref().and_then(parse_time_ns)?;
    let cpu = stats.cpu_stats.as_ref()?;
    let cpu_usage = cpu.cpu_usage.as_ref()?;
    let cpu_total_ns = cpu_usage.total_usage?;
    let mut absent = Vec::new();

    let memory = stats.memory_stats.clone().unwrap_or_default();
    if memory.usage.is_none() {
        absent.push(CounterGroup::Memory);
    }
    let memory_stat = memory.stats.unwrap_or_default();
    let usage = memory.usage.unwrap_or(0);
    // cgroup v1 names the hierarchical figures `total_*`; v2 has only the one set.
    let stat = |v1: &str, v2: &str| memory_stat.get(v1).or_else(|| memory_stat.get(v2)).copied();
    let inactive_file = stat("total_inactive_file", "inactive_file").unwrap_or(0);

    let interfaces: Vec<InterfaceCounters> = match &stats.networks {
        Some(networks) if own_network => interfaces_of(networks),
        _ => Vec::new(),
    };
    if !own_network {
        absent.push(CounterGroup::Network);
    }
    let mut network = NetworkCounters::default();
    for interface in &interfaces {
        add_network(&mut network, &interface.counters);
    }

    let blkio = stats.blkio_stats.clone().unwrap_or_default();
    if blkio.io_service_bytes_recursive.is_none() && blkio.io_serviced_recursive.is_none() {
        absent.push(CounterGroup::BlockIo);
    }
    let devices = devices_of(
        blkio.io_service_bytes_recursive.as_deref(),
        blkio.io_serviced_recursive.as_deref(),
    );
    let block_io = sum_devices(&devices);

    let pids = stats.pids_stats.as_ref().and_then(|p| p.current);
    if pids.is_none() {
        absent.push(CounterGroup::Pids);
    }
    let detail = CounterDetail {
        cpu_user_ns: cpu_usage.usage_in_usermode,
        cpu_kernel_ns: cpu_usage.usage_in_kernelmode,
        cpu_throttling: cpu.throttling_data.as_ref().map(|t| CpuThrottling {
            periods: t.periods.unwrap_or(0),
            throttled_periods: t.throttled_periods.unwrap_or(0),
            throttled_ns: t.throttled_time.unwrap_or(0),
        }),
        memory_rss_bytes: stat("total_rss", "anon"),
        memory_cache_bytes: stat("total_cache", "file"),
        memory_swap_bytes: memory_stat.get("total_swap").copied(),
        memory_failcnt: memory.failcnt,
        memory_max_usage_bytes: memory.max_usage,
        interfaces,
        devices,
    };

    Some(Reading {
        time_ns,
        counters: StatsCounters {
            cpu_total_ns,
            cpu_system_ns: cpu.system_cpu_usage.unwrap_or(0),
            online_cpus: cpu
                .online_cpus
                .filter(|n| *n > 0)
                .or_else(|| u32::try_from(cpu_usage.percpu_usage.as_ref()?.len()).ok())
                .unwrap_or(1),
            memory_usage_bytes: usage,
            memory_working_set_bytes: usage.saturating_sub(inactive_file),
            memory_limit_bytes: memory.limit.unwrap_or(0),
            network,
            block_io,
            pids: pids.unwrap_or(0),
            absent,
            detail: Some(Box::new(detail)),
        },
    })
}

/// The whole container's block IO: the sum over its devices.
pub(crate) fn sum_devices(devices: &[DeviceIo]) -> BlockIo {
    let mut total = BlockIo::default();
    for device in devices {
        total.read_bytes = total.read_bytes.saturating_add(device.io.read_bytes);
        total.write_bytes = total.write_bytes.saturating_add(device.io.write_bytes);
        total.read_ops = total.read_ops.saturating_add(device.io.read_ops);
        total.write_ops = total.write_ops.saturating_add(device.io.write_ops);
    }
    total
}

/// Adds one interface's counters to a total.
pub(crate) fn add_network(total: &mut NetworkCounters, more: &NetworkCounters) {
    total.rx_bytes = total.rx_bytes.saturating_add(more.rx_bytes);
    total.tx_bytes = total.tx_bytes.saturating_add(more.tx_bytes);
    total.rx_packets = total.rx_packets.saturating_add(more.rx_packets);
    total.tx_packets = total.tx_packets.saturating_add(more.tx_packets);
    total.rx_errors = total.rx_errors.saturating_add(more.rx_errors);
    total.tx_errors = total.tx_errors.saturating_add(more.tx_errors);
    total.rx_dropped = total.rx_dropped.saturating_add(more.rx_dropped);
    total.tx_dropped = total.tx_dropped.saturating_add(more.tx_dropped);
}

/// Counters per interface, by name, bounded.
fn interfaces_of(
    networks: &std::collections::HashMap<String, ContainerNetworkStats>,
) -> Vec<InterfaceCounters> {
    let mut interfaces: Vec<InterfaceCounters> = networks
        .iter()
        .map(|(name, n)| InterfaceCounters {
            name: truncate(name.clone(), MAX_NAME_BYTES),
            counters: NetworkCounters {
                rx_bytes: n.rx_bytes.unwrap_or(0),
                tx_bytes: n.tx_bytes.unwrap_or(0),
                rx_packets: n.rx_packets.unwrap_or(0),
                tx_packets: n.tx_packets.unwrap_or(0),
                rx_errors: n.rx_errors.unwrap_or(0),
                tx_errors: n.tx_errors.unwrap_or(0),
                rx_dropped: n.rx_dropped.unwrap_or(0),
                tx_dropped: n.tx_dropped.unwrap_or(0),
            },
        })
        .collect();
    interfaces.sort_by(|a, b| a.name.cmp(&b.name));
    interfaces.truncate(MAX_LIST_ENTRIES);
    interfaces
}

/// Block IO per device (major, minor), by operation. cgroup v1 spells the operations
/// `Read`/`Write`, v2 `read`/`write`; the others (`Sync`, `Total`, …) are left out.
fn devices_of(
    bytes: Option<&[ContainerBlkioStatEntry]>,
    ops: Option<&[ContainerBlkioStatEntry]>,
) -> Vec<DeviceIo> {
    let mut devices: BTreeMap<(u64, u64), BlockIo> = BTreeMap::new();
    let mut add = |entries: Option<&[ContainerBlkioStatEntry]>, is_bytes: bool| {
        for entry in entries.unwrap_or_default() {
            let value = entry.value.unwrap_or(0);
            let io = devices
                .entry((entry.major.unwrap_or(0), entry.minor.unwrap_or(0)))
                .or_default();
            let slot = match (
                entry.op.as_deref().map(str::to_ascii_lowercase).as_deref(),
                is_bytes,
            ) {
                (Some("read"), true) => &mut io.read_bytes,
                (Some("write"), true) => &mut io.write_bytes,
                (Some("read"), false) => &mut io.read_ops,
                (Some("write"), false) => &mut io.write_ops,
                _ => continue,
            };
            *slot = slot.saturating_add(value);
        }
    };
    add(bytes, true);
    add(ops, false);
    device_list(devices)
}

/// Per-device block IO as the wire carries it: by device number, bounded, names filled in
/// later ([`super::DeviceNames`]).
pub(crate) fn device_list(devices: BTreeMap<(u64, u64), BlockIo>) -> Vec<DeviceIo> {
    devices
        .into_iter()
        .take(MAX_LIST_ENTRIES)
        .map(|((major, minor), io)| DeviceIo {
            major,
            minor,
            name: None,
            io,
        })
        .collect()
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
                "cpu_usage": {"total_usage": 5_000_000_000u64, "percpu_usage": [1, 2],
                              "usage_in_usermode": 3_000_000_000u64, "usage_in_kernelmode": 1_500_000_000u64},
                "system_cpu_usage": 900_000_000_000u64,
                "online_cpus": 2,
                "throttling_data": {"periods": 100, "throttled_periods": 7, "throttled_time": 420_000_000}
            },
            "memory_stats": {
                "usage": 10_000_000,
                "max_usage": 12_000_000,
                "failcnt": 2,
                "limit": 67_108_864,
                "stats": {"total_inactive_file": 3_000_000, "inactive_file": 1_000_000,
                          "total_rss": 6_000_000, "rss": 5_000_000, "total_cache": 3_500_000,
                          "cache": 3_000_000, "total_swap": 4096}
            },
            "networks": {
                "eth0": {"rx_bytes": 100, "tx_bytes": 200, "rx_packets": 1, "tx_packets": 2,
                         "rx_errors": 0, "tx_errors": 0, "rx_dropped": 1, "tx_dropped": 0},
                "eth1": {"rx_bytes": 1000, "tx_bytes": 2000, "rx_packets": 10, "tx_packets": 20,
                         "rx_errors": 1, "tx_errors": 2, "rx_dropped": 0, "tx_dropped": 3}
            }
        }));
        let reading = reading_from(&stats, true).unwrap();
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
        assert!(c.absent.is_empty());
        let detail = c.detail.unwrap();
        assert_eq!(detail.cpu_user_ns, Some(3_000_000_000));
        assert_eq!(detail.cpu_kernel_ns, Some(1_500_000_000));
        assert_eq!(
            detail.cpu_throttling,
            Some(CpuThrottling {
                periods: 100,
                throttled_periods: 7,
                throttled_ns: 420_000_000
            })
        );
        assert_eq!(
            detail.memory_rss_bytes,
            Some(6_000_000),
            "v1: hierarchical total_rss"
        );
        assert_eq!(detail.memory_cache_bytes, Some(3_500_000));
        assert_eq!(detail.memory_swap_bytes, Some(4096));
        assert_eq!(detail.memory_failcnt, Some(2));
        assert_eq!(detail.memory_max_usage_bytes, Some(12_000_000));
        let names: Vec<&str> = detail.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1"]);
        assert_eq!(detail.interfaces[1].counters.tx_dropped, 3);
        assert_eq!(
            detail.devices,
            [
                DeviceIo {
                    major: 8,
                    minor: 0,
                    name: None,
                    io: BlockIo {
                        read_bytes: 4096,
                        write_bytes: 1000,
                        read_ops: 1,
                        write_ops: 2
                    }
                },
                DeviceIo {
                    major: 8,
                    minor: 16,
                    name: None,
                    io: BlockIo {
                        write_bytes: 24,
                        ..Default::default()
                    }
                }
            ]
        );
    }

    #[test]
    fn what_docker_does_not_measure_is_absent_not_zero() {
        // A container on the host's network, on a host without memory or pids accounting.
        let stats = parse(serde_json::json!({
            "read": "2024-05-01T12:00:00Z",
            "cpu_stats": {"cpu_usage": {"total_usage": 10}},
            "memory_stats": {},
            "pids_stats": {},
            "blkio_stats": {"io_service_bytes_recursive": null, "io_serviced_recursive": null}
        }));
        let c = reading_from(&stats, has_own_network(Some("host")))
            .unwrap()
            .counters;
        assert_eq!(
            c.absent,
            [
                CounterGroup::Memory,
                CounterGroup::Network,
                CounterGroup::BlockIo,
                CounterGroup::Pids
            ]
        );
        assert!(!c.has(CounterGroup::Network));
        // `--network none`: no interface but `lo`, which Docker leaves out: zero, measured.
        let none = parse(serde_json::json!({
            "read": "2024-05-01T12:00:00Z",
            "cpu_stats": {"cpu_usage": {"total_usage": 10}},
            "memory_stats": {"usage": 1},
            "pids_stats": {"current": 1},
            "blkio_stats": {"io_service_bytes_recursive": [], "io_serviced_recursive": []}
        }));
        let c = reading_from(&none, has_own_network(Some("none")))
            .unwrap()
            .counters;
        assert!(c.absent.is_empty(), "{:?}", c.absent);
        assert_eq!(c.network, NetworkCounters::default());
    }

    #[test]
    fn network_modes_with_a_namespace_of_their_own() {
        assert!(has_own_network(None));
        assert!(has_own_network(Some("bridge")));
        assert!(has_own_network(Some("none")));
        assert!(has_own_network(Some("shop_default")));
        assert!(!has_own_network(Some("host")));
        assert!(!has_own_network(Some("container:4f1c")));
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
        let c = reading_from(&stats, true).unwrap().counters;
        assert_eq!(
            c.memory_working_set_bytes, 3800,
            "v2 subtracts inactive_file"
        );
        let detail = c.detail.as_deref().unwrap();
        assert_eq!(detail.memory_cache_bytes, Some(3000), "v2: file");
        assert_eq!(detail.memory_swap_bytes, None);
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
        assert_eq!(reading_from(&stats, true), None);
    }

    #[test]
    fn working_set_never_underflows() {
        let stats = parse(serde_json::json!({
            "read": "2024-05-01T12:00:00Z",
            "cpu_stats": {"cpu_usage": {"total_usage": 1}},
            "memory_stats": {"usage": 100, "stats": {"inactive_file": 500}}
        }));
        assert_eq!(
            reading_from(&stats, true)
                .unwrap()
                .counters
                .memory_working_set_bytes,
            0
        );
    }
}

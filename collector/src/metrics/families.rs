//! The container series, under cAdvisor's names, types, help texts and labels, and the
//! `dockermon_container_*` series for what cAdvisor has no series for (state, health,
//! restarts, exit code, OOM kills, pids).
//!
//! cAdvisor exports resource series for running containers only; so do these. A figure the
//! agent did not measure (a group in `absent`, a detail an older agent does not send) has no
//! series rather than a zero. Counters restart with each run of a container, as cAdvisor's
//! do; `rate()` handles that.

use dockermon_proto::{ContainerState, CounterGroup, Health};

use super::encode::{Encoder, Family, Kind, Value};
use super::fleet::{ContainerView, HostView, LatestSample};

/// Where one family's samples are written: its name and one container's labels.
pub(super) struct Series<'a> {
    pub(super) encoder: &'a mut Encoder,
    pub(super) name: &'static str,
    pub(super) labels: &'a str,
}

impl Series<'_> {
    fn put(&mut self, value: Value) {
        self.encoder.sample(self.name, self.labels, &[], value);
    }

    fn put_with(&mut self, extra: &[(&str, &str)], value: Value) {
        self.encoder.sample(self.name, self.labels, extra, value);
    }
}

/// One container family: how to write a container's samples, and cAdvisor's root-cgroup
/// (`id="/"`, the whole machine) sample where the agent can say it honestly.
pub(super) struct ContainerFamily {
    pub(super) family: Family,
    pub(super) write: fn(&mut Series<'_>, &ContainerView),
    pub(super) root: Option<fn(&HostView) -> Option<Value>>,
}

const fn family(name: &'static str, kind: Kind, help: &'static str) -> Family {
    Family { name, kind, help }
}

/// A running container's latest sample.
fn sample(container: &ContainerView) -> Option<&LatestSample> {
    container
        .is_running()
        .then_some(container.sample.as_deref())
        .flatten()
}

fn detail(container: &ContainerView) -> Option<&dockermon_proto::CounterDetail> {
    sample(container)?.counters.detail.as_deref()
}

fn measured(container: &ContainerView, group: CounterGroup) -> Option<&LatestSample> {
    sample(container).filter(|s| s.counters.has(group))
}

/// The CPU quota of a running container that has one: cAdvisor exports CFS series only then.
fn cpu_quota(container: &ContainerView) -> Option<u64> {
    resources(container)?.cpu_quota_us
}

fn resources(container: &ContainerView) -> Option<&dockermon_proto::ContainerResources> {
    container
        .is_running()
        .then(|| container.container.as_ref()?.resources.as_ref())
        .flatten()
}

fn device_label(device: &dockermon_proto::DeviceIo) -> String {
    device
        .name
        .clone()
        .unwrap_or_else(|| format!("{}:{}", device.major, device.minor))
}

macro_rules! network_family {
    ($name:literal, $help:literal, $field:ident) => {
        ContainerFamily {
            family: family($name, Kind::Counter, $help),
            write: |series, container| {
                if measured(container, CounterGroup::Network).is_some()
                    && let Some(detail) = detail(container)
                {
                    for interface in &detail.interfaces {
                        series.put_with(
                            &[("interface", &interface.name)],
                            Value::count(interface.counters.$field),
                        );
                    }
                }
            },
            root: None,
        }
    };
}

macro_rules! block_family {
    ($name:literal, $help:literal, $field:ident) => {
        ContainerFamily {
            family: family($name, Kind::Counter, $help),
            write: |series, container| {
                if measured(container, CounterGroup::BlockIo).is_some()
                    && let Some(detail) = detail(container)
                {
                    for device in &detail.devices {
                        let name = device_label(device);
                        series.put_with(&[("device", &name)], Value::count(device.io.$field));
                    }
                }
            },
            root: None,
        }
    };
}

/// Memory figures exist only where memory is accounted.
macro_rules! memory_detail_family {
    ($name:literal, $kind:expr, $help:literal, $field:ident) => {
        ContainerFamily {
            family: family($name, $kind, $help),
            write: |series, container| {
                if measured(container, CounterGroup::Memory).is_some()
                    && let Some(value) = detail(container).and_then(|d| d.$field)
                {
                    series.put(Value::count(value));
                }
            },
            root: None,
        }
    };
}

macro_rules! throttling_family {
    ($name:literal, $help:literal, $value:expr) => {
        ContainerFamily {
            family: family($name, Kind::Counter, $help),
            write: |series, container| {
                if cpu_quota(container).is_some()
                    && let Some(throttling) = detail(container).and_then(|d| d.cpu_throttling)
                {
                    let value: fn(dockermon_proto::CpuThrottling) -> Value = $value;
                    series.put(value(throttling));
                }
            },
            root: None,
        }
    };
}

pub(super) const CONTAINER_FAMILIES: &[ContainerFamily] = &[
    ContainerFamily {
        family: family(
            "container_cpu_usage_seconds_total",
            Kind::Counter,
            "Cumulative cpu time consumed in seconds.",
        ),
        write: |series, container| {
            if let Some(sample) = sample(container) {
                series.put_with(
                    &[("cpu", "total")],
                    Value::seconds_from_ns(sample.counters.cpu_total_ns),
                );
            }
        },
        root: None,
    },
    ContainerFamily {
        family: family(
            "container_cpu_user_seconds_total",
            Kind::Counter,
            "Cumulative user cpu time consumed in seconds.",
        ),
        write: |series, container| {
            if let Some(ns) = detail(container).and_then(|d| d.cpu_user_ns) {
                series.put(Value::seconds_from_ns(ns));
            }
        },
        root: None,
    },
    ContainerFamily {
        family: family(
            "container_cpu_system_seconds_total",
            Kind::Counter,
            "Cumulative system cpu time consumed in seconds.",
        ),
        write: |series, container| {
            if let Some(ns) = detail(container).and_then(|d| d.cpu_kernel_ns) {
                series.put(Value::seconds_from_ns(ns));
            }
        },
        root: None,
    },
    throttling_family!(
        "container_cpu_cfs_periods_total",
        "Number of elapsed enforcement period intervals.",
        |t| Value::count(t.periods)
    ),
    throttling_family!(
        "container_cpu_cfs_throttled_periods_total",
        "Number of throttled period intervals.",
        |t| Value::count(t.throttled_periods)
    ),
    throttling_family!(
        "container_cpu_cfs_throttled_seconds_total",
        "Total time duration the container has been throttled.",
        |t| Value::seconds_from_ns(t.throttled_ns)
    ),
    ContainerFamily {
        family: family(
            "container_memory_usage_bytes",
            Kind::Gauge,
            "Current memory usage in bytes, including all memory regardless of when it was accessed",
        ),
        write: |series, container| {
            if let Some(sample) = measured(container, CounterGroup::Memory) {
                series.put(Value::count(sample.counters.memory_usage_bytes));
            }
        },
        root: None,
    },
    ContainerFamily {
        family: family(
            "container_memory_working_set_bytes",
            Kind::Gauge,
            "Current working set in bytes.",
        ),
        write: |series, container| {
            if let Some(sample) = measured(container, CounterGroup::Memory) {
                series.put(Value::count(sample.counters.memory_working_set_bytes));
            }
        },
        root: None,
    },
    memory_detail_family!(
        "container_memory_rss",
        Kind::Gauge,
        "Size of RSS in bytes.",
        memory_rss_bytes
    ),
    memory_detail_family!(
        "container_memory_cache",
        Kind::Gauge,
        "Number of bytes of page cache memory.",
        memory_cache_bytes
    ),
    memory_detail_family!(
        "container_memory_swap",
        Kind::Gauge,
        "Container swap usage in bytes.",
        memory_swap_bytes
    ),
    memory_detail_family!(
        "container_memory_failcnt",
        Kind::Counter,
        "Number of memory usage hits limits",
        memory_failcnt
    ),
    memory_detail_family!(
        "container_memory_max_usage_bytes",
        Kind::Gauge,
        "Maximum memory usage recorded in bytes",
        memory_max_usage_bytes
    ),
    network_family!(
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received",
        rx_bytes
    ),
    network_family!(
        "container_network_receive_packets_total",
        "Cumulative count of packets received",
        rx_packets
    ),
    network_family!(
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving",
        rx_errors
    ),
    network_family!(
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving",
        rx_dropped
    ),
    network_family!(
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted",
        tx_bytes
    ),
    network_family!(
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted",
        tx_packets
    ),
    network_family!(
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting",
        tx_errors
    ),
    network_family!(
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting",
        tx_dropped
    ),
    block_family!(
        "container_fs_reads_bytes_total",
        "Cumulative count of bytes read",
        read_bytes
    ),
    block_family!(
        "container_fs_writes_bytes_total",
        "Cumulative count of bytes written",
        write_bytes
    ),
    block_family!(
        "container_fs_reads_total",
        "Cumulative count of reads completed",
        read_ops
    ),
    block_family!(
        "container_fs_writes_total",
        "Cumulative count of writes completed",
        write_ops
    ),
    ContainerFamily {
        family: family(
            "container_fs_usage_bytes",
            Kind::Gauge,
            "Number of bytes that are consumed by the container on this filesystem.",
        ),
        write: |series, container| {
            if container.is_running()
                && let Some(bytes) = container.fs_usage_bytes
            {
                series.put(Value::count(bytes));
            }
        },
        root: None,
    },
    ContainerFamily {
        family: family(
            "container_spec_memory_limit_bytes",
            Kind::Gauge,
            "Memory limit for the container.",
        ),
        write: |series, container| {
            if let Some(resources) = resources(container) {
                // 0 when unlimited, as cAdvisor reports it.
                series.put(Value::count(resources.memory_limit_bytes.unwrap_or(0)));
            }
        },
        root: Some(|host| Some(Value::count(host.info.as_ref()?.memory_bytes))),
    },
    ContainerFamily {
        family: family(
            "container_spec_cpu_quota",
            Kind::Gauge,
            "CPU quota of the container.",
        ),
        write: |series, container| {
            if let Some(quota) = cpu_quota(container) {
                series.put(Value::count(quota));
            }
        },
        root: None,
    },
    ContainerFamily {
        family: family(
            "container_spec_cpu_period",
            Kind::Gauge,
            "CPU period of the container.",
        ),
        write: |series, container| {
            if let Some(resources) = resources(container) {
                series.put(Value::count(resources.cpu_period_us));
            }
        },
        root: None,
    },
    ContainerFamily {
        family: family(
            "container_spec_cpu_shares",
            Kind::Gauge,
            "CPU share of the container.",
        ),
        write: |series, container| {
            if let Some(resources) = resources(container) {
                series.put(Value::count(resources.cpu_shares));
            }
        },
        root: None,
    },
    ContainerFamily {
        family: family(
            "container_start_time_seconds",
            Kind::Gauge,
            "Start time of the container since unix epoch in seconds.",
        ),
        write: |series, container| {
            if container.is_running()
                && let Some(started) = container.container.as_ref().and_then(|c| c.started_at_ns)
            {
                series.put(Value::Float(started as f64 / 1e9));
            }
        },
        root: None,
    },
    ContainerFamily {
        family: family(
            "container_last_seen",
            Kind::Gauge,
            "Last time a container was seen by the exporter",
        ),
        write: |series, container| {
            if let Some(sample) = sample(container) {
                series.put(Value::Float(sample.time_ns as f64 / 1e9));
            }
        },
        root: None,
    },
    ContainerFamily {
        family: family(
            "dockermon_container_state",
            Kind::Gauge,
            "1 for the container's current state (Docker's State.Status): created, running, paused, restarting, removing, exited or dead.",
        ),
        write: |series, container| {
            if let Some(state) = container.state() {
                series.put_with(&[("state", state.as_str())], Value::Int(1));
            }
        },
        root: None,
    },
    ContainerFamily {
        family: family(
            "dockermon_container_health_status",
            Kind::Gauge,
            "1 for the container's health check status (starting, healthy, unhealthy); absent without a health check.",
        ),
        write: |series, container| {
            let health = container.container.as_ref().and_then(|c| c.health);
            let status = match health {
                Some(Health::Starting) => "starting",
                Some(Health::Healthy) => "healthy",
                Some(Health::Unhealthy) => "unhealthy",
                Some(Health::Unknown) | None => return,
            };
            series.put_with(&[("health", status)], Value::Int(1));
        },
        root: None,
    },
    ContainerFamily {
        family: family(
            "dockermon_container_restarts_total",
            Kind::Counter,
            "Times Docker restarted the container (its RestartCount).",
        ),
        write: |series, container| {
            if let Some(c) = &container.container {
                series.put(Value::Int(i64::from(c.restart_count)));
            }
        },
        root: None,
    },
    ContainerFamily {
        family: family(
            "dockermon_container_exit_code",
            Kind::Gauge,
            "The exit code of the container's last run; absent while it has never exited.",
        ),
        write: |series, container| {
            if let Some(code) = container.container.as_ref().and_then(|c| c.exit_code) {
                series.put(Value::Int(code));
            }
        },
        root: None,
    },
    ContainerFamily {
        family: family(
            "dockermon_container_oom_killed",
            Kind::Gauge,
            "1 when the kernel's OOM killer ended the container's last run (Docker's State.OOMKilled).",
        ),
        write: |series, container| {
            if let Some(c) = &container.container {
                series.put(Value::Int(i64::from(c.oom_killed)));
            }
        },
        root: None,
    },
    ContainerFamily {
        family: family(
            "dockermon_container_pids",
            Kind::Gauge,
            "Tasks (processes and threads) in the container's cgroup (pids.current).",
        ),
        write: |series, container| {
            if let Some(sample) = measured(container, CounterGroup::Pids) {
                series.put(Value::count(sample.counters.pids));
            }
        },
        root: None,
    },
];

/// The container states in the order `dockermon_host_containers` lists them.
pub(super) const STATES: [ContainerState; 7] = [
    ContainerState::Created,
    ContainerState::Running,
    ContainerState::Paused,
    ContainerState::Restarting,
    ContainerState::Removing,
    ContainerState::Exited,
    ContainerState::Dead,
];

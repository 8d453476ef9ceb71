//! bollard's models → the wire model. Everything a container controls (names, labels,
//! attributes, actions) passes through `dockermon_proto::limits` here, so nothing
//! unbounded leaves the agent.

use std::collections::HashMap;

use bollard::models::{
    ContainerInspectResponse, EventMessage, ImageInspect, ImageSummary, Network as DockerNetwork,
    NetworkInspect, Volume as DockerVolume,
};
use dockermon_proto::limits::{
    MAX_NAME_BYTES, MAX_TEXT_BYTES, bound_labels, bound_labels_counted, bound_list_counted,
    bound_name, truncate,
};
use dockermon_proto::{
    Compose, Container, ContainerId, ContainerMount, ContainerNetwork, ContainerResources,
    ContainerState, DockerEvent, EventKind, Health, Image, Network, Port, Truncated, Volume,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An RFC 3339 time from Docker as Unix nanoseconds. Docker writes its "never" as
/// `0001-01-01T00:00:00Z`; that, an empty string and anything unparsable are `None`.
pub fn parse_time_ns(text: &str) -> Option<i64> {
    let time = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    let ns = time.unix_timestamp_nanos();
    (ns > 0).then(|| i64::try_from(ns).ok()).flatten()
}

/// Labels bounded, and how many were left out or cut.
fn labels(
    map: Option<HashMap<String, String>>,
) -> (std::collections::BTreeMap<String, String>, u32) {
    bound_labels_counted(map.unwrap_or_default())
}

fn name(s: impl Into<String>) -> String {
    truncate(s.into(), MAX_NAME_BYTES)
}

/// A container as `docker inspect` describes it. `None` when the answer lacks an id.
pub fn container_from_inspect(c: ContainerInspectResponse) -> Option<Container> {
    let id = ContainerId(c.id?);
    let state = c.state.unwrap_or_default();
    let config = c.config.unwrap_or_default();
    let raw_labels = config.labels.unwrap_or_default();
    let compose = compose_of(&raw_labels);
    let network_settings = c.network_settings.unwrap_or_default();
    let host_config = c.host_config.unwrap_or_default();

    let mut ports: Vec<Port> = network_settings
        .ports
        .unwrap_or_default()
        .into_iter()
        .flat_map(|(spec, bindings)| {
            let (private, protocol) = spec.split_once('/').unwrap_or((&spec, "tcp"));
            let private_port = private.parse().unwrap_or(0);
            let protocol = truncate(protocol.to_owned(), 16);
            match bindings.filter(|b| !b.is_empty()) {
                None => vec![Port {
                    private_port,
                    public_port: None,
                    protocol,
                    host_ip: None,
                }],
                Some(bindings) => bindings
                    .into_iter()
                    .map(|b| Port {
                        private_port,
                        public_port: b.host_port.and_then(|p| p.parse().ok()),
                        protocol: protocol.clone(),
                        host_ip: b.host_ip.filter(|ip| !ip.is_empty()),
                    })
                    .collect(),
            }
        })
        .collect();
    ports.sort_by(|a, b| {
        (a.private_port, &a.protocol, a.public_port).cmp(&(
            b.private_port,
            &b.protocol,
            b.public_port,
        ))
    });

    let mounts = c
        .mounts
        .unwrap_or_default()
        .into_iter()
        .map(|m| ContainerMount {
            kind: m.typ.unwrap_or_default(),
            name: m.name.filter(|n| !n.is_empty()).map(name),
            source: truncate(m.source.unwrap_or_default(), MAX_TEXT_BYTES),
            destination: truncate(m.destination.unwrap_or_default(), MAX_TEXT_BYTES),
            read_write: m.rw.unwrap_or(true),
        })
        .collect();

    let mut networks: Vec<ContainerNetwork> = network_settings
        .networks
        .unwrap_or_default()
        .into_iter()
        .map(|(net_name, endpoint)| ContainerNetwork {
            name: name(net_name),
            network_id: endpoint.network_id.unwrap_or_default(),
            ip_address: endpoint.ip_address.filter(|ip| !ip.is_empty()),
            mac_address: endpoint.mac_address.filter(|mac| !mac.is_empty()),
        })
        .collect();
    networks.sort_by(|a, b| a.name.cmp(&b.name));

    let (container_name, name_cut) = bound_name(
        c.name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
    );
    let (labels, labels_cut) = bound_labels_counted(raw_labels);
    let (ports, ports_cut) = bound_list_counted(ports);
    let (mounts, mounts_cut) = bound_list_counted(mounts);
    let (networks, networks_cut) = bound_list_counted(networks);
    Some(Container {
        id,
        name: container_name,
        image: name(config.image.unwrap_or_default()),
        image_id: c.image.unwrap_or_default(),
        created_ns: c.created.as_deref().and_then(parse_time_ns).unwrap_or(0),
        state: state
            .status
            .map(|s| ContainerState::parse(s.as_ref()))
            .unwrap_or(ContainerState::Unknown),
        health: state
            .health
            .and_then(|h| h.status)
            .and_then(|s| match s.to_string().as_str() {
                "starting" => Some(Health::Starting),
                "healthy" => Some(Health::Healthy),
                "unhealthy" => Some(Health::Unhealthy),
                _ => None,
            }),
        restart_count: c.restart_count.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32,
        // Docker reports 0 before the first exit; only a finished run has a real code.
        exit_code: state
            .finished_at
            .as_deref()
            .and_then(parse_time_ns)
            .and(state.exit_code),
        started_at_ns: state.started_at.as_deref().and_then(parse_time_ns),
        finished_at_ns: state.finished_at.as_deref().and_then(parse_time_ns),
        compose,
        labels,
        ports,
        mounts,
        networks,
        oom_killed: state.oom_killed.unwrap_or(false),
        restart_policy: host_config
            .restart_policy
            .as_ref()
            .and_then(|policy| policy.name)
            .map(|name| name.to_string())
            .filter(|name| !name.is_empty()),
        network_mode: host_config.network_mode.clone().map(name),
        resources: Some(resources_of(&host_config)),
        truncated: Truncated {
            name: name_cut,
            labels: labels_cut,
            ports: ports_cut,
            mounts: mounts_cut,
            networks: networks_cut,
            ..Truncated::default()
        },
    })
}

/// The CFS period the kernel uses when a container does not set one, in microseconds.
const DEFAULT_CPU_PERIOD_US: u64 = 100_000;
/// The CPU weight of a container that does not set one.
const DEFAULT_CPU_SHARES: u64 = 1024;

/// What Docker grants a container. Docker writes "unlimited" as 0 (memory, quota) or -1
/// (swap); both become `None`. `--cpus` is `NanoCpus`, which Docker enforces as a quota over
/// the default period (Docker refuses `NanoCpus` together with `CpuPeriod`/`CpuQuota`).
fn resources_of(host: &bollard::models::HostConfig) -> ContainerResources {
    let positive =
        |value: Option<i64>| value.and_then(|v| u64::try_from(v).ok()).filter(|v| *v > 0);
    let cpu_period_us = positive(host.cpu_period).unwrap_or(DEFAULT_CPU_PERIOD_US);
    let cpu_quota_us = positive(host.cpu_quota).or_else(|| {
        positive(host.nano_cpus).map(|nano| {
            (u128::from(nano) * u128::from(DEFAULT_CPU_PERIOD_US) / 1_000_000_000) as u64
        })
    });
    ContainerResources {
        memory_limit_bytes: positive(host.memory),
        memory_swap_limit_bytes: positive(host.memory_swap),
        cpu_quota_us,
        cpu_period_us,
        cpu_shares: positive(host.cpu_shares).unwrap_or(DEFAULT_CPU_SHARES),
        cgroup_parent: host
            .cgroup_parent
            .clone()
            .filter(|parent| !parent.is_empty())
            .map(|parent| truncate(parent, MAX_TEXT_BYTES)),
    }
}

fn compose_of(labels: &HashMap<String, String>) -> Option<Compose> {
    let project = labels.get("com.docker.compose.project")?;
    let service = labels.get("com.docker.compose.service")?;
    Some(Compose {
        project: name(project.clone()),
        service: name(service.clone()),
        number: labels
            .get("com.docker.compose.container-number")
            .and_then(|n| n.parse().ok()),
    })
}

pub fn image_from_summary(i: ImageSummary) -> Image {
    image(
        i.id,
        i.repo_tags,
        u64::try_from(i.size).unwrap_or(0),
        i.created.saturating_mul(1_000_000_000),
        i.labels,
    )
}

pub fn image_from_inspect(i: ImageInspect) -> Option<Image> {
    Some(image(
        i.id?,
        i.repo_tags.unwrap_or_default(),
        i.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
        i.created.as_deref().and_then(parse_time_ns).unwrap_or(0),
        i.config.and_then(|c| c.labels).unwrap_or_default(),
    ))
}

/// An image, its tags (Docker's `<none>:<none>` is no tag) and labels bounded.
fn image(
    id: String,
    tags: Vec<String>,
    size_bytes: u64,
    created_ns: i64,
    labels: HashMap<String, String>,
) -> Image {
    let (tags, tags_cut) = bound_list_counted(
        tags.into_iter()
            .filter(|t| t != "<none>:<none>")
            .map(name)
            .collect(),
    );
    let (labels, labels_cut) = bound_labels_counted(labels);
    Image {
        id,
        tags,
        size_bytes,
        created_ns,
        labels,
        truncated: Truncated {
            tags: tags_cut,
            labels: labels_cut,
            ..Truncated::default()
        },
    }
}

pub fn volume_from(v: DockerVolume) -> Volume {
    let (volume_name, name_cut) = bound_name(v.name);
    let (labels, labels_cut) = bound_labels_counted(v.labels);
    Volume {
        name: volume_name,
        driver: name(v.driver),
        mountpoint: truncate(v.mountpoint, MAX_TEXT_BYTES),
        scope: v.scope.map(|s| s.to_string()).unwrap_or_default(),
        created_ns: v.created_at.as_deref().and_then(parse_time_ns),
        labels,
        truncated: Truncated {
            name: name_cut,
            labels: labels_cut,
            ..Default::default()
        },
    }
}

/// Networks come in two bollard types with the same fields (list and inspect answers).
macro_rules! network_from {
    ($n:expr) => {{
        let n = $n;
        let (network_name, name_cut) = bound_name(n.name.unwrap_or_default());
        let (labels, labels_cut) = labels(n.labels);
        Some(Network {
            id: n.id?,
            name: network_name,
            driver: name(n.driver.unwrap_or_default()),
            scope: n.scope.unwrap_or_default(),
            internal: n.internal.unwrap_or(false),
            created_ns: n.created.as_deref().and_then(parse_time_ns),
            labels,
            truncated: Truncated {
                name: name_cut,
                labels: labels_cut,
                ..Default::default()
            },
        })
    }};
}

pub fn network_from_summary(n: DockerNetwork) -> Option<Network> {
    network_from!(n)
}

pub fn network_from_inspect(n: NetworkInspect) -> Option<Network> {
    network_from!(n)
}

/// A Docker event. `None` for a message without a time (never sent by a real engine).
pub fn event_from_message(message: EventMessage) -> Option<DockerEvent> {
    let time_ns = message
        .time_nano
        .or_else(|| message.time.map(|s| s.saturating_mul(1_000_000_000)))?;
    let actor = message.actor.unwrap_or_default();
    let attributes = actor.attributes.unwrap_or_default();
    let actor_name = attributes.get("name").cloned().map(name);
    let mut event = DockerEvent {
        time_ns,
        kind: message
            .typ
            .map(|t| EventKind::parse(t.as_ref()))
            .unwrap_or(EventKind::Unknown),
        action: truncate(message.action.unwrap_or_default(), MAX_TEXT_BYTES),
        actor_id: truncate(actor.id.unwrap_or_default(), MAX_NAME_BYTES),
        actor_name,
        attributes: bound_labels(attributes),
        scope: message
            .scope
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty()),
    };
    // Command lines and copied labels never leave the agent.
    dockermon_proto::redact::event(&mut event);
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_times_parse_to_nanoseconds() {
        assert_eq!(
            parse_time_ns("2024-05-01T12:00:00.123456789Z"),
            Some(1_714_564_800_123_456_789)
        );
        assert_eq!(parse_time_ns("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_time_ns(""), None);
        assert_eq!(parse_time_ns("yesterday"), None);
    }

    #[test]
    fn events_keep_nanoseconds_and_bound_attributes() {
        let message: EventMessage = serde_json::from_value(serde_json::json!({
            "Type": "container",
            "Action": "die",
            "Actor": {"ID": "abc", "Attributes": {"name": "web", "exitCode": "137", "image": "y".repeat(5000), "tier": "front"}},
            "scope": "local",
            "time": 1_700_000_000,
            "timeNano": 1_700_000_000_123_456_789i64
        }))
        .unwrap();
        let event = event_from_message(message).unwrap();
        assert_eq!(event.time_ns, 1_700_000_000_123_456_789);
        assert_eq!(event.kind, EventKind::Container);
        assert_eq!(event.actor_name.as_deref(), Some("web"));
        assert_eq!(
            event.attributes["image"].len(),
            dockermon_proto::limits::MAX_LABEL_VALUE_BYTES
        );
        assert!(
            !event.attributes.contains_key("tier"),
            "container labels Docker copies into events are the inventory's"
        );
        assert_eq!(event.scope.as_deref(), Some("local"));
    }

    #[test]
    fn container_inspect_converts() {
        // Trimmed from a real `docker inspect` of an engine speaking API 1.41.
        let inspect: ContainerInspectResponse = serde_json::from_value(serde_json::json!({
            "Id": "c0ffee",
            "Created": "2024-05-01T12:00:00.5Z",
            "Name": "/shop-web-1",
            "Image": "sha256:feed",
            "RestartCount": 3,
            "State": {"Status": "exited", "ExitCode": 137, "OOMKilled": true,
                      "StartedAt": "2024-05-01T12:00:01Z", "FinishedAt": "2024-05-01T12:05:00Z",
                      "Health": {"Status": "unhealthy", "FailingStreak": 3, "Log": []}},
            "HostConfig": {"Memory": 16777216, "MemorySwap": 33554432, "NanoCpus": 1500000000,
                           "CpuQuota": 0, "CpuPeriod": 0, "CpuShares": 0, "NetworkMode": "host",
                           "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}},
            "Config": {"Image": "nginx:1.27", "ExposedPorts": {"80/tcp": {}},
                       "Labels": {"com.docker.compose.project": "shop",
                                  "com.docker.compose.service": "web",
                                  "com.docker.compose.container-number": "1"}},
            "Mounts": [{"Type": "volume", "Name": "data", "Source": "/v/data", "Destination": "/data", "RW": false}],
            "NetworkSettings": {
                "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "443/tcp": null},
                "Networks": {"shop_default": {"NetworkID": "n1", "IPAddress": "172.18.0.2", "MacAddress": ""}}
            }
        }))
        .unwrap();
        let c = container_from_inspect(inspect).unwrap();
        assert_eq!(c.name, "shop-web-1");
        assert_eq!(c.image, "nginx:1.27");
        assert_eq!(c.state, ContainerState::Exited);
        assert_eq!(c.health, Some(Health::Unhealthy));
        assert_eq!(c.exit_code, Some(137));
        assert_eq!(c.restart_count, 3);
        assert_eq!(c.created_ns, 1_714_564_800_500_000_000);
        assert_eq!(
            c.compose,
            Some(Compose {
                project: "shop".into(),
                service: "web".into(),
                number: Some(1)
            })
        );
        assert_eq!(c.ports.len(), 2);
        assert_eq!(c.ports[0].public_port, Some(8080));
        assert_eq!(
            c.ports[1],
            Port {
                private_port: 443,
                public_port: None,
                protocol: "tcp".into(),
                host_ip: None
            }
        );
        assert_eq!(c.mounts[0].name.as_deref(), Some("data"));
        assert!(!c.mounts[0].read_write);
        assert_eq!(c.networks[0].ip_address.as_deref(), Some("172.18.0.2"));
        assert_eq!(c.networks[0].mac_address, None);
        assert!(c.oom_killed);
        assert_eq!(c.restart_policy.as_deref(), Some("on-failure"));
        assert_eq!(c.network_mode.as_deref(), Some("host"));
        assert_eq!(
            c.resources,
            Some(ContainerResources {
                memory_limit_bytes: Some(16 << 20),
                memory_swap_limit_bytes: Some(32 << 20),
                cpu_quota_us: Some(150_000),
                cpu_period_us: 100_000,
                cpu_shares: 1024,
                cgroup_parent: None,
            }),
            "--cpus 1.5 is a 150 ms quota per 100 ms period"
        );
    }

    #[test]
    fn unlimited_resources_are_none() {
        let inspect: ContainerInspectResponse = serde_json::from_value(serde_json::json!({
            "Id": "c0ffee", "Name": "/free",
            "State": {"Status": "running", "OOMKilled": false},
            "HostConfig": {"Memory": 0, "MemorySwap": -1, "NanoCpus": 0, "CpuQuota": -1,
                           "CpuPeriod": 50000, "CpuShares": 512, "CgroupParent": "/tenants"}
        }))
        .unwrap();
        let c = container_from_inspect(inspect).unwrap();
        assert!(!c.oom_killed);
        assert_eq!(
            c.resources,
            Some(ContainerResources {
                memory_limit_bytes: None,
                memory_swap_limit_bytes: None,
                cpu_quota_us: None,
                cpu_period_us: 50_000,
                cpu_shares: 512,
                cgroup_parent: Some("/tenants".into()),
            })
        );
    }

    #[test]
    fn a_container_that_never_exited_has_no_exit_code() {
        let inspect: ContainerInspectResponse = serde_json::from_value(serde_json::json!({
            "Id": "c0ffee", "Name": "/fresh",
            "State": {"Status": "created", "ExitCode": 0, "FinishedAt": "0001-01-01T00:00:00Z"}
        }))
        .unwrap();
        assert_eq!(container_from_inspect(inspect).unwrap().exit_code, None);
    }
}

//! The envelope: one [`Record`] per thing an agent reports.

use serde::{Deserialize, Serialize};

use crate::{DiskUsage, DockerEvent, HostInfo, InventoryUpdate, ProfileBatch, StatsSample};

/// Everything an agent reports. Serialised with a `"type"` field naming the variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Host(HostInfo),
    Inventory(InventoryUpdate),
    Event(DockerEvent),
    Stats(StatsSample),
    Usage(DiskUsage),
    /// Samples of a profile session the collector asked for (agents that announce the
    /// `profile` capability only).
    Profile(ProfileBatch),
}

impl Record {
    /// The `"type"` this record is serialised with.
    pub fn type_name(&self) -> &'static str {
        match self {
            Record::Host(_) => "host",
            Record::Inventory(_) => "inventory",
            Record::Event(_) => "event",
            Record::Stats(_) => "stats",
            Record::Usage(_) => "usage",
            Record::Profile(_) => "profile",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::*;

    fn container() -> Container {
        Container {
            id: ContainerId::from(
                "4f1c2a9e8d7b6c5a4f1c2a9e8d7b6c5a4f1c2a9e8d7b6c5a4f1c2a9e8d7b6c5a",
            ),
            name: "web-1".into(),
            image: "nginx:1.27".into(),
            image_id: "sha256:feed".into(),
            created_ns: 1_700_000_000_123_456_789,
            state: ContainerState::Running,
            health: Some(Health::Healthy),
            restart_count: 2,
            exit_code: Some(137),
            started_at_ns: Some(1_700_000_001_000_000_000),
            finished_at_ns: None,
            compose: Some(Compose {
                project: "shop".into(),
                service: "web".into(),
                number: Some(1),
            }),
            labels: BTreeMap::from([("tier".into(), "front".into())]),
            ports: vec![Port {
                private_port: 80,
                public_port: Some(8080),
                protocol: "tcp".into(),
                host_ip: Some("0.0.0.0".into()),
            }],
            mounts: vec![ContainerMount {
                kind: "volume".into(),
                name: Some("data".into()),
                source: "/var/lib/docker/volumes/data/_data".into(),
                destination: "/data".into(),
                read_write: true,
            }],
            networks: vec![ContainerNetwork {
                name: "bridge".into(),
                network_id: "n1".into(),
                ip_address: Some("172.17.0.2".into()),
                mac_address: None,
            }],
            oom_killed: true,
            restart_policy: Some("unless-stopped".into()),
            network_mode: Some("bridge".into()),
            resources: Some(ContainerResources {
                memory_limit_bytes: Some(1 << 30),
                memory_swap_limit_bytes: None,
                cpu_quota_us: Some(50_000),
                cpu_period_us: 100_000,
                cpu_shares: 1024,
                cgroup_parent: None,
            }),
            truncated: Truncated {
                labels: 3,
                ..Default::default()
            },
        }
    }

    fn every_record() -> Vec<Record> {
        vec![
            Record::Host(HostInfo {
                time_ns: 1,
                agent_version: "0.1.0".into(),
                protocol_version: PROTOCOL_VERSION,
                engine_id: "ABCD:EFGH".into(),
                hostname: "docker-1".into(),
                docker_version: "20.10.24".into(),
                api_version: "1.41".into(),
                os: "Debian GNU/Linux 12".into(),
                os_type: "linux".into(),
                kernel_version: "6.1.0".into(),
                architecture: "x86_64".into(),
                cpus: 2,
                memory_bytes: 24 << 30,
                cgroup_version: 1,
                cgroup_driver: "cgroupfs".into(),
                storage_driver: "overlay2".into(),
                stats_source: "docker".into(),
                containers: 3,
                containers_running: 1,
                containers_paused: 1,
                containers_stopped: 1,
                images: 4,
            }),
            Record::Inventory(InventoryUpdate {
                time_ns: 2,
                full: true,
                containers: vec![container()],
                images: vec![Image {
                    id: "sha256:feed".into(),
                    tags: vec!["nginx:1.27".into()],
                    size_bytes: 190_000_000,
                    created_ns: 3,
                    labels: BTreeMap::new(),
                    truncated: Truncated::default(),
                }],
                volumes: vec![Volume {
                    name: "data".into(),
                    driver: "local".into(),
                    mountpoint: "/var/lib/docker/volumes/data/_data".into(),
                    scope: "local".into(),
                    created_ns: Some(4),
                    labels: BTreeMap::new(),
                    truncated: Truncated::default(),
                }],
                networks: vec![Network {
                    id: "n1".into(),
                    name: "bridge".into(),
                    driver: "bridge".into(),
                    scope: "local".into(),
                    internal: false,
                    created_ns: None,
                    labels: BTreeMap::new(),
                    truncated: Default::default(),
                }],
                removed: vec![],
            }),
            Record::Inventory(InventoryUpdate {
                time_ns: 5,
                full: false,
                removed: vec![ObjectRef {
                    kind: ObjectKind::Volume,
                    id: "old".into(),
                }],
                ..Default::default()
            }),
            Record::Event(DockerEvent {
                time_ns: 1_700_000_000_987_654_321,
                kind: EventKind::Container,
                action: "die".into(),
                actor_id: "4f1c".into(),
                actor_name: Some("web-1".into()),
                attributes: BTreeMap::from([("exitCode".into(), "137".into())]),
                scope: Some("local".into()),
            }),
            Record::Stats(StatsSample {
                time_ns: 6,
                container_id: ContainerId::from("4f1c"),
                name: "web-1".into(),
                counters: StatsCounters {
                    cpu_total_ns: u64::MAX,
                    cpu_system_ns: 10,
                    online_cpus: 2,
                    memory_usage_bytes: 100,
                    memory_working_set_bytes: 60,
                    memory_limit_bytes: 1 << 30,
                    network: NetworkCounters {
                        rx_bytes: 1,
                        tx_bytes: 2,
                        rx_packets: 3,
                        tx_packets: 4,
                        rx_errors: 5,
                        tx_errors: 6,
                        rx_dropped: 7,
                        tx_dropped: 8,
                    },
                    block_io: BlockIo {
                        read_bytes: 9,
                        write_bytes: 10,
                        read_ops: 11,
                        write_ops: 12,
                    },
                    pids: 13,
                    absent: vec![CounterGroup::Memory],
                    detail: Some(Box::new(CounterDetail {
                        cpu_user_ns: Some(7),
                        cpu_kernel_ns: None,
                        cpu_throttling: Some(CpuThrottling {
                            periods: 10,
                            throttled_periods: 2,
                            throttled_ns: 3,
                        }),
                        interfaces: vec![InterfaceCounters {
                            name: "eth0".into(),
                            counters: NetworkCounters {
                                rx_bytes: 1,
                                ..Default::default()
                            },
                        }],
                        devices: vec![DeviceIo {
                            major: 8,
                            minor: 0,
                            name: Some("/dev/sda".into()),
                            io: BlockIo {
                                read_bytes: 9,
                                ..Default::default()
                            },
                        }],
                        ..Default::default()
                    })),
                },
                rates: Some(StatsRates {
                    interval_ns: 30_000_000_000,
                    cpu_percent: 12.5,
                    net_rx_bytes_per_s: 0.25,
                    net_tx_bytes_per_s: 1e9,
                    block_read_bytes_per_s: 0.0,
                    block_write_bytes_per_s: 3.5,
                }),
            }),
            Record::Usage(DiskUsage {
                time_ns: 7,
                layers_bytes: 8,
                images: UsageSummary {
                    count: 1,
                    active: 1,
                    size_bytes: 8,
                    reclaimable_bytes: 0,
                },
                per_container: vec![ContainerDisk {
                    container_id: ContainerId::from("4f1c"),
                    name: "web-1".into(),
                    size_rw_bytes: 4096,
                }],
                per_volume: vec![VolumeDisk {
                    name: "data".into(),
                    size_bytes: 1 << 20,
                    containers: 1,
                }],
                ..Default::default()
            }),
            Record::Profile(ProfileBatch {
                profile_id: 17,
                container_id: ContainerId::from("4f1c"),
                samples: vec![ProfileSample {
                    time_ns: 1_700_000_000_000_000_001,
                    counters: StatsCounters {
                        cpu_total_ns: 5,
                        pids: 2,
                        ..Default::default()
                    },
                    rates: StatsRates {
                        interval_ns: 1_000_000_000,
                        cpu_percent: 99.5,
                        ..Default::default()
                    },
                }],
                ended: Some(ProfileEnd {
                    time_ns: 1_700_000_000_500_000_000,
                    reason: ProfileEndReason::ContainerStopped,
                    samples: 1,
                    message: None,
                }),
            }),
        ]
    }

    #[test]
    fn every_record_round_trips_through_json() {
        for record in every_record() {
            let json = serde_json::to_string(&record).unwrap();
            let back: Record = serde_json::from_str(&json).unwrap();
            assert_eq!(back, record, "{json}");
        }
    }

    #[test]
    fn records_carry_their_type_name() {
        for record in every_record() {
            let value = serde_json::to_value(&record).unwrap();
            assert_eq!(value["type"], record.type_name());
        }
    }

    #[test]
    fn nanosecond_times_survive_exactly() {
        let Record::Event(event) = &every_record()[3] else {
            unreachable!()
        };
        let json = serde_json::to_string(event).unwrap();
        assert!(json.contains("\"time_ns\":1700000000987654321"), "{json}");
    }

    #[test]
    fn unknown_fields_and_enum_values_are_tolerated() {
        // A newer agent may add fields and states within one protocol version.
        let json = r#"{"type":"event","time_ns":1,"kind":"quantum","action":"x",
            "actor_id":"a","actor_name":null,"scope":null,"new_field":[1,2]}"#;
        let Record::Event(event) = serde_json::from_str(json).unwrap() else {
            panic!("not an event")
        };
        assert_eq!(event.kind, EventKind::Unknown);
    }

    #[test]
    fn samples_of_agents_that_predate_absent_groups_and_details_still_read() {
        let json = r#"{"type":"stats","time_ns":1,"container_id":"c","name":"web","rates":null,
            "counters":{"cpu_total_ns":1,"cpu_system_ns":2,"online_cpus":1,"memory_usage_bytes":3,
            "memory_working_set_bytes":2,"memory_limit_bytes":9,"pids":1,
            "network":{"rx_bytes":0,"tx_bytes":0,"rx_packets":0,"tx_packets":0,"rx_errors":0,
                       "tx_errors":0,"rx_dropped":0,"tx_dropped":0},
            "block_io":{"read_bytes":0,"write_bytes":0,"read_ops":0,"write_ops":0}}}"#;
        let Record::Stats(sample) = serde_json::from_str(json).unwrap() else {
            panic!("not stats")
        };
        assert!(sample.counters.absent.is_empty());
        assert!(sample.counters.detail.is_none());
        assert!(sample.counters.has(CounterGroup::Network));
    }

    #[test]
    fn unknown_record_types_are_rejected() {
        let err = serde_json::from_str::<Record>(r#"{"type":"teapot"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }

    #[test]
    fn event_keys_tell_events_apart() {
        let Record::Event(event) = every_record().remove(3) else {
            unreachable!()
        };
        let again = event.clone();
        assert_eq!(event.key(), again.key());
        let later = DockerEvent {
            time_ns: event.time_ns + 1,
            ..event.clone()
        };
        assert_ne!(event.key(), later.key());
        let other_action = DockerEvent {
            action: "start".into(),
            ..event.clone()
        };
        assert_ne!(event.key(), other_action.key());
    }
}

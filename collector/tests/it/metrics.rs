//! `/metrics` from what agents commit: cAdvisor's names and labels for running containers,
//! no series for what was not measured, removed containers gone at once, disconnected hosts
//! after the grace, hostile label values escaped, both formats, and a large fleet streamed
//! in bounded chunks. Against a real store (the view is loaded from it when an agent
//! connects). Scraping by a real Prometheus is in the end-to-end suite.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use dockermon_collector::live::LiveBatch;
use dockermon_collector::metrics::render::CHUNK_BYTES;
use dockermon_collector::metrics::{
    CollectorMetrics, FleetMetrics, Format, MetricsConfig, MetricsEndpoint, Renderer,
};
use dockermon_collector::store::{HostId, Store};
use dockermon_collector::transport::Registry;
use dockermon_proto::{
    Compose, ContainerResources, ContainerState, CounterDetail, CounterGroup, CpuThrottling,
    DeviceIo, HostName, InterfaceCounters, InventoryUpdate, NetworkCounters, ObjectKind, ObjectRef,
    Record, StatsCounters, StatsSample,
};

use crate::fixtures::{NOW, S, container, host, host_info};
use crate::support::TestDb;

const ID_WEB: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const ID_OLD: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

struct Fleet {
    fleet: Arc<FleetMetrics>,
    endpoint: MetricsEndpoint,
    host: HostId,
    _db: TestDb,
}

impl Fleet {
    async fn new(config: MetricsConfig) -> Fleet {
        let db = TestDb::sqlite().await;
        let host = host(&db.store, "docker-1").await;
        let fleet = Arc::new(FleetMetrics::new(config));
        let endpoint = MetricsEndpoint {
            fleet: fleet.clone(),
            registry: Registry::default(),
            own: Arc::new(CollectorMetrics::default()),
            token: None,
            leader: Arc::new(AtomicBool::new(false)),
        };
        attach(&fleet, &db.store, host).await;
        Fleet {
            fleet,
            endpoint,
            host,
            _db: db,
        }
    }

    fn commit(&self, records: Vec<Record>) {
        self.fleet.apply(&LiveBatch {
            host: self.host,
            host_name: HostName::new("docker-1").unwrap(),
            records,
            dropped: Default::default(),
        });
    }

    fn render(&self, format: Format) -> String {
        Renderer::render_all(self.endpoint.scrape(format))
    }

    /// The samples of one family, as (labels, value) lines.
    fn series(&self, name: &str) -> Vec<String> {
        self.render(Format::Text)
            .lines()
            .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
            .map(|line| line[name.len()..].to_owned())
            .collect()
    }
}

async fn attach(fleet: &FleetMetrics, store: &Store, host: HostId) {
    fleet
        .attach(store, host, &HostName::new("docker-1").unwrap(), 1)
        .await
        .unwrap();
}

fn web() -> dockermon_proto::Container {
    let mut web = container(ID_WEB, "web", NOW - 100 * S);
    web.compose = Some(Compose {
        project: "shop".into(),
        service: "web".into(),
        number: Some(1),
    });
    web.labels = BTreeMap::from([
        (
            "team".into(),
            "a \"quoted\\\" value\nwith a newline, ünïcode".into(),
        ),
        ("secret".into(), "not exported".into()),
        ("com.docker.compose.project".into(), "shop".into()),
    ]);
    web.resources = Some(ContainerResources {
        memory_limit_bytes: Some(64 << 20),
        memory_swap_limit_bytes: None,
        cpu_quota_us: Some(50_000),
        cpu_period_us: 100_000,
        cpu_shares: 512,
        cgroup_parent: None,
    });
    web
}

fn exited() -> dockermon_proto::Container {
    let mut old = container(ID_OLD, "old", NOW - 200 * S);
    old.state = ContainerState::Exited;
    old.exit_code = Some(137);
    old.oom_killed = true;
    old
}

fn sample(id: &str, name: &str, absent: Vec<CounterGroup>) -> StatsSample {
    StatsSample {
        time_ns: NOW,
        container_id: id.into(),
        name: name.into(),
        counters: StatsCounters {
            cpu_total_ns: 2_500_000_000,
            cpu_system_ns: 1,
            online_cpus: 2,
            memory_usage_bytes: 10_000,
            memory_working_set_bytes: 6_000,
            memory_limit_bytes: 64 << 20,
            network: NetworkCounters {
                rx_bytes: 300,
                ..Default::default()
            },
            pids: 4,
            absent,
            detail: Some(Box::new(CounterDetail {
                cpu_user_ns: Some(2_000_000_000),
                cpu_kernel_ns: Some(500_000_000),
                cpu_throttling: Some(CpuThrottling {
                    periods: 40,
                    throttled_periods: 10,
                    throttled_ns: 1_500_000_000,
                }),
                memory_rss_bytes: Some(5_000),
                memory_cache_bytes: Some(4_000),
                memory_failcnt: Some(3),
                interfaces: vec![
                    InterfaceCounters {
                        name: "eth0".into(),
                        counters: NetworkCounters {
                            rx_bytes: 100,
                            tx_packets: 7,
                            ..Default::default()
                        },
                    },
                    InterfaceCounters {
                        name: "eth1".into(),
                        counters: NetworkCounters {
                            rx_bytes: 200,
                            ..Default::default()
                        },
                    },
                ],
                devices: vec![DeviceIo {
                    major: 8,
                    minor: 0,
                    name: Some("/dev/sda".into()),
                    io: dockermon_proto::BlockIo {
                        read_bytes: 4096,
                        write_ops: 2,
                        ..Default::default()
                    },
                }],
                ..Default::default()
            })),
            ..Default::default()
        },
        rates: None,
    }
}

fn inventory(containers: Vec<dockermon_proto::Container>) -> Record {
    Record::Inventory(InventoryUpdate {
        time_ns: NOW,
        full: true,
        containers,
        ..Default::default()
    })
}

const WEB_LABELS: &str = "id=\"/docker/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\
    name=\"web\",image=\"nginx:1.27\",container=\"web\",host=\"docker-1\",instance=\"docker-1\",\
    container_label_com_docker_compose_project=\"shop\",container_label_com_docker_compose_service=\"web\"";

#[tokio::test]
async fn running_containers_have_cadvisors_series_and_labels() {
    let fleet = Fleet::new(MetricsConfig::default()).await;
    fleet.commit(vec![
        Record::Host(host_info()),
        inventory(vec![web(), exited()]),
        Record::Stats(sample(ID_WEB, "web", vec![])),
    ]);
    let cpu = fleet.series("container_cpu_usage_seconds_total");
    assert_eq!(cpu, [format!("{{{WEB_LABELS},cpu=\"total\"}} 2.5")]);
    let one = |name: &str| {
        let series = fleet.series(name);
        assert_eq!(series.len(), 1, "{name}: {series:?}");
        let (labels, value) = series[0].rsplit_once(' ').unwrap();
        assert_eq!(labels, format!("{{{WEB_LABELS}}}"), "{name}");
        value.to_owned()
    };
    assert_eq!(one("container_cpu_user_seconds_total"), "2");
    assert_eq!(one("container_cpu_system_seconds_total"), "0.5");
    assert_eq!(one("container_cpu_cfs_periods_total"), "40");
    assert_eq!(one("container_cpu_cfs_throttled_periods_total"), "10");
    assert_eq!(one("container_cpu_cfs_throttled_seconds_total"), "1.5");
    assert_eq!(one("container_memory_usage_bytes"), "10000");
    assert_eq!(one("container_memory_working_set_bytes"), "6000");
    assert_eq!(one("container_memory_rss"), "5000");
    assert_eq!(one("container_memory_cache"), "4000");
    assert_eq!(one("container_memory_failcnt"), "3");
    assert_eq!(
        fleet.series("container_spec_memory_limit_bytes")[0],
        format!("{{{WEB_LABELS}}} {}", 64u64 << 20)
    );
    assert_eq!(one("container_spec_cpu_quota"), "50000");
    assert_eq!(one("container_spec_cpu_period"), "100000");
    assert_eq!(one("container_spec_cpu_shares"), "512");
    assert_eq!(one("container_last_seen"), (NOW / S).to_string());
    assert!(
        fleet.series("container_memory_swap").is_empty(),
        "not measured: no series"
    );
    assert_eq!(
        fleet.series("container_network_receive_bytes_total"),
        [
            format!("{{{WEB_LABELS},interface=\"eth0\"}} 100"),
            format!("{{{WEB_LABELS},interface=\"eth1\"}} 200"),
        ]
    );
    assert_eq!(
        fleet.series("container_network_transmit_packets_total"),
        [
            format!("{{{WEB_LABELS},interface=\"eth0\"}} 7"),
            format!("{{{WEB_LABELS},interface=\"eth1\"}} 0"),
        ]
    );
    assert_eq!(
        fleet.series("container_fs_reads_bytes_total"),
        [format!("{{{WEB_LABELS},device=\"/dev/sda\"}} 4096")]
    );
    assert_eq!(
        fleet.series("container_fs_writes_total"),
        [format!("{{{WEB_LABELS},device=\"/dev/sda\"}} 2")]
    );

    // The exited container: no resource series, but its state, exit code and OOM kill.
    let text = fleet.render(Format::Text);
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("container_") && l.contains("name=\"old\"")),
        "{text}"
    );
    let states = fleet.series("dockermon_container_state");
    assert!(
        states
            .iter()
            .any(|s| s.contains("name=\"old\"") && s.contains("state=\"exited\"} 1")),
        "{states:?}"
    );
    assert!(
        states
            .iter()
            .any(|s| s.contains("name=\"web\"") && s.contains("state=\"running\"} 1")),
        "{states:?}"
    );
    let oom = fleet.series("dockermon_container_oom_killed");
    assert!(
        oom.iter()
            .any(|s| s.contains("name=\"old\"") && s.ends_with(" 1")),
        "{oom:?}"
    );
    assert!(
        oom.iter()
            .any(|s| s.contains("name=\"web\"") && s.ends_with(" 0")),
        "{oom:?}"
    );
    let exit = fleet.series("dockermon_container_exit_code");
    assert_eq!(exit.len(), 1);
    assert!(exit[0].contains("name=\"old\"") && exit[0].ends_with(" 137"));

    // The machine, and cAdvisor's root cgroup for its memory.
    assert_eq!(
        fleet.series("machine_cpu_cores"),
        ["{host=\"docker-1\",instance=\"docker-1\"} 2"]
    );
    assert!(
        fleet
            .series("container_spec_memory_limit_bytes")
            .contains(&format!(
                "{{id=\"/\",host=\"docker-1\",instance=\"docker-1\"}} {}",
                24u64 << 30
            ))
    );
    assert_eq!(
        fleet.series("dockermon_host_containers"),
        [
            "{host=\"docker-1\",state=\"created\"} 0",
            "{host=\"docker-1\",state=\"running\"} 1",
            "{host=\"docker-1\",state=\"paused\"} 0",
            "{host=\"docker-1\",state=\"restarting\"} 0",
            "{host=\"docker-1\",state=\"removing\"} 0",
            "{host=\"docker-1\",state=\"exited\"} 1",
            "{host=\"docker-1\",state=\"dead\"} 0",
        ]
    );
}

#[tokio::test]
async fn what_was_not_measured_has_no_series() {
    let fleet = Fleet::new(MetricsConfig::default()).await;
    fleet.commit(vec![
        inventory(vec![web()]),
        Record::Stats(sample(
            ID_WEB,
            "web",
            vec![
                CounterGroup::Network,
                CounterGroup::Memory,
                CounterGroup::Pids,
            ],
        )),
    ]);
    for family in [
        "container_network_receive_bytes_total",
        "container_memory_usage_bytes",
        "container_memory_rss",
        "dockermon_container_pids",
    ] {
        assert!(fleet.series(family).is_empty(), "{family}");
    }
    assert_eq!(fleet.series("container_cpu_usage_seconds_total").len(), 1);
}

/// An agent replays its spool after reconnecting: samples older than one already shown
/// arrive last. The gauges keep the newest.
#[tokio::test]
async fn a_replayed_older_sample_does_not_turn_the_gauges_back() {
    let fleet = Fleet::new(MetricsConfig::default()).await;
    let mut older = sample(ID_WEB, "web", vec![]);
    older.time_ns = NOW - 30 * S;
    older.counters.memory_usage_bytes = 20_000;
    fleet.commit(vec![
        inventory(vec![web()]),
        Record::Stats(sample(ID_WEB, "web", vec![])),
    ]);
    fleet.commit(vec![Record::Stats(older.clone())]);
    assert_eq!(
        fleet.series("container_memory_usage_bytes"),
        [format!("{{{WEB_LABELS}}} 10000")]
    );
    // A newer sample still replaces it.
    older.time_ns = NOW + 30 * S;
    fleet.commit(vec![Record::Stats(older)]);
    assert_eq!(
        fleet.series("container_memory_usage_bytes"),
        [format!("{{{WEB_LABELS}}} 20000")]
    );
}

#[tokio::test]
async fn removed_containers_are_gone_at_the_next_scrape() {
    let fleet = Fleet::new(MetricsConfig::default()).await;
    fleet.commit(vec![
        inventory(vec![web(), exited()]),
        Record::Stats(sample(ID_WEB, "web", vec![])),
    ]);
    assert!(fleet.render(Format::Text).contains("name=\"web\""));
    fleet.commit(vec![Record::Inventory(InventoryUpdate {
        time_ns: NOW + S,
        removed: vec![ObjectRef {
            kind: ObjectKind::Container,
            id: ID_WEB.into(),
        }],
        ..Default::default()
    })]);
    let text = fleet.render(Format::Text);
    assert!(!text.contains("name=\"web\""), "{text}");
    assert!(text.contains("name=\"old\""));
    // A full inventory that no longer has a container removes it too.
    fleet.commit(vec![inventory(vec![])]);
    assert!(!fleet.render(Format::Text).contains("name=\"old\""));
}

#[tokio::test]
async fn a_disconnected_host_keeps_its_series_for_the_grace_then_they_go() {
    let fleet = Fleet::new(MetricsConfig {
        detached_grace: Duration::from_millis(300),
        ..MetricsConfig::default()
    })
    .await;
    fleet.commit(vec![
        inventory(vec![web()]),
        Record::Stats(sample(ID_WEB, "web", vec![])),
    ]);
    // An older session of the same host ending changes nothing.
    fleet.fleet.detach(fleet.host, 99);
    assert_eq!(fleet.series("container_cpu_usage_seconds_total").len(), 1);
    fleet.fleet.detach(fleet.host, 1);
    assert_eq!(
        fleet.series("dockermon_host_up"),
        ["{host=\"docker-1\"} 0"],
        "down while detached"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(fleet.series("container_cpu_usage_seconds_total").is_empty());
    assert!(fleet.series("dockermon_host_up").is_empty());
}

#[tokio::test]
async fn a_reconnecting_agent_finds_its_containers_loaded_from_the_store() {
    let db = TestDb::sqlite().await;
    let host = host(&db.store, "docker-1").await;
    db.store
        .ingest(&[(
            host,
            &[Record::Host(host_info()), inventory(vec![web(), exited()])],
        )])
        .await
        .unwrap();
    let fleet = FleetMetrics::new(MetricsConfig::default());
    attach(&fleet, &db.store, host).await;
    let (_, view) = fleet.snapshot().remove(0);
    assert_eq!(view.containers.len(), 2);
    assert_eq!(view.info.as_ref().unwrap().cpus, 2);
    assert!(view.containers[ID_WEB].is_running());
}

#[tokio::test]
async fn allow_listed_docker_labels_are_exported_escaped() {
    let fleet = Fleet::new(MetricsConfig {
        labels: vec!["team".into(), "com.docker.compose.project".into()],
        ..MetricsConfig::default()
    })
    .await;
    fleet.commit(vec![
        inventory(vec![web()]),
        Record::Stats(sample(ID_WEB, "web", vec![])),
    ]);
    let cpu = fleet.series("container_cpu_usage_seconds_total");
    assert!(
        cpu[0].contains(r#"container_label_team="a \"quoted\\\" value\nwith a newline, ünïcode""#),
        "{cpu:?}"
    );
    assert!(!cpu[0].contains("secret"), "only allow-listed labels");
    assert_eq!(
        cpu[0]
            .matches("container_label_com_docker_compose_project")
            .count(),
        1,
        "a label is never there twice"
    );
}

#[tokio::test]
async fn openmetrics_is_served_when_asked_for() {
    let fleet = Fleet::new(MetricsConfig::default()).await;
    fleet.commit(vec![
        inventory(vec![web()]),
        Record::Stats(sample(ID_WEB, "web", vec![])),
    ]);
    let om = fleet.render(Format::OpenMetrics);
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE container_cpu_usage_seconds counter\n"));
    assert!(om.contains("\ncontainer_cpu_usage_seconds_total{"));
    assert!(om.contains("# TYPE container_memory_failcnt unknown\n"));
    assert!(om.contains("# TYPE dockermon_ingest_commit_seconds histogram\n"));
    let text = fleet.render(Format::Text);
    assert!(!text.contains("# EOF"));
    assert!(text.contains("# TYPE container_cpu_usage_seconds_total counter\n"));
}

#[tokio::test]
async fn a_large_fleet_streams_in_bounded_chunks() {
    let fleet = Fleet::new(MetricsConfig::default()).await;
    let containers: Vec<_> = (0..2_000)
        .map(|i| container(&format!("{i:064x}"), &format!("c-{i:04}"), NOW))
        .collect();
    let samples = containers
        .iter()
        .map(|c| Record::Stats(sample(&c.id.0, &c.name, vec![])));
    let mut records = vec![Record::Host(host_info()), inventory(containers.clone())];
    records.extend(samples);
    fleet.commit(records);
    let chunks: Vec<String> = Renderer::new(fleet.endpoint.scrape(Format::Text)).collect();
    assert!(chunks.len() > 10, "{} chunks", chunks.len());
    // A chunk ends after at most one container's lines past the bound.
    assert!(chunks.iter().all(|c| c.len() < CHUNK_BYTES + 8 * 1024));
    let whole: String = chunks.concat();
    assert_eq!(
        whole.lines().count(),
        fleet.render(Format::Text).lines().count()
    );
    assert_eq!(
        whole
            .lines()
            .filter(|l| l.starts_with("container_cpu_usage_seconds_total{"))
            .count(),
        2_000
    );
    // Each family is one group: its TYPE line comes once, before all its samples.
    let mut seen = std::collections::HashSet::new();
    let mut current = String::new();
    for line in whole.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            current = rest.split(' ').next().unwrap().to_owned();
            assert!(seen.insert(current.clone()), "{current} declared twice");
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(
                name == current || name.starts_with(&format!("{current}_")),
                "{name} outside its family {current}"
            );
        }
    }
}

//! Records as an agent would send them, with fixed times, for store and API tests.

use std::collections::BTreeMap;

use dockermon_collector::store::{HostId, Store};
use dockermon_proto::{
    Container, ContainerId, ContainerState, DockerEvent, EventKind, HostInfo, HostName,
    InventoryUpdate, PROTOCOL_VERSION, Record, StatsCounters, StatsRates, StatsSample,
};

pub(crate) const S: i64 = 1_000_000_000;
/// A fixed, recent "now" so buckets and retention are exact: 2026-11-01T00:00:00Z.
pub(crate) const NOW: i64 = 1_793_491_200 * S;

pub(crate) fn host_info() -> HostInfo {
    HostInfo {
        time_ns: NOW,
        agent_version: "0.1.0".into(),
        protocol_version: PROTOCOL_VERSION,
        engine_id: "ENGINE:1".into(),
        hostname: "docker-1".into(),
        docker_version: "20.10.24".into(),
        api_version: "1.41".into(),
        os: "Debian GNU/Linux 12".into(),
        os_type: "linux".into(),
        kernel_version: "6.1".into(),
        architecture: "x86_64".into(),
        cpus: 2,
        memory_bytes: 24 << 30,
        cgroup_version: 1,
        cgroup_driver: "cgroupfs".into(),
        storage_driver: "overlay2".into(),
        stats_source: "docker".into(),
        containers: 1,
        containers_running: 1,
        containers_paused: 0,
        containers_stopped: 0,
        images: 1,
    }
}

pub(crate) fn container(docker_id: &str, name: &str, created_ns: i64) -> Container {
    Container {
        id: ContainerId::from(docker_id),
        name: name.into(),
        image: "nginx:1.27".into(),
        image_id: "sha256:img".into(),
        created_ns,
        state: ContainerState::Running,
        health: None,
        restart_count: 0,
        exit_code: None,
        started_at_ns: Some(created_ns + S),
        finished_at_ns: None,
        compose: None,
        labels: BTreeMap::from([("tier".into(), "front".into())]),
        ports: vec![],
        mounts: vec![],
        networks: vec![],
        oom_killed: false,
        restart_policy: None,
        network_mode: None,
        resources: None,
        truncated: Default::default(),
    }
}

pub(crate) fn sample(
    docker_id: &str,
    name: &str,
    time_ns: i64,
    cpu: Option<f64>,
    memory: u64,
) -> StatsSample {
    StatsSample {
        time_ns,
        container_id: ContainerId::from(docker_id),
        name: name.into(),
        counters: StatsCounters {
            cpu_total_ns: (time_ns / 1000) as u64,
            cpu_system_ns: 1,
            online_cpus: 2,
            memory_usage_bytes: memory,
            memory_working_set_bytes: memory / 2,
            memory_limit_bytes: 1 << 30,
            pids: memory % 7,
            ..Default::default()
        },
        rates: cpu.map(|cpu_percent| StatsRates {
            interval_ns: 30 * S,
            cpu_percent,
            net_rx_bytes_per_s: cpu_percent * 10.0,
            net_tx_bytes_per_s: 1.0,
            block_read_bytes_per_s: 0.0,
            block_write_bytes_per_s: cpu_percent / 3.0,
        }),
    }
}

pub(crate) fn event(time_ns: i64, action: &str, actor: &str) -> DockerEvent {
    DockerEvent {
        time_ns,
        kind: EventKind::Container,
        action: action.into(),
        actor_id: actor.into(),
        actor_name: Some("web".into()),
        attributes: BTreeMap::from([("image".into(), "nginx:1.27".into())]),
        scope: Some("local".into()),
    }
}

pub(crate) fn inventory(full: bool, containers: Vec<Container>) -> Record {
    Record::Inventory(InventoryUpdate {
        time_ns: NOW,
        full,
        containers,
        ..Default::default()
    })
}

pub(crate) async fn host(store: &Store, name: &str) -> HostId {
    store
        .register_host(&HostName::new(name).unwrap())
        .await
        .unwrap()
}

pub(crate) async fn ingest(store: &Store, host: HostId, records: &[Record]) {
    store.ingest(&[(host, records)]).await.unwrap();
}

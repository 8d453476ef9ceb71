//! What `/metrics` knows of the hosts whose agents are connected to this replica: their
//! engine, containers (as the agents describe them) with each one's latest sample, disk
//! usage and delivery figures. Kept in memory, updated from committed batches (the live
//! bus) and, when an agent connects, loaded from the store, so a collector that restarted
//! shows a host's containers before their first new sample arrives.
//!
//! Each host's view is an `Arc` replaced on write (copy on write), so a scrape takes a
//! snapshot under a lock held for microseconds and renders it while ingest goes on.
//!
//! Freshness: a removed container leaves the view with its removal (the next scrape no
//! longer shows it); a host whose agent disconnected keeps its container series for
//! [`MetricsConfig::detached_grace`] (a reconnect within it shows no gap), then they go.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dockermon_proto::transport::Dropped;
use dockermon_proto::{
    Container, ContainerResources, ContainerState, Health, HostInfo, HostName, InventoryUpdate,
    ObjectKind, Record, StatsCounters,
};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::encode::{LabelSet, docker_label_name};
use crate::live::{LiveBatch, LiveBus, LiveUpdate};
use crate::store::{HostId, Store, UsageRow};

/// What `/metrics` exports and how long it remembers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Docker label keys exported as `container_label_*` (compose project and service
    /// always are). cAdvisor exports every label, and its users fight the cardinality.
    pub labels: Vec<String>,
    /// How long a disconnected host's container series stay.
    pub detached_grace: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            labels: Vec::new(),
            detached_grace: Duration::from_secs(30),
        }
    }
}

/// One container as `/metrics` shows it. A replica holds one per container of every agent
/// attached to it (500,000 at 10,000 agents × 50), so it keeps only what the series need:
/// the label set rendered once, a few inventory facts and the latest counters.
#[derive(Debug, Clone)]
pub struct ContainerView {
    /// As the agent last described it (`None` for a container known only by a sample).
    pub container: Option<ContainerFacts>,
    /// `id`, `name`, `image`, `container`, `host`, `instance` and the exported Docker labels.
    pub labels: LabelSet,
    pub sample: Option<Arc<LatestSample>>,
    /// Bytes of its writable layer, from the latest disk usage.
    pub fs_usage_bytes: Option<u64>,
}

/// What the container series need of a container's inventory ([`Container`], from Docker's
/// inspect); its name, image and labels are in the view's label set already, and its ports,
/// mounts and networks are not exported.
#[derive(Debug, Clone)]
pub struct ContainerFacts {
    pub state: ContainerState,
    pub health: Option<Health>,
    pub restart_count: u32,
    pub exit_code: Option<i64>,
    /// `State.StartedAt`, ns since the epoch.
    pub started_at_ns: Option<i64>,
    /// `State.OOMKilled`.
    pub oom_killed: bool,
    /// Limits and cgroup parent from `HostConfig`.
    pub resources: Option<ContainerResources>,
}

impl From<&Container> for ContainerFacts {
    fn from(container: &Container) -> Self {
        ContainerFacts {
            state: container.state,
            health: container.health,
            restart_count: container.restart_count,
            exit_code: container.exit_code,
            started_at_ns: container.started_at_ns,
            oom_killed: container.oom_killed,
            resources: container.resources.clone(),
        }
    }
}

/// A container's latest sample without what the view knows already (its Docker id and
/// name) or does not export (the agent's rates).
#[derive(Debug, Clone)]
pub struct LatestSample {
    /// When the agent read it, ns since the epoch.
    pub time_ns: i64,
    pub counters: StatsCounters,
}

impl ContainerView {
    pub fn state(&self) -> Option<ContainerState> {
        self.container.as_ref().map(|c| c.state)
    }

    /// cAdvisor exports resource series for running containers only.
    pub fn is_running(&self) -> bool {
        matches!(
            self.state(),
            Some(ContainerState::Running | ContainerState::Paused)
        )
    }
}

/// One host as `/metrics` shows it.
#[derive(Debug, Clone)]
pub struct HostView {
    pub id: HostId,
    pub name: HostName,
    /// `host` and `instance`, both the host's name: for series about the machine, which
    /// dashboards select by `instance`.
    pub labels: LabelSet,
    /// `host` alone: for the collector's own series about the host.
    pub host_labels: LabelSet,
    pub info: Option<HostInfo>,
    /// By Docker id.
    pub containers: BTreeMap<Box<str>, ContainerView>,
    pub images: usize,
    pub usage: Option<UsageRow>,
    /// What the agent's spool dropped, as it last said.
    pub dropped: Dropped,
    /// When its agent last delivered anything.
    pub last_report: Instant,
    /// The session this view belongs to; `None` once it ended.
    connection: Option<u64>,
    detached_at: Option<Instant>,
}

impl HostView {
    fn new(id: HostId, name: HostName, connection: u64) -> Self {
        let labels = LabelSet::new([("host", name.as_str()), ("instance", name.as_str())]);
        let host_labels = LabelSet::new([("host", name.as_str())]);
        HostView {
            id,
            name,
            labels,
            host_labels,
            info: None,
            containers: BTreeMap::new(),
            images: 0,
            usage: None,
            dropped: Dropped::default(),
            last_report: Instant::now(),
            connection: Some(connection),
            detached_at: None,
        }
    }

    /// Whether its agent is attached here now.
    pub fn attached(&self) -> bool {
        self.connection.is_some()
    }
}

/// How often the list of every known host (for `dockermon_host_up 0`) is read again.
const KNOWN_HOSTS_EVERY: Duration = Duration::from_secs(30);

pub struct FleetMetrics {
    config: MetricsConfig,
    hosts: Mutex<HashMap<HostId, Arc<HostView>>>,
    /// Every host in the store, as of the last read.
    known: Mutex<Vec<(HostId, String)>>,
}

impl FleetMetrics {
    pub fn new(config: MetricsConfig) -> Self {
        FleetMetrics {
            config,
            hosts: Mutex::default(),
            known: Mutex::default(),
        }
    }

    /// `host` labels of the known hosts that `shown` does not include and whose agent is
    /// not `connected_elsewhere` (to another replica): down.
    pub fn down_hosts(
        &self,
        shown: &[super::HostEntry],
        connected_elsewhere: impl Fn(HostId) -> bool,
    ) -> Vec<LabelSet> {
        let known = self.known.lock().expect("known hosts lock");
        known
            .iter()
            .filter(|(id, _)| !shown.iter().any(|entry| entry.view.id == *id))
            .filter(|(id, _)| !connected_elsewhere(*id))
            .map(|(_, name)| LabelSet::new([("host", name.as_str())]))
            .collect()
    }

    pub fn config(&self) -> &MetricsConfig {
        &self.config
    }

    fn hosts(&self) -> std::sync::MutexGuard<'_, HashMap<HostId, Arc<HostView>>> {
        self.hosts.lock().expect("fleet metrics lock")
    }

    /// An agent's session `connection` started: its host's view is loaded from the store
    /// (what earlier sessions committed), then follows what this session commits.
    pub async fn attach(
        &self,
        store: &Store,
        host: HostId,
        name: &HostName,
        connection: u64,
    ) -> crate::store::Result<()> {
        let row = store.host(host).await?;
        let containers = store.current_containers_of(host).await?;
        let usage = store.latest_usage(host).await?;
        let mut view = HostView::new(host, name.clone(), connection);
        view.info = row.info;
        for container in containers.iter().filter_map(|row| row.detail.as_ref()) {
            self.upsert(&mut view, container);
        }
        view.usage = usage;
        apply_usage_to_containers(&mut view);
        self.hosts().insert(host, Arc::new(view));
        Ok(())
    }

    /// Session `connection` of `host` ended (a newer one of the same host is left alone).
    pub fn detach(&self, host: HostId, connection: u64) {
        if let Some(view) = self.hosts().get_mut(&host)
            && view.connection == Some(connection)
        {
            let view = Arc::make_mut(view);
            view.connection = None;
            view.detached_at = Some(Instant::now());
        }
    }

    /// The hosts to show now, by name; views detached for longer than the grace are
    /// forgotten.
    pub fn snapshot(&self) -> Vec<(HostId, Arc<HostView>)> {
        let grace = self.config.detached_grace;
        let mut hosts = self.hosts();
        hosts.retain(|_, view| view.detached_at.is_none_or(|at| at.elapsed() < grace));
        let mut views: Vec<(HostId, Arc<HostView>)> =
            hosts.iter().map(|(id, view)| (*id, view.clone())).collect();
        drop(hosts);
        views.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        views
    }

    /// Applies what one host's agent committed.
    pub fn apply(&self, batch: &LiveBatch) {
        let mut hosts = self.hosts();
        let Some(view) = hosts.get_mut(&batch.host) else {
            // Not attached here: another replica's, or a session that just ended.
            return;
        };
        let view = Arc::make_mut(view);
        view.last_report = Instant::now();
        view.dropped = batch.dropped;
        for record in &batch.records {
            match record {
                Record::Host(info) => view.info = Some(info.clone()),
                Record::Inventory(update) => self.apply_inventory(view, update),
                Record::Stats(sample) => {
                    let latest = Arc::new(LatestSample {
                        time_ns: sample.time_ns,
                        counters: sample.counters.clone(),
                    });
                    let id = sample.container_id.as_str();
                    if let Some(entry) = view.containers.get_mut(id) {
                        // A sample replayed from an agent's spool may arrive after a newer
                        // one: the gauges show the newest.
                        if entry
                            .sample
                            .as_ref()
                            .is_none_or(|s| s.time_ns <= latest.time_ns)
                        {
                            entry.sample = Some(latest);
                        }
                    } else {
                        let labels = self.labels_of(view, None, id, &sample.name);
                        view.containers.insert(
                            id.into(),
                            ContainerView {
                                container: None,
                                labels,
                                sample: Some(latest),
                                fs_usage_bytes: None,
                            },
                        );
                    }
                }
                Record::Usage(usage) => {
                    view.usage = Some(UsageRow::from_record(batch.host, usage));
                    apply_usage_to_containers(view);
                }
                Record::Event(_) | Record::Profile(_) => {}
            }
        }
    }

    fn apply_inventory(&self, view: &mut HostView, update: &InventoryUpdate) {
        if update.full {
            let current: HashSet<&str> = update.containers.iter().map(|c| c.id.as_str()).collect();
            view.containers.retain(|id, _| current.contains(&**id));
            view.images = update.images.len();
        } else {
            view.images += update.images.len();
        }
        for container in &update.containers {
            self.upsert(view, container);
        }
        for removed in &update.removed {
            match removed.kind {
                ObjectKind::Container => {
                    view.containers.remove(removed.id.as_str());
                }
                ObjectKind::Image => view.images = view.images.saturating_sub(1),
                ObjectKind::Volume | ObjectKind::Network => {}
            }
        }
    }

    fn upsert(&self, view: &mut HostView, container: &Container) {
        let labels = self.labels_of(view, Some(container), &container.id.0, &container.name);
        let entry = view
            .containers
            .entry(container.id.0.as_str().into())
            .or_insert_with(|| ContainerView {
                container: None,
                labels: LabelSet::default(),
                sample: None,
                fs_usage_bytes: None,
            });
        entry.labels = labels;
        entry.container = Some(ContainerFacts::from(container));
    }

    /// A container's labels, rendered once per inventory change.
    fn labels_of(
        &self,
        view: &HostView,
        container: Option<&Container>,
        docker_id: &str,
        name: &str,
    ) -> LabelSet {
        let host = &view.name;
        let driver = view.info.as_ref().map(|i| i.cgroup_driver.as_str());
        let id = cgroup_id(driver, container, docker_id);
        let image = container.map(|c| c.image.as_str()).unwrap_or_default();
        let compose = container.and_then(|c| c.compose.as_ref());
        let mut labels: Vec<(String, String)> = vec![
            ("id".into(), id),
            ("name".into(), name.to_owned()),
            ("image".into(), image.to_owned()),
            ("container".into(), name.to_owned()),
            ("host".into(), host.as_str().to_owned()),
            ("instance".into(), host.as_str().to_owned()),
        ];
        if let Some(compose) = compose {
            labels.push((
                "container_label_com_docker_compose_project".into(),
                compose.project.clone(),
            ));
            labels.push((
                "container_label_com_docker_compose_service".into(),
                compose.service.clone(),
            ));
        }
        if let Some(container) = container {
            for key in &self.config.labels {
                let label = docker_label_name(key);
                if let Some(value) = container.labels.get(key)
                    && !labels.iter().any(|(name, _)| *name == label)
                {
                    labels.push((label, value.clone()));
                }
            }
        }
        LabelSet::new(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// Follows committed batches, and keeps the list of known hosts, until `cancel` fires.
    pub async fn run(self: Arc<Self>, live: LiveBus, store: Store, cancel: CancellationToken) {
        let mut updates = live.subscribe();
        let mut known_hosts = tokio::time::interval(KNOWN_HOSTS_EVERY);
        loop {
            let update = tokio::select! {
                () = cancel.cancelled() => return,
                _ = known_hosts.tick() => {
                    match cancel.run_until_cancelled(store.hosts()).await {
                        None => return,
                        Some(Ok(hosts)) => {
                            *self.known.lock().expect("known hosts lock") =
                                hosts.into_iter().map(|h| (h.id, h.name)).collect();
                        }
                        Some(Err(error)) => debug!(%error, "cannot read the known hosts"),
                    }
                    continue;
                }
                update = updates.recv() => update,
            };
            match update {
                Ok(update) => {
                    if let LiveUpdate::Committed(batch) = update.as_ref() {
                        self.apply(batch);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    // Stats are replaced by the next sweep; inventory is repaired by the
                    // next change or the next session's load.
                    debug!(missed, "metrics missed live updates");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// The writable-layer size of each container, from the host's latest disk usage.
fn apply_usage_to_containers(view: &mut HostView) {
    let Some(usage) = &view.usage else { return };
    let sizes: HashMap<&str, u64> = usage
        .detail
        .get("per_container")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                c.get("container_id")?.as_str()?,
                c.get("size_rw_bytes")?.as_u64()?,
            ))
        })
        .collect();
    for (id, container) in &mut view.containers {
        container.fs_usage_bytes = sizes.get(&**id).copied();
    }
}

/// cAdvisor's `id` label: the container's cgroup path. Docker puts a container in
/// `/docker/<id>` with the cgroupfs driver and in `/system.slice/docker-<id>.scope` with
/// systemd (`driver`, from the engine's info), under its `--cgroup-parent` when one is set.
pub fn cgroup_id(driver: Option<&str>, container: Option<&Container>, docker_id: &str) -> String {
    let parent = container
        .and_then(|c| c.resources.as_ref())
        .and_then(|r| r.cgroup_parent.as_deref());
    match (driver, parent) {
        (_, Some(parent)) if parent.ends_with(".slice") => {
            format!(
                "/{}/docker-{docker_id}.scope",
                parent.trim_start_matches('/')
            )
        }
        (_, Some(parent)) => format!("/{}/{docker_id}", parent.trim_matches('/')),
        (Some("systemd"), None) => format!("/system.slice/docker-{docker_id}.scope"),
        (_, None) => format!("/docker/{docker_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_ids_follow_the_driver_and_parent() {
        let mut container = container();
        assert_eq!(
            cgroup_id(Some("cgroupfs"), Some(&container), "abc"),
            "/docker/abc"
        );
        assert_eq!(cgroup_id(None, None, "abc"), "/docker/abc");
        assert_eq!(
            cgroup_id(Some("systemd"), Some(&container), "abc"),
            "/system.slice/docker-abc.scope"
        );
        container.resources = Some(dockermon_proto::ContainerResources {
            cgroup_parent: Some("/tenants/a".into()),
            ..Default::default()
        });
        assert_eq!(
            cgroup_id(Some("cgroupfs"), Some(&container), "abc"),
            "/tenants/a/abc"
        );
        container.resources = Some(dockermon_proto::ContainerResources {
            cgroup_parent: Some("batch.slice".into()),
            ..Default::default()
        });
        assert_eq!(
            cgroup_id(Some("systemd"), Some(&container), "abc"),
            "/batch.slice/docker-abc.scope"
        );
    }

    pub(crate) fn container() -> Container {
        Container {
            id: dockermon_proto::ContainerId::from("abc"),
            name: "web".into(),
            image: "nginx:1.27".into(),
            image_id: "sha256:feed".into(),
            created_ns: 1,
            state: ContainerState::Running,
            health: None,
            restart_count: 0,
            exit_code: None,
            started_at_ns: Some(2),
            finished_at_ns: None,
            compose: None,
            labels: BTreeMap::new(),
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
}

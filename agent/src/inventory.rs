//! The host's inventory: a full snapshot at start and after every gap in the events
//! stream, change sets driven by events in between, and a cheap reconciliation for what
//! Docker does not announce.
//!
//! The events watcher sends [`Hint`]s naming what an event may have changed; this task
//! re-reads those containers (a 404 means removed), batching the hints that arrived
//! together into one change set. Images, volumes and networks are re-listed as a whole when
//! an event names one of their kind, because Docker changes some without saying so: a
//! `docker build` that moves a tag to a new image sends no `untag` for the old one, and
//! prunes name no object. Every [`RECONCILE_EVERY`] the same lists (and the container list)
//! are compared with what was last sent, so whatever was still missed is repaired within
//! that time: list calls only, no inspect unless a container's state differs.
//!
//! The task also owns the host record (sent with every full snapshot) and publishes the
//! set of running containers the stats sweeper samples.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptions, ListImagesOptions, ListNetworksOptions,
    ListVolumesOptions,
};
use dockermon_proto::{
    Container, ContainerId, ContainerState, Image, InventoryUpdate, Network, ObjectKind, ObjectRef,
    Record, Volume, now_ns,
};
use futures::{StreamExt, TryStreamExt, stream};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::backoff::{Backoff, sleep_unless_cancelled};
use crate::docker::{
    Docker, container_from_inspect, image_from_summary, is_not_found, network_from_summary,
    root_cause, volume_from,
};
use crate::host;

/// Concurrent inspects during a full snapshot.
const SNAPSHOT_CONCURRENCY: usize = 8;
/// Most hints folded into one change set.
const MAX_HINTS_PER_BATCH: usize = 256;
/// How often the lists are compared with what was last sent.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(60);

/// What the events watcher tells the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Hint {
    /// This object may have changed or gone.
    Changed(ObjectRef),
    /// The engine itself changed (daemon event): re-read the host record.
    Host,
    /// Events may have been missed: rebuild everything.
    Resync,
}

/// A container the stats sweeper should sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub id: ContainerId,
    pub name: String,
    /// Distinguishes runs of one container: counters restart with each run.
    pub started_at_ns: Option<i64>,
    /// Docker's network mode: whether the container has network counters of its own.
    pub network_mode: Option<String>,
    /// Its init process in the host's PID namespace (`State.Pid`): where the direct
    /// counter reader ([`crate::cgroup`]) finds its cgroup and network namespace.
    pub pid: Option<u32>,
}

pub type RunningSet = Arc<Vec<Running>>;

pub struct Inventory {
    docker: Docker,
    records: mpsc::Sender<Record>,
    running: watch::Sender<RunningSet>,
    /// What was last sent, by id (images, networks) or name (volumes).
    containers: HashMap<ContainerId, Container>,
    /// Where stats come from, for the host record.
    stats_source: &'static str,
    /// Init process ids of running containers (not sent: they mean nothing off this host).
    pids: HashMap<ContainerId, u32>,
    images: HashMap<String, Image>,
    volumes: HashMap<String, Volume>,
    networks: HashMap<String, Network>,
}

/// The kinds whose lists a change set re-reads.
#[derive(Debug, Default, Clone, Copy)]
struct Relist {
    images: bool,
    volumes: bool,
    networks: bool,
}

impl Inventory {
    /// `stats_source`: what the host record says stats come from ([`crate::stats::CounterSource::name`]).
    pub fn new(
        docker: Docker,
        records: mpsc::Sender<Record>,
        running: watch::Sender<RunningSet>,
        stats_source: &'static str,
    ) -> Self {
        Inventory {
            docker,
            records,
            running,
            containers: HashMap::new(),
            stats_source,
            pids: HashMap::new(),
            images: HashMap::new(),
            volumes: HashMap::new(),
            networks: HashMap::new(),
        }
    }

    /// Runs until `cancel` fires or the record channel closes.
    pub async fn run(mut self, mut hints: mpsc::Receiver<Hint>, cancel: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let mut need_resync = true;
        let mut reconcile = tokio::time::interval(RECONCILE_EVERY);
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reconcile.reset();
        loop {
            if need_resync {
                match self.resync().await {
                    Ok(sent) => {
                        if !sent {
                            return;
                        }
                        need_resync = false;
                        backoff.reset();
                    }
                    Err(error) => {
                        warn!(%error, "inventory snapshot failed; retrying");
                        if !sleep_unless_cancelled(backoff.next_delay(), &cancel).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let first = tokio::select! {
                () = cancel.cancelled() => return,
                hint = hints.recv() => match hint {
                    Some(hint) => hint,
                    None => return,
                },
                _ = reconcile.tick() => {
                    match self.reconcile().await {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(error) => debug!(error = %root_cause(&error), "inventory reconciliation failed"),
                    }
                    continue;
                }
            };
            let mut batch = HashSet::from([first]);
            while batch.len() < MAX_HINTS_PER_BATCH {
                match hints.try_recv() {
                    Ok(hint) => {
                        batch.insert(hint);
                    }
                    Err(_) => break,
                }
            }
            if batch.contains(&Hint::Resync) {
                need_resync = true;
                continue;
            }
            if batch.remove(&Hint::Host) && !self.send_host().await {
                return;
            }
            match self.refresh(batch).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => {
                    // Docker stopped answering mid-refresh: the events watcher will see
                    // the same and ask for a resync once Docker is back.
                    debug!(%error, "inventory refresh failed");
                }
            }
        }
    }

    async fn send(&self, record: Record) -> bool {
        self.records.send(record).await.is_ok()
    }

    async fn send_host(&self) -> bool {
        match host::host_info(&self.docker, self.stats_source).await {
            Ok(info) => self.send(Record::Host(info)).await,
            Err(error) => {
                warn!(error = %root_cause(&error), "cannot read docker host info");
                true
            }
        }
    }

    /// Reads everything and sends the host record and a full inventory. Ok(false) when
    /// the record channel is closed.
    async fn resync(&mut self) -> Result<bool, bollard::errors::Error> {
        let docker = &self.docker;
        let api = &docker.api;
        let info = host::host_info(&self.docker, self.stats_source).await?;
        let listed = api
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await?;
        let inspected: Vec<(Container, Option<u32>)> =
            stream::iter(listed.into_iter().filter_map(|c| c.id))
                .map(|id| async move { inspect_container(docker, &id).await })
                .buffer_unordered(SNAPSHOT_CONCURRENCY)
                .try_filter_map(|c| async move { Ok(c) })
                .try_collect()
                .await?;
        self.pids = inspected
            .iter()
            .filter_map(|(c, pid)| Some((c.id.clone(), (*pid)?)))
            .collect();
        let containers: Vec<Container> = inspected.into_iter().map(|(c, _)| c).collect();
        let images = list_images(docker).await?;
        let volumes = list_volumes(docker).await?;
        let networks = list_networks(docker).await?;

        self.containers = containers
            .iter()
            .map(|c| (c.id.clone(), c.clone()))
            .collect();
        self.images = by_id(&images, |i| &i.id);
        self.volumes = by_id(&volumes, |v| &v.name);
        self.networks = by_id(&networks, |n| &n.id);
        let snapshot = InventoryUpdate {
            time_ns: now_ns(),
            full: true,
            containers,
            images,
            volumes,
            networks,
            removed: Vec::new(),
        };
        let sent =
            self.send(Record::Host(info)).await && self.send(Record::Inventory(snapshot)).await;
        // After the snapshot is queued, so no sample of a container precedes its description.
        // Always announced, even when unchanged: the stats sweeper starts on the first one.
        let running = self.running_containers();
        self.running.send_replace(Arc::new(running));
        Ok(sent)
    }

    /// Re-reads the hinted objects and sends one change set. Ok(false) when the record
    /// channel is closed.
    async fn refresh(&mut self, hints: HashSet<Hint>) -> Result<bool, bollard::errors::Error> {
        let mut update = InventoryUpdate {
            time_ns: now_ns(),
            ..Default::default()
        };
        let mut relist = Relist::default();
        for hint in hints {
            let Hint::Changed(object) = hint else {
                continue;
            };
            match object.kind {
                ObjectKind::Container => self.reread_container(&object.id, &mut update).await?,
                ObjectKind::Image => relist.images = true,
                ObjectKind::Volume => relist.volumes = true,
                ObjectKind::Network => relist.networks = true,
            }
        }
        self.relist(relist, &mut update).await?;
        self.send_update(update).await
    }

    /// Compares every list with what was last sent and sends what differs: the repair for
    /// changes Docker did not announce, or whose events were lost.
    async fn reconcile(&mut self) -> Result<bool, bollard::errors::Error> {
        let mut update = InventoryUpdate {
            time_ns: now_ns(),
            ..Default::default()
        };
        let listed = self
            .docker
            .api
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await?;
        let mut present = HashSet::new();
        for summary in listed {
            let Some(id) = summary.id else { continue };
            let known_state = self
                .containers
                .get(&ContainerId(id.clone()))
                .map(|c| c.state.as_str());
            let listed_state = summary.state.map(|s| s.to_string());
            if known_state.is_none() || known_state != listed_state.as_deref() {
                self.reread_container(&id, &mut update).await?;
            }
            present.insert(ContainerId(id));
        }
        let gone: Vec<ContainerId> = self
            .containers
            .keys()
            .filter(|id| !present.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.reread_container(id.as_str(), &mut update).await?;
        }
        let all = Relist {
            images: true,
            volumes: true,
            networks: true,
        };
        self.relist(all, &mut update).await?;
        if !update.is_empty() {
            debug!(
                containers = update.containers.len(),
                images = update.images.len(),
                volumes = update.volumes.len(),
                networks = update.networks.len(),
                removed = update.removed.len(),
                "reconciliation found changes no event announced"
            );
        }
        self.send_update(update).await
    }

    /// Re-reads one container into `update`: its description, or its removal.
    async fn reread_container(
        &mut self,
        id: &str,
        update: &mut InventoryUpdate,
    ) -> Result<(), bollard::errors::Error> {
        let inspected = inspect_container(&self.docker, id).await?;
        match &inspected {
            Some((container, Some(pid))) => self.pids.insert(container.id.clone(), *pid),
            Some((container, None)) => self.pids.remove(&container.id),
            None => self.pids.remove(&ContainerId(id.to_owned())),
        };
        match inspected.map(|(container, _)| container) {
            // Several events of one change (`docker run`: create, network connect, start)
            // re-read the same state: what was sent already is not sent again.
            Some(container) if self.containers.get(&container.id) == Some(&container) => {}
            Some(container) => {
                self.containers
                    .insert(container.id.clone(), container.clone());
                update.containers.push(container);
            }
            None => {
                self.containers.remove(&ContainerId(id.to_owned()));
                update.removed.push(ObjectRef {
                    kind: ObjectKind::Container,
                    id: id.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Re-lists the kinds asked for and adds to `update` what differs from what was sent.
    async fn relist(
        &mut self,
        relist: Relist,
        update: &mut InventoryUpdate,
    ) -> Result<(), bollard::errors::Error> {
        let docker = &self.docker;
        if relist.images {
            let listed = list_images(docker).await?;
            let (changed, removed) = diff(&mut self.images, listed, |i| &i.id, ObjectKind::Image);
            update.images.extend(changed);
            update.removed.extend(removed);
        }
        if relist.volumes {
            let listed = list_volumes(docker).await?;
            let (changed, removed) =
                diff(&mut self.volumes, listed, |v| &v.name, ObjectKind::Volume);
            update.volumes.extend(changed);
            update.removed.extend(removed);
        }
        if relist.networks {
            let listed = list_networks(docker).await?;
            let (changed, removed) =
                diff(&mut self.networks, listed, |n| &n.id, ObjectKind::Network);
            update.networks.extend(changed);
            update.removed.extend(removed);
        }
        Ok(())
    }

    /// Sends a change set (unless empty), then publishes the running set. Ok(false) when
    /// the record channel is closed.
    async fn send_update(
        &mut self,
        update: InventoryUpdate,
    ) -> Result<bool, bollard::errors::Error> {
        // The change set first: no sample of a container that just started may precede the
        // record saying it runs (the collector decides its identity from that record).
        let sent = update.is_empty() || self.send(Record::Inventory(update)).await;
        self.publish_running();
        Ok(sent)
    }

    fn running_containers(&self) -> Vec<Running> {
        let mut running: Vec<Running> = self
            .containers
            .values()
            .filter(|c| matches!(c.state, ContainerState::Running | ContainerState::Paused))
            .map(|c| Running {
                id: c.id.clone(),
                name: c.name.clone(),
                started_at_ns: c.started_at_ns,
                network_mode: c.network_mode.clone(),
                pid: self.pids.get(&c.id).copied(),
            })
            .collect();
        running.sort_by(|a, b| a.id.cmp(&b.id));
        running
    }

    fn publish_running(&self) {
        let running = self.running_containers();
        self.running.send_if_modified(|current| {
            if **current == running {
                return false;
            }
            *current = Arc::new(running);
            true
        });
    }
}

async fn list_images(docker: &Docker) -> Result<Vec<Image>, bollard::errors::Error> {
    Ok(docker
        .api
        .list_images(Some(ListImagesOptions::default()))
        .await?
        .into_iter()
        .map(image_from_summary)
        .collect())
}

async fn list_volumes(docker: &Docker) -> Result<Vec<Volume>, bollard::errors::Error> {
    Ok(docker
        .api
        .list_volumes(None::<ListVolumesOptions>)
        .await?
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(volume_from)
        .collect())
}

async fn list_networks(docker: &Docker) -> Result<Vec<Network>, bollard::errors::Error> {
    Ok(docker
        .api
        .list_networks(None::<ListNetworksOptions>)
        .await?
        .into_iter()
        .filter_map(network_from_summary)
        .collect())
}

fn by_id<T: Clone>(objects: &[T], id: impl Fn(&T) -> &String) -> HashMap<String, T> {
    objects.iter().map(|o| (id(o).clone(), o.clone())).collect()
}

/// What of `listed` differs from `known` (new or changed objects) and which known ones are
/// no longer listed; `known` becomes `listed`.
fn diff<T: Clone + PartialEq>(
    known: &mut HashMap<String, T>,
    listed: Vec<T>,
    id: impl Fn(&T) -> &String,
    kind: ObjectKind,
) -> (Vec<T>, Vec<ObjectRef>) {
    let listed = by_id(&listed, &id);
    let changed = listed
        .iter()
        .filter(|(key, object)| known.get(*key) != Some(*object))
        .map(|(_, object)| object.clone())
        .collect();
    let removed = known
        .keys()
        .filter(|key| !listed.contains_key(*key))
        .map(|key| ObjectRef {
            kind,
            id: key.clone(),
        })
        .collect();
    *known = listed;
    (changed, removed)
}

/// Inspects one container, with its init process id while it runs (`State.Pid`, 0 when
/// not running); `None` when it no longer exists.
async fn inspect_container(
    docker: &Docker,
    id: &str,
) -> Result<Option<(Container, Option<u32>)>, bollard::errors::Error> {
    match docker
        .api
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
    {
        Ok(inspect) => {
            let pid = inspect
                .state
                .as_ref()
                .and_then(|state| state.pid)
                .and_then(|pid| u32::try_from(pid).ok())
                .filter(|pid| *pid > 0);
            Ok(container_from_inspect(inspect).map(|container| (container, pid)))
        }
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, tags: &[&str]) -> Image {
        Image {
            id: id.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            size_bytes: 1,
            created_ns: 1,
            labels: Default::default(),
            truncated: Default::default(),
        }
    }

    #[test]
    fn a_moved_tag_reaches_both_images() {
        let mut known = by_id(&[image("sha256:old", &["x:5"])], |i| &i.id);
        // `docker build -t x:5` again: a new image takes the tag, the old one is dangling,
        // and Docker announced only the new one.
        let (changed, removed) = diff(
            &mut known,
            vec![image("sha256:old", &[]), image("sha256:new", &["x:5"])],
            |i| &i.id,
            ObjectKind::Image,
        );
        let mut changed: Vec<_> = changed.into_iter().map(|i| (i.id, i.tags)).collect();
        changed.sort();
        assert_eq!(
            changed,
            [
                ("sha256:new".to_string(), vec!["x:5".to_string()]),
                ("sha256:old".to_string(), vec![]),
            ]
        );
        assert!(removed.is_empty());
        // Nothing changed: nothing to send.
        let (changed, removed) = diff(
            &mut known,
            vec![image("sha256:old", &[]), image("sha256:new", &["x:5"])],
            |i| &i.id,
            ObjectKind::Image,
        );
        assert!(changed.is_empty() && removed.is_empty());
        // A pruned image is removed.
        let (changed, removed) = diff(
            &mut known,
            vec![image("sha256:new", &["x:5"])],
            |i| &i.id,
            ObjectKind::Image,
        );
        assert!(changed.is_empty());
        assert_eq!(
            removed,
            [ObjectRef {
                kind: ObjectKind::Image,
                id: "sha256:old".into()
            }]
        );
    }
}

//! The host's inventory: a full snapshot at start and after every gap in the events
//! stream, change sets driven by events in between. Lists are never polled.
//!
//! The events watcher sends [`Hint`]s naming what an event may have changed; this task
//! re-reads just those objects (a 404 means removed), batching the hints that arrived
//! together into one change set. It also owns the host record (sent with every full
//! snapshot) and publishes the set of running containers the stats sweeper samples.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptions, ListImagesOptions, ListNetworksOptions,
    ListVolumesOptions,
};
use dockermon_proto::{
    Container, ContainerId, ContainerState, InventoryUpdate, ObjectKind, ObjectRef, Record, now_ns,
};
use futures::{StreamExt, TryStreamExt, stream};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::backoff::{Backoff, sleep_unless_cancelled};
use crate::docker::{
    Docker, container_from_inspect, image_from_inspect, image_from_summary, is_not_found,
    network_from_inspect, network_from_summary, root_cause, volume_from,
};
use crate::host;

/// Concurrent inspects during a full snapshot.
const SNAPSHOT_CONCURRENCY: usize = 8;
/// Most hints folded into one change set.
const MAX_HINTS_PER_BATCH: usize = 256;

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
}

pub type RunningSet = Arc<Vec<Running>>;

pub struct Inventory {
    docker: Docker,
    records: mpsc::Sender<Record>,
    running: watch::Sender<RunningSet>,
    containers: HashMap<ContainerId, Container>,
}

impl Inventory {
    pub fn new(
        docker: Docker,
        records: mpsc::Sender<Record>,
        running: watch::Sender<RunningSet>,
    ) -> Self {
        Inventory {
            docker,
            records,
            running,
            containers: HashMap::new(),
        }
    }

    /// Runs until `cancel` fires or the record channel closes.
    pub async fn run(mut self, mut hints: mpsc::Receiver<Hint>, cancel: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let mut need_resync = true;
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
        match host::host_info(&self.docker).await {
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
        let info = host::host_info(&self.docker).await?;
        let listed = api
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await?;
        let containers: Vec<Container> = stream::iter(listed.into_iter().filter_map(|c| c.id))
            .map(|id| async move { inspect_container(docker, &id).await })
            .buffer_unordered(SNAPSHOT_CONCURRENCY)
            .try_filter_map(|c| async move { Ok(c) })
            .try_collect()
            .await?;
        let images = api
            .list_images(Some(ListImagesOptions::default()))
            .await?
            .into_iter()
            .map(image_from_summary)
            .collect();
        let volumes = api
            .list_volumes(None::<ListVolumesOptions>)
            .await?
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(volume_from)
            .collect();
        let networks = api
            .list_networks(None::<ListNetworksOptions>)
            .await?
            .into_iter()
            .filter_map(network_from_summary)
            .collect();

        self.containers = containers
            .iter()
            .map(|c| (c.id.clone(), c.clone()))
            .collect();
        // Always announced, even when unchanged: the stats sweeper starts on the first one.
        let running = self.running_containers();
        self.running.send_replace(Arc::new(running));
        let snapshot = InventoryUpdate {
            time_ns: now_ns(),
            full: true,
            containers,
            images,
            volumes,
            networks,
            removed: Vec::new(),
        };
        Ok(self.send(Record::Host(info)).await && self.send(Record::Inventory(snapshot)).await)
    }

    /// Re-reads the hinted objects and sends one change set. Ok(false) when the record
    /// channel is closed.
    async fn refresh(&mut self, hints: HashSet<Hint>) -> Result<bool, bollard::errors::Error> {
        let mut update = InventoryUpdate {
            time_ns: now_ns(),
            ..Default::default()
        };
        let api = &self.docker.api;
        for hint in hints {
            let Hint::Changed(object) = hint else {
                continue;
            };
            let gone = |update: &mut InventoryUpdate| update.removed.push(object.clone());
            match object.kind {
                ObjectKind::Container => match inspect_container(&self.docker, &object.id).await? {
                    Some(container) => {
                        self.containers
                            .insert(container.id.clone(), container.clone());
                        update.containers.push(container);
                    }
                    None => {
                        self.containers.remove(&ContainerId(object.id.clone()));
                        gone(&mut update);
                    }
                },
                ObjectKind::Image => match api.inspect_image(&object.id).await {
                    Ok(image) => update.images.extend(image_from_inspect(image)),
                    Err(error) if is_not_found(&error) => gone(&mut update),
                    Err(error) => return Err(error),
                },
                ObjectKind::Volume => match api.inspect_volume(&object.id).await {
                    Ok(volume) => update.volumes.push(volume_from(volume)),
                    Err(error) if is_not_found(&error) => gone(&mut update),
                    Err(error) => return Err(error),
                },
                ObjectKind::Network => match api.inspect_network(&object.id, None).await {
                    Ok(network) => update.networks.extend(network_from_inspect(network)),
                    Err(error) if is_not_found(&error) => gone(&mut update),
                    Err(error) => return Err(error),
                },
            }
        }
        self.publish_running();
        if update.is_empty() {
            return Ok(true);
        }
        Ok(self.send(Record::Inventory(update)).await)
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

/// Inspects one container; `None` when it no longer exists.
async fn inspect_container(
    docker: &Docker,
    id: &str,
) -> Result<Option<Container>, bollard::errors::Error> {
    match docker
        .api
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
    {
        Ok(inspect) => Ok(container_from_inspect(inspect)),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

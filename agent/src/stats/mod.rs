//! The stats sweeper: every interval, one one-shot stats request per running container,
//! at most `stats_concurrency` in flight, turned into counters plus rates since the
//! container's previous sample.
//!
//! A container that stops between the inventory and its request is skipped silently.
//! Rates are only computed between two samples of the same run of a container (same
//! start time): counters restart with every run.

mod counters;
mod devices;
mod rates;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::query_parameters::StatsOptions;
use dockermon_proto::{ContainerId, Record, StatsSample};
use futures::{StreamExt, stream};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub use counters::{Reading, has_own_network, reading_from};
pub use devices::DeviceNames;
pub use rates::rates;

use crate::config::CollectConfig;
use crate::docker::{Docker, is_gone_or_stopped, root_cause, with_timeout};
use crate::inventory::{Running, RunningSet};

/// The longest one stats request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs sweeps until `cancel` fires or the record channel closes.
pub async fn run(
    docker: Docker,
    mut settings: watch::Receiver<CollectConfig>,
    records: mpsc::Sender<Record>,
    mut running: watch::Receiver<RunningSet>,
    cancel: CancellationToken,
) {
    // The first sweep waits for the first inventory, so it is not an empty one.
    tokio::select! {
        () = cancel.cancelled() => return,
        changed = running.changed() => if changed.is_err() { return },
    }
    let mut config = settings.borrow_and_update().clone();
    let mut ticker = tokio::time::interval(config.stats_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut previous: HashMap<ContainerId, (Option<i64>, Reading)> = HashMap::new();
    let mut devices = DeviceNames::default();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
            changed = settings.changed() => {
                if changed.is_err() {
                    return;
                }
                let new = settings.borrow_and_update().clone();
                if new.stats_interval != config.stats_interval {
                    ticker = tokio::time::interval_at(tokio::time::Instant::now() + new.stats_interval, new.stats_interval);
                    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                }
                config = new;
                continue;
            }
        }
        let targets = running.borrow().clone();
        let started = Instant::now();
        let sweep = stream::iter(targets.iter().cloned())
            .map(|container| sample(&docker, container))
            .buffer_unordered(config.stats_concurrency)
            .collect::<Vec<_>>();
        let results = tokio::select! {
            () = cancel.cancelled() => return,
            results = sweep => results,
        };
        let mut readings = Vec::with_capacity(results.len());
        let mut failures = Vec::new();
        for result in results {
            match result {
                Ok(Some(reading)) => readings.push(reading),
                Ok(None) => {}
                Err(failure) => failures.push(failure),
            }
        }
        if let Some(first) = failures.first() {
            // One line per sweep, not one per container: when Docker is down, all fail.
            warn!(failed = failures.len(), first = %first, "stats requests failed");
        }
        debug!(
            containers = targets.len(),
            sampled = readings.len(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "stats sweep done"
        );
        for (container, mut reading) in readings {
            devices.fill(&mut reading.counters);
            let rates = previous
                .get(&container.id)
                .filter(|(run, _)| *run == container.started_at_ns)
                .and_then(|(_, before)| rates(before, &reading));
            let sample = StatsSample {
                time_ns: reading.time_ns,
                container_id: container.id.clone(),
                name: container.name.clone(),
                counters: reading.counters.clone(),
                rates,
            };
            previous.insert(container.id, (container.started_at_ns, reading));
            if records.send(Record::Stats(sample)).await.is_err() {
                return;
            }
        }
        previous.retain(|id, _| targets.iter().any(|c| &c.id == id));
    }
}

/// One container's reading; `None` when it is not running (any more).
pub async fn sample(
    docker: &Docker,
    container: Running,
) -> Result<Option<(Running, Reading)>, String> {
    let options = StatsOptions {
        stream: false,
        one_shot: true,
    };
    let request = async {
        docker
            .api
            .stats(container.id.as_str(), Some(options))
            .next()
            .await
            .unwrap_or(Err(bollard::errors::Error::RequestTimeoutError))
    };
    match with_timeout(REQUEST_TIMEOUT, request).await {
        Ok(stats) => {
            let own_network = has_own_network(container.network_mode.as_deref());
            Ok(reading_from(&stats, own_network).map(|reading| (container, reading)))
        }
        Err(error) if is_gone_or_stopped(&error) => Ok(None),
        Err(error) => Err(format!("{}: {}", container.name, root_cause(&error))),
    }
}

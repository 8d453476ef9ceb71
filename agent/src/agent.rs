//! The supervisor: connects to Docker, then runs one task per concern (events,
//! inventory, stats, disk usage) feeding one bounded record queue that the output drains.
//!
//! Shutdown: every task watches one `CancellationToken`. When it fires, the tasks stop,
//! their queue senders drop, and the output writes what is still queued before `run`
//! returns. A full queue makes producers wait (nothing is dropped here); the events
//! stream then waits in Docker's socket buffer, not in our memory.

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::backoff::{Backoff, sleep_unless_cancelled};
use crate::cgroup::CgroupReader;
use crate::config::{Config, CounterConfig, DockerConfig, Output, StatsSource};
use crate::docker::{self, ConnectError, Docker};
use crate::inventory::{Inventory, RunningSet};
use crate::{actions, events, output, profiler, stats, uplink, usage};

/// Records waiting for the output.
const RECORD_QUEUE: usize = 4096;
/// Inventory hints waiting for the inventory task.
const HINT_QUEUE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "{0}; set --docker-host or DOCKER_HOST to where Docker listens, or pass --wait-for-docker to keep retrying"
    )]
    Docker(ConnectError),
    #[error(
        "cannot read container counters from cgroup files: {0}; mount the host's /sys/fs/cgroup and use its PID namespace (docker run --pid host --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:ro), or use --stats-source auto"
    )]
    Counters(String),
    #[error("cannot write records")]
    Output(#[source] std::io::Error),
    #[error("cannot report to the collector")]
    Uplink(#[source] uplink::UplinkError),
}

/// The cgroup reader `config` asks for, if the host's files can be read; the reason
/// otherwise (an error only when `cgroup` was asked for explicitly).
fn direct_reader(config: &CounterConfig) -> Result<Option<CgroupReader>, String> {
    if config.source == StatsSource::Docker {
        info!("reading container counters from Docker's stats API (--stats-source docker)");
        return Ok(None);
    }
    match CgroupReader::detect(&config.cgroup_root, &config.proc_root) {
        Ok(reader) => {
            info!(cgroup_version = reader.version().number(), root = %config.cgroup_root.display(),
                "reading container counters from cgroup files");
            Ok(Some(reader))
        }
        Err(reason) if config.source == StatsSource::Cgroup => Err(reason),
        Err(reason) => {
            info!(%reason, "reading container counters from Docker's stats API");
            Ok(None)
        }
    }
}

/// Runs the agent until `cancel` fires.
pub async fn run(config: Config, cancel: CancellationToken) -> Result<(), RunError> {
    if let Output::Collector(uplink) = &config.output
        && let Some(state) = uplink.spool_dir.parent()
    {
        for path in crate::process::shared_files(state) {
            warn!(%path, "other users can read or write this: it may hold this agent's key or records; run chmod go-rwx on it");
        }
    }
    if config.docker.endpoint.is_exposed() {
        warn!(endpoint = %config.docker.endpoint, "Docker over plain TCP to another machine: anyone on the path can read and drive the engine; use TLS (--docker-tls-verify and --docker-cert-path, as the docker CLI's DOCKER_TLS_VERIFY and DOCKER_CERT_PATH)");
    }
    let Some(docker) = connect(&config.docker, &cancel).await? else {
        return Ok(());
    };
    info!(endpoint = %docker.endpoint, api_version = %docker.api_version, "connected to docker");
    let counters = stats::CounterSource::new(
        docker.clone(),
        direct_reader(&config.counters).map_err(RunError::Counters)?,
    );

    let (records_tx, records_rx) = mpsc::channel(RECORD_QUEUE);
    let (hints_tx, hints_rx) = mpsc::channel(HINT_QUEUE);
    let (running_tx, running_rx) = watch::channel(RunningSet::default());
    // Collection settings: the local ones until a collector sends its own.
    let (collect_tx, collect_rx) = watch::channel(config.collect.clone());

    let tracker = TaskTracker::new();
    // Events resume where a previous run's spool ends, so a crash loses none of them.
    let events_from = match &config.output {
        Output::Collector(uplink) => uplink::spool::last_spooled_event(&uplink.spool_dir),
        Output::Stdout => None,
    }
    .unwrap_or_else(dockermon_proto::now_ns);
    tracker.spawn(events::run(
        docker.clone(),
        events_from,
        records_tx.clone(),
        hints_tx,
        cancel.clone(),
    ));
    tracker.spawn(
        Inventory::new(
            docker.clone(),
            records_tx.clone(),
            running_tx,
            counters.name(),
        )
        .run(hints_rx, cancel.clone()),
    );
    tracker.spawn(stats::run(
        counters.clone(),
        collect_rx.clone(),
        records_tx.clone(),
        running_rx.clone(),
        cancel.clone(),
    ));
    tracker.spawn(usage::run(
        docker.clone(),
        collect_rx,
        records_tx.clone(),
        cancel.clone(),
    ));
    // Profiles are asked for by a collector; printing to stdout needs none.
    let profile_records = records_tx;

    let delivered = match config.output {
        Output::Stdout => {
            drop(profile_records);
            output::write_json_lines(records_rx, tokio::io::stdout())
                .await
                .map_err(RunError::Output)
        }
        Output::Collector(uplink) => {
            let (actions_tx, actions_rx) = mpsc::channel(actions::QUEUE);
            let (profiles_tx, profiles_rx) = mpsc::channel(profiler::QUEUE);
            let (results_tx, results_rx) = mpsc::channel(actions::QUEUE + profiler::QUEUE);
            let (live_tx, live_rx) = mpsc::channel(profiler::LIVE_QUEUE);
            let (connected_tx, connected_rx) = watch::channel(false);
            let (status_tx, status_rx) = watch::channel(profiler::ProfilerStatus::default());
            tracker.spawn(actions::run(
                docker.clone(),
                config.allowed_actions.clone(),
                actions_rx,
                results_tx.clone(),
                cancel.clone(),
            ));
            tracker.spawn(profiler::run(
                profiler::ProfilerWiring {
                    counters,
                    max_sessions: config.max_profiles,
                    commands: profiles_rx,
                    results: results_tx,
                    records: profile_records,
                    live: live_tx,
                    running: running_rx,
                    connected: connected_rx,
                    status: status_tx,
                },
                cancel.clone(),
            ));
            let channels = uplink::TaskChannels {
                actions: actions_tx,
                profiles: profiles_tx,
                results: results_rx,
                live: live_rx,
                profiler: status_rx,
                connected: connected_tx,
            };
            uplink::run(*uplink, records_rx, collect_tx, channels, cancel.clone())
                .await
                .map_err(RunError::Uplink)
        }
    };
    // The output only ends early when it cannot go on; stop the producers then too.
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    delivered
}

/// Connects to Docker, retrying if configured to wait. `Ok(None)` when cancelled while
/// waiting.
async fn connect(
    config: &DockerConfig,
    cancel: &CancellationToken,
) -> Result<Option<Docker>, RunError> {
    let mut backoff = Backoff::new(
        std::time::Duration::from_millis(500),
        std::time::Duration::from_secs(30),
    );
    loop {
        match docker::connect(&config.endpoint).await {
            Ok(docker) => return Ok(Some(docker)),
            Err(error) if config.wait => {
                warn!(%error, "waiting for docker");
                if !sleep_unless_cancelled(backoff.next_delay(), cancel).await {
                    return Ok(None);
                }
            }
            Err(error) => return Err(RunError::Docker(error)),
        }
    }
}

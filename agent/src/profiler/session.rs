//! One profile session: one container read every interval until the session ends, each
//! reading turned into a sample with the rates since the previous one. Readings come from
//! the container's cgroup files on a timer where the agent can read them (no cost to
//! dockerd), else from one Docker streaming-stats subscription.
//!
//! Every sample goes out twice: at once to the live channel (for watchers, dropped when
//! that channel is full), and into the batch that is handed to the record queue at least
//! every [`FLUSH_EVERY`] and at the end, so it reaches the spool and travels the lossless
//! path. The session always ends with exactly one reason, carried by its last batch, and
//! its Docker stream, if it has one, closes when the task returns (the task owns it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bollard::query_parameters::StatsOptions;
use dockermon_proto::transport::{LiveProfileSample, ProfileStart};
use dockermon_proto::{
    ProfileBatch, ProfileEnd, ProfileEndReason, ProfileSample, Record, limits, now_ns,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::cgroup::Direct;
use crate::docker::{is_gone_or_stopped, root_cause};
use crate::inventory::{Running, RunningSet};
use crate::stats::{CounterSource, Reading, has_own_network, rates, reading_from};

/// The longest a sample waits in memory before it is handed to the spool.
pub const FLUSH_EVERY: Duration = Duration::from_secs(10);
/// Docker streams a reading about every second; one that arrives this much early still
/// counts for the next interval.
const INTERVAL_SLACK_NS: i64 = 250_000_000;
/// Without a reading for this long, the container, its files or Docker are not answering.
const SILENT_FOR: Duration = Duration::from_secs(30);

/// What a session reads from and writes to.
pub(super) struct Wiring {
    pub(super) counters: CounterSource,
    /// Docker streams open, across sessions.
    pub(super) streams: Arc<AtomicU32>,
    pub(super) records: mpsc::Sender<Record>,
    pub(super) live: mpsc::Sender<LiveProfileSample>,
    pub(super) running: watch::Receiver<RunningSet>,
    /// Whether the uplink is connected to the collector.
    pub(super) connected: watch::Receiver<bool>,
}

/// Counts a session's Docker stream while it is open.
pub(super) struct StreamGuard(Arc<AtomicU32>);

impl StreamGuard {
    pub(super) fn open(count: &Arc<AtomicU32>) -> StreamGuard {
        count.fetch_add(1, Ordering::SeqCst);
        StreamGuard(count.clone())
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where a session's readings come from.
enum Readings {
    /// The container's cgroup files, read on a timer at the session's interval.
    Direct(Box<Timer>),
    /// Docker's stats stream for the container: a reading about every second.
    Docker {
        stream: BoxStream<
            'static,
            Result<bollard::models::ContainerStatsResponse, bollard::errors::Error>,
        >,
        own_network: bool,
        _open: StreamGuard,
    },
}

struct Timer {
    counters: CounterSource,
    container: Running,
    ticker: tokio::time::Interval,
}

enum Next {
    Reading(Reading),
    Stopped,
    Failed(String),
}

impl Readings {
    /// The cgroup files when this container's can be read, else a Docker stream.
    fn open(
        wiring: &Wiring,
        container: &dockermon_proto::ContainerId,
        interval: Duration,
    ) -> Readings {
        let running = wiring
            .running
            .borrow()
            .iter()
            .find(|c| &c.id == container)
            .cloned();
        if let Some(running) = running {
            match wiring.counters.read_direct(&running) {
                Some(Direct::Read(_) | Direct::Gone) => {
                    let mut ticker = tokio::time::interval(interval);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    return Readings::Direct(Box::new(Timer {
                        counters: wiring.counters.clone(),
                        container: running,
                        ticker,
                    }));
                }
                Some(Direct::NoProcess(reason) | Direct::Unavailable(reason)) => {
                    wiring.counters.report_fallback(&running, &reason);
                }
                None => {}
            }
        }
        let own_network = has_own_network(
            wiring
                .running
                .borrow()
                .iter()
                .find(|c| &c.id == container)
                .and_then(|c| c.network_mode.as_deref()),
        );
        let options = StatsOptions {
            stream: true,
            one_shot: false,
        };
        let api = wiring.counters.docker.api.clone();
        Readings::Docker {
            stream: Box::pin(api.stats(container.as_str(), Some(options))),
            own_network,
            _open: StreamGuard::open(&wiring.streams),
        }
    }

    async fn next(&mut self) -> Next {
        match self {
            Readings::Direct(timer) => {
                timer.ticker.tick().await;
                match timer.counters.read_direct(&timer.container) {
                    Some(Direct::Read(reading)) => Next::Reading(reading),
                    // Its process was there when the session started: now it has exited.
                    Some(Direct::Gone | Direct::NoProcess(_)) => Next::Stopped,
                    Some(Direct::Unavailable(reason)) => Next::Failed(reason),
                    None => Next::Failed("no cgroup reader".into()),
                }
            }
            Readings::Docker {
                stream,
                own_network,
                ..
            } => match stream.next().await {
                // An all-zero reading dated year 1: the container is not running.
                Some(Ok(stats)) => {
                    reading_from(&stats, *own_network).map_or(Next::Stopped, Next::Reading)
                }
                Some(Err(error)) if is_gone_or_stopped(&error) => Next::Stopped,
                Some(Err(error)) => Next::Failed(format!("docker: {}", root_cause(&error))),
                // Docker ends the stream when the container stops.
                None => Next::Stopped,
            },
        }
    }
}

/// Samples not yet handed to the spool, and how many were read in all.
struct Batches {
    profile_id: u64,
    container_id: dockermon_proto::ContainerId,
    pending: Vec<ProfileSample>,
    read: u64,
}

impl Batches {
    fn take(&mut self, ended: Option<ProfileEnd>) -> Option<Record> {
        if self.pending.is_empty() && ended.is_none() {
            return None;
        }
        Some(Record::Profile(ProfileBatch {
            profile_id: self.profile_id,
            container_id: self.container_id.clone(),
            samples: std::mem::take(&mut self.pending),
            ended,
        }))
    }
}

/// Runs one session until it ends; returns its id. `stop` carries the reason when the
/// collector (or the profiler, on shutdown) ends it.
pub(super) async fn run(
    start: ProfileStart,
    mut wiring: Wiring,
    mut stop: watch::Receiver<Option<ProfileEndReason>>,
    cancel: CancellationToken,
) -> u64 {
    let profile_id = start.profile_id;
    let container = start.container_id.clone();
    let interval_ns = i64::try_from(start.interval_ms).unwrap_or(i64::MAX) * 1_000_000;
    let ends_at = Instant::now() + Duration::from_millis(start.duration_ms);
    let grace = Duration::from_millis(start.disconnected_grace_ms);
    let mut cut_off_since = (!*wiring.connected.borrow()).then(Instant::now);
    let mut readings = Readings::open(
        &wiring,
        &container,
        Duration::from_millis(start.interval_ms),
    );
    let mut batches = Batches {
        profile_id,
        container_id: container.clone(),
        pending: Vec::new(),
        read: 0,
    };
    let mut previous: Option<Reading> = None;
    let mut flush = tokio::time::interval_at(Instant::now() + FLUSH_EVERY, FLUSH_EVERY);
    let mut last_reading = Instant::now();
    info!(profile = profile_id, container = %container.short(), interval_ms = start.interval_ms, "profile started");

    let (reason, message) = loop {
        let interrupt_at = cut_off_since.map(|since| since + grace);
        tokio::select! {
            () = cancel.cancelled() => break (ProfileEndReason::Interrupted, None),
            changed = stop.changed() => {
                match (changed, *stop.borrow_and_update()) {
                    (_, Some(reason)) => break (reason, None),
                    (Err(_), None) => break (ProfileEndReason::Interrupted, None),
                    (Ok(()), None) => {}
                }
            }
            () = tokio::time::sleep_until(ends_at) => break (ProfileEndReason::Duration, None),
            () = sleep_until(interrupt_at) => break (ProfileEndReason::Interrupted, None),
            () = tokio::time::sleep_until(last_reading + SILENT_FOR) => {
                break (ProfileEndReason::Failed, Some(format!("no reading for {} s", SILENT_FOR.as_secs())));
            }
            _ = flush.tick() => {
                if let Some(record) = batches.take(None)
                    && wiring.records.send(record).await.is_err()
                {
                    break (ProfileEndReason::Interrupted, None);
                }
            }
            changed = wiring.connected.changed() => {
                if changed.is_ok() {
                    let connected = *wiring.connected.borrow_and_update();
                    cut_off_since = match (connected, cut_off_since) {
                        (true, _) => None,
                        (false, None) => Some(Instant::now()),
                        (false, since) => since,
                    };
                }
            }
            changed = wiring.running.changed() => {
                if changed.is_ok() {
                    let still_running = wiring.running.borrow_and_update().iter().any(|c| c.id == container);
                    if !still_running {
                        break (ProfileEndReason::ContainerStopped, None);
                    }
                }
            }
            next = readings.next() => match next {
                Next::Reading(reading) => {
                    last_reading = Instant::now();
                    let Some(before) = &previous else {
                        previous = Some(reading);
                        continue;
                    };
                    if reading.time_ns - before.time_ns < interval_ns - INTERVAL_SLACK_NS {
                        continue;
                    }
                    match rates(before, &reading) {
                        Some(rates) => {
                            let sample = ProfileSample {
                                time_ns: reading.time_ns,
                                counters: reading.counters.clone(),
                                rates,
                            };
                            batches.read += 1;
                            // Live delivery is best effort; the batch is the record.
                            let _ = wiring.live.try_send(LiveProfileSample {
                                profile_id,
                                sample: sample.clone(),
                                read_ns: now_ns(),
                            });
                            batches.pending.push(sample);
                            if batches.pending.len() >= limits::MAX_PROFILE_SAMPLES
                                && let Some(record) = batches.take(None)
                                && wiring.records.send(record).await.is_err()
                            {
                                break (ProfileEndReason::Interrupted, None);
                            }
                        }
                        // Counters went backwards: a new run; start over from here.
                        None => debug!(profile = profile_id, "counters restarted"),
                    }
                    previous = Some(reading);
                }
                Next::Stopped => break (ProfileEndReason::ContainerStopped, None),
                Next::Failed(message) => break (ProfileEndReason::Failed, Some(message)),
            },
        }
    };
    drop(readings);
    info!(profile = profile_id, %reason, samples = batches.read, "profile ended");
    let end = ProfileEnd {
        time_ns: now_ns(),
        reason,
        samples: batches.read,
        message,
    };
    if let Some(record) = batches.take(Some(end)) {
        // Lost only when the agent is shutting down; the collector then reports the
        // session as interrupted.
        let _ = wiring.records.send(record).await;
    }
    profile_id
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

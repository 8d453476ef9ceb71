//! The ingest pipeline: agent sessions → bounded queues → batching writers, one per queue →
//! the store → acknowledgements.
//!
//! Backpressure: when a queue is full, `submit` waits, so a session stops reading its
//! socket and TCP pushes back on the agent, which keeps spooling to its disk. The queue
//! counts frames, and a frame can be 16 MiB: so every frame also takes its size from a
//! [`MemoryBudget`], one per agent and one for the collector, before it is decoded, and
//! gives it back once committed. A misbehaving (or compromised) agent flooding large frames
//! waits on its own budget; it cannot take the collector's memory from the others.
//!
//! Batching is adaptive, with no timer: the writer takes everything queued (up to a limit)
//! into one transaction, so under light load a frame is committed at once, and under heavy
//! load transactions grow and their cost per record falls.
//!
//! Ordering: a host's frames always go to the same queue (hosts are partitioned by id), a
//! writer commits submissions in queue order, and each session submits its frames in
//! sequence order, so an agent's frames commit in order and an acknowledgement can be
//! cumulative. Writers of different hosts run side by side when the store allows
//! ([`Store::concurrent_writers`]): one writer waits on one database round trip after
//! another, and a 10,000-host fleet offers more than one writer can carry. Acknowledgements travel through a `watch` per session (the newest
//! committed sequence number), so the writer never waits for a session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dockermon_proto::transport::Dropped;
use dockermon_proto::{HostName, Record};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::live::{LiveBatch, LiveBus, LiveUpdate, ProfileChange, ProfileChangeKind};
use crate::metrics::CollectorMetrics;
use crate::store::EndedProfile;
use crate::store::{Frame, HostId, Store};

/// Frames waiting for the writers, across all agents (split evenly between the queues).
const QUEUE: usize = 4096;
/// Records per transaction at most.
const MAX_BATCH_RECORDS: usize = 20_000;

/// What the frames in flight (decoded, queued, being written) may hold, counted from their
/// size on the wire times [`DECODED_FACTOR`] (decoded records take about that much more).
pub const AGENT_BUDGET_BYTES: usize = 64 << 20;
pub const COLLECTOR_BUDGET_BYTES: usize = 512 << 20;
const DECODED_FACTOR: usize = 3;
/// Messages smaller than this (pings, statuses, most frames) are not counted.
const FREE_BYTES: usize = 64 << 10;

/// Bytes in flight, in KiB permits: one budget per agent session, one for the collector.
#[derive(Clone)]
pub struct MemoryBudget {
    permits: Arc<tokio::sync::Semaphore>,
}

impl MemoryBudget {
    pub fn new(bytes: usize) -> Self {
        MemoryBudget {
            permits: Arc::new(tokio::sync::Semaphore::new(bytes / 1024)),
        }
    }

    /// Whether [`MemoryBudget::take`] would wait now for a message of `wire_bytes`.
    pub fn would_wait(&self, wire_bytes: usize) -> bool {
        wire_bytes >= FREE_BYTES
            && self.permits.available_permits() < (wire_bytes * DECODED_FACTOR).div_ceil(1024)
    }

    /// Takes what a message of `wire_bytes` will hold once decoded, waiting while the
    /// budget is spent. `None` for messages too small to count.
    pub async fn take(&self, wire_bytes: usize) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if wire_bytes < FREE_BYTES {
            return None;
        }
        let kib = (wire_bytes * DECODED_FACTOR).div_ceil(1024) as u32;
        self.permits.clone().acquire_many_owned(kib).await.ok()
    }
}

/// One data frame on its way to the store.
pub struct Submission {
    pub host: HostId,
    pub host_name: HostName,
    pub seq: u64,
    pub records: Vec<Record>,
    pub dropped: Dropped,
    /// Where the newest committed sequence number of this host's session goes.
    pub acked: watch::Sender<u64>,
    /// Closes the session when its frame cannot be stored at all.
    pub close_session: CancellationToken,
    pub received: Instant,
    /// The frame's share of its agent's and the collector's memory budgets, given back when
    /// the submission is dropped (committed or not).
    pub budget: Vec<tokio::sync::OwnedSemaphorePermit>,
}

impl Submission {
    fn frame(&self) -> Frame<'_> {
        Frame {
            host: self.host,
            seq: self.seq,
            records: &self.records,
            dropped: self.dropped,
        }
    }

    /// What follows a commit: it is counted, the agent is acknowledged, and the records go
    /// live.
    fn committed(self, metrics: &CollectorMetrics, live: &LiveBus) {
        metrics.committed(self.received.elapsed(), &self.records);
        self.acked.send_if_modified(|acked| {
            let newer = self.seq > *acked;
            if newer {
                *acked = self.seq;
            }
            newer
        });
        live.publish(LiveUpdate::Committed(LiveBatch {
            host: self.host,
            host_name: self.host_name,
            records: self.records,
            dropped: self.dropped,
        }));
    }
}

/// Tells watchers and every replica's profiler that these sessions' last samples are in.
fn publish_ended(live: &LiveBus, ended: Vec<EndedProfile>) {
    for profile in ended {
        live.publish(LiveUpdate::Profile(ProfileChange {
            profile_id: profile.id,
            host: profile.host,
            container: profile.container,
            change: ProfileChangeKind::Ended {
                reason: profile.reason,
                samples_read: Some(profile.samples_read),
            },
        }));
    }
}

#[derive(Clone)]
pub struct Pipeline {
    /// One per writer; a host's frames go to `queues[host id mod len]`.
    queues: Arc<[mpsc::Sender<Submission>]>,
}

#[derive(Debug, thiserror::Error)]
#[error("the ingest pipeline has stopped")]
pub struct PipelineStopped;

impl Pipeline {
    /// Starts the writers ([`Store::concurrent_writers`] of them); the returned task ends
    /// when all have stopped, which they do when `cancel` fires (uncommitted frames are not
    /// acknowledged, so agents send them again).
    pub fn start(
        store: Store,
        live: LiveBus,
        metrics: Arc<CollectorMetrics>,
        cancel: CancellationToken,
    ) -> (Pipeline, tokio::task::JoinHandle<()>) {
        let writers = store.concurrent_writers();
        let mut queues = Vec::with_capacity(writers);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..writers {
            let (queue, receiver) = mpsc::channel(QUEUE / writers);
            queues.push(queue);
            tasks.spawn(write(
                store.clone(),
                receiver,
                live.clone(),
                metrics.clone(),
                cancel.clone(),
            ));
        }
        let all = tokio::spawn(async move { while tasks.join_next().await.is_some() {} });
        (
            Pipeline {
                queues: queues.into(),
            },
            all,
        )
    }

    /// Queues a frame on its host's writer, waiting while that queue is full.
    pub async fn submit(&self, submission: Submission) -> Result<(), PipelineStopped> {
        let writer = submission.host.0.unsigned_abs() % self.queues.len() as u64;
        self.queues[writer as usize]
            .send(submission)
            .await
            .map_err(|_| PipelineStopped)
    }
}

async fn write(
    store: Store,
    mut queue: mpsc::Receiver<Submission>,
    live: LiveBus,
    metrics: Arc<CollectorMetrics>,
    cancel: CancellationToken,
) {
    let mut pending: Vec<Submission> = Vec::new();
    let mut retry = Duration::from_millis(100);
    loop {
        if pending.is_empty() {
            let next = tokio::select! {
                () = cancel.cancelled() => return,
                next = queue.recv() => next,
            };
            match next {
                Some(submission) => pending.push(submission),
                None => return,
            }
        }
        let mut records: usize = pending.iter().map(|s| s.records.len()).sum();
        while records < MAX_BATCH_RECORDS {
            match queue.try_recv() {
                Ok(submission) => {
                    records += submission.records.len();
                    pending.push(submission);
                }
                Err(_) => break,
            }
        }
        let frames: Vec<Frame<'_>> = pending.iter().map(Submission::frame).collect();
        match store.ingest_frames(&frames).await {
            Ok(report) => {
                if report.discarded > 0 {
                    info!(
                        records = report.discarded,
                        "discarded records of deleted hosts"
                    );
                }
                retry = Duration::from_millis(100);
                for submission in pending.drain(..) {
                    submission.committed(&metrics, &live);
                }
                publish_ended(&live, report.profiles_ended);
            }
            Err(err) if err.is_transient() => {
                metrics.store_errors.with_label_values(&["transient"]).inc();
                // Nothing is acknowledged; the queue fills and pushes back on the agents.
                warn!(error = %dockermon_agent::process::error_chain(&err), retry_in_ms = retry.as_millis() as u64, "cannot store frames; retrying");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(Duration::from_secs(10));
            }
            Err(err) => {
                // One bad frame must not hold up every agent: store frames one by one and
                // close the sessions whose frames the database refuses. Their agents keep
                // the frames and send them again; an operator must look.
                error!(error = %dockermon_agent::process::error_chain(&err), frames = pending.len(), "a batch was refused; storing its frames one by one");
                for submission in pending.drain(..) {
                    match store.ingest_frames(&[submission.frame()]).await {
                        Ok(report) => {
                            submission.committed(&metrics, &live);
                            publish_ended(&live, report.profiles_ended);
                        }
                        Err(err) => {
                            metrics.store_errors.with_label_values(&["refused"]).inc();
                            error!(host = %submission.host_name, seq = submission.seq, error = %dockermon_agent::process::error_chain(&err), "frame cannot be stored; closing the agent's session");
                            submission.close_session.cancel();
                        }
                    }
                }
            }
        }
    }
}

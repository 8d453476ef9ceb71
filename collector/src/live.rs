//! Live fan-out: what was just committed, and what profile sessions are doing, for the
//! WebSocket API's subscribers and for the profiler of every replica.
//!
//! This is the one internal interface live data goes through: an in-process broadcast
//! channel, which with several collector replicas is linked to the others' through NATS
//! ([`LiveBus::linked`], [`crate::broker`]) behind the same two calls, `publish` and
//! `subscribe`, because an agent and the person watching it may be connected to different
//! replicas. Updates are therefore plain data (serialisable), never handles into one
//! process.
//!
//! A subscriber that falls behind loses the oldest updates (it sees a `Lagged` error and
//! carries on); publishers never wait. Live data is at most once: what must not be lost is
//! in the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dockermon_proto::transport::Dropped;
use dockermon_proto::{HostName, ProfileEndReason, ProfileSample, Record};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::broker::Broker;
use crate::store::{ContainerKey, HostId};

/// Updates kept for slow subscribers before the oldest are dropped.
const CAPACITY: usize = 4096;

/// Records of one host, committed together.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveBatch {
    pub host: HostId,
    pub host_name: HostName,
    pub records: Vec<Record>,
    /// What the agent's spool had dropped when it sent them.
    #[serde(default)]
    pub dropped: Dropped,
}

/// One live update.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LiveUpdate {
    /// Records an agent sent, after they were committed.
    Committed(LiveBatch),
    /// A profile sample as the agent read it, before it is committed (it will be, with the
    /// same values, in the session's next batch).
    ProfileSample(LiveProfileSample),
    /// A profile session started or ended.
    Profile(ProfileChange),
    /// How many WebSocket clients of one replica watch each profile session, in full (a
    /// session missing from `counts` has none there).
    ProfileWatchers {
        replica: u64,
        counts: Vec<(i64, u32)>,
    },
    /// Someone's access ended or shrank, announced by `replica`.
    Access { replica: u64, change: AccessChange },
    /// An admin lifted failed-login locks (of one account, or all) on `replica`.
    LoginLocksCleared {
        replica: u64,
        account: Option<String>,
    },
}

/// Access that ended or shrank: every replica forgets what it cached and re-checks the
/// WebSocket connections concerned at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessChange {
    /// One session ended (logout, a refresh token presented twice).
    Session(String),
    /// A user's sessions ended or their role changed (password, role, disabled, deleted).
    User(i64),
    /// Announcements were missed: everyone re-checks.
    Everyone,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveProfileSample {
    pub profile_id: i64,
    pub host: HostId,
    pub container: ContainerKey,
    pub sample: ProfileSample,
    /// When the agent had the sample in hand (Unix nanoseconds).
    pub read_ns: i64,
}

/// A profile session's start or end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileChange {
    pub profile_id: i64,
    pub host: HostId,
    pub container: ContainerKey,
    pub change: ProfileChangeKind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ProfileChangeKind {
    Started {
        /// Ends when nobody watches it (started over the WebSocket).
        ends_without_watchers: bool,
    },
    Ended {
        reason: ProfileEndReason,
        /// Samples the agent read, when it said.
        samples_read: Option<u64>,
    },
}

#[derive(Clone)]
pub struct LiveBus {
    sender: broadcast::Sender<Arc<LiveUpdate>>,
    /// Towards the other replicas, when linked.
    outbound: Option<Outbound>,
}

#[derive(Clone)]
struct Outbound {
    sender: mpsc::Sender<Arc<LiveUpdate>>,
    /// Updates not sent because the link was [`CAPACITY`] behind.
    dropped: Arc<AtomicU64>,
}

impl Default for LiveBus {
    fn default() -> Self {
        LiveBus {
            sender: broadcast::Sender::new(CAPACITY),
            outbound: None,
        }
    }
}

/// The NATS subject of live updates.
const SUBJECT: &str = "live";

impl LiveBus {
    /// A bus linked to the other replicas' through `broker`: what is published here reaches
    /// their subscribers too, and theirs reaches this bus's. When the link was lost and
    /// comes back, subscribers get [`AccessChange::Everyone`], since announcements may have
    /// been missed. The link's tasks run on `tracker` until `cancel`.
    pub fn linked(broker: Broker, tracker: &TaskTracker, cancel: CancellationToken) -> LiveBus {
        let (sender, mut outgoing) = mpsc::channel::<Arc<LiveUpdate>>(CAPACITY);
        let bus = LiveBus {
            outbound: Some(Outbound {
                sender,
                dropped: Arc::default(),
            }),
            ..LiveBus::default()
        };
        let dropped = bus.outbound.as_ref().expect("just set").dropped.clone();
        tracker.spawn({
            let (broker, cancel) = (broker.clone(), cancel.clone());
            async move {
                loop {
                    let update = tokio::select! {
                        () = cancel.cancelled() => return,
                        update = outgoing.recv() => match update {
                            Some(update) => update,
                            None => return,
                        },
                    };
                    let missed = dropped.swap(0, Ordering::Relaxed);
                    if missed > 0 {
                        warn!(
                            missed,
                            "live updates not sent to the other replicas: the NATS link fell behind"
                        );
                    }
                    let max_payload = broker.max_payload();
                    let (messages, too_large) = messages(&update, max_payload);
                    if too_large > 0 {
                        warn!(
                            too_large,
                            max_payload,
                            "live records larger than a NATS message not sent to the other replicas (raise the server's max_payload)"
                        );
                    }
                    for message in messages {
                        broker.publish_encoded(SUBJECT, message).await;
                    }
                }
            }
        });
        let local = bus.sender.clone();
        tracker.spawn(async move { receive(broker, local, cancel).await });
        bus
    }

    pub fn publish(&self, update: LiveUpdate) {
        let update = Arc::new(update);
        if let Some(outbound) = &self.outbound
            && outbound.sender.try_send(update.clone()).is_err()
        {
            outbound.dropped.fetch_add(1, Ordering::Relaxed);
        }
        // No subscriber is not an error.
        let _ = self.sender.send(update);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveUpdate>> {
        self.sender.subscribe()
    }

    /// Hands every update to `on_update` until `cancel` fires or the bus closes. A follower
    /// that falls more than the bus's capacity behind misses updates: `on_lagged` is told
    /// how many, and must assume anything.
    pub async fn follow(
        &self,
        cancel: &tokio_util::sync::CancellationToken,
        mut on_update: impl FnMut(&Arc<LiveUpdate>),
        mut on_lagged: impl FnMut(u64),
    ) {
        let mut updates = self.subscribe();
        loop {
            let update = tokio::select! {
                () = cancel.cancelled() => return,
                update = updates.recv() => update,
            };
            match update {
                Ok(update) => on_update(&update),
                Err(broadcast::error::RecvError::Lagged(missed)) => on_lagged(missed),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// `update` as JSON messages of at most `max` bytes each, and how many records were left
/// out. A batch too large for one message goes as several batches of the same host, its
/// records in order and its `dropped` counts in the first; a record (or another update)
/// larger than `max` alone cannot go, since NATS refuses it.
fn messages(update: &LiveUpdate, max: usize) -> (Vec<Vec<u8>>, usize) {
    let mut messages = Vec::new();
    let mut too_large = 0;
    let mut pending = vec![std::borrow::Cow::Borrowed(update)];
    while let Some(update) = pending.pop() {
        let encoded = match serde_json::to_vec(&*update) {
            Ok(encoded) => encoded,
            Err(error) => {
                warn!(%error, "cannot encode a live update for NATS");
                continue;
            }
        };
        if encoded.len() <= max {
            messages.push(encoded);
            continue;
        }
        match &*update {
            LiveUpdate::Committed(batch) if batch.records.len() > 1 => {
                let (first, second) = batch.records.split_at(batch.records.len() / 2);
                let half = |records: &[Record], dropped| {
                    std::borrow::Cow::Owned(LiveUpdate::Committed(LiveBatch {
                        host: batch.host,
                        host_name: batch.host_name.clone(),
                        records: records.to_vec(),
                        dropped,
                    }))
                };
                // Last in, first out: the first half is encoded first.
                pending.push(half(second, Dropped::default()));
                pending.push(half(first, batch.dropped));
            }
            LiveUpdate::Committed(batch) => too_large += batch.records.len(),
            _ => too_large += 1,
        }
    }
    (messages, too_large)
}

/// Hands the other replicas' updates to this bus's subscribers, and says when the link
/// came back after a loss; subscribes again if the subscription fails.
async fn receive(
    broker: Broker,
    local: broadcast::Sender<Arc<LiveUpdate>>,
    cancel: CancellationToken,
) {
    use futures::StreamExt;
    let mut reconnections = broker.reconnections();
    loop {
        let mut updates = match broker.subscribe::<LiveUpdate>(SUBJECT).await {
            Ok(updates) => Box::pin(updates),
            Err(error) => {
                warn!(%error, "cannot subscribe to the other replicas' live updates; retrying");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = reconnections.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let everyone = LiveUpdate::Access { replica: 0, change: AccessChange::Everyone };
                    let _ = local.send(Arc::new(everyone));
                }
                update = updates.next() => match update {
                    Some((update, _)) => {
                        let _ = local.send(Arc::new(update));
                    }
                    None => break,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use dockermon_proto::{DockerEvent, EventKind};

    use super::*;

    fn event(i: usize, attribute_bytes: usize) -> Record {
        Record::Event(DockerEvent {
            time_ns: i as i64,
            kind: EventKind::Container,
            action: "start".into(),
            actor_id: format!("{i:064}"),
            actor_name: None,
            attributes: [("blob".to_owned(), "x".repeat(attribute_bytes))].into(),
            scope: None,
        })
    }

    fn batch(records: Vec<Record>) -> LiveUpdate {
        LiveUpdate::Committed(LiveBatch {
            host: HostId(3),
            host_name: HostName::new("web-1").unwrap(),
            records,
            dropped: Dropped {
                events: 5,
                ..Dropped::default()
            },
        })
    }

    #[test]
    fn a_batch_larger_than_a_nats_message_goes_as_several_in_order() {
        let records: Vec<Record> = (0..300).map(|i| event(i, 10_000)).collect();
        let max = 1 << 20;
        let (messages, too_large) = messages(&batch(records.clone()), max);
        assert_eq!(too_large, 0);
        assert!(messages.len() >= 3, "3 MB in {} messages", messages.len());
        let mut received = Vec::new();
        let mut dropped = 0;
        for message in &messages {
            assert!(message.len() <= max, "{} bytes", message.len());
            let LiveUpdate::Committed(part) = serde_json::from_slice(message).unwrap() else {
                panic!("a batch");
            };
            assert_eq!((part.host, part.host_name.as_str()), (HostId(3), "web-1"));
            dropped += part.dropped.events;
            received.extend(part.records);
        }
        assert_eq!(
            serde_json::to_value(&received).unwrap(),
            serde_json::to_value(&records).unwrap(),
            "every record, in order"
        );
        assert_eq!(dropped, 5, "the spool's drops counted once");
    }

    #[test]
    fn a_record_larger_than_a_nats_message_is_left_out_and_counted() {
        let records = vec![event(0, 100), event(1, 2 << 20), event(2, 100)];
        let (messages, too_large) = messages(&batch(records), 1 << 20);
        assert_eq!(too_large, 1);
        let sent: usize = messages
            .iter()
            .map(|message| match serde_json::from_slice(message).unwrap() {
                LiveUpdate::Committed(part) => part.records.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(sent, 2, "the others still go");
    }
}

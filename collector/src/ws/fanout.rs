//! Turns live updates ([`crate::live::LiveBus`]: what the ingest pipeline committed, and
//! profile samples and ends) into ready-to-send WebSocket messages, once per update rather
//! than once per subscriber, and broadcasts them to every connection, which keeps those
//! its subscriptions ask for.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use dockermon_proto::Record;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::messages::ServerMessage;
use crate::live::{LiveBatch, LiveBus, LiveUpdate, ProfileChangeKind};
use crate::store::{HostId, ProfileSampleRow, Role};

/// Messages kept for connections that are behind; one further behind is too slow.
const CAPACITY: usize = 1024;

/// What a client can subscribe to, for the whole fleet or one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    /// Docker events.
    Events,
    /// Container stats, one message per host per sweep.
    Stats,
    /// Inventory changes (containers, images, volumes, networks).
    Inventory,
    /// One container's profile session: its samples and its end. Subscribing starts it.
    Profile,
}

impl Topic {
    /// The role needed to subscribe: a profile subscription starts a profile session,
    /// which operators do.
    pub fn required_role(self) -> Role {
        match self {
            Topic::Profile => Role::Operator,
            Topic::Events | Topic::Stats | Topic::Inventory => Role::Viewer,
        }
    }
}

/// One message, serialised, and what it is about.
#[derive(Debug)]
pub struct Outgoing {
    pub topic: Topic,
    pub host: HostId,
    /// The profile session, for the `profile` topic.
    pub profile: Option<i64>,
    /// The profile session ended with this message.
    pub profile_ended: bool,
    pub text: Utf8Bytes,
}

#[derive(Clone)]
pub struct Feed {
    sender: broadcast::Sender<Arc<Outgoing>>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            sender: broadcast::Sender::new(CAPACITY),
        }
    }
}

impl Feed {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Outgoing>> {
        self.sender.subscribe()
    }

    /// Serialises a committed batch into at most one message per topic and sends them.
    pub fn publish(&self, batch: &LiveBatch) {
        let mut events = Vec::new();
        let mut stats = Vec::new();
        let mut inventory = Vec::new();
        for record in &batch.records {
            match record {
                Record::Event(event) => events.push(event),
                Record::Stats(sample) => stats.push(sample),
                Record::Inventory(update) => inventory.push(update),
                Record::Host(_) | Record::Usage(_) | Record::Profile(_) => {}
            }
        }
        let host = batch.host;
        let name = batch.host_name.as_str();
        if !events.is_empty() {
            self.send(
                Topic::Events,
                host,
                &ServerMessage::Events {
                    host,
                    host_name: name,
                    items: &events,
                },
            );
        }
        if !stats.is_empty() {
            self.send(
                Topic::Stats,
                host,
                &ServerMessage::Stats {
                    host,
                    host_name: name,
                    items: &stats,
                },
            );
        }
        if !inventory.is_empty() {
            let message = ServerMessage::Inventory {
                host,
                host_name: name,
                items: &inventory,
            };
            self.send(Topic::Inventory, host, &message);
        }
    }

    fn send(&self, topic: Topic, host: HostId, message: &ServerMessage<'_>) {
        self.send_outgoing(Outgoing {
            topic,
            host,
            profile: None,
            profile_ended: false,
            text: message.to_text(),
        });
    }

    fn send_outgoing(&self, outgoing: Outgoing) {
        // No connection is listening: not an error.
        let _ = self.sender.send(Arc::new(outgoing));
    }

    /// Serialises a live update for the connections that want it.
    pub fn publish_update(&self, update: &LiveUpdate) {
        match update {
            LiveUpdate::Committed(batch) => self.publish(batch),
            LiveUpdate::ProfileSample(live) => {
                let items = [ProfileSampleRow::from(&live.sample)];
                let message = ServerMessage::Profile {
                    profile: live.profile_id,
                    host: live.host,
                    container: live.container,
                    read_ns: live.read_ns,
                    items: &items,
                };
                self.send_outgoing(Outgoing {
                    topic: Topic::Profile,
                    host: live.host,
                    profile: Some(live.profile_id),
                    profile_ended: false,
                    text: message.to_text(),
                });
            }
            LiveUpdate::Profile(change) => {
                // Subscribers are told of a start by their own subscription's answer.
                let ProfileChangeKind::Ended {
                    reason,
                    samples_read,
                } = &change.change
                else {
                    return;
                };
                let message = ServerMessage::ProfileState {
                    profile: change.profile_id,
                    host: change.host,
                    container: change.container,
                    state: "ended",
                    joined: None,
                    reason: Some(reason.as_str()),
                    samples: *samples_read,
                };
                self.send_outgoing(Outgoing {
                    topic: Topic::Profile,
                    host: change.host,
                    profile: Some(change.profile_id),
                    profile_ended: true,
                    text: message.to_text(),
                });
            }
            LiveUpdate::ProfileWatchers { .. }
            | LiveUpdate::Access { .. }
            | LiveUpdate::LoginLocksCleared { .. } => {}
        }
    }
}

/// Feeds live updates to WebSocket connections until cancelled.
pub async fn run(live: LiveBus, feed: Feed, cancel: CancellationToken) {
    let on_lagged = |missed| {
        warn!(
            missed,
            "live updates dropped before reaching WebSocket clients"
        );
    };
    live.follow(&cancel, |update| feed.publish_update(update), on_lagged)
        .await;
}

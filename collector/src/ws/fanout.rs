//! Turns what the ingest pipeline committed ([`crate::live::LiveBus`]) into ready-to-send
//! WebSocket messages, once per update rather than once per subscriber, and broadcasts them
//! to every connection, which keeps those its subscriptions ask for.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use dockermon_proto::Record;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::messages::ServerMessage;
use crate::live::{LiveBatch, LiveBus};
use crate::store::HostId;

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
}

impl Topic {
    /// The role needed to see it. Every topic is readable by viewers today; profile
    /// streams (operators) will not be.
    pub fn required_role(self) -> crate::store::Role {
        crate::store::Role::Viewer
    }
}

/// One message, serialised, and what it is about.
#[derive(Debug)]
pub struct Outgoing {
    pub topic: Topic,
    pub host: HostId,
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
                Record::Host(_) | Record::Usage(_) => {}
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
        let text = message.to_text();
        // No connection is listening: not an error.
        let _ = self.sender.send(Arc::new(Outgoing { topic, host, text }));
    }
}

/// Feeds committed batches to WebSocket connections until cancelled.
pub async fn run(live: LiveBus, feed: Feed, cancel: CancellationToken) {
    let mut batches = live.subscribe();
    loop {
        let batch = tokio::select! {
            () = cancel.cancelled() => return,
            batch = batches.recv() => batch,
        };
        match batch {
            Ok(batch) => feed.publish(&batch),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                warn!(
                    missed,
                    "live updates dropped before reaching WebSocket clients"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

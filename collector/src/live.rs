//! Live fan-out: what was just committed, for the WebSocket API's subscribers.
//!
//! This is the one internal interface live data goes through. Its first implementation is
//! an in-process broadcast channel; with several collector replicas it becomes a broker
//! (NATS or Redis pub/sub) behind the same two calls, `publish` and `subscribe`, because
//! an agent and the person watching it may be connected to different replicas.
//!
//! A subscriber that falls behind loses the oldest updates (it sees a `Lagged` error and
//! carries on); publishers never wait.

use std::sync::Arc;

use dockermon_proto::{HostName, Record};
use tokio::sync::broadcast;

use crate::store::HostId;

/// Updates kept for slow subscribers before the oldest are dropped.
const CAPACITY: usize = 4096;

/// Records of one host, committed together.
#[derive(Debug)]
pub struct LiveBatch {
    pub host: HostId,
    pub host_name: HostName,
    pub records: Vec<Record>,
}

#[derive(Clone)]
pub struct LiveBus {
    sender: broadcast::Sender<Arc<LiveBatch>>,
}

impl Default for LiveBus {
    fn default() -> Self {
        LiveBus {
            sender: broadcast::Sender::new(CAPACITY),
        }
    }
}

impl LiveBus {
    pub fn publish(&self, batch: LiveBatch) {
        // No subscriber is not an error.
        let _ = self.sender.send(Arc::new(batch));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveBatch>> {
        self.sender.subscribe()
    }
}

//! Which agents are connected to the other collector replicas, for replicas linked through
//! NATS: each replica announces its agents in full on `dockermon.presence` whenever one
//! connects or leaves and every [`ANNOUNCE_EVERY`], and keeps the others' last
//! announcements. A replica not heard from for [`FORGET_AFTER`] (killed, cut off) is
//! forgotten, and its agents count as disconnected until they connect elsewhere.
//!
//! This is what lets a replica answer "is this host's agent connected, and what can it do"
//! for agents it does not hold: the hosts API, the profiler's checks, `/metrics`' hosts
//! that are down. Commands do not depend on it: they go to whoever answers on the host's
//! command subject ([`crate::broker`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::registry::ConnectedAgent;
use crate::broker::Broker;
use crate::store::HostId;

/// How often a replica announces its agents when nothing changes.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(5);
/// How long a replica's announcement counts without a newer one.
pub const FORGET_AFTER: Duration = Duration::from_secs(15);
/// Agents per announcement message, at most; fewer when they would make a message larger
/// than [`MESSAGE_BYTES`] (an agent takes about 250 bytes of JSON, more with profiles).
const AGENTS_PER_MESSAGE: usize = 500;
/// Far below NATS' default 1 MiB message limit.
const MESSAGE_BYTES: usize = 256 * 1024;
/// Changes within this long are announced together.
const COALESCE: Duration = Duration::from_millis(100);
const SUBJECT: &str = "presence";

/// One message of a replica's announcement: part `part` of `parts` of announcement `epoch`.
#[derive(Debug, Serialize, Deserialize)]
struct Announcement {
    replica: u64,
    epoch: u64,
    part: u32,
    parts: u32,
    agents: Agents,
}

/// Agents by host, as one message of an announcement lists them.
type Agents = Vec<(HostId, ConnectedAgent)>;

/// The agents of the other replicas, as they announce them.
pub struct Presence {
    changed: Notify,
    others: Mutex<HashMap<u64, Announced>>,
}

#[derive(Default)]
struct Announced {
    /// The latest complete announcement and when it was completed.
    complete: Option<(Instant, HashMap<HostId, ConnectedAgent>)>,
    /// An announcement whose parts are still arriving, and when its first part came.
    partial: Option<(u64, Instant, HashMap<u32, Agents>)>,
}

impl Presence {
    /// Starts announcing `here()` (this replica's agents) and listening to the other
    /// replicas' announcements, on `tracker` until `cancel`; on `cancel`, says this replica
    /// holds no agent any more.
    pub fn start(
        broker: Broker,
        tracker: &TaskTracker,
        cancel: CancellationToken,
        here: impl Fn() -> Agents + Send + Sync + 'static,
    ) -> Arc<Presence> {
        let presence = Arc::new(Presence {
            changed: Notify::new(),
            others: Mutex::default(),
        });
        let replica: u64 = rand::random();
        tracker.spawn({
            let (presence, broker, cancel) = (presence.clone(), broker.clone(), cancel.clone());
            async move {
                let mut epoch = 0;
                loop {
                    let leaving = tokio::select! {
                        () = cancel.cancelled() => true,
                        () = presence.changed.notified() => {
                            tokio::time::sleep(COALESCE).await;
                            false
                        }
                        () = tokio::time::sleep(ANNOUNCE_EVERY) => false,
                    };
                    epoch += 1;
                    let agents = if leaving { Vec::new() } else { here() };
                    announce(&broker, replica, epoch, agents).await;
                    if leaving {
                        return;
                    }
                }
            }
        });
        tracker.spawn({
            let presence = presence.clone();
            async move { presence.listen(broker, replica, cancel).await }
        });
        presence
    }

    /// This replica's agents changed: announce them soon.
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    /// `host`'s agent on another replica, as the replica that announced it most recently
    /// (within [`FORGET_AFTER`]) describes it.
    pub fn agent(&self, host: HostId) -> Option<ConnectedAgent> {
        let others = self.others.lock().expect("presence lock");
        others
            .values()
            .filter_map(|announced| announced.complete.as_ref())
            .filter(|(at, _)| at.elapsed() < FORGET_AFTER)
            .filter_map(|(at, agents)| Some((at, agents.get(&host)?)))
            .max_by_key(|(at, _)| **at)
            .map(|(_, agent)| agent.clone())
    }

    async fn listen(&self, broker: Broker, replica: u64, cancel: CancellationToken) {
        use futures::StreamExt;
        loop {
            let announcements = match broker.subscribe::<Announcement>(SUBJECT).await {
                Ok(announcements) => announcements,
                Err(error) => {
                    warn!(%error, "cannot listen to the other replicas' agents; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            let mut announcements = std::pin::pin!(announcements);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    announcement = announcements.next() => match announcement {
                        Some((announcement, _)) if announcement.replica != replica => {
                            self.receive(announcement);
                        }
                        Some(_) => {}
                        None => break,
                    },
                }
            }
        }
    }

    fn receive(&self, announcement: Announcement) {
        let mut others = self.others.lock().expect("presence lock");
        let announced = others.entry(announcement.replica).or_default();
        if !matches!(&announced.partial, Some((epoch, ..)) if *epoch == announcement.epoch) {
            // A newer announcement: one whose parts did not all come is given up.
            announced.partial = Some((announcement.epoch, Instant::now(), HashMap::new()));
        }
        let (_, _, parts) = announced.partial.as_mut().expect("just set");
        parts.insert(announcement.part, announcement.agents);
        if parts.len() as u32 >= announcement.parts {
            let (_, _, parts) = announced.partial.take().expect("being assembled");
            let agents = parts.into_values().flatten().collect();
            announced.complete = Some((Instant::now(), agents));
        }
        // Replicas that left or died, and parts that never completed, are dropped once stale.
        others.retain(|_, announced| {
            if announced
                .partial
                .as_ref()
                .is_some_and(|(_, started, _)| started.elapsed() >= FORGET_AFTER)
            {
                announced.partial = None;
            }
            announced.partial.is_some()
                || announced
                    .complete
                    .as_ref()
                    .is_some_and(|(at, _)| at.elapsed() < FORGET_AFTER)
        });
    }
}

/// Publishes `agents` as announcement `epoch` of `replica`, in parts of at most
/// [`AGENTS_PER_MESSAGE`] agents and about [`MESSAGE_BYTES`].
async fn announce(broker: &Broker, replica: u64, epoch: u64, agents: Agents) {
    let chunks = chunks(agents);
    let parts = chunks.len() as u32;
    for (part, agents) in chunks.into_iter().enumerate() {
        let announcement = Announcement {
            replica,
            epoch,
            part: part as u32,
            parts,
            agents,
        };
        broker.publish(SUBJECT, &announcement).await;
    }
}

/// `agents` in parts (at least one, maybe empty) of at most [`AGENTS_PER_MESSAGE`] agents
/// whose JSON adds up to at most [`MESSAGE_BYTES`] (a single agent larger than that alone).
fn chunks(agents: Agents) -> Vec<Agents> {
    let mut chunks = vec![Vec::new()];
    let mut bytes = 0;
    for agent in agents {
        let size = serde_json::to_vec(&agent).map_or(0, |json| json.len());
        let last = chunks.last_mut().expect("never empty");
        if !last.is_empty() && (last.len() >= AGENTS_PER_MESSAGE || bytes + size > MESSAGE_BYTES) {
            chunks.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        chunks.last_mut().expect("never empty").push(agent);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use dockermon_proto::transport::AgentStatus;

    use super::*;
    use crate::transport::registry::AppliedSpec;

    fn agent(profiles: usize) -> ConnectedAgent {
        ConnectedAgent {
            capabilities: vec!["profile".into()],
            status: AgentStatus {
                profiles: (0..profiles as u64).collect(),
                ..AgentStatus::default()
            },
            certificate_expires_s: 1_800_000_000,
            spec: AppliedSpec::default(),
        }
    }

    #[test]
    fn announcements_are_split_by_count_and_by_size() {
        assert_eq!(
            chunks(Vec::new()).len(),
            1,
            "an empty announcement is one part"
        );
        let many: Agents = (0..1_201).map(|id| (HostId(id), agent(0))).collect();
        let parts = chunks(many);
        assert_eq!(
            parts.iter().map(Vec::len).collect::<Vec<_>>(),
            [500, 500, 201]
        );
        // Agents with many profiles each: fewer per part, every part within the bound.
        let heavy: Agents = (0..100).map(|id| (HostId(id), agent(1024))).collect();
        let parts = chunks(heavy);
        assert!(parts.len() > 1);
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 100);
        for part in &parts {
            assert!(serde_json::to_vec(part).unwrap().len() <= MESSAGE_BYTES + 1024);
        }
    }

    #[test]
    fn an_announcement_counts_once_complete_and_not_after_a_newer_one_starts() {
        let presence = Presence {
            changed: Notify::new(),
            others: Mutex::default(),
        };
        let part = |epoch, part, parts, ids: &[i64]| Announcement {
            replica: 7,
            epoch,
            part,
            parts,
            agents: ids.iter().map(|id| (HostId(*id), agent(0))).collect(),
        };
        presence.receive(part(1, 0, 2, &[1]));
        assert!(presence.agent(HostId(1)).is_none(), "half an announcement");
        presence.receive(part(1, 1, 2, &[2]));
        assert!(presence.agent(HostId(1)).is_some());
        assert!(presence.agent(HostId(2)).is_some());
        // A newer announcement in progress leaves the complete one in force...
        presence.receive(part(2, 0, 2, &[3]));
        assert!(presence.agent(HostId(1)).is_some());
        assert!(presence.agent(HostId(3)).is_none());
        // ...and one that starts over gives the unfinished one up.
        presence.receive(part(3, 0, 1, &[3]));
        assert!(presence.agent(HostId(1)).is_none(), "replaced by epoch 3");
        assert!(presence.agent(HostId(3)).is_some());
    }
}

//! Follows Docker's event stream, losslessly across interruptions.
//!
//! Invariants:
//! - Every event Docker publishes after the agent's first subscription is reported once,
//!   in Docker's order, as long as Docker still holds it when the agent reconnects. Docker
//!   keeps the last 256 events in memory; a longer outage with more churn than that, or a
//!   restart of dockerd, loses events that no client can recover, which is why every
//!   reconnect also triggers a full inventory resync.
//! - Reconnects resume with `since` a little before the newest event seen (Docker's
//!   `since` is inclusive and its timestamps can be slightly out of order), and the
//!   [`EventCursor`] drops the replayed events it already reported.
//! - A reconnect waits for Docker to answer a ping, retrying with backoff and jitter.
//! - Across an agent restart (even a crash), reporting to a collector resumes from the
//!   newest event the previous run wrote to its spool: what was between Docker and the
//!   spool when the agent died is read again from Docker, and the collector recognises what
//!   it already has.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use bollard::query_parameters::EventsOptions;
use dockermon_proto::{DockerEvent, EventKind, ObjectKind, ObjectRef, Record};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::{Backoff, sleep_unless_cancelled};
use crate::docker::{Docker, event_from_message, root_cause};
use crate::inventory::Hint;

/// How far before the newest seen event a reconnect asks Docker to replay from.
const REPLAY_WINDOW_NS: i64 = 2_000_000_000;
/// Most event keys remembered for recognising replays; beyond this, the oldest go first.
const MAX_REMEMBERED: usize = 20_000;

/// Where the event stream resumes, and which events around there were already reported.
#[derive(Debug)]
pub struct EventCursor {
    newest_ns: i64,
    recent: VecDeque<(i64, String)>,
    recent_keys: HashSet<String>,
}

impl EventCursor {
    /// A cursor that starts at `start_ns`: events before it are not wanted.
    pub fn starting_at(start_ns: i64) -> Self {
        EventCursor {
            newest_ns: start_ns,
            recent: VecDeque::new(),
            recent_keys: HashSet::new(),
        }
    }

    /// Docker's `since` for the next subscription, as `seconds.nanoseconds`.
    pub fn since(&self) -> String {
        let since = if self.recent.is_empty() {
            self.newest_ns
        } else {
            self.newest_ns - REPLAY_WINDOW_NS
        };
        format!(
            "{}.{:09}",
            since.div_euclid(1_000_000_000),
            since.rem_euclid(1_000_000_000)
        )
    }

    /// Records `event` and says whether it is new (true) or a replay already reported.
    pub fn accept(&mut self, event: &DockerEvent) -> bool {
        let key = event.key();
        if self.recent_keys.contains(&key) {
            return false;
        }
        self.newest_ns = self.newest_ns.max(event.time_ns);
        self.recent.push_back((event.time_ns, key.clone()));
        self.recent_keys.insert(key);
        let horizon = self.newest_ns - REPLAY_WINDOW_NS;
        while let Some((time_ns, _)) = self.recent.front() {
            if *time_ns >= horizon && self.recent.len() <= MAX_REMEMBERED {
                break;
            }
            let (_, old) = self.recent.pop_front().expect("front exists");
            self.recent_keys.remove(&old);
        }
        true
    }
}

/// Watches events from `start_ns` (the agent's start, or the newest event a previous run
/// spooled) until `cancel` fires.
pub async fn run(
    docker: Docker,
    start_ns: i64,
    records: mpsc::Sender<Record>,
    hints: mpsc::Sender<Hint>,
    cancel: CancellationToken,
) {
    let mut cursor = EventCursor::starting_at(start_ns);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        let options = EventsOptions {
            since: Some(cursor.since()),
            ..Default::default()
        };
        debug!(since = %options.since.as_deref().unwrap_or(""), "subscribing to docker events");
        let mut stream = docker.api.events(Some(options));
        let ended = loop {
            let next = tokio::select! {
                () = cancel.cancelled() => return,
                next = stream.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    let Some(event) = event_from_message(message) else {
                        continue;
                    };
                    if !cursor.accept(&event) {
                        debug!(key = %event.key(), "dropped replayed docker event");
                        continue;
                    }
                    if let Some(hint) = hint_for(&event) {
                        // Inventory hints are advisory; a full queue means a refresh is
                        // already pending, and the resync after any gap repairs the rest.
                        let _ = hints.try_send(hint);
                    }
                    if let Some(container) = event
                        .attributes
                        .get("container")
                        .filter(|_| event.kind == EventKind::Network)
                    {
                        let _ = hints.try_send(Hint::Changed(ObjectRef {
                            kind: ObjectKind::Container,
                            id: container.clone(),
                        }));
                    }
                    if records.send(Record::Event(event)).await.is_err() {
                        return;
                    }
                }
                Some(Err(error)) => break root_cause(&error),
                None => break "the stream ended".to_owned(),
            }
        };
        warn!(reason = %ended, "docker events stream interrupted; reconnecting");
        drop(stream);
        loop {
            if !sleep_unless_cancelled(backoff.next_delay(), &cancel).await {
                return;
            }
            match docker.api.ping().await {
                Ok(_) => break,
                Err(error) => debug!(error = %root_cause(&error), "docker still unreachable"),
            }
        }
        backoff.reset();
        info!("docker reachable again; resuming events");
        // Whatever happened in the gap, the inventory is rebuilt from scratch.
        let _ = hints.send(Hint::Resync).await;
    }
}

/// Which inventory object an event may have changed.
fn hint_for(event: &DockerEvent) -> Option<Hint> {
    let action = event.action.split(':').next().unwrap_or_default();
    let kind = match (event.kind, action) {
        (
            EventKind::Container,
            "create" | "start" | "restart" | "die" | "stop" | "pause" | "unpause" | "rename"
            | "update" | "health_status" | "oom" | "destroy",
        ) => ObjectKind::Container,
        (EventKind::Image, "pull" | "tag" | "untag" | "delete" | "import" | "load") => {
            ObjectKind::Image
        }
        (EventKind::Volume, "create" | "destroy" | "prune") => ObjectKind::Volume,
        (EventKind::Network, "create" | "destroy" | "remove" | "prune") => ObjectKind::Network,
        (EventKind::Daemon, _) => return Some(Hint::Host),
        _ => return None,
    };
    Some(Hint::Changed(ObjectRef {
        kind,
        id: event.actor_id.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(time_ns: i64, action: &str) -> DockerEvent {
        DockerEvent {
            time_ns,
            kind: EventKind::Container,
            action: action.into(),
            actor_id: "c1".into(),
            actor_name: None,
            attributes: Default::default(),
            scope: None,
        }
    }

    #[test]
    fn first_subscription_starts_at_the_start_time() {
        let cursor = EventCursor::starting_at(1_700_000_000_000_000_042);
        assert_eq!(cursor.since(), "1700000000.000000042");
    }

    #[test]
    fn replays_are_dropped_and_new_events_kept() {
        let mut cursor = EventCursor::starting_at(0);
        let t = 1_700_000_000_500_000_000;
        assert!(cursor.accept(&event(t, "create")));
        assert!(
            cursor.accept(&event(t, "start")),
            "same time, different action"
        );
        assert!(cursor.accept(&event(t + 1, "die")));
        // A reconnect replays from a little before the newest event.
        assert_eq!(cursor.since(), "1699999998.500000001");
        assert!(!cursor.accept(&event(t, "create")));
        assert!(!cursor.accept(&event(t + 1, "die")));
        assert!(cursor.accept(&event(t + 2, "destroy")));
    }

    #[test]
    fn slightly_out_of_order_events_are_not_lost() {
        let mut cursor = EventCursor::starting_at(0);
        assert!(cursor.accept(&event(2_000_000_000, "start")));
        assert!(cursor.accept(&event(1_999_000_000, "create")));
        assert!(!cursor.accept(&event(1_999_000_000, "create")));
    }

    #[test]
    fn memory_is_bounded() {
        let mut cursor = EventCursor::starting_at(0);
        for i in 0..(MAX_REMEMBERED as i64 + 500) {
            cursor.accept(&event(10_000_000_000 + i, "start"));
        }
        assert_eq!(cursor.recent.len(), MAX_REMEMBERED);
        assert_eq!(cursor.recent_keys.len(), MAX_REMEMBERED);
        // Old events fall out of the window entirely.
        cursor.accept(&event(10_000_000_000 + 10 * REPLAY_WINDOW_NS, "stop"));
        assert_eq!(cursor.recent.len(), 1);
    }

    #[test]
    fn hints_follow_what_events_change() {
        assert_eq!(
            hint_for(&event(1, "start")),
            Some(Hint::Changed(ObjectRef {
                kind: ObjectKind::Container,
                id: "c1".into()
            }))
        );
        assert_eq!(hint_for(&event(1, "exec_start: sh -c ls")), None);
        assert!(hint_for(&event(1, "health_status: healthy")).is_some());
        let daemon = DockerEvent {
            kind: EventKind::Daemon,
            ..event(1, "reload")
        };
        assert_eq!(hint_for(&daemon), Some(Hint::Host));
    }
}

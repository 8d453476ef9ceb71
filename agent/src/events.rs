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
//! - When a resumption cannot prove it lost nothing, the agent says so with a gap record
//!   (an event of kind `gap`, attributes `from_ns`, `to_ns`, `reason`): Docker replayed as
//!   many events as it keeps and none of them reached back to the newest one already
//!   reported (`reason: docker_buffer_full`), or Docker itself was unreachable for a while
//!   and may have restarted with an empty buffer (`reason: docker_unreachable`).

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
/// How many past events Docker keeps for `since` (moby's `daemon/events` `eventsLimit`).
pub const DOCKER_EVENT_BUFFER: u32 = 256;

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

    /// Docker time of the newest event reported (or where the cursor started).
    pub fn newest_ns(&self) -> i64 {
        self.newest_ns
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

/// Checks one subscription's replay for proof that nothing was lost since `after_ns`, the
/// newest event reported before it.
///
/// Docker replays, from its buffer of the last [`DOCKER_EVENT_BUFFER`] events, those since
/// the time asked for, then streams new ones. A replay shorter than the buffer had room to
/// spare, so nothing since then was pushed out; a replay that reaches back to `after_ns`
/// overlaps what was reported. Only a full replay that starts after `after_ns` may have
/// lost events: those between `after_ns` and the oldest replayed one.
#[derive(Debug)]
pub struct ReplayCheck {
    after_ns: i64,
    subscribed_at_ns: i64,
    replayed: u32,
    oldest_ns: i64,
    done: bool,
}

impl ReplayCheck {
    pub fn new(after_ns: i64, subscribed_at_ns: i64) -> Self {
        ReplayCheck {
            after_ns,
            subscribed_at_ns,
            replayed: 0,
            oldest_ns: i64::MAX,
            done: false,
        }
    }

    /// Looks at the next event of the subscription (replayed or not, before the cursor
    /// drops replays); returns the gap record once the replay proves it may have lost some.
    pub fn observe(&mut self, event_time_ns: i64) -> Option<DockerEvent> {
        if self.done {
            return None;
        }
        if event_time_ns > self.subscribed_at_ns || event_time_ns <= self.after_ns {
            // Live already, or the replay overlaps what was reported: nothing lost.
            self.done = true;
            return None;
        }
        self.replayed += 1;
        self.oldest_ns = self.oldest_ns.min(event_time_ns);
        if self.replayed < DOCKER_EVENT_BUFFER {
            return None;
        }
        self.done = true;
        Some(gap_record(
            self.after_ns,
            self.oldest_ns,
            "docker_buffer_full",
        ))
    }
}

/// Dockermon's record that events between `from_ns` and `to_ns` may be missing. It is
/// dated `to_ns`, where the hole ends, and carries no actor.
pub fn gap_record(from_ns: i64, to_ns: i64, reason: &str) -> DockerEvent {
    DockerEvent {
        time_ns: to_ns,
        kind: EventKind::Gap,
        action: "gap".to_owned(),
        actor_id: String::new(),
        actor_name: None,
        attributes: [
            ("from_ns", from_ns.to_string()),
            ("to_ns", to_ns.to_string()),
            ("reason", reason.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        scope: None,
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
        let mut check = ReplayCheck::new(cursor.newest_ns(), dockermon_proto::now_ns());
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
                    if let Some(gap) = check.observe(event.time_ns) {
                        warn!(
                            from_ns = %gap.attributes["from_ns"],
                            to_ns = %gap.attributes["to_ns"],
                            "docker no longer holds every event since the last one reported; \
                             recording a gap"
                        );
                        if records.send(Record::Event(gap)).await.is_err() {
                            return;
                        }
                    }
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
        let mut unreachable = false;
        loop {
            if !sleep_unless_cancelled(backoff.next_delay(), &cancel).await {
                return;
            }
            match docker.api.ping().await {
                Ok(_) => break,
                Err(error) => {
                    unreachable = true;
                    debug!(error = %root_cause(&error), "docker still unreachable");
                }
            }
        }
        backoff.reset();
        info!("docker reachable again; resuming events");
        if unreachable {
            // Docker may have restarted, and its buffer of past events with it.
            let gap = gap_record(
                cursor.newest_ns(),
                dockermon_proto::now_ns(),
                "docker_unreachable",
            );
            if records.send(Record::Event(gap)).await.is_err() {
                return;
            }
        }
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

    /// The times of a replay of `count` events, one a millisecond from `first_ns`.
    fn replay(check: &mut ReplayCheck, first_ns: i64, count: i64) -> Vec<DockerEvent> {
        (0..count)
            .filter_map(|i| check.observe(first_ns + i * 1_000_000))
            .collect()
    }

    #[test]
    fn a_full_replay_after_the_newest_reported_event_is_a_gap() {
        let after = 1_000_000_000_000;
        let now = after + 300_000_000_000;
        let mut check = ReplayCheck::new(after, now);
        let gaps = replay(&mut check, after + 60_000_000_000, 300);
        assert_eq!(gaps.len(), 1, "one gap per resumption");
        let gap = &gaps[0];
        assert_eq!(gap.kind, EventKind::Gap);
        assert_eq!(gap.attributes["from_ns"], after.to_string());
        assert_eq!(
            gap.attributes["to_ns"],
            (after + 60_000_000_000).to_string()
        );
        assert_eq!(gap.attributes["reason"], "docker_buffer_full");
        assert_eq!(gap.time_ns, after + 60_000_000_000);
    }

    #[test]
    fn a_replay_with_room_to_spare_or_reaching_back_is_whole() {
        let after = 1_000_000_000_000;
        let now = after + 300_000_000_000;
        // 255 events: Docker's buffer was not full, nothing was pushed out.
        let mut check = ReplayCheck::new(after, now);
        assert!(replay(&mut check, after + 1, 255).is_empty());
        // The first replayed event is one already reported: the replay overlaps.
        let mut check = ReplayCheck::new(after, now);
        assert!(replay(&mut check, after - 2_000_000_000, 400).is_empty());
        // Live events after a short replay do not count towards the buffer.
        let mut check = ReplayCheck::new(after, now);
        assert!(replay(&mut check, after + 1, 10).is_empty());
        assert!(replay(&mut check, now + 1, 400).is_empty());
    }
}

//! What the profiler knows of the running sessions, and of who watches them on every
//! replica. Pure state, no I/O: the service in `mod.rs` feeds it and acts on what
//! [`Tracker::due`] says.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::store::{ContainerKey, HostId};

/// A running session.
#[derive(Debug, Clone)]
pub(super) struct Tracked {
    pub(super) host: HostId,
    pub(super) container: ContainerKey,
    /// Started over the WebSocket: ends when nobody watches it.
    pub(super) ends_without_watchers: bool,
    /// Since when nobody has watched it (anywhere).
    unwatched_since: Option<Instant>,
    /// Since when its agent has not been connected.
    disconnected_since: Option<Instant>,
}

/// What is due for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    /// Nobody has watched it for the grace period.
    NoWatchers(i64),
    /// Its agent has been away for the grace period.
    Interrupted(i64),
}

/// Watcher counts of other replicas are forgotten after this long without an update.
pub(super) const REMOTE_WATCHERS_TTL: Duration = Duration::from_secs(15);

#[derive(Debug, Default)]
pub(super) struct Tracker {
    sessions: HashMap<i64, Tracked>,
    /// This replica's watchers per session.
    local: HashMap<i64, u32>,
    /// Other replicas' watchers per session, as they last said, and when.
    remote: HashMap<u64, (HashMap<i64, u32>, Instant)>,
}

impl Tracker {
    pub(super) fn started(
        &mut self,
        id: i64,
        host: HostId,
        container: ContainerKey,
        ends_without_watchers: bool,
        now: Instant,
    ) {
        self.sessions.entry(id).or_insert(Tracked {
            host,
            container,
            ends_without_watchers,
            unwatched_since: Some(now),
            disconnected_since: None,
        });
    }

    pub(super) fn ended(&mut self, id: i64) {
        self.sessions.remove(&id);
    }

    pub(super) fn get(&self, id: i64) -> Option<&Tracked> {
        self.sessions.get(&id)
    }

    /// One more (or one fewer) watcher here. Returns this replica's counts, to publish.
    pub(super) fn watch(&mut self, id: i64, delta: i32) -> Vec<(i64, u32)> {
        let count = self.local.entry(id).or_insert(0);
        *count = count.saturating_add_signed(delta);
        if *count == 0 {
            self.local.remove(&id);
        }
        self.local_counts()
    }

    pub(super) fn local_counts(&self) -> Vec<(i64, u32)> {
        let mut counts: Vec<(i64, u32)> = self.local.iter().map(|(id, n)| (*id, *n)).collect();
        counts.sort_unstable();
        counts
    }

    /// Another replica's watcher counts, in full.
    pub(super) fn remote_watchers(&mut self, replica: u64, counts: &[(i64, u32)], now: Instant) {
        self.remote
            .insert(replica, (counts.iter().copied().collect(), now));
    }

    fn watchers(&self, id: i64) -> u32 {
        let remote: u32 = self
            .remote
            .values()
            .map(|(counts, _)| counts.get(&id).copied().unwrap_or(0))
            .sum();
        self.local.get(&id).copied().unwrap_or(0) + remote
    }

    /// Updates what is watched and connected, and says which sessions' grace has run out.
    pub(super) fn due(
        &mut self,
        now: Instant,
        grace: Duration,
        connected: impl Fn(HostId) -> bool,
    ) -> Vec<Due> {
        self.remote
            .retain(|_, (_, heard)| now.duration_since(*heard) < REMOTE_WATCHERS_TTL);
        let watchers: HashMap<i64, u32> = self
            .sessions
            .keys()
            .map(|id| (*id, self.watchers(*id)))
            .collect();
        let mut due = Vec::new();
        for (id, session) in &mut self.sessions {
            if watchers[id] > 0 {
                session.unwatched_since = None;
            } else {
                session.unwatched_since.get_or_insert(now);
            }
            if connected(session.host) {
                session.disconnected_since = None;
            } else {
                session.disconnected_since.get_or_insert(now);
            }
            let over =
                |since: Option<Instant>| since.is_some_and(|s| now.duration_since(s) >= grace);
            if over(session.disconnected_since) {
                due.push(Due::Interrupted(*id));
            } else if session.ends_without_watchers && over(session.unwatched_since) {
                due.push(Due::NoWatchers(*id));
            }
        }
        due.sort_by_key(|d| match d {
            Due::NoWatchers(id) | Due::Interrupted(id) => *id,
        });
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(10);

    #[test]
    fn a_websocket_session_ends_after_its_last_watcher_leaves_and_the_grace_passes() {
        let t0 = Instant::now();
        let mut tracker = Tracker::default();
        tracker.started(1, HostId(1), ContainerKey(7), true, t0);
        tracker.watch(1, 1);
        tracker.watch(1, 1);
        let always = |_| true;
        assert!(tracker.due(t0 + GRACE * 2, GRACE, always).is_empty());
        tracker.watch(1, -1);
        let left = t0 + GRACE * 2;
        assert!(
            tracker.due(left, GRACE, always).is_empty(),
            "one still watches"
        );
        tracker.watch(1, -1);
        assert!(
            tracker.due(left, GRACE, always).is_empty(),
            "grace starts now"
        );
        assert!(
            tracker
                .due(left + GRACE - Duration::from_millis(1), GRACE, always)
                .is_empty()
        );
        assert_eq!(
            tracker.due(left + GRACE, GRACE, always),
            [Due::NoWatchers(1)]
        );
    }

    #[test]
    fn a_watcher_back_within_the_grace_keeps_it() {
        let t0 = Instant::now();
        let mut tracker = Tracker::default();
        tracker.started(1, HostId(1), ContainerKey(7), true, t0);
        let always = |_| true;
        assert!(tracker.due(t0 + GRACE / 2, GRACE, always).is_empty());
        tracker.watch(1, 1);
        assert!(tracker.due(t0 + GRACE * 3, GRACE, always).is_empty());
    }

    #[test]
    fn an_api_session_does_not_need_watchers() {
        let t0 = Instant::now();
        let mut tracker = Tracker::default();
        tracker.started(1, HostId(1), ContainerKey(7), false, t0);
        assert!(tracker.due(t0 + GRACE * 10, GRACE, |_| true).is_empty());
    }

    #[test]
    fn watchers_on_other_replicas_count_until_they_go_quiet() {
        let t0 = Instant::now();
        let mut tracker = Tracker::default();
        tracker.started(1, HostId(1), ContainerKey(7), true, t0);
        tracker.remote_watchers(42, &[(1, 2)], t0);
        let always = |_| true;
        assert!(tracker.due(t0 + GRACE, GRACE, always).is_empty());
        // Replica 42 stops reporting: its watchers expire, then the grace runs.
        let quiet = t0 + REMOTE_WATCHERS_TTL;
        assert!(tracker.due(quiet, GRACE, always).is_empty());
        assert_eq!(
            tracker.due(quiet + GRACE, GRACE, always),
            [Due::NoWatchers(1)]
        );
    }

    #[test]
    fn a_session_whose_agent_stays_away_is_interrupted() {
        let t0 = Instant::now();
        let mut tracker = Tracker::default();
        tracker.started(1, HostId(1), ContainerKey(7), false, t0);
        tracker.started(2, HostId(2), ContainerKey(8), false, t0);
        let only_host_2 = |host: HostId| host == HostId(2);
        assert!(tracker.due(t0, GRACE, only_host_2).is_empty());
        // Back in time: nothing.
        assert!(tracker.due(t0 + GRACE / 2, GRACE, |_| true).is_empty());
        assert!(tracker.due(t0 + GRACE, GRACE, only_host_2).is_empty());
        assert_eq!(
            tracker.due(t0 + GRACE * 2, GRACE, only_host_2),
            [Due::Interrupted(1)]
        );
        tracker.ended(1);
        assert!(tracker.due(t0 + GRACE * 3, GRACE, only_host_2).is_empty());
    }
}

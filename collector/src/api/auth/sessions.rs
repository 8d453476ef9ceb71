//! A short-lived cache of live sessions, so a request does not cost a database round trip
//! just to learn that its session is still live, and the announcements of access that ended
//! or shrank.
//!
//! An entry is trusted for [`TTL`]. Everything that ends or narrows a person's access
//! (logout, a replayed refresh token, a password change, a new role, disabling a user) goes
//! through [`SessionCache::end`]: the entries go at once, this replica's WebSocket
//! connections of that session or user re-check their access at once ([`subscribe`]), and
//! the change is published on the live bus so every other replica does the same
//! ([`SessionCache::follow`]). The cache is bounded: when full it is emptied, which costs one
//! lookup per session.
//!
//! [`subscribe`]: SessionCache::subscribe

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::live::{AccessChange, LiveBus, LiveUpdate};
use crate::store::Role;

/// How long a session checked against the store is trusted.
pub const TTL: Duration = Duration::from_secs(2);
const MAX_ENTRIES: usize = 10_000;
/// Access changes kept for WebSocket connections that have not looked yet; one that falls
/// further behind re-checks its session anyway.
const CHANGES: usize = 1024;

/// Who a live session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOwner {
    pub user_id: i64,
    pub email: String,
    pub role: Role,
}

pub struct SessionCache {
    entries: Mutex<HashMap<String, (SessionOwner, Instant)>>,
    /// This replica's WebSocket connections listen here.
    changes: broadcast::Sender<AccessChange>,
    /// Every replica's caches follow this.
    live: LiveBus,
    /// Tells this replica's own announcements apart on the bus.
    replica: u64,
}

impl Default for SessionCache {
    /// A cache on a bus of its own (one process, nothing else listening).
    fn default() -> Self {
        SessionCache::new(LiveBus::default())
    }
}

impl SessionCache {
    pub fn new(live: LiveBus) -> Self {
        SessionCache {
            entries: Mutex::default(),
            changes: broadcast::Sender::new(CHANGES),
            live,
            replica: rand::random(),
        }
    }

    /// The owner of `session` if it was found live less than [`TTL`] ago.
    pub fn get(&self, session: &str, now: Instant) -> Option<SessionOwner> {
        let entries = self.entries.lock().expect("session cache lock");
        entries
            .get(session)
            .filter(|(_, checked)| now.duration_since(*checked) < TTL)
            .map(|(owner, _)| owner.clone())
    }

    pub fn insert(&self, session: &str, owner: SessionOwner, now: Instant) {
        let mut entries = self.entries.lock().expect("session cache lock");
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(session.to_owned(), (owner, now));
    }

    /// Access ended or shrank: forgotten here, re-checked by this replica's connections,
    /// and announced to every other replica.
    pub fn end(&self, change: AccessChange) {
        self.apply(&change);
        self.live.publish(LiveUpdate::Access {
            replica: self.replica,
            change,
        });
    }

    /// The access changes of every replica, as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<AccessChange> {
        self.changes.subscribe()
    }

    /// Applies the other replicas' announcements until `cancel` fires.
    pub async fn follow(&self, cancel: CancellationToken) {
        let on_update = |update: &Arc<LiveUpdate>| {
            if let LiveUpdate::Access { replica, change } = &**update
                && *replica != self.replica
            {
                self.apply(change);
            }
        };
        // Announcements were missed: nothing cached can be trusted.
        let on_lagged = |_| {
            self.entries.lock().expect("session cache lock").clear();
            let _ = self.changes.send(AccessChange::Everyone);
        };
        self.live.follow(&cancel, on_update, on_lagged).await;
    }

    fn apply(&self, change: &AccessChange) {
        let mut entries = self.entries.lock().expect("session cache lock");
        match change {
            AccessChange::Session(session) => {
                entries.remove(session);
            }
            AccessChange::User(user_id) => {
                entries.retain(|_, (owner, _)| owner.user_id != *user_id)
            }
            AccessChange::Everyone => entries.clear(),
        }
        drop(entries);
        // No connection listening is not an error.
        let _ = self.changes.send(change.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(id: i64) -> SessionOwner {
        SessionOwner {
            user_id: id,
            email: format!("u{id}@x"),
            role: Role::Viewer,
        }
    }

    #[test]
    fn entries_expire_and_can_be_forgotten() {
        let cache = SessionCache::default();
        let now = Instant::now();
        cache.insert("a", owner(1), now);
        cache.insert("b", owner(1), now);
        cache.insert("c", owner(2), now);
        assert_eq!(cache.get("a", now), Some(owner(1)));
        assert_eq!(cache.get("a", now + TTL), None, "stale after the TTL");
        let mut changes = cache.subscribe();
        cache.end(AccessChange::Session("c".into()));
        assert_eq!(cache.get("c", now), None);
        cache.end(AccessChange::User(1));
        assert_eq!((cache.get("a", now), cache.get("b", now)), (None, None));
        assert_eq!(changes.try_recv(), Ok(AccessChange::Session("c".into())));
        assert_eq!(changes.try_recv(), Ok(AccessChange::User(1)));
    }

    #[tokio::test]
    async fn other_replicas_hear_of_ended_access() {
        let live = LiveBus::default();
        let (here, there) = (SessionCache::new(live.clone()), SessionCache::new(live));
        let now = Instant::now();
        there.insert("s", owner(7), now);
        let mut changes = there.subscribe();
        let cancel = CancellationToken::new();
        let following = tokio::spawn({
            let cancel = cancel.clone();
            async move { there.follow(cancel).await }
        });
        tokio::task::yield_now().await;
        here.end(AccessChange::User(7));
        let heard = tokio::time::timeout(Duration::from_secs(5), changes.recv())
            .await
            .unwrap();
        assert_eq!(heard, Ok(AccessChange::User(7)));
        cancel.cancel();
        following.await.unwrap();
    }
}

//! A short-lived cache of live sessions, so a request does not cost a database round trip
//! just to learn that its session is still live.
//!
//! An entry is trusted for [`TTL`]. Everything on this replica that ends a session (logout,
//! a replayed refresh token, a password change, disabling a user) removes its entries at
//! once; another replica notices within [`TTL`], when its entry expires. The cache is
//! bounded: when full it is emptied, which costs one lookup per session.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::Role;

/// How long a session checked against the store is trusted.
pub const TTL: Duration = Duration::from_secs(2);
const MAX_ENTRIES: usize = 10_000;

/// Who a live session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOwner {
    pub user_id: i64,
    pub email: String,
    pub role: Role,
}

#[derive(Default)]
pub struct SessionCache {
    entries: Mutex<HashMap<String, (SessionOwner, Instant)>>,
}

impl SessionCache {
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

    /// Forgets a session that ended.
    pub fn forget(&self, session: &str) {
        self.entries
            .lock()
            .expect("session cache lock")
            .remove(session);
    }

    /// Forgets every session of a user (password changed, disabled, role changed).
    pub fn forget_user(&self, user_id: i64) {
        self.entries
            .lock()
            .expect("session cache lock")
            .retain(|_, (owner, _)| owner.user_id != user_id);
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
        cache.forget("c");
        assert_eq!(cache.get("c", now), None);
        cache.forget_user(1);
        assert_eq!((cache.get("a", now), cache.get("b", now)), (None, None));
    }
}

//! Failed-login throttling, per client address and per address and account, never per
//! account alone.
//!
//! After [`PER_PAIR`] failures within [`WINDOW`] for one account from one address, that
//! address may not try that account until the window has passed since the first failure;
//! after [`PER_ADDRESS`] failures from one address (a client walking through accounts), it
//! may not try any. There is deliberately no lock per account: five wrong passwords from
//! anywhere would otherwise lock the real owner out for the window, handing anyone a
//! switch to lock out a known account such as `admin@localhost`. Guessing one account from
//! many addresses stays slow through the password hash's cost, and every failure is in the
//! audit log. A success clears the address's count for that account; an admin can clear
//! locks (`DELETE /api/v1/auth/locks`). The table is bounded: when full, expired entries
//! go, then the oldest.
//!
//! The counts live in each replica; clearing goes through the live bus to all of them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::live::{LiveBus, LiveUpdate};

/// Failures for one account from one address within [`WINDOW`].
pub const PER_PAIR: u32 = 5;
/// Failures from one address, whatever the accounts, within [`WINDOW`].
pub const PER_ADDRESS: u32 = 20;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    Pair(IpAddr, String),
}

impl Key {
    fn limit(&self) -> u32 {
        match self {
            Key::Address(_) => PER_ADDRESS,
            Key::Pair(..) => PER_PAIR,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Count {
    first: Instant,
    failures: u32,
}

pub struct LoginThrottle {
    counts: Mutex<HashMap<Key, Count>>,
    /// Tells this replica's announcements apart on the live bus.
    replica: u64,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            counts: Mutex::default(),
            replica: rand::random(),
        }
    }
}

fn keys(address: IpAddr, account: &str) -> [Key; 2] {
    [
        Key::Address(address),
        Key::Pair(address, account.to_lowercase()),
    ]
}

impl LoginThrottle {
    /// `Err(seconds to wait)` while `address` may not try `account`.
    pub fn check(&self, address: IpAddr, account: &str, now: Instant) -> Result<(), u64> {
        let counts = self.counts.lock().expect("throttle lock");
        let wait = keys(address, account)
            .iter()
            .filter_map(|key| counts.get(key).map(|count| (key, count)))
            .filter(|(key, count)| count.failures >= key.limit())
            .filter_map(|(_, count)| (count.first + WINDOW).checked_duration_since(now))
            .max();
        match wait {
            Some(wait) if !wait.is_zero() => Err(wait.as_secs().max(1)),
            _ => Ok(()),
        }
    }

    /// Counts a failure; true when it locks the address out (for the account, or for all),
    /// so the lockout can be recorded once.
    pub fn failed(&self, address: IpAddr, account: &str, now: Instant) -> bool {
        let mut counts = self.counts.lock().expect("throttle lock");
        if counts.len() >= MAX_ENTRIES {
            counts.retain(|_, count| now.duration_since(count.first) < WINDOW);
            while counts.len() >= MAX_ENTRIES {
                let oldest = counts
                    .iter()
                    .min_by_key(|(_, count)| count.first)
                    .map(|(key, _)| key.clone());
                match oldest {
                    Some(key) => counts.remove(&key),
                    None => break,
                };
            }
        }
        let mut locked = false;
        for key in keys(address, account) {
            let limit = key.limit();
            let count = counts.entry(key).or_insert(Count {
                first: now,
                failures: 0,
            });
            if now.duration_since(count.first) >= WINDOW {
                *count = Count {
                    first: now,
                    failures: 0,
                };
            }
            count.failures += 1;
            locked |= count.failures == limit;
        }
        locked
    }

    /// A success from `address`: its count for `account` starts over.
    pub fn succeeded(&self, address: IpAddr, account: &str) {
        self.counts
            .lock()
            .expect("throttle lock")
            .remove(&Key::Pair(address, account.to_lowercase()));
    }

    pub fn replica(&self) -> u64 {
        self.replica
    }

    /// Applies other replicas' clearing of locks until `cancel` fires.
    pub async fn follow(&self, live: &LiveBus, cancel: CancellationToken) {
        let on_update = |update: &std::sync::Arc<LiveUpdate>| {
            if let LiveUpdate::LoginLocksCleared { replica, account } = &**update
                && *replica != self.replica
            {
                self.clear(account.as_deref());
            }
        };
        // A missed clearing leaves a lock to expire on its own.
        live.follow(&cancel, on_update, |_| {}).await;
    }

    /// Clears the locks of `account` from every address (and of those addresses' counts),
    /// or every lock when `account` is `None`. Returns how many entries went.
    pub fn clear(&self, account: Option<&str>) -> usize {
        let mut counts = self.counts.lock().expect("throttle lock");
        let before = counts.len();
        match account.map(str::to_lowercase) {
            None => counts.clear(),
            Some(account) => {
                let addresses: Vec<IpAddr> = counts
                    .keys()
                    .filter_map(|key| match key {
                        Key::Pair(address, a) if *a == account => Some(*address),
                        _ => None,
                    })
                    .collect();
                counts.retain(|key, _| match key {
                    Key::Pair(_, a) => *a != account,
                    Key::Address(address) => !addresses.contains(address),
                });
            }
        }
        before - counts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_lock_the_address_for_the_account_not_the_account_for_everyone() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        let attacker: IpAddr = "10.0.0.1".parse().unwrap();
        let owner: IpAddr = "10.0.0.2".parse().unwrap();
        for i in 0..PER_PAIR {
            assert_eq!(throttle.check(attacker, "admin@localhost", start), Ok(()));
            let locked = throttle.failed(attacker, "admin@localhost", start);
            assert_eq!(locked, i + 1 == PER_PAIR, "locked once, on the last");
        }
        let wait = throttle
            .check(attacker, "admin@localhost", start)
            .unwrap_err();
        assert_eq!(wait, WINDOW.as_secs());
        // The owner, elsewhere, signs in as usual; the attacker may try other accounts.
        assert_eq!(throttle.check(owner, "ADMIN@localhost", start), Ok(()));
        assert_eq!(throttle.check(attacker, "b@x", start), Ok(()));
        assert_eq!(
            throttle.check(attacker, "admin@localhost", start + WINDOW),
            Ok(())
        );
    }

    #[test]
    fn an_address_walking_through_accounts_is_stopped() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        let walker: IpAddr = "10.0.0.1".parse().unwrap();
        for i in 0..PER_ADDRESS {
            throttle.failed(walker, &format!("user{i}@x"), now);
        }
        assert!(throttle.check(walker, "anyone@x", now).is_err());
        assert_eq!(
            throttle.check("10.0.0.2".parse().unwrap(), "anyone@x", now),
            Ok(())
        );
    }

    #[test]
    fn a_success_or_an_admin_clears_a_lock() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        let address: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..PER_PAIR - 1 {
            throttle.failed(address, "a@x", now);
        }
        throttle.succeeded(address, "a@x");
        throttle.failed(address, "a@x", now);
        assert_eq!(throttle.check(address, "a@x", now), Ok(()));

        for _ in 0..PER_PAIR {
            throttle.failed(address, "a@x", now);
        }
        assert!(throttle.check(address, "a@x", now).is_err());
        assert!(throttle.clear(Some("A@x")) > 0);
        assert_eq!(throttle.check(address, "a@x", now), Ok(()));
        for _ in 0..PER_ADDRESS {
            throttle.failed(address, "b@x", now);
        }
        throttle.clear(None);
        assert_eq!(throttle.check(address, "b@x", now), Ok(()));
    }
}

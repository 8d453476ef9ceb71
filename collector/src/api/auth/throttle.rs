//! Failed-login throttling, per client address and per account.
//!
//! After `MAX_FAILURES` failures within `WINDOW` from one address, or against one account,
//! further attempts get 429 until the window has passed since the first of them. Counting
//! per account stops a botnet guessing one password from many addresses; counting per
//! address stops one client walking through accounts. A success clears the account's
//! count. The table is bounded: when full, the oldest entries are dropped first.
//!
//! The counts live in this process. With several replicas each counts on its own, which
//! multiplies the allowance by the replica count; still bounded, and without a shared
//! store on the login path.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MAX_FAILURES: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    Account(String),
}

#[derive(Debug, Clone, Copy)]
struct Count {
    first: Instant,
    failures: u32,
}

#[derive(Default)]
pub struct LoginThrottle {
    counts: Mutex<HashMap<Key, Count>>,
}

impl LoginThrottle {
    /// `Err(seconds to wait)` if this address or account is locked out now.
    pub fn check(&self, address: IpAddr, account: &str, now: Instant) -> Result<(), u64> {
        let counts = self.counts.lock().expect("throttle lock");
        let wait = [Key::Address(address), Key::Account(account.to_lowercase())]
            .iter()
            .filter_map(|key| counts.get(key))
            .filter(|count| count.failures >= MAX_FAILURES)
            .filter_map(|count| (count.first + WINDOW).checked_duration_since(now))
            .max();
        match wait {
            Some(wait) if !wait.is_zero() => Err(wait.as_secs().max(1)),
            _ => Ok(()),
        }
    }

    /// Counts a failure; true when it locks the address or the account out (its
    /// [`MAX_FAILURES`]th in the window), so the lockout can be recorded once.
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
        for key in [Key::Address(address), Key::Account(account.to_lowercase())] {
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
            locked |= count.failures == MAX_FAILURES;
        }
        locked
    }

    pub fn succeeded(&self, account: &str) {
        self.counts
            .lock()
            .expect("throttle lock")
            .remove(&Key::Account(account.to_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_the_account_and_the_address_for_the_window() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        let attacker: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert_eq!(throttle.check(attacker, "a@x", start), Ok(()));
            throttle.failed(attacker, "a@x", start);
        }
        let wait = throttle.check(attacker, "a@x", start).unwrap_err();
        assert_eq!(wait, WINDOW.as_secs());
        // The account is locked from anywhere, and the address for any account.
        assert!(throttle.check(other, "A@X", start).is_err());
        assert!(throttle.check(attacker, "b@x", start).is_err());
        assert_eq!(throttle.check(other, "b@x", start), Ok(()));
        // Until the window has passed.
        assert_eq!(throttle.check(attacker, "a@x", start + WINDOW), Ok(()));
    }

    #[test]
    fn a_success_clears_the_account() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        let address: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..MAX_FAILURES - 1 {
            throttle.failed(address, "a@x", now);
        }
        throttle.succeeded("a@x");
        throttle.failed("10.0.0.9".parse().unwrap(), "a@x", now);
        assert_eq!(
            throttle.check("10.0.0.9".parse().unwrap(), "a@x", now),
            Ok(())
        );
    }
}

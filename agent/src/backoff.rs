//! Exponential backoff with full jitter, and sleeps that end early on shutdown.
//!
//! Jitter matters at fleet scale: after a collector or Docker restart, thousands of
//! retrying loops must not come back in lockstep.

use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            current: initial,
        }
    }

    /// The next delay: uniformly random in [current/2, current], then current doubles up
    /// to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.current;
        self.current = (self.current * 2).min(self.max);
        let floor = ceiling / 2;
        floor + rand::rng().random_range(Duration::ZERO..=ceiling - floor)
    }

    /// Back to the initial delay, after a success.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

/// Sleeps for `delay` unless `cancel` fires first. Returns false when cancelled.
pub async fn sleep_unless_cancelled(delay: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = cancel.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_with_jitter_up_to_the_maximum() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut ceiling = Duration::from_millis(100);
        for _ in 0..10 {
            let delay = backoff.next_delay();
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{delay:?} outside {ceiling:?}"
            );
            ceiling = (ceiling * 2).min(Duration::from_secs(2));
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads_delays() {
        let delays: std::collections::HashSet<Duration> = (0..20)
            .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_delay())
            .collect();
        assert!(delays.len() > 10, "delays are not spread: {delays:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_sleeps_end_early() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert!(!sleep_unless_cancelled(Duration::from_secs(3600), &cancel).await);
        assert!(sleep_unless_cancelled(Duration::from_millis(1), &CancellationToken::new()).await);
    }
}

//! Which replica runs the controllers: the holder of a `coordination.k8s.io` Lease
//! (kube-lease-manager takes and renews it with server-side apply). Controllers start when
//! this replica becomes the leader and stop when it loses the lease, so two replicas never
//! reconcile at once for longer than the lease's grace.
//!
//! A renewal that fails (the API server unreachable) counts as losing the lease at once:
//! by the time it expires another replica may hold it, and this one cannot know. The
//! manager is then built anew, so that holding the lease again is noticed as a change.

use std::future::Future;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::LEASE_NAME;

/// How long the lease lasts without renewal, and how long before expiry it is renewed
/// (seconds): a dead leader's controllers resume elsewhere within about 15 s.
const LEASE_SECONDS: (u64, u64) = (15, 5);
/// Waits between attempts after the API server failed, doubling up to the lease's length.
const RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(15));

/// What a lease manager is built from.
pub struct LeaseSettings {
    pub client: Client,
    pub namespace: String,
    pub identity: String,
}

impl LeaseSettings {
    pub async fn manager(&self) -> Result<LeaseManager, kube_lease_manager::LeaseManagerError> {
        LeaseManagerBuilder::new(self.client.clone(), LEASE_NAME)
            .with_namespace(&self.namespace)
            .with_identity(&self.identity)
            .with_duration(LEASE_SECONDS.0)
            .with_grace(LEASE_SECONDS.1)
            .with_create_mode(LeaseCreateMode::AutoCreate)
            .build()
            .await
    }
}

/// Takes, renews and reports the lease on `lead` until `cancel` fires, then releases it.
pub async fn hold_lease(
    settings: LeaseSettings,
    mut manager: LeaseManager,
    lead: watch::Sender<bool>,
    cancel: CancellationToken,
) {
    let mut retry = RETRY.0;
    loop {
        let changed = tokio::select! {
            () = cancel.cancelled() => break,
            changed = manager.changed() => changed,
        };
        let error = match changed {
            Ok(leading) => {
                lead.send_replace(leading);
                retry = RETRY.0;
                continue;
            }
            Err(error) => error,
        };
        warn!(%error, "the operator lease cannot be renewed: controllers stop until it is held again");
        lead.send_replace(false);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(retry) => {}
            }
            retry = (retry * 2).min(RETRY.1);
            match settings.manager().await {
                Ok(fresh) => {
                    manager = fresh;
                    break;
                }
                Err(error) => warn!(%error, "the operator lease is still out of reach"),
            }
        }
    }
    lead.send_replace(false);
    if let Err(error) = manager.release().await {
        warn!(%error, "cannot release the operator lease; it expires on its own");
    }
}

/// Runs `controllers` (given a token that fires when they must stop) whenever `leader`
/// says this replica leads, until `cancel` fires or `leader`'s sender is gone.
pub async fn run_while_leader<F, Fut>(
    mut leader: watch::Receiver<bool>,
    cancel: CancellationToken,
    mut controllers: F,
) where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        // Wait to lead.
        while !*leader.borrow_and_update() {
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = leader.changed() => if changed.is_err() { return },
            }
        }
        info!("this replica holds the operator lease: controllers start");
        let stop = cancel.child_token();
        let running = controllers(stop.clone());
        tokio::pin!(running);
        let lost = async {
            loop {
                if leader.changed().await.is_err() || !*leader.borrow_and_update() {
                    break;
                }
            }
        };
        tokio::select! {
            () = &mut running => return,
            () = lost => {
                info!("operator lease lost: controllers stop");
                stop.cancel();
                running.await;
            }
        }
        if cancel.is_cancelled() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use super::*;

    /// Polls `check` until it holds, failing after 5 s.
    async fn eventually(what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Scenario "lease lost → controllers stop": the controllers run only while the lease
    /// is held, stop when it is lost, and start again when it is won back.
    #[tokio::test]
    async fn lease_lost_stops_the_controllers() {
        let (lead, leader) = watch::channel(false);
        let cancel = CancellationToken::new();
        let running = Arc::new(AtomicUsize::new(0));
        let starts = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (running, starts, cancel) = (running.clone(), starts.clone(), cancel.clone());
            run_while_leader(leader, cancel, move |stop| {
                let running = running.clone();
                starts.fetch_add(1, Ordering::SeqCst);
                async move {
                    running.fetch_add(1, Ordering::SeqCst);
                    stop.cancelled().await;
                    running.fetch_sub(1, Ordering::SeqCst);
                }
            })
        });
        tokio::task::yield_now().await;
        assert_eq!(
            starts.load(Ordering::SeqCst),
            0,
            "no controllers without the lease"
        );
        lead.send_replace(true);
        eventually("controllers run", || running.load(Ordering::SeqCst) == 1).await;
        lead.send_replace(false);
        eventually("controllers stop", || running.load(Ordering::SeqCst) == 0).await;
        lead.send_replace(true);
        eventually("controllers start again", || {
            starts.load(Ordering::SeqCst) == 2 && running.load(Ordering::SeqCst) == 1
        })
        .await;
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(running.load(Ordering::SeqCst), 0, "shutdown stops them");
    }
}

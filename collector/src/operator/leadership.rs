//! Which replica runs the controllers: the holder of a `coordination.k8s.io` Lease
//! (kube-lease-manager takes and renews it with server-side apply). Controllers start when
//! this replica becomes the leader and stop when it loses the lease, so two replicas never
//! reconcile at once for longer than the lease's grace.

use std::future::Future;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::info;

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

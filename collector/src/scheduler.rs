//! Scheduled work: rollups every minute, retention every hour, only on the replica that
//! holds the scheduler's lease in the database, so replicas never do it twice. The lease is
//! renewed every [`LEASE_RENEW`] by a task of its own (a long job does not let it lapse) and
//! lasts [`LEASE_TTL`]: a replica that dies loses it within that, and another takes it over
//! at its next renewal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dockermon_proto::now_ns;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::store::{Retention, Store};

const ROLLUP_EVERY: Duration = Duration::from_secs(60);
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// Ended sessions are kept this long (for investigating a leaked token), then deleted.
const SESSION_RECORDS: Duration = Duration::from_secs(7 * 86_400);
/// The scheduler's lease: its name, how long it lasts unrenewed, and how often its holder
/// renews it (and the others try to take it).
const LEASE: &str = "scheduler";
pub const LEASE_TTL: Duration = Duration::from_secs(20);
pub const LEASE_RENEW: Duration = Duration::from_secs(5);
/// How long a replica that stops waits to hand its lease back.
const LEASE_RELEASE: Duration = Duration::from_secs(2);

/// Runs the jobs until `cancel` fires. `leader` says whether this replica holds the
/// scheduler's lease: the replica that runs the jobs, the resource controller (without
/// Kubernetes) and reports hosts connected nowhere.
pub async fn run(
    store: Store,
    retention: Retention,
    holder: String,
    leader: Arc<AtomicBool>,
    cancel: CancellationToken,
) {
    let (held, mut leadership) = tokio::sync::watch::channel(false);
    // Ends only after the jobs: the lease is released when no job of this replica runs.
    let renewing = CancellationToken::new();
    let renewals = tokio::spawn(hold_lease(
        store.clone(),
        holder.clone(),
        leader.clone(),
        held,
        renewing.clone(),
    ));
    let mut rollups = tokio::time::interval(ROLLUP_EVERY);
    let mut retention_tick = tokio::time::interval(RETENTION_EVERY);
    rollups.set_missed_tick_behavior(MissedTickBehavior::Delay);
    retention_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            // Taken over from a replica that died: its rollups are due.
            Ok(()) = leadership.changed() => {
                if *leadership.borrow_and_update() {
                    rollups.reset_immediately();
                    retention_tick.reset_immediately();
                }
            }
            // A job stops where it is when the collector shuts down: a rollup range left
            // taken is redone by the next run, retention deletes in chunks, and waiting for a
            // database that does not answer would hold the shutdown up.
            _ = rollups.tick() => {
                if leader.load(Ordering::Relaxed) {
                    match cancel.run_until_cancelled(store.run_rollups(now_ns())).await {
                        Some(Ok(report)) => debug!(buckets_5m = report.buckets[0], buckets_1h = report.buckets[1], "rollups done"),
                        Some(Err(error)) => warn!(%error, job = "rollups", "scheduled job failed; it runs again next time"),
                        None => break,
                    }
                }
            }
            _ = retention_tick.tick() => {
                if leader.load(Ordering::Relaxed) {
                    let now = now_ns();
                    let done = async {
                        let report = store.apply_retention(now, &retention).await?;
                        let sessions = store.purge_sessions(now - SESSION_RECORDS.as_nanos() as i64).await?;
                        Ok::<_, crate::store::StoreError>((report, sessions))
                    };
                    match cancel.run_until_cancelled(done).await {
                        Some(Ok((report, sessions))) => info!(deleted = report.deleted, sessions, "retention applied"),
                        Some(Err(error)) => warn!(%error, job = "retention", "scheduled job failed; it runs again next time"),
                        None => break,
                    }
                }
            }
        }
    }
    renewing.cancel();
    let _ = renewals.await;
}

/// Takes or renews the lease every [`LEASE_RENEW`] until `cancel`, keeping `leader` and
/// `held` true while it is held; releases it at the end so that another replica takes over
/// at once.
async fn hold_lease(
    store: Store,
    holder: String,
    leader: Arc<AtomicBool>,
    held_now: tokio::sync::watch::Sender<bool>,
    cancel: CancellationToken,
) {
    let mut renew = tokio::time::interval(LEASE_RENEW);
    renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = renew.tick() => {}
        }
        // A renewal that hangs must not leave this replica believing it leads while the
        // lease runs out under it.
        let attempt = store.acquire_lease(LEASE, &holder, now_ns(), LEASE_TTL.as_nanos() as i64);
        let attempt = cancel.run_until_cancelled(tokio::time::timeout(LEASE_RENEW, attempt));
        let held = match attempt.await {
            None => break,
            Some(Ok(Ok(held))) => held,
            Some(Ok(Err(error))) => {
                warn!(%error, lease = LEASE, "cannot take or renew the scheduler's lease");
                false
            }
            Some(Err(_)) => {
                warn!(
                    lease = LEASE,
                    "the database did not answer the scheduler's lease renewal in time"
                );
                false
            }
        };
        let was = leader.swap(held, Ordering::Relaxed);
        held_now.send_if_modified(|now| std::mem::replace(now, held) != held);
        match (was, held) {
            (false, true) => info!(
                "this replica holds the scheduler's lease: it runs rollups, retention and the resource controller"
            ),
            (true, false) => info!("this replica no longer holds the scheduler's lease"),
            _ => {}
        }
    }
    leader.store(false, Ordering::Relaxed);
    // Best effort, so that another replica takes over at once; a database that does not
    // answer gets the lease back when it runs out.
    let release = store.release_lease(LEASE, &holder);
    if !matches!(
        tokio::time::timeout(LEASE_RELEASE, release).await,
        Ok(Ok(()))
    ) {
        info!(
            lease = LEASE,
            "could not release the scheduler's lease; it runs out within {LEASE_TTL:?}"
        );
    }
}

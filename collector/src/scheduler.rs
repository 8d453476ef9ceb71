//! Scheduled work: rollups every minute, retention every hour. Each job runs only on the
//! replica holding its lease in the database, so replicas never do it twice; a replica that
//! dies loses the lease when it expires.

use std::future::Future;
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
/// Longer than the longest expected job, shorter than the gap a failover may cause.
/// Ended sessions are kept this long (for investigating a leaked token), then deleted.
const SESSION_RECORDS: Duration = Duration::from_secs(7 * 86_400);
const LEASE_TTL: Duration = Duration::from_secs(600);

/// Runs the jobs until `cancel` fires. `leader` says whether this replica holds the rollups
/// lease (renewed every minute): the replica that also reports hosts connected nowhere.
pub async fn run(
    store: Store,
    retention: Retention,
    holder: String,
    leader: Arc<AtomicBool>,
    cancel: CancellationToken,
) {
    let mut rollups = tokio::time::interval(ROLLUP_EVERY);
    let mut retention_tick = tokio::time::interval(RETENTION_EVERY);
    rollups.set_missed_tick_behavior(MissedTickBehavior::Delay);
    retention_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = rollups.tick() => {
                let held = under_lease(&store, "rollups", &holder, async {
                    let report = store.run_rollups(now_ns()).await?;
                    debug!(buckets_5m = report.buckets[0], buckets_1h = report.buckets[1], "rollups done");
                    Ok(())
                }).await;
                leader.store(held, Ordering::Relaxed);
            }
            _ = retention_tick.tick() => {
                under_lease(&store, "retention", &holder, async {
                    let now = now_ns();
                    let report = store.apply_retention(now, &retention).await?;
                    let sessions = store.purge_sessions(now - SESSION_RECORDS.as_nanos() as i64).await?;
                    info!(deleted = report.deleted, sessions, "retention applied");
                    Ok(())
                }).await;
            }
        }
    }
    for lease in ["rollups", "retention"] {
        let _ = store.release_lease(lease, &holder).await;
    }
}

/// Runs `job` if this replica holds (or takes) the lease; says whether it does.
async fn under_lease(
    store: &Store,
    lease: &str,
    holder: &str,
    job: impl Future<Output = Result<(), crate::store::StoreError>>,
) -> bool {
    match store
        .acquire_lease(lease, holder, now_ns(), LEASE_TTL.as_nanos() as i64)
        .await
    {
        Ok(true) => {
            if let Err(error) = job.await {
                warn!(%error, job = lease, "scheduled job failed; it runs again next time");
            }
            true
        }
        Ok(false) => {
            debug!(job = lease, "another replica holds the lease");
            false
        }
        Err(error) => {
            warn!(%error, job = lease, "cannot take the lease");
            false
        }
    }
}

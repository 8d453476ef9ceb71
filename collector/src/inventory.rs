//! The fleet's current containers, held in memory so that listing them costs no database
//! round trip.
//!
//! Container lists are the API's most frequent read (every dashboard polls them), and with
//! a query per request they were bound by the database round trip, not by the data. The
//! snapshot here holds every container not removed, reloaded from the store as a whole, so
//! that it means the same on every replica: what a list shows is at most [`MAX_AGE`] behind
//! the database, whoever wrote the change. Under steady traffic a request that finds the
//! snapshot older than [`REFRESH_AFTER`] starts a reload in the background and is answered
//! from the snapshot it found, so no request waits for a reload; only one older than
//! [`MAX_AGE`] (after a quiet spell) waits, and then shares one reload with every other
//! request that arrived meanwhile. If the database is down, lists fail once the snapshot
//! is older than [`MAX_AGE`] rather than serve stale data for ever.
//!
//! Removed containers (`include_removed`) are not held: that list is rare and read from the
//! store. Filters and order match the store's SQL exactly (binary string comparison, order
//! by name then id), which a test checks on both backends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dockermon_proto::Container;

use crate::store::{
    ContainerFilter, ContainerRow, HostId, Page, Paged, Result, Store, label_filter_warning,
};

/// A host's current containers (removed ones not counted), from the inventory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ContainerCounts {
    pub total: u64,
    /// Those in Docker's `running` state.
    pub running: u64,
}

/// A snapshot older than this starts a reload in the background.
pub const REFRESH_AFTER: Duration = Duration::from_millis(500);
/// A snapshot older than this is never served.
pub const MAX_AGE: Duration = Duration::from_secs(1);

pub struct Inventory {
    store: Store,
    current: Mutex<Option<Arc<Snapshot>>>,
    /// Held while reloading: one reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// A background reload is on its way.
    refreshing: AtomicBool,
}

struct Snapshot {
    /// When the query that filled it started: its data is at least this fresh.
    loaded_at: Instant,
    /// By name, then id; each with the container's full description.
    containers: Vec<Entry>,
}

struct Entry {
    /// The row without its description, as lists show it by default.
    summary: ContainerRow,
    detail: Option<Container>,
}

impl Inventory {
    pub fn new(store: Store) -> Arc<Inventory> {
        Arc::new(Inventory {
            store,
            current: Mutex::default(),
            reloading: tokio::sync::Mutex::default(),
            refreshing: AtomicBool::new(false),
        })
    }

    /// Containers matching `filter`, in the order and with the total the store would give.
    pub async fn containers(
        self: &Arc<Self>,
        filter: &ContainerFilter,
        page: Page,
    ) -> Result<Paged<ContainerRow>> {
        if filter.include_removed {
            return self.store.containers(filter, page).await;
        }
        let snapshot = self.snapshot().await?;
        let mut total = 0u64;
        let mut items = Vec::new();
        let mut labels_dropped = 0u64;
        for entry in &snapshot.containers {
            if filter.label.is_some()
                && entry.summary.truncated.is_some_and(|t| t.labels > 0)
                && matches_except_label(filter, entry)
            {
                labels_dropped += 1;
            }
            if !matches(filter, entry) {
                continue;
            }
            if total >= page.offset && items.len() < page.limit as usize {
                items.push(ContainerRow {
                    detail: if filter.detail {
                        entry.detail.clone()
                    } else {
                        None
                    },
                    ..entry.summary.clone()
                });
            }
            total += 1;
        }
        Ok(Paged {
            total,
            offset: page.offset,
            limit: page.limit,
            items,
            warnings: label_filter_warning(labels_dropped).into_iter().collect(),
        })
    }

    /// How many current containers each host has, and how many of them run.
    pub async fn counts_by_host(self: &Arc<Self>) -> Result<HashMap<HostId, ContainerCounts>> {
        let snapshot = self.snapshot().await?;
        let mut counts: HashMap<HostId, ContainerCounts> = HashMap::new();
        for entry in &snapshot.containers {
            let count = counts.entry(entry.summary.host_id).or_default();
            count.total += 1;
            count.running += u64::from(entry.summary.state == "running");
        }
        Ok(counts)
    }

    async fn snapshot(self: &Arc<Self>) -> Result<Arc<Snapshot>> {
        let asked_at = Instant::now();
        if let Some(found) = self.current() {
            let age = asked_at.saturating_duration_since(found.loaded_at);
            if age < MAX_AGE {
                if age >= REFRESH_AFTER {
                    self.refresh_in_background();
                }
                return Ok(found);
            }
        }
        self.reload(asked_at).await
    }

    fn current(&self) -> Option<Arc<Snapshot>> {
        self.current.lock().expect("inventory lock").clone()
    }

    /// A snapshot loaded no earlier than `asked_at`: the one another caller finished while
    /// this one waited, or a new one.
    async fn reload(&self, asked_at: Instant) -> Result<Arc<Snapshot>> {
        let _one_at_a_time = self.reloading.lock().await;
        if let Some(found) = self.current()
            && found.loaded_at >= asked_at
        {
            return Ok(found);
        }
        let loaded_at = Instant::now();
        let containers = self
            .store
            .current_containers()
            .await?
            .into_iter()
            .map(|mut row| Entry {
                detail: row.detail.take(),
                summary: row,
            })
            .collect();
        let snapshot = Arc::new(Snapshot {
            loaded_at,
            containers,
        });
        *self.current.lock().expect("inventory lock") = Some(snapshot.clone());
        Ok(snapshot)
    }

    fn refresh_in_background(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let inventory = self.clone();
        tokio::spawn(async move {
            if let Err(error) = inventory.reload(Instant::now()).await {
                tracing::warn!(%error, "cannot refresh the container inventory");
            }
            inventory.refreshing.store(false, Ordering::Release);
        });
    }
}

/// Whether a container passes `filter`, as the store's `WHERE` clause decides it.
fn matches(filter: &ContainerFilter, entry: &Entry) -> bool {
    matches_except_label(filter, entry)
        && filter.label.as_ref().is_none_or(|(key, value)| {
            let found = entry.detail.as_ref().and_then(|d| d.labels.get(key));
            match value {
                Some(value) => found == Some(value),
                None => found.is_some(),
            }
        })
}

/// Whether a container passes every part of `filter` but the label.
fn matches_except_label(filter: &ContainerFilter, entry: &Entry) -> bool {
    let row = &entry.summary;
    let equal = |wanted: &Option<String>, have: Option<&str>| {
        wanted.as_deref().is_none_or(|wanted| have == Some(wanted))
    };
    filter.host.is_none_or(|host| row.host_id == host)
        && equal(&filter.state, Some(&row.state))
        && equal(&filter.name, Some(&row.name))
        && equal(&filter.compose_project, row.compose_project.as_deref())
        && filter.search.as_deref().is_none_or(|search| {
            let search = search.to_lowercase();
            row.name.to_lowercase().contains(&search) || row.image.to_lowercase().contains(&search)
        })
}

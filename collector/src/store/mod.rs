//! The store: one API over MySQL/MariaDB (production) and SQLite (the embedded default).
//!
//! Both backends run through sqlx's `Any` driver, so every query is written once; where the
//! two SQL dialects differ (upserts, chunked deletes) the statement is chosen by
//! [`Backend`]. Only `i64`, `f64`, `String` and their `Option`s cross the boundary, which
//! both backends and `Any` map exactly. Times are `i64` Unix nanoseconds.
//!
//! Invariants:
//! - Every write that an agent's acknowledgement depends on happens in one transaction
//!   ([`Store::ingest`]); nothing is acknowledged that is not committed.
//! - Re-delivered events, samples and usage records are recognised by their keys and
//!   stored once.
//! - A Docker container id maps to one logical container for ever (`container_instances`),
//!   which is what lets this mapping be cached in memory, shared by every replica's view.

mod containers;
mod dialect;
mod error;
mod fleet;
mod ingest;
mod lease;
mod profiles;
mod queries;
mod resources;
mod rollup;
mod url;
mod users;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Connection, Executor};

pub use error::{Result, StoreError};
pub use fleet::{Admission, IssuedCertificate, JoinTokenRow, LiveCertificate, TokenRefusal};
pub use ingest::{Frame, IngestReport};
pub use profiles::{
    EndedProfile, NewProfile, ProfileEnding, ProfileFilter, ProfileOrigin, ProfileRow,
    ProfileSampleRow, ProfileState, ProfileSummary,
};
pub use queries::{
    ActivityEntry, ActivityFilter, Agg, ContainerFilter, ContainerRow, ContainerSelector, HostRow,
    ImageRow, InvalidPage, LatestStats, NetworkRow, Page, Paged, StatsPoint, StatsQuery,
    StatsSeries, UsageRow, VolumeRow, label_filter_warning,
};
pub use resources::{Applied, ApplyRefusal, DesiredResource, ResourceRow};
pub use rollup::{Resolution, Retention, RetentionReport, RollupReport, SLICE_CONTAINERS};
pub use url::DatabaseUrl;
pub use users::{Credentials, Role, UserAction, UserRow, UserUpdate, is_valid_email};

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    MySql,
    Sqlite,
}

/// A host's row id.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct HostId(pub i64);

/// A logical container's row id: stable across re-creations of the container.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct ContainerKey(pub i64);

static MYSQL_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/mysql");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");

/// Connections kept open to MySQL. SQLite has one writer at a time, so its pool is small.
const MYSQL_POOL_SIZE: u32 = 16;
const SQLITE_POOL_SIZE: u32 = 4;
/// Ingest writers on MySQL: each holds one of the pool's connections while it writes.
const MYSQL_WRITERS: usize = 4;
/// How long a request waits for a free connection before the database counts as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// One host's Docker container ids and the logical containers they are instances of.
type DockerIds = HashMap<Box<str>, ContainerKey>;

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Host → Docker container id → logical container. Filled only after a commit. By host
    /// first, so that a lookup borrows the id instead of building a key, and a deleted
    /// host's ids go at once; one entry per container of the fleet (500,000 at 10,000
    /// agents × 50), so ids are boxed to their length.
    instances: Arc<Mutex<HashMap<HostId, DockerIds>>>,
}

impl Store {
    /// Connects (without migrating). Fails if the database cannot be reached now; the
    /// caller decides whether to retry.
    pub async fn connect(url: &DatabaseUrl) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = url.backend();
        if let Some(dir) = url.sqlite_dir() {
            std::fs::create_dir_all(&dir).map_err(|source| StoreError::DataDir { dir, source })?;
        }
        let options: AnyConnectOptions = url.as_str().parse().map_err(StoreError::Unavailable)?;
        // One connection first, for its error: the pool retries failed connections until its
        // timeout and then says only "pool timed out", hiding "connection refused" or
        // "access denied".
        sqlx::AnyConnection::connect_with(&options)
            .await
            .map_err(StoreError::from_connect)?
            .close()
            .await
            .map_err(StoreError::from_connect)?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::MySql => MYSQL_POOL_SIZE,
                Backend::Sqlite => SQLITE_POOL_SIZE,
            })
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    match backend {
                        // WAL: readers never block the writer; NORMAL sync is durable across
                        // process crashes (not power loss of the last transactions), the usual
                        // trade for an embedded monitoring store. Waiting on a lock beats failing.
                        Backend::Sqlite => {
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                        }
                        // Strict mode: a value that does not fit is an error, never truncated.
                        // READ COMMITTED: under InnoDB's default REPEATABLE READ, the rollup's
                        // INSERT … SELECT takes next-key locks on the newest raw rows and
                        // stalls ingest behind it for seconds; read committed reads them
                        // without locks. Nothing here relies on repeatable reads.
                        Backend::MySql => {
                            conn.execute(
                                "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'",
                            )
                            .await?;
                            conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                                .await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(Store {
            pool,
            backend,
            instances: Arc::default(),
        })
    }

    /// Connects to the database of an existing deployment, for the shell's admin commands:
    /// it never creates a database or a schema. A SQLite file that does not exist, or a
    /// database without Dockermon's schema, or with one of another version, is
    /// [`StoreError::NotDeployed`], so a command run without the deployment's
    /// `--data-dir`/`--database-url` cannot act on a new, empty database instead.
    pub async fn open_existing(url: &DatabaseUrl) -> Result<Store> {
        let name_it = "pass the deployment's --database-url (or --data-dir for its SQLite file), \
                       or set DOCKERMON_DATABASE_URL";
        if let Some(file) = url.sqlite_file()
            && !file.exists()
        {
            return Err(StoreError::NotDeployed(format!(
                "no database at {}: {name_it}",
                file.display()
            )));
        }
        let store = Store::connect(&url.existing_only()).await?;
        let expected = store
            .migrator()
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or(0);
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = 1")
                .fetch_one(&store.pool)
                .await
                .ok()
                .flatten();
        match applied {
            None => Err(StoreError::NotDeployed(format!(
                "{url} has no Dockermon schema: {name_it}, or run `dockermon-collector migrate` to set up a new one"
            ))),
            Some(applied) if applied < expected => Err(StoreError::NotDeployed(format!(
                "{url} is at migration {applied} and this collector needs {expected}: run `dockermon-collector migrate` (or start the new collector) first"
            ))),
            Some(applied) if applied > expected => Err(StoreError::NotDeployed(format!(
                "{url} is at migration {applied}, newer than this collector knows ({expected}): use the collector that migrated it"
            ))),
            Some(_) => Ok(store),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::MySql => &MYSQL_MIGRATIONS,
            Backend::Sqlite => &SQLITE_MIGRATIONS,
        }
    }

    /// Applies the migrations not yet applied. A failure names the migration and carries the
    /// database's message.
    pub async fn migrate(&self) -> Result<()> {
        let migrator = self.migrator();
        migrator
            .run(&self.pool)
            .await
            .map_err(|error| StoreError::migration(migrator, error))
    }

    /// Whether the database answers now.
    pub async fn ping(&self) -> Result<()> {
        self.pool
            .execute("SELECT 1")
            .await
            .map(|_| ())
            .map_err(StoreError::from)
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a transaction that writes. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred `BEGIN` transaction that reads and then writes fails
    /// with SQLITE_BUSY_SNAPSHOT (extended code 517, "database is locked") whenever another
    /// connection committed in between, and `busy_timeout` cannot wait that out, because
    /// the transaction's snapshot is already stale. Taking the lock first makes concurrent
    /// writers queue behind `busy_timeout` instead. MySQL's row locks need no such care.
    ///
    /// Every multi-statement write in the store goes through here.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::MySql => self.pool.begin().await?,
        };
        Ok(tx)
    }

    /// How many ingest transactions may usefully run at once, each for its own hosts.
    /// SQLite has one writer (a second waits on its lock). InnoDB locks rows, and two
    /// transactions of different hosts share only the rollups' dirty mark, updated last
    /// (held until the commit); a few writers hide each other's round trips.
    pub fn concurrent_writers(&self) -> usize {
        match self.backend {
            Backend::MySql => MYSQL_WRITERS,
            Backend::Sqlite => 1,
        }
    }

    fn cached_instance(&self, host: HostId, docker_id: &str) -> Option<ContainerKey> {
        self.instances
            .lock()
            .expect("instance cache lock")
            .get(&host)?
            .get(docker_id)
            .copied()
    }

    /// Drops the cached Docker ids of a deleted host.
    fn forget_host(&self, host: HostId) {
        let mut cache = self.instances.lock().expect("instance cache lock");
        cache.remove(&host);
    }

    fn remember_instances(&self, learned: containers::Learned) {
        let mut cache = self.instances.lock().expect("instance cache lock");
        for (host, ids) in learned.into_hosts() {
            cache.entry(host).or_default().extend(ids);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The family behind a CI failure ("a batch was refused … (code: 517) database is
    /// locked"): a write transaction that read before another connection committed. Holding
    /// the write lock from `BEGIN` on is what prevents it, and that is observable: a second
    /// writer that will not wait is refused while the transaction is open, before it wrote.
    #[tokio::test]
    async fn a_sqlite_write_transaction_holds_the_write_lock_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::sqlite_in(dir.path());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();

        let mut tx = store.begin_write().await.unwrap();
        let _: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM hosts")
            .fetch_one(&mut *tx)
            .await
            .unwrap();

        let options: AnyConnectOptions = url.as_str().parse().unwrap();
        let mut other = sqlx::AnyConnection::connect_with(&options).await.unwrap();
        other.execute("PRAGMA busy_timeout = 0").await.unwrap();
        let refused = other
            .execute("CREATE TABLE written_meanwhile (x INTEGER)")
            .await
            .expect_err("a second writer got in while a write transaction was open");
        assert!(refused.to_string().contains("locked"), "{refused}");

        tx.commit().await.unwrap();
        other
            .execute("CREATE TABLE written_meanwhile (x INTEGER)")
            .await
            .unwrap();
    }
}

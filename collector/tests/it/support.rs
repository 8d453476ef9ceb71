//! Fresh real databases for each test.
//!
//! MariaDB/MySQL comes from `DOCKERMON_TEST_MYSQL_URL` (a server URL without a database,
//! e.g. `mysql://dockermon:dockermon@127.0.0.1:33306`), which `scripts/test.sh` sets after
//! starting a private server. Each test creates its own database and drops it afterwards.
//! SQLite tests use a file in a temporary directory.

use std::time::Duration;

use dockermon_collector::store::{DatabaseUrl, Store};
use sqlx::{AssertSqlSafe, Connection};

pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// The MySQL server URL for tests. Unset is an error, not a skipped test: a suite that
/// silently skips its MySQL half would prove nothing about MySQL.
pub(crate) fn mysql_server() -> String {
    #[allow(clippy::disallowed_methods)] // test configuration, set by scripts/test.sh
    let url = std::env::var("DOCKERMON_TEST_MYSQL_URL");
    url.expect("DOCKERMON_TEST_MYSQL_URL is not set: run the tests with scripts/test.sh, which starts MariaDB")
        .trim_end_matches('/')
        .to_owned()
}

/// A fresh, empty MySQL database, dropped when this is.
pub(crate) struct MysqlDatabase {
    pub(crate) url: String,
    name: String,
}

impl MysqlDatabase {
    pub(crate) async fn create() -> Self {
        sqlx::any::install_default_drivers();
        let server = mysql_server();
        let name = format!("dmtest_{:016x}", rand::random::<u64>());
        let mut admin = sqlx::AnyConnection::connect(&format!("{server}/mysql"))
            .await
            .expect("MariaDB is reachable at DOCKERMON_TEST_MYSQL_URL");
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        MysqlDatabase {
            url: format!("{server}/{name}"),
            name,
        }
    }
}

impl Drop for MysqlDatabase {
    fn drop(&mut self) {
        let (server, name) = (mysql_server(), self.name.clone());
        // Drop runs inside the test's runtime; the cleanup needs its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut admin) =
                    sqlx::AnyConnection::connect(&format!("{server}/mysql")).await
                {
                    let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join();
    }
}

/// A migrated store on a fresh database.
pub(crate) struct TestDb {
    pub(crate) store: Store,
    _mysql: Option<MysqlDatabase>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub(crate) async fn mysql() -> TestDb {
        let database = MysqlDatabase::create().await;
        Self::migrated(database.url.clone(), Some(database), None).await
    }

    pub(crate) async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/test.db", dir.path().display());
        Self::migrated(url, None, Some(dir)).await
    }

    async fn migrated(
        url: String,
        mysql: Option<MysqlDatabase>,
        dir: Option<tempfile::TempDir>,
    ) -> TestDb {
        let store = Store::connect(&DatabaseUrl::parse(&url).unwrap())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        TestDb {
            store,
            _mysql: mysql,
            _dir: dir,
        }
    }
}

/// Runs each named `async fn(TestDb)` once on a fresh MariaDB database and once on a fresh
/// SQLite database.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod mysql {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(crate::support::TestDb::mysql().await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(crate::support::TestDb::sqlite().await).await;
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;

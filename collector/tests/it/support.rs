//! Fresh real databases for each test: a MariaDB database of its own (see
//! `dockermon_e2e::mysql`) or a SQLite file in a temporary directory.

use std::time::Duration;

use dockermon_collector::store::{DatabaseUrl, Store};
pub(crate) use dockermon_e2e::mysql::{MysqlDatabase, mysql_server};

pub(crate) const WAIT: Duration = Duration::from_secs(60);

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

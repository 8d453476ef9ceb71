//! Fresh MariaDB/MySQL databases for tests.
//!
//! The server comes from `DOCKERMON_TEST_MYSQL_URL` (a URL without a database, e.g.
//! `mysql://dockermon:dockermon@127.0.0.1:33306`), which `scripts/test.sh` sets after starting
//! a private server. Unset is an error, not a skipped test: a suite that silently skipped its
//! MySQL half would prove nothing about MySQL.

use sqlx::{AssertSqlSafe, Connection};

/// The MySQL server URL for tests.
pub fn mysql_server() -> String {
    #[allow(clippy::disallowed_methods)] // test configuration, set by scripts/test.sh
    let url = std::env::var("DOCKERMON_TEST_MYSQL_URL");
    url.expect("DOCKERMON_TEST_MYSQL_URL is not set: run the tests with scripts/test.sh, which starts MariaDB")
        .trim_end_matches('/')
        .to_owned()
}

/// A fresh, empty database, dropped when this is.
pub struct MysqlDatabase {
    pub url: String,
    name: String,
}

impl MysqlDatabase {
    pub async fn create() -> Self {
        sqlx::any::install_default_drivers();
        let server = mysql_server();
        let name = format!("dmtest_{:016x}", rand::random::<u64>());
        // No database selected: the test user may use only its scratch databases.
        let mut admin = sqlx::AnyConnection::connect(&server)
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
                if let Ok(mut admin) = sqlx::AnyConnection::connect(&server).await {
                    let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join();
    }
}

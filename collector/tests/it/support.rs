//! Fresh real databases for each test: a MariaDB database of its own (see
//! `dockermon_e2e::mysql`) or a SQLite file in a temporary directory.

use std::time::Duration;

use dockermon_collector::store::{DatabaseUrl, Store};
pub(crate) use dockermon_e2e::mysql::{MysqlDatabase, mysql_server};

pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// A migrated store on a fresh database.
pub(crate) struct TestDb {
    pub(crate) store: Store,
    url: String,
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
            url,
            _mysql: mysql,
            _dir: dir,
        }
    }
}

impl TestDb {
    /// Another store on the same database, as a collector that starts again opens it.
    pub(crate) async fn reopened(&self) -> Store {
        Store::connect(&DatabaseUrl::parse(&self.url).unwrap())
            .await
            .unwrap()
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

/// The secret test collectors sign access tokens with.
pub(crate) const TOKEN_SECRET: &[u8] = b"a test secret of at least 32 bytes!!";

/// What the API's handlers need, over `store`, with access tokens valid for `token_ttl`.
pub(crate) fn api_state(
    store: Store,
    token_ttl: Duration,
    authority: Option<std::sync::Arc<dockermon_collector::pki::Authority>>,
) -> dockermon_collector::api::ApiState {
    use dockermon_collector::api::{ApiState, auth::TokenKeys};
    ApiState {
        inventory: dockermon_collector::inventory::Inventory::new(store.clone()),
        store: store.clone(),
        tokens: std::sync::Arc::new(TokenKeys::new(TOKEN_SECRET, token_ttl)),
        throttle: std::sync::Arc::default(),
        sessions: std::sync::Arc::default(),
        live: dockermon_collector::live::LiveBus::default(),
        registry: dockermon_collector::transport::Registry::default(),
        profiler: dockermon_collector::profiles::Profiler::new(
            store.clone(),
            dockermon_collector::transport::Registry::default(),
            dockermon_collector::live::LiveBus::default(),
            Default::default(),
        ),
        metrics: std::sync::Arc::default(),
        retention: dockermon_collector::store::Retention::default(),
        authority,
        refresh_ttl: Duration::from_secs(3600),
        action_timeout: Duration::from_secs(5),
        resources_wake: Default::default(),
        resources_in_kubernetes: false,
    }
}

/// A user with `PASSWORD`, created straight in the store.
pub(crate) async fn user(
    store: &Store,
    email: &str,
    role: dockermon_collector::store::Role,
) -> i64 {
    let hash = dockermon_collector::api::auth::password::hash(PASSWORD.into()).await;
    store.create_user(email, &hash, role, 0).await.unwrap().id
}

pub(crate) const PASSWORD: &str = "a long enough password";

/// Polls `check` every 5 ms until it holds; fails the test after 10 s.
pub(crate) async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

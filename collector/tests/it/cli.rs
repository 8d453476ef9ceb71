//! The collector binary's start-up contract: migrations (and their failures), bad URLs,
//! a database that is down at start, shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use dockermon_e2e::fleet::readyz_answer;
use dockermon_e2e::process::RecordedProcess;
use dockermon_e2e::tcp::{TcpProxy, free_loopback_address};
use sqlx::{AssertSqlSafe, Connection};
use tokio::process::Command;

use crate::support::{MysqlDatabase, WAIT, mysql_server};

const COLLECTOR: &str = env!("CARGO_BIN_EXE_dockermon-collector");

async fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let output = tokio::time::timeout(
        WAIT,
        Command::new(COLLECTOR)
            .args(args)
            .env_remove("DOCKERMON_DATABASE_URL")
            .output(),
    )
    .await
    .expect("the collector exits")
    .expect("the collector runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A fresh database in which a table the first migration creates already exists.
async fn sabotaged(url: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::query(AssertSqlSafe(
        "CREATE TABLE hosts (surprise INTEGER)".to_owned(),
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn migrate_applies_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/dm.db", dir.path().display());
    for _ in 0..2 {
        let (code, stderr) = run_to_exit(&["migrate", "--database-url", &url]).await;
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stderr.contains("is up to date"), "{stderr}");
    }
    let db = MysqlDatabase::create().await;
    for _ in 0..2 {
        let (code, stderr) = run_to_exit(&["migrate", "--database-url", &db.url]).await;
        assert_eq!(code, Some(0), "{stderr}");
    }
}

#[tokio::test]
async fn a_failed_migration_names_itself_and_the_database_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/dm.db?mode=rwc", dir.path().display());
    sabotaged(&url).await;
    let (code, stderr) = run_to_exit(&["migrate", "--database-url", &url]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("migration 0001_create_hosts failed") && stderr.contains("already exists"),
        "{stderr}"
    );

    let db = MysqlDatabase::create().await;
    sabotaged(&db.url).await;
    let (code, stderr) = run_to_exit(&["migrate", "--database-url", &db.url]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("migration 0001_create_hosts failed") && stderr.contains("already exists"),
        "{stderr}"
    );
}

#[tokio::test]
async fn bad_database_urls_are_configuration_errors() {
    let (code, stderr) =
        run_to_exit(&["migrate", "--database-url", "postgres://db/dockermon"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "database_url: invalid database URL: the scheme \"postgres\" is not supported"
        ),
        "{stderr}"
    );
    let (code, stderr) = run_to_exit(&["serve", "--database-url", "mysql://db:3306"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("database name is missing"), "{stderr}");
}

/// The server's address and the URL's credentials part (`user:password@`).
fn mysql_parts() -> (SocketAddr, String) {
    let server = mysql_server();
    let rest = server.trim_start_matches("mysql://");
    let (credentials, address) = match rest.rsplit_once('@') {
        Some((credentials, address)) => (format!("{credentials}@"), address),
        None => (String::new(), rest),
    };
    (
        address
            .parse()
            .expect("DOCKERMON_TEST_MYSQL_URL names an IP:port"),
        credentials,
    )
}

#[tokio::test]
async fn a_database_down_at_start_is_waited_for_while_readyz_says_why() {
    let db = MysqlDatabase::create().await;
    let database = db.url.rsplit('/').next().unwrap();
    let (address, credentials) = mysql_parts();
    let mut proxy = TcpProxy::reserve(address).unwrap();
    let url = format!("mysql://{credentials}{}/{database}", proxy.address());
    let health = free_loopback_address().unwrap();

    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let (code, stderr) =
        run_to_exit(&["pki", "init", "--san", "localhost", "--data-dir", &data_dir]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let agents = free_loopback_address().unwrap();
    let mut collector = RecordedProcess::spawn({
        let mut command = Command::new(COLLECTOR);
        command
            .args([
                "serve",
                "--database-url",
                &url,
                "--health-listen",
                &health.to_string(),
                "--log",
                "info",
            ])
            .args([
                "--agent-listen",
                &agents.to_string(),
                "--data-dir",
                &data_dir,
            ]);
        command
    })
    .unwrap();
    collector
        .wait_for_stderr(WAIT, "database unavailable")
        .await
        .unwrap();
    let (status, body) =
        dockermon_e2e::wait::eventually(WAIT, "a 503 from /readyz", || async move {
            readyz_answer(health)
                .await
                .filter(|(status, _)| *status == 503)
        })
        .await
        .unwrap();
    assert_eq!(status, 503);
    assert!(
        body.contains("\"ready\":false") && body.contains("database unavailable"),
        "{body}"
    );

    // The database comes up: the collector connects, migrates and becomes ready.
    proxy.start().await.unwrap();
    dockermon_e2e::wait::eventually(WAIT, "a 200 from /readyz", || async move {
        readyz_answer(health)
            .await
            .filter(|(status, _)| *status == 200)
    })
    .await
    .unwrap();
    assert!(collector.stderr().contains("database ready"));

    // It goes away again: readiness follows, the process stays up.
    proxy.cut();
    dockermon_e2e::wait::eventually(WAIT, "/readyz to notice", || async move {
        readyz_answer(health)
            .await
            .filter(|(status, _)| *status == 503)
    })
    .await
    .unwrap();

    let pid = collector.id().unwrap().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    let exit = collector.wait_exit(Duration::from_secs(30)).await.unwrap();
    assert!(exit.success(), "{exit:?}\n{}", collector.stderr());
}

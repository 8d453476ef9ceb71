//! The collector binary's start-up contract: migrations (and their failures), bad URLs,
//! a database that is down at start, shutdown.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
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
    let api = free_loopback_address().unwrap();
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
                "--api-listen",
                &api.to_string(),
                "--ws-listen",
                &free_loopback_address().unwrap().to_string(),
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
    // The real cause, once, not the pool's "timed out".
    assert!(body.contains("Connection refused"), "{body}");
    assert!(!body.contains("timed out"), "{body}");

    // The database comes up: the collector connects (its retry backoff is at most 10 s),
    // migrates a fresh schema (every DDL a durable commit, slow on a loaded CI machine) and
    // becomes ready.
    proxy.start().await.unwrap();
    dockermon_e2e::wait::eventually(3 * WAIT, "a 200 from /readyz", || async move {
        readyz_answer(health)
            .await
            .filter(|(status, _)| *status == 200)
    })
    .await
    .unwrap_or_else(|error| panic!("{error}; the collector said:\n{}", collector.stderr()));
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
    // Stopping does not wait on the database: in-flight jobs stop where they are and the
    // collector exits within its shutdown grace (15 s).
    let exit = collector
        .wait_exit(Duration::from_secs(25))
        .await
        .unwrap_or_else(|error| panic!("{error}; the collector said:\n{}", collector.stderr()));
    assert!(exit.success(), "{exit:?}\n{}", collector.stderr());
}

#[tokio::test]
async fn a_database_that_refuses_ends_the_collector_unless_told_to_wait() {
    let (address, credentials) = mysql_parts();
    let user = credentials.split(':').next().unwrap();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let (code, stderr) = run_to_exit(&["pki", "init", "--data-dir", &data_dir]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let wrong_password = format!("mysql://{user}:not-the-password@{address}/dockermon");
    let db = MysqlDatabase::create().await;
    let unknown_database = format!("{}_missing", db.url);
    for (url, cause) in [
        (&wrong_password, "Access denied"),
        (&unknown_database, "Unknown database"),
    ] {
        let started = std::time::Instant::now();
        let (process, _) = spawn_serving_until(
            &["serve", "--database-url", url, "--data-dir", &data_dir],
            data.path(),
            None,
        )
        .await;
        let mut process = process;
        let exit = process.wait_exit(WAIT).await.unwrap();
        let stderr = process.stderr();
        assert_eq!(exit.code(), Some(1), "{stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "at once, not after retries"
        );
        assert_eq!(stderr.matches(cause).count(), 1, "said once: {stderr}");
        assert!(stderr.contains("--wait-for-database"), "{stderr}");
    }
    // Told to wait, it waits, and /readyz says why.
    let health = free_loopback_address().unwrap();
    let (process, _) = spawn_serving_until(
        &[
            "serve",
            "--database-url",
            &wrong_password,
            "--data-dir",
            &data_dir,
            "--wait-for-database",
            "--health-listen",
            &health.to_string(),
        ],
        data.path(),
        None,
    )
    .await;
    let (_, body) = dockermon_e2e::wait::eventually(WAIT, "a 503 from /readyz", || async move {
        readyz_answer(health)
            .await
            .filter(|(status, _)| *status == 503)
    })
    .await
    .unwrap();
    assert_eq!(body.matches("Access denied").count(), 1, "{body}");
    stop(process).await;
}

/// Runs a collector subcommand that serves (`serve`, `standalone`) on free loopback ports,
/// without the environment's database or admin settings; the process and its API address,
/// once the API listens.
async fn spawn_serving(
    args: &[&str],
    current_dir: &std::path::Path,
) -> (RecordedProcess, SocketAddr) {
    spawn_serving_until(args, current_dir, Some("API listening")).await
}

/// [`spawn_serving`], waiting for `ready` in its log (if given) rather than the API. Ports
/// given in `args` are kept.
async fn spawn_serving_until(
    args: &[&str],
    current_dir: &std::path::Path,
    ready: Option<&str>,
) -> (RecordedProcess, SocketAddr) {
    let api = free_loopback_address().unwrap();
    let mut command = Command::new(COLLECTOR);
    command
        .current_dir(current_dir)
        .args(args)
        .args(["--log", "info"]);
    for (flag, address) in [
        ("--api-listen", api),
        ("--ws-listen", free_loopback_address().unwrap()),
        ("--agent-listen", free_loopback_address().unwrap()),
        ("--health-listen", free_loopback_address().unwrap()),
    ] {
        if !args.contains(&flag) {
            command.args([flag, &address.to_string()]);
        }
    }
    for variable in [
        "DOCKERMON_DATABASE_URL",
        "DOCKERMON_DATA_DIR",
        "DOCKERMON_ADMIN_PASSWORD",
    ] {
        command.env_remove(variable);
    }
    let process = RecordedProcess::spawn(command).unwrap();
    if let Some(ready) = ready {
        process.wait_for_stderr(WAIT, ready).await.unwrap();
    }
    (process, api)
}

/// Starts `serve` on SQLite in `data_dir`.
async fn serve_embedded(data_dir: &str, extra: &[&str]) -> (RecordedProcess, SocketAddr) {
    let (code, stderr) =
        run_to_exit(&["pki", "init", "--san", "localhost", "--data-dir", data_dir]).await;
    assert!(code == Some(0) || stderr.contains("already"), "{stderr}");
    let mut args = vec!["serve", "--data-dir", data_dir];
    args.extend_from_slice(extra);
    spawn_serving(&args, std::path::Path::new(data_dir)).await
}

async fn stop(mut process: RecordedProcess) {
    let pid = process.id().unwrap().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    let exit = process.wait_exit(Duration::from_secs(30)).await.unwrap();
    assert!(exit.success(), "{exit:?}\n{}", process.stderr());
}

async fn login(api: SocketAddr, email: &str, password: &str) -> u16 {
    let body = serde_json::json!({"email": email, "password": password});
    let (status, _) =
        dockermon_e2e::http::json(api, "POST", "/api/v1/auth/login", None, Some(&body))
            .await
            .expect("the API answers");
    status
}

#[tokio::test]
async fn the_first_admin_is_generated_once_and_signs_in_over_http() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let (collector, api) = serve_embedded(&data_dir, &[]).await;
    let stderr = collector.stderr();
    // In a private file; not in the log stream (stderr is no terminal here).
    let file = data.path().join("secrets/first-admin-password");
    let password = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("no password file ({e}):\n{stderr}"))
        .trim()
        .to_owned();
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        !stderr.contains(&password),
        "the password is not logged: {stderr}"
    );
    assert!(
        stderr.contains("created the first admin") && stderr.contains("first-admin-password"),
        "{stderr}"
    );
    assert_eq!(login(api, "admin@localhost", &password).await, 200);
    assert_eq!(login(api, "admin@localhost", "not the password").await, 401);
    stop(collector).await;

    // A restart keeps the admin and the token secret, and prints no password again.
    let secret = std::fs::read(data.path().join("secrets/jwt.secret")).unwrap();
    let (collector, api) = serve_embedded(&data_dir, &[]).await;
    assert!(
        !collector.stderr().contains("Password"),
        "{}",
        collector.stderr()
    );
    assert_eq!(login(api, "admin@localhost", &password).await, 200);
    assert_eq!(
        std::fs::read(data.path().join("secrets/jwt.secret")).unwrap(),
        secret
    );
    stop(collector).await;

    // Users from the shell: added with a password on stdin, listed, password reset.
    let url = format!("sqlite://{data_dir}/dockermon.db");
    let mut add = Command::new(COLLECTOR)
        .args([
            "user",
            "add",
            "ops@example.com",
            "--role",
            "operator",
            "--password-stdin",
        ])
        .args(["--database-url", &url])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = add.stdin.take().unwrap();
        stdin.write_all(b"operator password 1\n").await.unwrap();
    }
    let added = add.wait_with_output().await.unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let listed = Command::new(COLLECTOR)
        .args(["user", "list", "--database-url", &url])
        .output()
        .await
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("ops@example.com") && listed.contains("operator"),
        "{listed}"
    );
    assert!(
        listed.contains("admin@localhost") && listed.contains("admin"),
        "{listed}"
    );
    let weak = run_to_exit(&[
        "user",
        "add",
        "x@example.com",
        "--password-file",
        "/dev/null",
        "--database-url",
        &url,
    ])
    .await;
    assert_eq!(weak.0, Some(1), "{}", weak.1);
    assert!(weak.1.contains("at least 10 characters"), "{}", weak.1);

    let reset = Command::new(COLLECTOR)
        .args(["user", "passwd", "ops@example.com", "--database-url", &url])
        .output()
        .await
        .unwrap();
    assert!(reset.status.success());
    let new_password = String::from_utf8_lossy(&reset.stdout).trim().to_owned();
    assert_eq!(new_password.len(), 20);
    let (collector, api) = serve_embedded(&data_dir, &[]).await;
    assert_eq!(
        login(api, "ops@example.com", "operator password 1").await,
        401
    );
    assert_eq!(login(api, "ops@example.com", &new_password).await, 200);
    stop(collector).await;
}

#[tokio::test]
async fn a_short_token_secret_is_refused_before_anything_starts() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let (code, stderr) =
        run_to_exit(&["pki", "init", "--san", "localhost", "--data-dir", &data_dir]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = run_to_exit(&[
        "serve",
        "--data-dir",
        &data_dir,
        "--jwt-secret",
        "changeme",
        "--api-listen",
        &free_loopback_address().unwrap().to_string(),
        "--ws-listen",
        &free_loopback_address().unwrap().to_string(),
        "--agent-listen",
        &free_loopback_address().unwrap().to_string(),
        "--health-listen",
        &free_loopback_address().unwrap().to_string(),
    ])
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("the JWT secret must be at least 32 bytes"),
        "{stderr}"
    );
    let (code, stderr) =
        run_to_exit(&["serve", "--data-dir", &data_dir, "--access-token-ttl", "5s"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("access_token_ttl: use 1m to 1d"),
        "{stderr}"
    );
}

/// Starts `standalone` in `data_dir` (its default `./data` is under it).
async fn standalone(
    data_dir: &std::path::Path,
    docker_host: &str,
) -> (RecordedProcess, SocketAddr) {
    spawn_serving(&["standalone", "--docker-host", docker_host], data_dir).await
}

async fn sign_in(api: SocketAddr, password: &str) -> String {
    let body = serde_json::json!({"email": "admin@localhost", "password": password});
    let (status, tokens) =
        dockermon_e2e::http::json(api, "POST", "/api/v1/auth/login", None, Some(&body))
            .await
            .unwrap();
    assert_eq!(status, 200, "{tokens}");
    tokens["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn standalone_watches_the_local_docker_in_one_command() {
    use dockermon_e2e::docker::{Cleanup, TEST_IMAGE, docker, ensure_test_image, unique_name};
    ensure_test_image().await.unwrap();
    let mut cleanup = Cleanup::default();
    let name = cleanup.container(&unique_name("standalone"));
    docker(&["run", "-d", "--name", &name, TEST_IMAGE, "sleep", "3600"])
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (collector, api) = standalone(dir.path(), "unix:///var/run/docker.sock").await;
    let password = std::fs::read_to_string(dir.path().join("data/secrets/first-admin-password"))
        .unwrap_or_else(|e| panic!("no password file ({e}):\n{}", collector.stderr()))
        .trim()
        .to_owned();
    let token = sign_in(api, &password).await;
    let path = format!("/api/v1/containers?name={name}&state=running");
    let found = dockermon_e2e::wait::eventually(WAIT, "the local container in the API", || {
        let (path, token) = (path.clone(), token.clone());
        async move {
            let (_, page) =
                dockermon_e2e::http::json(api, "GET", &path, Some(&token), None).await?;
            (page["total"] == 1).then_some(page)
        }
    })
    .await
    .unwrap();
    assert_eq!(found["items"][0]["image"], TEST_IMAGE);
    let (_, hosts) = dockermon_e2e::http::json(api, "GET", "/api/v1/hosts", Some(&token), None)
        .await
        .unwrap();
    assert_eq!(hosts["items"][0]["connected"], true, "{hosts}");
    stop(collector).await;
    for made in [
        "data/dockermon.db",
        "data/pki/ca.key",
        "data/agent/agent.key",
        "data/secrets/jwt.secret",
    ] {
        assert!(dir.path().join(made).exists(), "{made}");
    }
    // Everything it wrote is private: the database (and its -wal, -shm), keys, secrets,
    // the spool, and the directories that hold them.
    assert_eq!(
        dockermon_agent::process::shared_files(&dir.path().join("data")),
        Vec::<String>::new()
    );
    let mode = |path: &str| {
        std::fs::metadata(dir.path().join(path))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("data"), 0o700);
    assert_eq!(mode("data/dockermon.db"), 0o600);

    // A second start reuses everything: same admin, same agent, no new password shown.
    let (collector, api) = standalone(dir.path(), "unix:///var/run/docker.sock").await;
    assert!(
        !collector.stderr().contains("Password"),
        "{}",
        collector.stderr()
    );
    sign_in(api, &password).await;
    collector
        .wait_for_stderr(WAIT, "connected to the collector")
        .await
        .unwrap();
    assert!(
        !collector.stderr().contains("enrolled"),
        "{}",
        collector.stderr()
    );
    stop(collector).await;

    // No Docker: the API stays up and the log says why nothing arrives.
    let missing = dir.path().join("no-docker.sock");
    let (collector, api) = standalone(dir.path(), &format!("unix://{}", missing.display())).await;
    collector
        .wait_for_stderr(WAIT, "no Docker socket here")
        .await
        .unwrap();
    sign_in(api, &password).await;
    stop(collector).await;
}

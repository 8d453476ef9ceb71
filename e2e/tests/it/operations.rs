//! Operating a deployment from the shell: admin commands that act on the deployment's
//! database or refuse, revoking and re-admitting a host, one agent per host name, join
//! tokens listed and revoked, and logs whose reader went away.

use std::process::Stdio;

use dockermon_e2e::fleet::{Agent, WAIT, run_collector};
use dockermon_e2e::mysql::MysqlDatabase;
use dockermon_e2e::wait::eventually;
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection};

use crate::support::{ADMIN_PASSWORD, Setup, call, sign_in};

#[tokio::test]
async fn admin_commands_act_on_the_deployment_or_refuse() {
    let setup = Setup::new().await;
    let _agent = setup.agent("web-01").await;
    setup.host_id("web-01").await;

    // Without the deployment's flags: no new database, no false success.
    let elsewhere = tempfile::tempdir().unwrap();
    for args in [
        vec!["host", "delete", "web-01"],
        vec!["token", "create", "--host", "web-02"],
        vec!["token", "list"],
        vec!["user", "list"],
    ] {
        let output = run_collector(&args, Some(elsewhere.path())).await.unwrap();
        assert_eq!(output.code, Some(1), "{args:?}: {output:?}");
        assert!(
            output.stderr.contains("no database at") && output.stderr.contains("--database-url"),
            "{args:?}: {}",
            output.stderr
        );
    }
    assert!(
        std::fs::read_dir(elsewhere.path())
            .unwrap()
            .next()
            .is_none(),
        "nothing was created"
    );
    // A MariaDB database without Dockermon's schema is refused too, and left empty.
    let empty = MysqlDatabase::create().await;
    let output = run_collector(&["user", "list", "--database-url", &empty.url], None)
        .await
        .unwrap();
    assert_eq!(output.code, Some(1), "{output:?}");
    assert!(
        output.stderr.contains("has no Dockermon schema"),
        "{}",
        output.stderr
    );
    let mut db = sqlx::AnyConnection::connect(&empty.url).await.unwrap();
    let tables = sqlx::query(AssertSqlSafe("SHOW TABLES"))
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert!(tables.is_empty(), "no schema was created");

    // With them: a host it does not know is an error, a host it knows is deleted.
    let output = setup
        .collector
        .command(&["host", "delete", "web-99"])
        .await
        .unwrap();
    assert_eq!(output.code, Some(1), "{output:?}");
    assert!(output.stderr.contains("no host named web-99"), "{output:?}");
    let hosts = setup.collector.cli(&["host", "list"]).await.unwrap();
    assert!(
        hosts
            .lines()
            .any(|l| l.starts_with("web-01") && l.contains("yes")),
        "{hosts}"
    );
    setup.collector.delete_host("web-01").await.unwrap();

    // The token lifetime has the API's bounds.
    let output = setup
        .collector
        .command(&["token", "create", "--host", "web-03", "--ttl", "0s"])
        .await
        .unwrap();
    assert_eq!(output.code, Some(2), "{output:?}");
    assert!(output.stderr.contains("use 1s to 7d"), "{output:?}");
}

#[tokio::test]
async fn a_deleted_host_comes_back_with_a_new_token_and_its_old_state() {
    let setup = Setup::new().await;
    let token = setup.collector.token("web-01", "10m").await.unwrap();
    let state = setup.dir.path().join("web-01");
    let mut agent = Agent::start(&setup.collector.url(), &state, &["--join-token", &token])
        .await
        .unwrap();
    agent.wait_connected().await.unwrap();
    let first = setup.host_id("web-01").await;

    setup.collector.delete_host("web-01").await.unwrap();
    let process = agent.process.as_ref().unwrap();
    process
        .wait_for_stderr(WAIT, "this host was deleted")
        .await
        .unwrap();
    agent.kill9().await;

    // The README's path: a new token, the agent restarted with it and its old state.
    let token = setup.collector.token("web-01", "10m").await.unwrap();
    let mut agent = Agent::start(&setup.collector.url(), &state, &["--join-token", &token])
        .await
        .unwrap();
    let process = agent.process.as_ref().unwrap();
    process
        .wait_for_stderr(WAIT, "trying the join token to enroll again")
        .await
        .unwrap();
    agent.wait_connected().await.unwrap();
    let store = &setup.store;
    let again = eventually(WAIT, "web-01 reporting again", || async {
        store
            .hosts()
            .await
            .ok()?
            .into_iter()
            .find(|h| h.name == "web-01" && h.info.is_some())
            .map(|h| h.id)
    })
    .await
    .unwrap();
    assert_ne!(again, first, "a new host record: the old one was deleted");
    agent.kill9().await;
}

#[tokio::test]
async fn one_host_name_is_one_agent() {
    let setup = Setup::new().await;
    let admin = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let first = setup.agent("web-01").await;
    setup.host_id("web-01").await;

    // A token for an enrolled host is refused, from the shell and the API.
    let output = setup
        .collector
        .command(&["token", "create", "--host", "web-01"])
        .await
        .unwrap();
    assert_eq!(output.code, Some(1), "{output:?}");
    assert!(output.stderr.contains("--replace"), "{}", output.stderr);
    let body = json!({"host": "web-01"});
    let (status, refused) = call(
        &setup,
        "POST",
        "/api/v1/join-tokens",
        Some(&admin),
        Some(body),
    )
    .await;
    assert_eq!(status, 409, "{refused}");

    // Replacing on purpose: the new agent enrolls, the old one is refused from then on.
    let token = setup
        .collector
        .cli(&["token", "create", "--host", "web-01", "--replace"])
        .await
        .unwrap();
    let second = Agent::start(
        &setup.collector.url(),
        &setup.dir.path().join("web-01-new"),
        &["--join-token", &token],
    )
    .await
    .unwrap();
    second.wait_connected().await.unwrap();
    let old = first.process.as_ref().unwrap();
    eventually(WAIT, "the replaced agent refused twice", || async {
        (old.stderr().matches("this certificate was revoked").count() >= 2).then_some(())
    })
    .await
    .unwrap_or_else(|error| panic!("{error}; the replaced agent's log:\n{}", old.stderr()));
    assert!(
        !second.stderr().contains("disconnected from the collector"),
        "the new agent keeps its session: {}",
        second.stderr()
    );
    let (_, hosts) = call(&setup, "GET", "/api/v1/hosts", Some(&admin), None).await;
    let web = hosts["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "web-01")
        .unwrap()
        .clone();
    assert_eq!(web["connected"], true, "{web}");

    // A copy of the new agent's state directory (a cloned machine) presents the same
    // certificate: refused while the original is alive, which keeps its session.
    let _clone = clone_is_refused(
        &setup.dir.path().join("web-01-new"),
        &setup.collector.url(),
        &second,
    )
    .await;
}

/// Starts an agent on a copy of `state_dir` (a cloned machine: the same certificate,
/// another process) against `collector`; checks that it is refused twice while
/// `original`, the agent of `state_dir`, keeps its session.
pub(crate) async fn clone_is_refused(
    state_dir: &std::path::Path,
    collector: &str,
    original: &Agent,
) -> Agent {
    let copy = state_dir.with_extension("copy");
    copy_dir(state_dir, &copy);
    let clone = Agent::start(collector, &copy, &[]).await.unwrap();
    let cloned = clone.process.as_ref().unwrap();
    eventually(WAIT, "the clone refused twice", || async {
        (cloned
            .stderr()
            .matches("connected from another agent process")
            .count()
            >= 2)
            .then_some(())
    })
    .await
    .unwrap_or_else(|error| panic!("{error}; the clone's log:\n{}", cloned.stderr()));
    assert!(
        !original
            .stderr()
            .contains("disconnected from the collector"),
        "the original keeps its session: {}",
        original.stderr()
    );
    clone
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn join_tokens_are_listed_and_revoked() {
    let setup = Setup::new().await;
    let admin = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let token = setup.collector.token("later-01", "1h").await.unwrap();
    let body = json!({"host": "later-02", "ttl_seconds": 600});
    let (status, created) = call(
        &setup,
        "POST",
        "/api/v1/join-tokens",
        Some(&admin),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{created}");

    let list = setup.collector.cli(&["token", "list"]).await.unwrap();
    let id: i64 = list
        .lines()
        .find(|l| l.contains("later-01"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("later-01 listed: {list}"));
    assert!(list.contains("later-02"), "{list}");
    assert!(!list.contains(token.as_str()), "secrets are not shown");
    setup
        .collector
        .cli(&["token", "revoke", &id.to_string()])
        .await
        .unwrap();
    let (status, tokens) = call(
        &setup,
        "GET",
        "/api/v1/join-tokens?all=true",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let states: Vec<(String, String)> = tokens
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["host"].as_str().unwrap().to_owned(),
                t["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        states.contains(&("later-01".into(), "revoked".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("later-02".into(), "unused".into())),
        "{states:?}"
    );
    let (_, usable) = call(&setup, "GET", "/api/v1/join-tokens", Some(&admin), None).await;
    assert_eq!(usable.as_array().unwrap().len(), 1, "{usable}");

    // An agent with the revoked token is refused, and says why.
    let mut agent = Agent::start(
        &setup.collector.url(),
        &setup.dir.path().join("later-01"),
        &["--join-token", &token],
    )
    .await
    .unwrap();
    let process = agent.process.as_mut().unwrap();
    let status = process.wait_exit(WAIT).await.unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(
        process.stderr().contains("join token revoked"),
        "{}",
        process.stderr()
    );

    // Revoking the API's token over the API.
    let other = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["host"] == "later-02")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/v1/join-tokens/{other}");
    let (status, _) = call(&setup, "DELETE", &path, Some(&admin), None).await;
    assert_eq!(status, 204);
    let (status, _) = call(
        &setup,
        "DELETE",
        "/api/v1/join-tokens/99999",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

/// Runs `program args… 2>&1 | head -1`: the process's log is read for one line, then its
/// reader is gone. With `terminate`, sends SIGTERM then. Returns the exit code.
async fn with_a_reader_that_leaves(program: &str, args: &[&str], terminate: bool) -> Option<i32> {
    use tokio::io::AsyncBufReadExt;
    let (reader, writer) = std::io::pipe().unwrap();
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(writer)
        .spawn()
        .unwrap();
    // `head -1`: one line, then the read end is closed.
    let reader = tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into()).unwrap();
    let mut lines = tokio::io::BufReader::new(reader).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(first.is_some(), "a first log line");
    drop(lines);
    if terminate {
        // Stopping logs ("shutting down", …) into the closed pipe: a process that panics
        // on it exits 101, or never stops.
        let pid = child.id().expect("still running");
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
    }
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("the process stops")
        .unwrap();
    status.code()
}

#[tokio::test]
async fn a_log_reader_that_goes_away_takes_nothing_down() {
    let (agent, collector) = dockermon_e2e::binaries::binaries();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let output = run_collector(&["pki", "init", "--data-dir", data], None)
        .await
        .unwrap();
    assert_eq!(output.code, Some(0), "{output:?}");
    let code = with_a_reader_that_leaves(
        collector.to_str().unwrap(),
        &[
            "serve",
            "--data-dir",
            data,
            "--log",
            "debug",
            "--api-listen",
            "127.0.0.1:0",
            "--ws-listen",
            "127.0.0.1:0",
            "--agent-listen",
            "127.0.0.1:0",
            "--health-listen",
            "127.0.0.1:0",
        ],
        true,
    )
    .await;
    assert_eq!(code, Some(0), "the collector stops cleanly on SIGTERM");
    let code = with_a_reader_that_leaves(
        agent.to_str().unwrap(),
        &[
            "--output",
            "stdout",
            "--log",
            "debug",
            "--usage-interval",
            "off",
        ],
        true,
    )
    .await;
    assert_eq!(code, Some(0), "the agent stops cleanly on SIGTERM");
}

//! Starting the agent binary and reading what it reports.

use std::time::Duration;

use dockermon_e2e::docker::ensure_test_image;
use dockermon_e2e::process::RecordedProcess;
use serde_json::Value;
use tokio::process::Command;

pub(crate) const AGENT: &str = env!("CARGO_BIN_EXE_dockermon-agent");

/// Long enough for a loaded 2-core CI machine, short enough to fail a broken agent fast.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// The agent binary with `args`, its records recorded.
pub(crate) fn agent_command(args: &[&str]) -> Command {
    let mut command = Command::new(AGENT);
    command
        .args(["--output", "stdout", "--log", "dockermon_agent=debug"])
        .args(args)
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKERMON_CONFIG");
    command
}

/// Starts the agent and waits until it has sent its host record and first full
/// inventory: from then on it is subscribed to events.
pub(crate) async fn start_agent(args: &[&str]) -> RecordedProcess {
    ensure_test_image().await.expect("test image");
    let agent = RecordedProcess::spawn(agent_command(args)).expect("agent starts");
    agent
        .wait_for(WAIT, "the first full inventory", |records| {
            full_inventories(records).next().map(|_| ())
        })
        .await
        .unwrap();
    agent
}

pub(crate) fn of_type<'a>(
    records: &'a [Value],
    kind: &'a str,
) -> impl Iterator<Item = &'a Value> + 'a {
    records.iter().filter(move |r| r["type"] == kind)
}

pub(crate) fn full_inventories(records: &[Value]) -> impl Iterator<Item = &Value> {
    of_type(records, "inventory").filter(|r| r["full"] == true)
}

/// The container events the agent reported for `container_id`, as (action, time_ns).
pub(crate) fn container_events(records: &[Value], container_id: &str) -> Vec<(String, i64)> {
    of_type(records, "event")
        .filter(|e| e["kind"] == "container" && e["actor_id"] == container_id)
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["time_ns"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The oracle's events for `container_id`, in the same shape.
pub(crate) fn oracle_events(
    oracle: &[(String, String, i64)],
    container_id: &str,
) -> Vec<(String, i64)> {
    oracle
        .iter()
        .filter(|(_, id, _)| id == container_id)
        .map(|(action, _, time)| (action.clone(), *time))
        .collect()
}

/// Asserts that `actions` appear in `events` in this order (other events may sit between).
pub(crate) fn assert_in_order(events: &[(String, i64)], actions: &[&str]) {
    let mut expected = actions.iter().peekable();
    for (action, _) in events {
        if expected.peek() == Some(&&action.as_str()) {
            expected.next();
        }
    }
    assert!(
        expected.peek().is_none(),
        "expected {actions:?} in order, got {:?}",
        events.iter().map(|(a, _)| a).collect::<Vec<_>>()
    );
}

/// Downloads `http://{server_ip}:8080/blob` from inside `client`, retrying while the
/// server's httpd starts (up to ten seconds).
pub(crate) async fn fetch_blob(client: &str, server_ip: &str) {
    let fetch = format!(
        "for i in $(seq 100); do wget -q -O /dev/null http://{server_ip}:8080/blob && exit 0; sleep 0.1; done; exit 1"
    );
    dockermon_e2e::docker::docker(&["exec", client, "sh", "-c", &fetch])
        .await
        .unwrap();
}

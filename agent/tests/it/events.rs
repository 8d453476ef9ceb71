//! Docker events: complete, ordered, exactly once, also across a cut connection.

use dockermon_e2e::docker::{Cleanup, EventOracle, TEST_IMAGE, docker, unique_name};
use dockermon_e2e::process::RecordedProcess;
use dockermon_e2e::proxy::DockerProxy;

use crate::support::{
    WAIT, assert_in_order, container_events, full_inventories, oracle_events, start_agent,
};

/// Waits until the agent reported `action` for `id` and returns its events for `id`.
async fn reported(agent: &RecordedProcess, id: &str, action: &str) -> Vec<(String, i64)> {
    agent
        .wait_for(WAIT, &format!("{action} event of {id}"), |records| {
            let events = container_events(records, id);
            events.iter().any(|(a, _)| a == action).then_some(events)
        })
        .await
        .unwrap()
}

/// Runs a create/start/stop/start/kill/restart/rm life through the Docker CLI.
async fn live_a_life(name: &str) -> String {
    let id = docker(&["create", "--name", name, TEST_IMAGE, "sleep", "3600"])
        .await
        .unwrap();
    docker(&["start", name]).await.unwrap();
    docker(&["stop", "-t", "1", name]).await.unwrap();
    docker(&["start", name]).await.unwrap();
    docker(&["kill", name]).await.unwrap();
    docker(&["restart", "-t", "1", name]).await.unwrap();
    docker(&["rm", "-f", name]).await.unwrap();
    id
}

const LIFE: &[&str] = &[
    "create", "start", "kill", "die", "stop", "start", "kill", "die", "start", "restart", "kill",
    "die", "destroy",
];

#[tokio::test]
async fn container_lifecycle_events_arrive_once_in_order() {
    let mut cleanup = Cleanup::default();
    let name = cleanup.container(&unique_name("life"));
    let agent = start_agent(&["--usage-interval", "off"]).await;
    let oracle = EventOracle::start(&[&format!("container={name}")])
        .await
        .unwrap();

    let id = live_a_life(&name).await;

    let from_agent = reported(&agent, &id, "destroy").await;
    let from_docker = dockermon_e2e::wait::eventually(WAIT, "the oracle's destroy", || {
        let events = oracle_events(&oracle.events(), &id);
        async move { events.iter().any(|(a, _)| a == "destroy").then_some(events) }
    })
    .await
    .unwrap();
    oracle.stop().await;

    assert_in_order(&from_agent, LIFE);
    // Exactly what Docker published, in Docker's order, with nanosecond timestamps.
    assert_eq!(from_agent, from_docker);
}

#[tokio::test]
async fn events_during_a_cut_stream_are_reported_once_after_reconnecting() {
    let mut cleanup = Cleanup::default();
    let before = cleanup.container(&unique_name("before-cut"));
    let during = cleanup.container(&unique_name("during-cut"));
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = DockerProxy::new(dir.path().join("docker.sock"), "/var/run/docker.sock");
    proxy.start().unwrap();
    let host = format!("unix://{}", proxy.path().display());

    let agent = start_agent(&["--docker-host", &host, "--usage-interval", "off"]).await;
    let oracle = EventOracle::start(&["type=container"]).await.unwrap();

    // Events just before the cut fall inside the replay window after reconnecting, so
    // Docker replays them and the agent must recognise them as already reported.
    let before_id = docker(&["run", "-d", "--name", &before, TEST_IMAGE, "sleep", "3600"])
        .await
        .unwrap();
    reported(&agent, &before_id, "start").await;

    proxy.cut();
    agent
        .wait_for_stderr(WAIT, "docker events stream interrupted")
        .await
        .unwrap();
    docker(&["stop", "-t", "1", &before]).await.unwrap();
    let during_id = live_a_life(&during).await;
    proxy.start().unwrap();

    let during_events = reported(&agent, &during_id, "destroy").await;
    let before_events = reported(&agent, &before_id, "stop").await;
    let truth = dockermon_e2e::wait::eventually(WAIT, "the oracle's events", || {
        let events = oracle.events();
        let done = oracle_events(&events, &during_id)
            .iter()
            .any(|(a, _)| a == "destroy");
        async move { done.then_some(events) }
    })
    .await
    .unwrap();
    oracle.stop().await;

    assert_in_order(&during_events, LIFE);
    assert_in_order(&before_events, &["create", "start", "kill", "die", "stop"]);
    assert_eq!(during_events, oracle_events(&truth, &during_id));
    assert_eq!(before_events, oracle_events(&truth, &before_id));

    // Whatever the cut hid, the inventory is rebuilt: a second full snapshot arrives,
    // without the container removed during the cut.
    let snapshot = agent
        .wait_for(WAIT, "a full inventory after reconnecting", |records| {
            full_inventories(records).nth(1).cloned()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = snapshot["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&before_id.as_str()));
    assert!(!ids.contains(&during_id.as_str()));
}

//! Nothing lost, nothing stored twice: through an enrollment, a collector killed with
//! SIGKILL, a two-minute collector outage, and an agent restarted with frames in its spool.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use dockermon_collector::store::{ContainerSelector, Resolution, Retention, StatsQuery};
use dockermon_e2e::docker::{Cleanup, TEST_IMAGE, docker, unique_name};
use dockermon_e2e::fleet::WAIT;
use dockermon_e2e::wait::eventually;

use crate::support::{Churn, Setup};

#[tokio::test]
async fn an_enrolled_agent_delivers_events_and_stats() {
    let setup = Setup::new().await;
    let agent = setup.agent("host-a").await;
    // The key was made on the host, and only the host can read it.
    let key = agent.state_dir.join("agent.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let mut cleanup = Cleanup::default();
    let name = cleanup.container(&unique_name("delivered"));
    let churn = Churn::start().await;
    let id = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        &format!("dmtest={}", churn.tag),
        TEST_IMAGE,
        "sleep",
        "3600",
    ])
    .await
    .unwrap();
    let host = setup.host_id("host-a").await;

    // Stats at the collector's interval (1 s), on the container's history.
    let store = &setup.store;
    let series = eventually(WAIT, "stats of the new container", || {
        let name = name.clone();
        async move {
            let container = store
                .find_container(host, &ContainerSelector::Name(name))
                .await
                .ok()?;
            let query = StatsQuery {
                container: container.id,
                from_ns: 0,
                to_ns: i64::MAX,
                resolution: Some(Resolution::Raw),
                max_points: 1000,
            };
            let series = store
                .container_stats(&query, dockermon_proto::now_ns(), &Retention::default())
                .await
                .ok()?;
            (series.points.len() >= 3).then_some(series)
        }
    })
    .await
    .unwrap();
    assert!(
        series
            .points
            .iter()
            .skip(1)
            .all(|p| p.cpu_percent.is_some()),
        "rates after the first sample"
    );
    let container = store
        .find_container(host, &ContainerSelector::Name(name.clone()))
        .await
        .unwrap();
    assert_eq!(container.docker_id, id);
    assert_eq!(container.state, "running");

    docker(&["rm", "-f", &name]).await.unwrap();
    churn.settle(1).await;
    let stored = setup.assert_stored_exactly(host, &churn.oracle).await;
    assert!(stored >= 4, "create, start, kill, die, destroy: {stored}");
    let hosts = store.hosts().await.unwrap();
    let info = hosts
        .iter()
        .find(|h| h.name == "host-a")
        .unwrap()
        .info
        .clone()
        .unwrap();
    assert!(!info.docker_version.is_empty(), "the host record arrived");
}

#[tokio::test]
async fn killing_the_collector_mid_stream_loses_nothing_and_duplicates_nothing() {
    const LIVES: usize = 16;
    let mut setup = Setup::new().await;
    let agent = setup.agent("host-k").await;
    let host = setup.host_id("host-k").await;
    let churn = Churn::start().await;
    for i in 0..LIVES {
        churn.life(i).await;
        if i == LIVES / 2 {
            // Mid-stream: frames in flight, some committed but not yet acknowledged.
            setup.collector.kill9().await;
            setup.collector.restart().await.unwrap();
        }
    }
    churn.settle(LIVES).await;
    let stored = setup.assert_stored_exactly(host, &churn.oracle).await;
    assert!(
        stored >= LIVES * 4,
        "{stored} events for {LIVES} container lives"
    );
    assert!(agent.stderr().contains("connected to the collector"));
}

#[tokio::test]
async fn a_two_minute_collector_outage_delivers_every_event_in_order() {
    const OUTAGE: Duration = Duration::from_secs(120);
    let mut setup = Setup::new().await;
    let agent = setup.agent("host-o").await;
    let host = setup.host_id("host-o").await;
    let churn = Churn::start().await;
    churn.life(0).await;

    setup.collector.kill9().await;
    let started = std::time::Instant::now();
    let mut lives = 1;
    // Churn for the whole outage; the agent keeps everything in its spool.
    while started.elapsed() < OUTAGE {
        churn.life(lives).await;
        lives += 1;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    churn.settle(lives).await;
    assert!(
        agent.spooled_frames() > 0,
        "the agent spooled while the collector was down"
    );
    setup.collector.restart().await.unwrap();

    let stored = setup.assert_stored_exactly(host, &churn.oracle).await;
    assert!(stored >= lives * 4);
    eventually(WAIT, "the spool to drain", || async {
        (agent.spooled_frames() == 0).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_agent_restarted_with_a_full_spool_replays_it_once() {
    const LIVES: usize = 6;
    let mut setup = Setup::new().await;
    let mut agent = setup.agent("host-r").await;
    let host = setup.host_id("host-r").await;
    let churn = Churn::start().await;

    setup.collector.kill9().await;
    for i in 0..LIVES {
        churn.life(i).await;
    }
    churn.settle(LIVES).await;
    eventually(WAIT, "frames in the spool", || async {
        (agent.spooled_frames() > 0).then_some(())
    })
    .await
    .unwrap();
    // The agent dies too, with its frames unacknowledged on disk.
    agent.kill9().await;
    setup.collector.restart().await.unwrap();
    agent.restart().await.unwrap();
    agent.wait_connected().await.unwrap();

    setup.assert_stored_exactly(host, &churn.oracle).await;
    eventually(WAIT, "the spool to drain", || async {
        (agent.spooled_frames() == 0).then_some(())
    })
    .await
    .unwrap();
}

//! Profile sessions in the store, on both databases: one running session per container,
//! one ending per session, samples stored once and only into the agent's own host's
//! sessions, and summaries that equal the samples.

use dockermon_collector::store::{
    ContainerSelector, NewProfile, Page, ProfileEnding, ProfileFilter, ProfileOrigin, ProfileState,
    StoreError,
};
use dockermon_proto::{
    ContainerId, NetworkCounters, ProfileBatch, ProfileEnd, ProfileEndReason, ProfileSample,
    Record, StatsCounters, StatsRates,
};

use crate::fixtures::{NOW, S, container, host, ingest, inventory};
use crate::support::{TestDb, on_both_backends};

on_both_backends!(
    one_running_session_per_container_and_one_ending_per_session,
    samples_are_stored_once_and_summarised,
    an_agent_writes_only_into_its_own_hosts_sessions,
    an_ending_from_the_collector_keeps_what_the_agent_says_later,
    lists_filter_by_state_host_and_container,
);

/// A sample every second from `start`, with `cpu` % and 1,000 bytes received per second.
fn samples(start: i64, count: usize, cpu: f64) -> Vec<ProfileSample> {
    (0..count)
        .map(|i| ProfileSample {
            time_ns: start + i as i64 * S,
            counters: StatsCounters {
                cpu_total_ns: i as u64 * 1_000_000_000,
                memory_usage_bytes: 1_000 + i as u64,
                memory_working_set_bytes: 500 + i as u64,
                memory_limit_bytes: 1 << 30,
                network: NetworkCounters {
                    rx_bytes: 1_000 * (i as u64 + 1),
                    ..Default::default()
                },
                pids: 3,
                ..Default::default()
            },
            rates: StatsRates {
                interval_ns: S,
                cpu_percent: cpu + i as f64,
                net_rx_bytes_per_s: 1_000.0,
                ..Default::default()
            },
        })
        .collect()
}

fn batch(id: i64, samples: Vec<ProfileSample>, ended: Option<ProfileEnd>) -> Record {
    Record::Profile(ProfileBatch {
        profile_id: id as u64,
        container_id: ContainerId::from("c1"),
        samples,
        ended,
    })
}

fn end(reason: ProfileEndReason, samples: u64) -> Option<ProfileEnd> {
    Some(ProfileEnd {
        time_ns: NOW + 60 * S,
        reason,
        samples,
        message: None,
    })
}

/// A host with one running container, and a new session's description for it.
async fn setup(db: &TestDb, host_name: &str) -> NewProfile {
    let store = &db.store;
    let h = host(store, host_name).await;
    ingest(
        store,
        h,
        &[inventory(true, vec![container("c1", "web", NOW - 100 * S)])],
    )
    .await;
    let c = store
        .find_container(h, &ContainerSelector::Name("web".into()))
        .await
        .unwrap();
    NewProfile {
        host: h,
        container: c.id,
        docker_id: c.docker_id,
        started_by: None,
        origin: ProfileOrigin::Api,
        interval_ms: 1000,
        duration_s: 60,
        started_ns: NOW,
    }
}

async fn one_running_session_per_container_and_one_ending_per_session(db: TestDb) {
    let store = &db.store;
    let new = setup(&db, "docker-1").await;
    let id = store.create_profile(&new).await.unwrap();
    assert!(matches!(
        store.create_profile(&new).await,
        Err(StoreError::Conflict(_))
    ));
    let running = store
        .running_profile_of(new.container)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(running.id, id);
    assert_eq!(running.state, ProfileState::Running);
    assert_eq!(running.container_name, "web");
    assert_eq!(
        store.running_profile_counts(new.host, None).await.unwrap(),
        (1, 0)
    );

    let stop = ProfileEnding {
        reason: ProfileEndReason::Stopped,
        message: None,
        stopped_by: Some(7),
        samples_read: None,
        ended_ns: NOW + S,
    };
    assert!(store.end_profile(id, &stop).await.unwrap());
    let later = ProfileEnding {
        reason: ProfileEndReason::Interrupted,
        ended_ns: NOW + 2 * S,
        ..stop.clone()
    };
    assert!(!store.end_profile(id, &later).await.unwrap(), "ends once");
    let ended = store.profile(id).await.unwrap();
    assert_eq!(ended.state, ProfileState::Ended);
    assert_eq!(ended.reason.as_deref(), Some("stopped"));
    assert_eq!(ended.ended_ns, Some(NOW + S));
    assert_eq!(ended.stopped_by, Some(7));

    // The container is free for a new session once the first has ended.
    assert!(
        store
            .running_profile_of(new.container)
            .await
            .unwrap()
            .is_none()
    );
    let again = store.create_profile(&new).await.unwrap();
    assert_ne!(again, id);
}

async fn samples_are_stored_once_and_summarised(db: TestDb) {
    let store = &db.store;
    let new = setup(&db, "docker-1").await;
    let id = store.create_profile(&new).await.unwrap();
    let first = batch(id, samples(NOW, 10, 50.0), None);
    ingest(store, new.host, std::slice::from_ref(&first)).await;
    ingest(store, new.host, std::slice::from_ref(&first)).await;
    let last = batch(
        id,
        samples(NOW + 10 * S, 5, 60.0),
        end(ProfileEndReason::Duration, 15),
    );
    let report = store
        .ingest(&[(new.host, std::slice::from_ref(&last))])
        .await
        .unwrap();
    assert_eq!(report.profiles_ended.len(), 1);
    assert_eq!(report.profiles_ended[0].reason, ProfileEndReason::Duration);
    let again = store.ingest(&[(new.host, &[last])]).await.unwrap();
    assert!(again.profiles_ended.is_empty(), "a session ends once");

    let profile = store.profile(id).await.unwrap();
    assert_eq!(profile.state, ProfileState::Ended);
    assert_eq!(profile.reason.as_deref(), Some("duration"));
    assert_eq!(profile.samples, 15);
    assert_eq!(profile.samples_read, Some(15));
    let summary = profile.summary.unwrap();
    // 50..59 then 60..64: every interval is 1 s, so the weighted average is the mean.
    let cpu: Vec<f64> = (0..10)
        .map(|i| 50.0 + f64::from(i))
        .chain((0..5).map(|i| 60.0 + f64::from(i)))
        .collect();
    let mean = cpu.iter().sum::<f64>() / cpu.len() as f64;
    assert!((summary.cpu_percent_avg - mean).abs() < 1e-9, "{summary:?}");
    assert_eq!(summary.cpu_percent_max, 64.0);
    assert_eq!(summary.memory_usage_max_bytes, 1_009);
    assert_eq!(summary.net_rx_bytes, 15_000.0);

    let page = store
        .profile_samples(id, Page::new(0, 4).unwrap())
        .await
        .unwrap();
    assert_eq!(page.total, 15);
    assert_eq!(page.items.len(), 4);
    assert_eq!(page.items[0].time_ns, NOW);
    assert_eq!(page.items[3].cpu_percent, 53.0);
    let all = store.all_profile_samples(id).await.unwrap();
    assert_eq!(all.len(), 15);
    assert!(all.windows(2).all(|p| p[1].time_ns - p[0].time_ns == S));
    let mut line = String::new();
    all[0].csv_row(&mut line);
    assert!(line.starts_with("2026-11-01T00:00:00Z,"), "{line}");
}

async fn an_agent_writes_only_into_its_own_hosts_sessions(db: TestDb) {
    let store = &db.store;
    let new = setup(&db, "docker-1").await;
    let id = store.create_profile(&new).await.unwrap();
    let stranger = host(store, "docker-2").await;
    let forged = batch(id, samples(NOW, 3, 1.0), end(ProfileEndReason::Failed, 3));
    let report = store.ingest(&[(stranger, &[forged])]).await.unwrap();
    assert!(report.profiles_ended.is_empty());
    let profile = store.profile(id).await.unwrap();
    assert_eq!(profile.state, ProfileState::Running);
    assert_eq!(profile.samples, 0);
    // A batch for a session that does not exist is dropped, not an error.
    ingest(
        store,
        new.host,
        &[batch(id + 1000, samples(NOW, 3, 1.0), None)],
    )
    .await;
}

async fn an_ending_from_the_collector_keeps_what_the_agent_says_later(db: TestDb) {
    let store = &db.store;
    let new = setup(&db, "docker-1").await;
    let id = store.create_profile(&new).await.unwrap();
    let interrupted = ProfileEnding {
        reason: ProfileEndReason::Interrupted,
        message: None,
        stopped_by: None,
        samples_read: None,
        ended_ns: NOW + 30 * S,
    };
    assert!(store.end_profile(id, &interrupted).await.unwrap());
    // The agent's spool delivers the session's samples and its own ending later.
    ingest(
        store,
        new.host,
        &[batch(
            id,
            samples(NOW, 4, 5.0),
            end(ProfileEndReason::Interrupted, 4),
        )],
    )
    .await;
    let profile = store.profile(id).await.unwrap();
    assert_eq!(profile.reason.as_deref(), Some("interrupted"));
    assert_eq!(
        profile.ended_ns,
        Some(NOW + 30 * S),
        "the first ending stays"
    );
    assert_eq!(profile.samples, 4);
    assert_eq!(profile.samples_read, Some(4));
}

async fn lists_filter_by_state_host_and_container(db: TestDb) {
    let store = &db.store;
    let new = setup(&db, "docker-1").await;
    let ended = store.create_profile(&new).await.unwrap();
    let ending = ProfileEnding {
        reason: ProfileEndReason::Stopped,
        message: None,
        stopped_by: None,
        samples_read: Some(0),
        ended_ns: NOW + S,
    };
    store.end_profile(ended, &ending).await.unwrap();
    let running = store
        .create_profile(&NewProfile {
            started_ns: NOW + 10 * S,
            ..new.clone()
        })
        .await
        .unwrap();
    let other = setup(&db, "docker-2").await;
    let elsewhere = store.create_profile(&other).await.unwrap();

    let ids = |filter: ProfileFilter| async move {
        store
            .profiles(&filter, Page::first(100))
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|p| p.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(ProfileFilter::default()).await,
        [running, elsewhere, ended]
    );
    let only_running = ProfileFilter {
        state: Some(ProfileState::Running),
        ..Default::default()
    };
    assert_eq!(ids(only_running).await, [running, elsewhere]);
    let on_host = ProfileFilter {
        host: Some(new.host),
        ..Default::default()
    };
    assert_eq!(ids(on_host).await, [running, ended]);
    let of_container = ProfileFilter {
        container: Some(other.container),
        ..Default::default()
    };
    assert_eq!(ids(of_container).await, [elsewhere]);
    let since = ProfileFilter {
        from_ns: Some(NOW + 5 * S),
        ..Default::default()
    };
    assert_eq!(ids(since).await, [running]);
    let page = store
        .profiles(&ProfileFilter::default(), Page::new(1, 1).unwrap())
        .await
        .unwrap();
    assert_eq!((page.total, page.items.len()), (3, 1));
}

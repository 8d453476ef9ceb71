//! The identity rule, on both databases: two containers that run at the same time are never
//! one record or one series, whatever made their identities equal (names equal once cut to
//! 256 bytes, a rename, duplicated compose labels) and in every order their records can
//! arrive in; and a container that takes over from one that stopped or was removed does
//! continue its history (re-creation, compose's create-then-swap).

use std::collections::BTreeSet;

use dockermon_collector::store::{
    ContainerFilter, ContainerKey, Page, Resolution, Retention, StatsQuery, Store,
};
use dockermon_proto::limits::MAX_NAME_BYTES;
use dockermon_proto::{
    Compose, Container, ContainerState, InventoryUpdate, ObjectKind, ObjectRef, Record,
};

use crate::fixtures::{NOW, S, container, host, ingest, sample};
use crate::support::{TestDb, on_both_backends};

on_both_backends!(
    names_equal_after_truncation_stay_two_containers_in_every_order,
    a_rename_never_merges_two_running_containers,
    duplicated_compose_labels_never_merge_two_running_containers,
    containers_known_first_from_samples_stay_apart,
    a_re_created_container_continues_its_history,
    composes_create_then_swap_continues_the_history,
    the_survivor_takes_the_name_once_its_twin_is_removed,
    containers_known_only_from_events_have_records,
);

/// Every interleaving of two sequences, each kept in its own order.
fn interleavings<T: Clone>(a: &[T], b: &[T]) -> Vec<Vec<T>> {
    if a.is_empty() {
        return vec![b.to_vec()];
    }
    if b.is_empty() {
        return vec![a.to_vec()];
    }
    let mut all = Vec::new();
    for mut rest in interleavings(&a[1..], b) {
        rest.insert(0, a[0].clone());
        all.push(rest);
    }
    for mut rest in interleavings(a, &b[1..]) {
        rest.insert(0, b[0].clone());
        all.push(rest);
    }
    all
}

fn change(containers: Vec<Container>) -> Record {
    Record::Inventory(InventoryUpdate {
        time_ns: NOW,
        full: false,
        containers,
        ..Default::default()
    })
}

fn removal(id: &str) -> Record {
    Record::Inventory(InventoryUpdate {
        time_ns: NOW,
        removed: vec![ObjectRef {
            kind: ObjectKind::Container,
            id: id.into(),
        }],
        ..Default::default()
    })
}

/// A sample whose memory figure says which instance sent it.
fn marked(id: &str, name: &str, time_ns: i64, mark: u64) -> Record {
    Record::Stats(sample(id, name, time_ns, None, mark))
}

async fn series_marks(store: &Store, key: ContainerKey) -> BTreeSet<u64> {
    let query = StatsQuery {
        container: key,
        from_ns: 0,
        to_ns: i64::MAX,
        resolution: Some(Resolution::Raw),
        max_points: 10_000,
    };
    store
        .container_stats(&query, NOW, &Retention::default())
        .await
        .unwrap()
        .points
        .iter()
        .map(|p| p.memory_usage_bytes.unwrap().avg as u64)
        .collect()
}

/// The logical containers of the host, each with the marks of the samples in its series.
async fn histories(store: &Store) -> Vec<(String, BTreeSet<u64>)> {
    let filter = ContainerFilter {
        include_removed: true,
        ..Default::default()
    };
    let mut histories = Vec::new();
    for row in store
        .containers(&filter, Page::first(100))
        .await
        .unwrap()
        .items
    {
        histories.push((row.docker_id.clone(), series_marks(store, row.id).await));
    }
    histories.sort();
    histories
}

/// Runs every interleaving of two containers' records on a fresh host of `db` and checks
/// that they end as two containers, each series holding only its own samples.
async fn assert_never_merged(db: &TestDb, a: Vec<Record>, b: Vec<Record>) {
    for (n, order) in interleavings(&a, &b).into_iter().enumerate() {
        let store = &db.store;
        let h = host(store, &format!("host-{n}")).await;
        for record in &order {
            ingest(store, h, std::slice::from_ref(record)).await;
        }
        let filter = ContainerFilter {
            host: Some(h),
            include_removed: true,
            ..Default::default()
        };
        let rows = store
            .containers(&filter, Page::first(100))
            .await
            .unwrap()
            .items;
        let mut marks = Vec::new();
        for row in &rows {
            marks.push((row.docker_id.clone(), series_marks(store, row.id).await));
        }
        marks.sort();
        assert_eq!(
            marks,
            [
                ("a".to_owned(), BTreeSet::from([111])),
                ("b".to_owned(), BTreeSet::from([222]))
            ],
            "order {n}: {:?}",
            order.iter().map(record_summary).collect::<Vec<_>>()
        );
    }
}

fn record_summary(record: &Record) -> String {
    match record {
        Record::Inventory(u) if !u.containers.is_empty() => format!(
            "inventory {}",
            u.containers
                .iter()
                .map(|c| format!(
                    "{}:{}:{}",
                    c.id,
                    &c.name[..c.name.len().min(12)],
                    c.state.as_str()
                ))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Record::Inventory(u) => format!("removed {:?}", u.removed),
        Record::Stats(s) => format!("sample {}", s.container_id),
        other => other.type_name().to_owned(),
    }
}

async fn names_equal_after_truncation_stay_two_containers_in_every_order(db: TestDb) {
    // Two names of 267 bytes that share their first 256: the agent cuts both to the same.
    let prefix = "x".repeat(256);
    let cut = prefix.clone();
    assert_eq!(cut.len(), MAX_NAME_BYTES);
    let mut a = container("a", &cut, NOW - 100 * S);
    a.truncated.name = true;
    let mut b = container("b", &cut, NOW - 90 * S);
    b.truncated.name = true;
    assert_never_merged(
        &db,
        vec![change(vec![a]), marked("a", &cut, NOW, 111)],
        vec![change(vec![b]), marked("b", &cut, NOW + S, 222)],
    )
    .await;
}

async fn a_rename_never_merges_two_running_containers(db: TestDb) {
    // `docker rename web web-old; docker run --name web …`, both running.
    let a = container("a", "web", NOW - 100 * S);
    let renamed = container("a", "web-old", NOW - 100 * S);
    let b = container("b", "web", NOW - 10 * S);
    assert_never_merged(
        &db,
        vec![
            change(vec![a]),
            change(vec![renamed]),
            marked("a", "web-old", NOW, 111),
        ],
        vec![change(vec![b]), marked("b", "web", NOW + S, 222)],
    )
    .await;
}

async fn duplicated_compose_labels_never_merge_two_running_containers(db: TestDb) {
    let compose = Compose {
        project: "shop".into(),
        service: "web".into(),
        number: Some(1),
    };
    let mut a = container("a", "shop-web-1", NOW - 100 * S);
    a.compose = Some(compose.clone());
    let mut b = container("b", "copy-of-web", NOW - 10 * S);
    b.compose = Some(compose);
    assert_never_merged(
        &db,
        vec![change(vec![a]), marked("a", "shop-web-1", NOW, 111)],
        vec![change(vec![b]), marked("b", "copy-of-web", NOW + S, 222)],
    )
    .await;
}

async fn containers_known_first_from_samples_stay_apart(db: TestDb) {
    // A collector that restarted meets both through their samples before any inventory.
    let cut = "y".repeat(MAX_NAME_BYTES);
    assert_never_merged(
        &db,
        vec![
            marked("a", &cut, NOW, 111),
            change(vec![container("a", &cut, NOW - 100 * S)]),
        ],
        vec![
            marked("b", &cut, NOW + S, 222),
            change(vec![container("b", &cut, NOW - 90 * S)]),
        ],
    )
    .await;
}

async fn a_re_created_container_continues_its_history(db: TestDb) {
    // `docker rm -f web && docker run --name web …`, as the agent reports it: the old one
    // stopped or gone before the new one runs, whichever of its updates comes first.
    let store = &db.store;
    let h = host(store, "docker-1").await;
    let mut stopped = container("a", "web", NOW - 100 * S);
    stopped.state = ContainerState::Exited;
    ingest(
        store,
        h,
        &[
            change(vec![container("a", "web", NOW - 100 * S)]),
            marked("a", "web", NOW, 111),
            change(vec![container("b", "web", NOW - 10 * S), stopped]),
            removal("a"),
            marked("b", "web", NOW + S, 222),
        ],
    )
    .await;
    assert_eq!(
        histories(store).await,
        [("b".to_owned(), BTreeSet::from([111, 222]))]
    );
}

async fn composes_create_then_swap_continues_the_history(db: TestDb) {
    // Compose v2 re-creates a service's container by creating the new one (under a
    // temporary name, same labels) while the old still runs, then stopping and removing
    // the old one, renaming the new one and starting it.
    let store = &db.store;
    let h = host(store, "docker-1").await;
    let compose = Some(Compose {
        project: "shop".into(),
        service: "web".into(),
        number: Some(1),
    });
    let mut old = container("a", "shop-web-1", NOW - 100 * S);
    old.compose = compose.clone();
    let mut created = container("b", "a_shop-web-1", NOW - 10 * S);
    created.compose = compose.clone();
    created.state = ContainerState::Created;
    let mut stopped = old.clone();
    stopped.state = ContainerState::Exited;
    let mut started = created.clone();
    started.name = "shop-web-1".into();
    started.state = ContainerState::Running;
    ingest(
        store,
        h,
        &[
            change(vec![old]),
            marked("a", "shop-web-1", NOW, 111),
            change(vec![created]),
            marked("a", "shop-web-1", NOW + S, 111),
            change(vec![stopped]),
            removal("a"),
            change(vec![started]),
            marked("b", "shop-web-1", NOW + 2 * S, 222),
        ],
    )
    .await;
    assert_eq!(
        histories(store).await,
        [("b".to_owned(), BTreeSet::from([111, 222]))]
    );
}

async fn the_survivor_takes_the_name_once_its_twin_is_removed(db: TestDb) {
    let store = &db.store;
    let h = host(store, "docker-1").await;
    let cut = "z".repeat(MAX_NAME_BYTES);
    ingest(
        store,
        h,
        &[
            change(vec![container("a", &cut, NOW - 100 * S)]),
            change(vec![container("b", &cut, NOW - 90 * S)]),
            marked("a", &cut, NOW, 111),
            marked("b", &cut, NOW, 222),
            removal("a"),
            change(vec![container("b", &cut, NOW - 90 * S)]),
        ],
    )
    .await;
    // The next container of that name continues the survivor's history, not the removed
    // twin's.
    let mut b_stopped = container("b", &cut, NOW - 90 * S);
    b_stopped.state = ContainerState::Exited;
    ingest(
        store,
        h,
        &[
            change(vec![b_stopped]),
            removal("b"),
            change(vec![container("c", &cut, NOW - 5 * S)]),
            marked("c", &cut, NOW + S, 333),
        ],
    )
    .await;
    assert_eq!(
        histories(store).await,
        [
            ("a".to_owned(), BTreeSet::from([111])),
            ("c".to_owned(), BTreeSet::from([222, 333]))
        ]
    );
}

async fn containers_known_only_from_events_have_records(db: TestDb) {
    // Created and removed while the agent was cut off from the collector: only its events
    // reach the collector (replayed from the spool); the inventory never saw it.
    let store = &db.store;
    let h = host(store, "docker-1").await;
    let event = |time_ns: i64, action: &str| {
        let mut event = crate::fixtures::event(time_ns, action, "short-lived");
        event.actor_name = Some("job-1".into());
        event.attributes.insert("name".into(), "job-1".into());
        Record::Event(event)
    };
    ingest(
        store,
        h,
        &[
            event(NOW, "create"),
            event(NOW + 1, "start"),
            event(NOW + 2, "die"),
            event(NOW + 3, "destroy"),
        ],
    )
    .await;
    let filter = ContainerFilter {
        include_removed: true,
        ..Default::default()
    };
    let rows = store
        .containers(&filter, Page::first(10))
        .await
        .unwrap()
        .items;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].name, "job-1");
    assert_eq!(rows[0].state, "removed");
    assert_eq!(rows[0].removed_ns, Some(NOW + 3));
    assert_eq!(rows[0].image, "nginx:1.27");
    let activity = store
        .activity(&Default::default(), Page::first(10))
        .await
        .unwrap()
        .items;
    assert_eq!(activity.len(), 4);
    assert!(activity.iter().all(|e| e.container_id == Some(rows[0].id)));
}

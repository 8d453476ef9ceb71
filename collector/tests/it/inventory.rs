//! The in-memory inventory against the store it mirrors, on both backends: the same lists
//! for the same filters, changes visible within its bound, and no stale answers once the
//! database is gone.

use std::collections::BTreeMap;
use std::time::Instant;

use dockermon_collector::inventory::{Inventory, MAX_AGE};
use dockermon_collector::store::{ContainerFilter, HostId, Page};
use dockermon_proto::{Compose, ContainerState, Record};

use crate::fixtures::{NOW, S, container, host, ingest, inventory, sample};
use crate::support::{TestDb, WAIT, on_both_backends};

on_both_backends!(
    lists_match_the_store,
    changes_show_within_the_bound,
    lists_fail_once_the_database_is_gone,
);

/// Two hosts whose containers differ in every way a filter or the order can tell apart:
/// names that differ only in case or share a prefix, the same name on both hosts, compose
/// projects, labels, states, one removed and one known only from its samples.
async fn varied_fleet(db: &TestDb) -> (HostId, HostId) {
    let store = &db.store;
    let (a, b) = (host(store, "docker-a").await, host(store, "docker-b").await);
    let mut on_a = Vec::new();
    for (i, name) in ["web", "Web", "web-2", "db", "ünicode", "gone"]
        .iter()
        .enumerate()
    {
        let mut c = container(&format!("a{i}"), name, NOW - i as i64 * S);
        c.state = [ContainerState::Running, ContainerState::Exited][i % 2];
        if i < 3 {
            c.compose = Some(Compose {
                project: "shop".into(),
                service: format!("s{i}"),
                number: Some(1),
            });
        }
        c.labels = BTreeMap::from([
            ("tier".into(), ["front", "back"][i % 2].into()),
            (format!("only-{i}"), String::new()),
        ]);
        on_a.push(c);
    }
    ingest(store, a, &[inventory(true, on_a.clone())]).await;
    on_a.retain(|c| c.name != "gone");
    ingest(store, a, &[inventory(true, on_a)]).await;

    let mut on_b: Vec<_> = ["web", "cache", "db"]
        .iter()
        .enumerate()
        .map(|(i, name)| container(&format!("b{i}"), name, NOW))
        .collect();
    on_b[1].compose = Some(Compose {
        project: "other".into(),
        service: "cache".into(),
        number: Some(2),
    });
    on_b[2].state = ContainerState::Paused;
    on_b[2].labels.clear();
    ingest(
        store,
        b,
        &[
            inventory(true, on_b),
            Record::Stats(sample("b-unlisted", "sampled-only", NOW, Some(1.0), 10)),
        ],
    )
    .await;
    (a, b)
}

async fn lists_match_the_store(db: TestDb) {
    let (a, b) = varied_fleet(&db).await;
    let snapshot = Inventory::new(db.store.clone());
    let text = |value: &str| Some(value.to_owned());
    let label = |key: &str, value: Option<&str>| Some((key.to_owned(), value.map(str::to_owned)));
    let filters = [
        ContainerFilter::default(),
        ContainerFilter {
            host: Some(a),
            ..Default::default()
        },
        ContainerFilter {
            host: Some(b),
            state: text("paused"),
            ..Default::default()
        },
        ContainerFilter {
            state: text("running"),
            ..Default::default()
        },
        ContainerFilter {
            name: text("web"),
            ..Default::default()
        },
        ContainerFilter {
            name: text("WEB"),
            ..Default::default()
        },
        ContainerFilter {
            compose_project: text("shop"),
            ..Default::default()
        },
        ContainerFilter {
            label: label("tier", None),
            ..Default::default()
        },
        ContainerFilter {
            label: label("tier", Some("back")),
            host: Some(a),
            ..Default::default()
        },
        ContainerFilter {
            label: label("only-0", Some("")),
            ..Default::default()
        },
        ContainerFilter {
            label: label("tier", Some("FRONT")),
            ..Default::default()
        },
        ContainerFilter {
            name: text("gone"),
            ..Default::default()
        },
        // Search: any case, name or image, and LIKE's wildcards taken literally.
        ContainerFilter {
            search: text("EB"),
            ..Default::default()
        },
        ContainerFilter {
            search: text(":"),
            ..Default::default()
        },
        ContainerFilter {
            search: text("%"),
            ..Default::default()
        },
        ContainerFilter {
            search: text("_"),
            host: Some(b),
            ..Default::default()
        },
        ContainerFilter {
            host: Some(HostId(a.0 + b.0 + 1)),
            ..Default::default()
        },
    ];
    let pages = [(0, 1000), (0, 1), (1, 2), (3, 3), (7, 5), (50, 10)];
    let mut compared = 0;
    for filter in filters {
        for detail in [false, true] {
            let filter = ContainerFilter {
                detail,
                ..filter.clone()
            };
            for (offset, limit) in pages {
                let page = Page::new(offset, limit).unwrap();
                let expected = db.store.containers(&filter, page).await.unwrap();
                let found = snapshot.containers(&filter, page).await.unwrap();
                assert_eq!(found, expected, "{filter:?} {page:?}");
                compared += expected.items.len();
            }
        }
    }
    assert!(compared > 50, "the cases list containers, not only nothing");

    let everything = snapshot
        .containers(&ContainerFilter::default(), Page::first(100))
        .await
        .unwrap();
    let names: Vec<_> = everything.items.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Web",
            "cache",
            "db",
            "db",
            "sampled-only",
            "web",
            "web",
            "web-2",
            "ünicode"
        ],
        "by name in binary order, the removed one left out"
    );
    let removed = ContainerFilter {
        include_removed: true,
        name: text("gone"),
        ..Default::default()
    };
    assert_eq!(
        snapshot
            .containers(&removed, Page::first(10))
            .await
            .unwrap()
            .total,
        1,
        "removed containers are still listed when asked for"
    );
}

async fn changes_show_within_the_bound(db: TestDb) {
    let h = host(&db.store, "docker-1").await;
    let web = container("w1", "web", NOW);
    ingest(&db.store, h, &[inventory(true, vec![web.clone()])]).await;
    let snapshot = Inventory::new(db.store.clone());
    let running = ContainerFilter {
        state: Some("running".into()),
        ..Default::default()
    };
    assert_eq!(
        snapshot
            .containers(&running, Page::first(10))
            .await
            .unwrap()
            .total,
        1
    );

    let mut stopped = web;
    stopped.state = ContainerState::Exited;
    ingest(&db.store, h, &[inventory(true, vec![stopped])]).await;
    let changed = Instant::now();
    dockermon_e2e::wait::eventually(WAIT, "the stop in the inventory", || {
        let (snapshot, running) = (snapshot.clone(), running.clone());
        async move {
            let page = snapshot.containers(&running, Page::first(10)).await.ok()?;
            (page.total == 0).then_some(())
        }
    })
    .await
    .unwrap();
    // The bound plus a generous allowance for the reload itself on a busy machine.
    assert!(
        changed.elapsed() < MAX_AGE * 3,
        "took {:?}",
        changed.elapsed()
    );
}

async fn lists_fail_once_the_database_is_gone(db: TestDb) {
    let h = host(&db.store, "docker-1").await;
    ingest(
        &db.store,
        h,
        &[inventory(true, vec![container("w1", "web", NOW)])],
    )
    .await;
    let snapshot = Inventory::new(db.store.clone());
    let all = ContainerFilter::default();
    assert_eq!(
        snapshot
            .containers(&all, Page::first(10))
            .await
            .unwrap()
            .total,
        1
    );
    db.store.close().await;
    let error = dockermon_e2e::wait::eventually(WAIT, "the list to fail", || {
        let (snapshot, all) = (snapshot.clone(), all.clone());
        async move { snapshot.containers(&all, Page::first(10)).await.err() }
    })
    .await
    .unwrap();
    assert!(
        error.to_string().contains("database"),
        "a clear error: {error}"
    );
}

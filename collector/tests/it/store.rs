//! The store's contract, on both backends.

use std::collections::BTreeMap;

use dockermon_collector::store::{
    ActivityFilter, ContainerFilter, ContainerSelector, Page, Resolution, Retention,
    SLICE_CONTAINERS, StatsQuery, Store,
};
use dockermon_proto::{
    Compose, Container, ContainerState, CounterGroup, DiskUsage, DockerEvent, EventKind, HostName,
    Image, InventoryUpdate, Network, ObjectKind, ObjectRef, Record, StatsSample, UsageSummary,
    Volume,
};

use crate::fixtures::{NOW, S, container, event, host, host_info, ingest, inventory, sample};
use crate::support::{TestDb, on_both_backends};

on_both_backends!(
    every_record_type_round_trips,
    duplicate_delivery_is_stored_once,
    rollups_equal_aggregates_of_the_raw_rows,
    late_samples_are_rolled_up_again,
    the_rollup_job_keeps_up_with_steady_ingest,
    a_rollup_over_more_containers_than_a_statement_takes_covers_them_all,
    retention_deletes_exactly_what_is_older_than_the_window,
    history_follows_a_container_across_re_creation,
    compose_services_keep_their_history_under_a_new_name,
    removed_containers_keep_their_history,
    lists_paginate_with_totals,
    filter_values_are_values_not_sql,
    activity_filters_combine,
    the_newest_sample_wins_whatever_the_delivery_order,
    stats_resolution_follows_the_range,
    one_replica_holds_a_lease_at_a_time,
    records_of_a_deleted_host_are_discarded,
    a_host_is_seen_whenever_its_agent_delivers,
    a_failed_enrollment_gives_its_token_back,
    records_at_their_bounds_are_stored_whole,
    the_later_of_two_enrollments_keeps_its_certificate,
    samples_after_a_restart_continue_their_containers,
    a_fleets_first_sweep_registers_every_container_by_the_identity_rule,
);

/// A fleet's first sweeps name containers nobody knows yet, hundreds per write (they are
/// registered in bulk). Each one still follows the identity rule a lone newcomer does: it
/// continues a stopped container of its name, stays apart from a running one and from a
/// twin of the same batch, and hosts never share containers.
async fn a_fleets_first_sweep_registers_every_container_by_the_identity_rule(db: TestDb) {
    let web = host(&db.store, "web-1").await;
    let db_host = host(&db.store, "db-1").await;
    let mut stopped = container(&"5".repeat(64), "stopped", NOW - 100 * S);
    stopped.state = ContainerState::Exited;
    let running = container(&"7".repeat(64), "running", NOW - 100 * S);
    ingest(
        &db.store,
        web,
        &[
            inventory(true, vec![stopped, running]),
            Record::Stats(sample(&"5".repeat(64), "stopped", NOW - 60 * S, None, 5)),
        ],
    )
    .await;
    let stopped_before = host_containers(&db.store, web, false)
        .await
        .items
        .into_iter()
        .find(|c| c.name == "stopped")
        .unwrap()
        .id;

    // 600 new containers (more than one statement's worth) on each of two hosts, a new
    // instance of each name above, and two new instances sharing a name.
    let sweep = |host_tag: &str| -> Vec<Record> {
        let mut records: Vec<Record> = (0..600)
            .map(|i| {
                let id = format!("{host_tag}{i:063x}");
                Record::Stats(sample(&id, &format!("c{i}"), NOW, None, 1000 + i as u64))
            })
            .collect();
        for (id, name) in [
            ("a", "stopped"),
            ("b", "running"),
            ("c", "twin"),
            ("d", "twin"),
        ] {
            records.push(Record::Stats(sample(&id.repeat(64), name, NOW, None, 9)));
        }
        records
    };
    db.store
        .ingest(&[(web, &sweep("e")), (db_host, &sweep("f"))])
        .await
        .unwrap();

    for (host, tag) in [(web, "e"), (db_host, "f")] {
        let page = host_containers(&db.store, host, false).await;
        let by_name =
            |name: &str| -> Vec<_> { page.items.iter().filter(|c| c.name == name).collect() };
        for i in [0, 499, 500, 599] {
            let found = by_name(&format!("c{i}"));
            assert_eq!(found.len(), 1, "c{i} on {tag}");
            let points = raw_series(&db.store, found[0].id).await;
            assert_eq!(points, vec![(NOW, 1000.0 + i as f64)], "c{i} on {tag}");
        }
        assert_eq!(
            by_name("twin").len(),
            2,
            "twins of one batch stay two on {tag}"
        );
        if host == web {
            // The stopped one continues: one record, both points; the running one does not.
            assert_eq!(page.total, 600 + 2 + 2 + 1, "{:?}", page.items.len());
            let stopped = by_name("stopped");
            assert_eq!(stopped.len(), 1);
            assert_eq!(stopped[0].id, stopped_before);
            let points = raw_series(&db.store, stopped[0].id).await;
            assert_eq!(points.len(), 2, "{points:?}");
            assert_eq!(by_name("running").len(), 2);
        } else {
            assert_eq!(page.total, 600 + 2 + 2, "db-1 shares nothing with web-1");
        }
    }
    // What was registered is remembered: the next sweep adds points, not containers.
    let next: Vec<Record> = (0..600)
        .map(|i| {
            Record::Stats(sample(
                &format!("e{i:063x}"),
                &format!("c{i}"),
                NOW + 30 * S,
                None,
                1,
            ))
        })
        .collect();
    ingest(&db.store, web, &next).await;
    let restarted = db.reopened().await;
    ingest(&restarted, web, &next).await;
    let page = host_containers(&restarted, web, false).await;
    assert_eq!(page.total, 600 + 2 + 2 + 1);
    let c0 = page.items.iter().find(|c| c.name == "c0").unwrap();
    assert_eq!(raw_series(&restarted, c0.id).await.len(), 2);
}

/// Every container of a host (up to 1,000), with the total, and with their details if
/// `detail`.
async fn host_containers(
    store: &Store,
    host: dockermon_collector::store::HostId,
    detail: bool,
) -> dockermon_collector::store::Paged<dockermon_collector::store::ContainerRow> {
    store
        .containers(
            &ContainerFilter {
                host: Some(host),
                detail,
                ..Default::default()
            },
            Page::first(1000),
        )
        .await
        .unwrap()
}

/// A collector that starts again has no Docker id in memory: the first samples it takes
/// find their containers in the database (looked up a frame at a time), and each continues
/// its series; a new id among them still gets its own container.
async fn samples_after_a_restart_continue_their_containers(db: TestDb) {
    let web = host(&db.store, "web-1").await;
    let sweep = |time_ns: i64, count: usize| -> Vec<Record> {
        (0..count)
            .map(|i| {
                let id = format!("{i:064x}");
                Record::Stats(sample(
                    &id,
                    &format!("c{i}"),
                    time_ns,
                    Some(1.0),
                    1000 + i as u64,
                ))
            })
            .collect()
    };
    ingest(&db.store, web, &sweep(NOW - 30 * S, 60)).await;
    let restarted = db.reopened().await;
    ingest(&restarted, web, &sweep(NOW, 61)).await;

    let page = host_containers(&restarted, web, false).await;
    assert_eq!(page.total, 61, "60 continued, one new");
    for container in &page.items {
        let points = raw_series(&restarted, container.id).await;
        let expected = if container.name == "c60" { 1 } else { 2 };
        assert_eq!(points.len(), expected, "{}: {points:?}", container.name);
    }
}

/// Two agents enroll as one host at once (a DaemonSet pod replaced while the old one still
/// runs, a join token used twice by a script): whichever finishes last, the certificate
/// issued later is the one left valid, never neither.
async fn the_later_of_two_enrollments_keeps_its_certificate(db: TestDb) {
    use dockermon_collector::store::IssuedCertificate;
    let store = &db.store;
    let name = HostName::new("docker-race").unwrap();
    let now = dockermon_proto::now_ns();
    for (serial, issued) in [("earlier", now), ("later", now + S)] {
        let certificate = IssuedCertificate {
            serial: serial.into(),
            host: name.clone(),
            fingerprint: serial.into(),
            not_before_ns: now - 60 * S,
            not_after_ns: now + 30 * 86_400 * S,
        };
        store
            .record_certificate(&certificate, true, issued)
            .await
            .unwrap();
    }
    let live = |store: &Store| {
        let name = name.clone();
        let store = store.clone();
        async move {
            let mut serials: Vec<String> = store
                .live_certificates(&name, now)
                .await
                .unwrap()
                .into_iter()
                .map(|c| c.serial)
                .collect();
            serials.sort();
            serials
        }
    };
    // The later enrollment finishes first and replaces the earlier certificate...
    assert_eq!(
        store
            .revoke_other_certificates(&name, "later", now + 2 * S)
            .await
            .unwrap(),
        1
    );
    // ...and the earlier one, finishing last, revokes nothing issued after it.
    assert_eq!(
        store
            .revoke_other_certificates(&name, "earlier", now + 3 * S)
            .await
            .unwrap(),
        0
    );
    assert_eq!(live(store).await, ["later"]);
    // An unknown certificate to keep revokes nothing.
    assert_eq!(
        store
            .revoke_other_certificates(&name, "unknown", now + 4 * S)
            .await
            .unwrap(),
        0
    );
    assert_eq!(live(store).await, ["later"]);
}

async fn a_failed_enrollment_gives_its_token_back(db: TestDb) {
    let store = &db.store;
    let host = dockermon_proto::HostName::new("docker-9").unwrap();
    let secret = [9u8; 32];
    let now = dockermon_proto::now_ns();
    store
        .create_join_token(&secret, &host, None, now, now + 3600 * S)
        .await
        .unwrap();
    assert_eq!(
        store.consume_join_token(&secret, now).await.unwrap(),
        Ok(host.clone())
    );
    // Issuing the certificate failed: the token is not spent.
    store.release_join_token(&secret).await.unwrap();
    assert_eq!(
        store.consume_join_token(&secret, now).await.unwrap(),
        Ok(host)
    );
    assert_eq!(
        store.consume_join_token(&secret, now).await.unwrap(),
        Err(dockermon_collector::store::TokenRefusal::Used)
    );
}

async fn a_host_is_seen_whenever_its_agent_delivers(db: TestDb) {
    let store = &db.store;
    let h = host(store, "docker-seen").await;
    let last_seen = || async {
        store
            .hosts()
            .await
            .unwrap()
            .into_iter()
            .find(|row| row.id == h)
            .unwrap()
            .last_seen_ns
    };
    assert_eq!(last_seen().await, None, "registered, nothing delivered yet");
    // Stats only, no host record: the host was still seen.
    let before = dockermon_proto::now_ns();
    ingest(
        store,
        h,
        &[Record::Stats(sample("a", "web", NOW, Some(1.0), 100))],
    )
    .await;
    let seen = last_seen().await.expect("seen");
    assert!(seen >= before, "{seen} >= {before}");
}

async fn raw_series(
    store: &Store,
    key: dockermon_collector::store::ContainerKey,
) -> Vec<(i64, f64)> {
    let query = StatsQuery {
        container: key,
        from_ns: 0,
        to_ns: i64::MAX,
        resolution: Some(Resolution::Raw),
        max_points: 10_000,
    };
    let series = store
        .container_stats(&query, NOW, &Retention::default())
        .await
        .unwrap();
    series
        .points
        .iter()
        .map(|p| (p.time_ns, p.memory_usage_bytes.unwrap().avg))
        .collect()
}

/// Labels (or attributes) as large as the bounds allow: every one at the longest key and value.
fn largest_labels(prefix: char) -> BTreeMap<String, String> {
    use dockermon_proto::limits::{MAX_LABEL_KEY_BYTES, MAX_LABEL_VALUE_BYTES, MAX_LABELS};
    (0..MAX_LABELS)
        .map(|i| {
            let key = format!("{prefix}{i:03}");
            let key = format!("{key}{}", "k".repeat(MAX_LABEL_KEY_BYTES - key.len()));
            (key, "v".repeat(MAX_LABEL_VALUE_BYTES))
        })
        .collect()
}

/// Every record the bounds let through is stored whole, whatever the database's column
/// types: a MySQL TEXT column (64 KiB) once refused such rows, and their frames forever.
async fn records_at_their_bounds_are_stored_whole(db: TestDb) {
    use dockermon_proto::limits::{self, MAX_LIST_ENTRIES, MAX_NAME_BYTES, MAX_TEXT_BYTES};
    use dockermon_proto::{ContainerMount, Port};
    let store = &db.store;
    let h = host(store, "docker-1").await;
    let long = |c: char, bytes: usize| c.to_string().repeat(bytes);
    let mut web = container("c1", &long('w', MAX_NAME_BYTES), NOW - 100 * S);
    web.labels = largest_labels('l');
    web.ports = (0..MAX_LIST_ENTRIES as u16)
        .map(|i| Port {
            private_port: i,
            public_port: Some(i + 1000),
            protocol: "tcp".into(),
            host_ip: Some("0.0.0.0".into()),
        })
        .collect();
    web.mounts = (0..MAX_LIST_ENTRIES)
        .map(|i| ContainerMount {
            kind: "bind".into(),
            name: None,
            source: format!("/{i}{}", long('s', MAX_TEXT_BYTES - 8)),
            destination: format!("/{i}{}", long('d', MAX_TEXT_BYTES - 8)),
            read_write: true,
        })
        .collect();
    let image = Image {
        id: "sha256:img".into(),
        tags: (0..MAX_LIST_ENTRIES)
            .map(|i| format!("{i}{}", long('t', MAX_NAME_BYTES - 4)))
            .collect(),
        size_bytes: 1,
        created_ns: NOW - 1000 * S,
        labels: largest_labels('i'),
        truncated: Default::default(),
    };
    // Attributes Docker never sets are dropped on the way in (redact::attributes), but
    // the frame carrying them is stored.
    let mut event = event(NOW - 5 * S, "start", "c1");
    event.attributes = largest_labels('a');
    let mut records = vec![
        Record::Inventory(InventoryUpdate {
            time_ns: NOW,
            full: true,
            containers: vec![web],
            images: vec![image],
            volumes: vec![],
            networks: vec![],
            removed: vec![],
        }),
        Record::Event(event),
    ];
    let cut: usize = records.iter_mut().map(limits::enforce).sum();
    assert_eq!(cut, 0, "the records are within the bounds");
    let report = store.ingest(&[(h, &records)]).await.unwrap();
    assert_eq!(report.events, 1);

    let Record::Inventory(update) = &records[0] else {
        unreachable!()
    };
    let containers = host_containers(store, h, true).await;
    assert_eq!(
        containers.items[0].detail.as_ref(),
        Some(&update.containers[0])
    );
    let images = store.images(h, Page::first(10)).await.unwrap();
    assert_eq!(
        (&images.items[0].tags, &images.items[0].labels),
        (&update.images[0].tags, &update.images[0].labels)
    );
    let activity = store
        .activity(&ActivityFilter::default(), Page::first(10))
        .await
        .unwrap();
    assert_eq!(activity.total, 1);
}

async fn every_record_type_round_trips(db: TestDb) {
    let store = &db.store;
    let h = host(store, "docker-1").await;
    let mut web = container("c1", "shop-web-1", NOW - 100 * S);
    web.compose = Some(Compose {
        project: "shop".into(),
        service: "web".into(),
        number: Some(1),
    });
    let image = Image {
        id: "sha256:img".into(),
        tags: vec!["nginx:1.27".into()],
        size_bytes: 190_000_000,
        created_ns: NOW - 1000 * S,
        labels: BTreeMap::from([("maintainer".into(), "x".into())]),
        truncated: Default::default(),
    };
    let volume = Volume {
        name: "data".into(),
        driver: "local".into(),
        mountpoint: "/var/lib/docker/volumes/data/_data".into(),
        scope: "local".into(),
        created_ns: Some(NOW - 500 * S),
        labels: BTreeMap::new(),
        truncated: Default::default(),
    };
    let network = Network {
        id: "net1".into(),
        name: "shop_default".into(),
        driver: "bridge".into(),
        scope: "local".into(),
        internal: true,
        created_ns: None,
        labels: BTreeMap::new(),
        truncated: Default::default(),
    };
    let usage = DiskUsage {
        time_ns: NOW,
        layers_bytes: 1000,
        images: UsageSummary {
            count: 1,
            active: 1,
            size_bytes: 1000,
            reclaimable_bytes: 0,
        },
        containers: UsageSummary {
            count: 1,
            active: 1,
            size_bytes: 20,
            reclaimable_bytes: 0,
        },
        ..Default::default()
    };
    let first = sample("c1", "shop-web-1", NOW - 30 * S, None, 1000);
    let second = sample("c1", "shop-web-1", NOW, Some(12.5), 2000);
    let records = vec![
        Record::Host(host_info()),
        Record::Inventory(InventoryUpdate {
            time_ns: NOW,
            full: true,
            containers: vec![web.clone()],
            images: vec![image.clone()],
            volumes: vec![volume.clone()],
            networks: vec![network.clone()],
            removed: vec![],
        }),
        Record::Event(event(NOW - 5 * S, "start", "c1")),
        Record::Stats(first),
        Record::Stats(second.clone()),
        Record::Usage(usage.clone()),
    ];
    let report = store.ingest(&[(h, &records)]).await.unwrap();
    assert_eq!((report.records, report.events, report.samples), (6, 1, 2));

    let hosts = store.hosts().await.unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].name, "docker-1");
    assert_eq!(hosts[0].info.as_ref(), Some(&host_info()));
    assert_eq!(hosts[0].docker_version, "20.10.24");

    let containers = host_containers(store, h, true).await;
    assert_eq!(containers.total, 1);
    let row = &containers.items[0];
    assert_eq!(row.detail.as_ref(), Some(&web));
    assert_eq!(
        (
            row.name.as_str(),
            row.state.as_str(),
            row.docker_id.as_str()
        ),
        ("shop-web-1", "running", "c1")
    );
    assert_eq!(row.compose_service.as_deref(), Some("web"));

    let images = store.images(h, Page::first(10)).await.unwrap();
    assert_eq!(
        (
            images.items[0].id.as_str(),
            &images.items[0].tags,
            &images.items[0].labels
        ),
        (image.id.as_str(), &image.tags, &image.labels)
    );
    assert_eq!(images.items[0].size_bytes, 190_000_000);
    let volumes = store.volumes(h, Page::first(10)).await.unwrap();
    assert_eq!(
        (
            volumes.items[0].name.as_str(),
            volumes.items[0].mountpoint.as_str()
        ),
        ("data", volume.mountpoint.as_str())
    );
    assert_eq!(volumes.items[0].created_ns, volume.created_ns);
    let networks = store.networks(h, Page::first(10)).await.unwrap();
    assert_eq!(
        (networks.items[0].name.as_str(), networks.items[0].internal),
        ("shop_default", true)
    );

    let activity = store
        .activity(&ActivityFilter::default(), Page::first(10))
        .await
        .unwrap();
    assert_eq!(activity.total, 1);
    let entry = &activity.items[0];
    assert_eq!(
        (entry.time_ns, entry.kind.as_str(), entry.action.as_str()),
        (NOW - 5 * S, "container", "start")
    );
    assert_eq!(
        entry.container_id,
        Some(row.id),
        "the event is linked to its container"
    );
    assert_eq!(entry.attributes["image"], "nginx:1.27");

    let latest = store.latest_stats(h).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(
        (
            latest[0].time_ns,
            latest[0].cpu_percent,
            latest[0].memory_usage_bytes
        ),
        (NOW, Some(12.5), Some(2000))
    );
    assert_eq!(latest[0].net_rx_bytes_per_s, Some(125.0));

    let query = StatsQuery {
        container: row.id,
        from_ns: NOW - 3600 * S,
        to_ns: NOW + S,
        resolution: None,
        max_points: 1000,
    };
    let series = store
        .container_stats(&query, NOW, &Retention::default())
        .await
        .unwrap();
    assert_eq!(series.resolution, Resolution::Raw);
    assert_eq!(series.points.len(), 2);
    assert_eq!(
        series.points[0].cpu_percent, None,
        "a first sample has no rates"
    );
    assert_eq!(series.points[1].cpu_percent.unwrap().avg, 12.5);
    assert_eq!(
        series.points[1].memory_working_set_bytes.unwrap().avg,
        1000.0
    );

    let usages = store.usage(h, 0, i64::MAX, 10).await.unwrap();
    assert_eq!(usages.len(), 1);
    assert_eq!(
        (
            usages[0].layers_bytes,
            usages[0].images,
            usages[0].containers[2]
        ),
        (1000, [1, 1, 1000, 0], 20)
    );
}

async fn duplicate_delivery_is_stored_once(db: TestDb) {
    let store = &db.store;
    let h = host(store, "docker-1").await;
    let records = vec![
        inventory(true, vec![container("c1", "web", NOW - 100 * S)]),
        Record::Event(event(NOW - 2 * S, "create", "c1")),
        Record::Event(event(NOW - S, "start", "c1")),
        Record::Stats(sample("c1", "web", NOW - 30 * S, Some(1.0), 10)),
        Record::Stats(sample("c1", "web", NOW, Some(2.0), 20)),
        Record::Usage(DiskUsage {
            time_ns: NOW,
            ..Default::default()
        }),
    ];
    ingest(store, h, &records).await;
    ingest(store, h, &records).await;
    // And once more inside a single batch.
    let doubled: Vec<Record> = records.iter().chain(records.iter()).cloned().collect();
    ingest(store, h, &doubled).await;

    assert_eq!(
        store
            .activity(&ActivityFilter::default(), Page::first(100))
            .await
            .unwrap()
            .total,
        2
    );
    let key = store
        .find_container(h, &ContainerSelector::Name("web".into()))
        .await
        .unwrap()
        .id;
    assert_eq!(
        raw_series(store, key).await,
        vec![(NOW - 30 * S, 10.0), (NOW, 20.0)]
    );
    assert_eq!(store.usage(h, 0, i64::MAX, 100).await.unwrap().len(), 1);
    assert_eq!(
        store
            .containers(&ContainerFilter::default(), Page::first(10))
            .await
            .unwrap()
            .total,
        1
    );

    // The same event on another host is another event.
    let other = host(store, "docker-2").await;
    ingest(
        store,
        other,
        &[Record::Event(event(NOW - S, "start", "c1"))],
    )
    .await;
    assert_eq!(
        store
            .activity(&ActivityFilter::default(), Page::first(100))
            .await
            .unwrap()
            .total,
        3
    );
}

/// Raw samples spread over several 5-minute and hourly buckets, some without rates and
/// some without memory figures (Docker omitted them): each figure of a bucket is averaged
/// over the samples that measured it, in proportions that differ from bucket to bucket.
fn spread_samples() -> Vec<StatsSample> {
    (0..400)
        .map(|i| {
            let time = NOW - 3 * 3600 * S + i * 23 * S + (i % 5) * 1_000_000;
            let cpu = (i % 4 != 0).then(|| ((i * 37) % 200) as f64 / 3.0);
            let mut sample = sample(
                "c1",
                "web",
                time,
                cpu,
                1_000_000 + ((i * 7919) % 5000) as u64,
            );
            if i % 7 == 3 {
                sample.counters.absent = vec![CounterGroup::Memory];
                sample.counters.memory_usage_bytes = 0;
            }
            sample
        })
        .collect()
}

/// What a bucket must hold: sample count, CPU (avg, max) if any sample had rates, memory
/// avg and max.
struct Expected {
    count: i64,
    cpu: Option<(f64, f64)>,
    mem_avg: f64,
    mem_max: f64,
}

fn expected_buckets(samples: &[StatsSample], width: i64) -> BTreeMap<i64, Expected> {
    let mut buckets: BTreeMap<i64, Vec<&StatsSample>> = BTreeMap::new();
    for s in samples {
        buckets
            .entry(s.time_ns - s.time_ns.rem_euclid(width))
            .or_default()
            .push(s);
    }
    buckets
        .into_iter()
        .map(|(bucket, items)| {
            let cpus: Vec<f64> = items
                .iter()
                .filter_map(|s| s.rates.as_ref().map(|r| r.cpu_percent))
                .collect();
            let cpu = (!cpus.is_empty()).then(|| {
                (
                    cpus.iter().sum::<f64>() / cpus.len() as f64,
                    cpus.iter().cloned().fold(f64::MIN, f64::max),
                )
            });
            let mems: Vec<f64> = items
                .iter()
                .filter(|s| s.counters.has(CounterGroup::Memory))
                .map(|s| s.counters.memory_usage_bytes as f64)
                .collect();
            let mem_avg = mems.iter().sum::<f64>() / mems.len() as f64;
            let mem_max = mems.iter().cloned().fold(f64::MIN, f64::max);
            (
                bucket,
                Expected {
                    count: items.len() as i64,
                    cpu,
                    mem_avg,
                    mem_max,
                },
            )
        })
        .collect()
}

fn assert_close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= 1e-6 * expected.abs().max(1.0),
        "{what}: {actual} != {expected}"
    );
}

async fn assert_rollups_match(
    store: &Store,
    key: dockermon_collector::store::ContainerKey,
    samples: &[StatsSample],
) {
    for resolution in [Resolution::FiveMinutes, Resolution::OneHour] {
        let query = StatsQuery {
            container: key,
            from_ns: 0,
            to_ns: i64::MAX,
            resolution: Some(resolution),
            max_points: 10_000,
        };
        let series = store
            .container_stats(&query, NOW, &Retention::default())
            .await
            .unwrap();
        let expected = expected_buckets(samples, resolution.step_ns());
        assert_eq!(
            series.points.len(),
            expected.len(),
            "{resolution:?} bucket count"
        );
        for (
            point,
            (
                bucket,
                Expected {
                    count,
                    cpu,
                    mem_avg,
                    mem_max,
                },
            ),
        ) in series.points.iter().zip(expected)
        {
            assert_eq!(point.time_ns, bucket);
            assert_eq!(point.samples, count, "{resolution:?} samples in {bucket}");
            match (point.cpu_percent, cpu) {
                (Some(actual), Some((avg, max))) => {
                    assert_close(actual.avg, avg, "cpu avg");
                    assert_close(actual.max, max, "cpu max");
                }
                (None, None) => {}
                other => panic!("cpu presence differs in {bucket}: {other:?}"),
            }
            let memory = point.memory_usage_bytes.unwrap();
            assert_close(memory.avg, mem_avg, "memory avg");
            assert_close(memory.max, mem_max, "memory max");
        }
    }
}

async fn rollups_equal_aggregates_of_the_raw_rows(db: TestDb) {
    let store = &db.store;
    let h = host(store, "docker-1").await;
    let samples = spread_samples();
    let records: Vec<Record> = samples.iter().cloned().map(Record::Stats).collect();
    ingest(store, h, &records).await;
    let key = store
        .find_container(h, &ContainerSelector::Name("web".into()))
        .await
        .unwrap()
        .id;

    store.run_rollups(NOW).await.unwrap();
    assert_rollups_match(store, key, &samples).await;
}

async fn late_samples_are_rolled_up_again(db: TestDb) {
    let store = &db.store;
    let h = host(store, "docker-1").await;
    let mut samples: Vec<StatsSample> = spread_samples().into_iter().step_by(2).collect();
    ingest(
        store,
        h,
        &samples
            .iter()
            .cloned()
            .map(Record::Stats)
            .collect::<Vec<_>>(),
    )
    .await;
    store.run_rollups(NOW).await.unwrap();

    // The other half arrives late (an agent replaying its spool), into old buckets. Until
    // the job runs again, both resolutions read those buckets from the raw rows (the hourly
    // ones too, though the late samples mark only the 5-minute buckets dirty).
    let late: Vec<StatsSample> = spread_samples().into_iter().skip(1).step_by(2).collect();
    ingest(
        store,
        h,
        &late.iter().cloned().map(Record::Stats).collect::<Vec<_>>(),
    )
    .await;
    samples.extend(late);
    let key = store
        .find_container(h, &ContainerSelector::Name("web".into()))
        .await
        .unwrap()
        .id;
    assert_rollups_match(store, key, &samples).await;
    store.run_rollups(NOW).await.unwrap();
    assert_rollups_match(store, key, &samples).await;

    // With nothing new, a run recomputes nothing.
    assert_eq!(store.run_rollups(NOW).await.unwrap().buckets, [0, 0]);
}

/// The job recomputes at most [`SLICE_CONTAINERS`] containers per statement (fewer over
/// longer ranges), so these are three slices or more. Every container of every host is
/// rolled up (the bucket count), each from its own samples only (spot checks across the
/// slices, and the last container).
async fn a_rollup_over_more_containers_than_a_statement_takes_covers_them_all(db: TestDb) {
    let store = &db.store;
    let count = 2 * SLICE_CONTAINERS + 1;
    // Three samples per container, in two 5-minute buckets of an hour that has ended; the
    // memory figures are the container's own.
    let samples_of = |i: usize| -> Vec<StatsSample> {
        [0, 100, 400]
            .into_iter()
            .enumerate()
            .map(|(k, offset)| {
                let memory = 1_000_000 * (i as u64 + 1) + k as u64;
                sample(
                    &format!("{i:064x}"),
                    &format!("c{i}"),
                    NOW - 2 * 3600 * S + offset * S,
                    Some(1.0),
                    memory,
                )
            })
            .collect()
    };
    let hosts = [host(store, "docker-1").await, host(store, "docker-2").await];
    for (h, range) in hosts.iter().zip([0..count / 2, count / 2..count]) {
        let records: Vec<Record> = range.flat_map(samples_of).map(Record::Stats).collect();
        ingest(store, *h, &records).await;
    }

    let report = store.run_rollups(NOW).await.unwrap();
    assert_eq!(report.buckets, [2 * count as u64, count as u64]);
    for i in (0..count).step_by(97).chain([SLICE_CONTAINERS, count - 1]) {
        let h = hosts[usize::from(i >= count / 2)];
        let key = store
            .find_container(h, &ContainerSelector::Name(format!("c{i}")))
            .await
            .unwrap()
            .id;
        assert_rollups_match(store, key, &samples_of(i)).await;
    }
}

/// Agents deliver all the time, also while the job runs. What ended is rolled up once: the
/// next run has nothing to redo (the first design recomputed everything since the start
/// whenever a sample was written during a run, which under steady ingest is every run). The
/// bucket still filling is read from the raw rows.
async fn the_rollup_job_keeps_up_with_steady_ingest(db: TestDb) {
    let store = &db.store;
    let h = host(store, "docker-1").await;
    let samples = spread_samples();
    let records: Vec<Record> = samples.iter().cloned().map(Record::Stats).collect();
    ingest(store, h, &records).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn({
        let (store, stop) = (store.clone(), stop.clone());
        async move {
            let mut written = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || written == 0 {
                let time = NOW - 20 * S + written;
                ingest(
                    &store,
                    h,
                    &[Record::Stats(sample("c1", "web", time, Some(1.0), 7))],
                )
                .await;
                written += 1;
            }
            written
        }
    });
    let first = store.run_rollups(NOW).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.unwrap();
    // Buckets that ended a minute or more ago are rolled up (the newest hour, which ends at
    // NOW, is read from the raw rows).
    let ended = |resolution: Resolution| {
        let width = resolution.step_ns();
        expected_buckets(&samples, width)
            .keys()
            .filter(|bucket| *bucket + width <= NOW - 60 * S)
            .count() as u64
    };
    assert_eq!(
        first.buckets,
        [ended(Resolution::FiveMinutes), ended(Resolution::OneHour)]
    );
    assert_eq!(first.buckets[1], 2, "NOW is on the hour");
    assert_eq!(
        store.run_rollups(NOW).await.unwrap().buckets,
        [0, 0],
        "{written} samples were written during the first run"
    );

    let key = store
        .find_container(h, &ContainerSelector::Name("web".into()))
        .await
        .unwrap()
        .id;
    let mut all = samples.clone();
    all.extend((0..written).map(|i| sample("c1", "web", NOW - 20 * S + i, Some(1.0), 7)));
    assert_rollups_match(store, key, &all).await;
    let recent = StatsQuery {
        container: key,
        from_ns: NOW - 600 * S,
        to_ns: NOW + S,
        resolution: Some(Resolution::FiveMinutes),
        max_points: 100,
    };
    let series = store
        .container_stats(&recent, NOW, &Retention::default())
        .await
        .unwrap();
    let newest = series.points.last().unwrap();
    assert_eq!(newest.samples, written, "{series:?}");
    assert_eq!(newest.memory_usage_bytes.unwrap().max, 7.0);
}

async fn retention_deletes_exactly_what_is_older_than_the_window(db: TestDb) {
    let store = &db.store;
    let h = host(store, "docker-1").await;
    let retention = Retention::default();
    let raw_cutoff = NOW - retention.raw.as_nanos() as i64;
    let activity_cutoff = NOW - retention.activity.as_nanos() as i64;
    let times = [
        raw_cutoff - 3600 * S,
        raw_cutoff - 1,
        raw_cutoff,
        raw_cutoff + 1,
        NOW,
    ];
    let mut records: Vec<Record> = times
        .iter()
        .map(|t| Record::Stats(sample("c1", "web", *t, Some(1.0), 5)))
        .collect();
    for (i, t) in [activity_cutoff - 1, activity_cutoff, NOW]
        .iter()
        .enumerate()
    {
        records.push(Record::Event(event(*t, &format!("action{i}"), "c1")));
        records.push(Record::Usage(DiskUsage {
            time_ns: *t,
            ..Default::default()
        }));
    }
    ingest(store, h, &records).await;
    store.run_rollups(NOW).await.unwrap();

    let report = store.apply_retention(NOW, &retention).await.unwrap();
    let key = store
        .find_container(h, &ContainerSelector::Name("web".into()))
        .await
        .unwrap()
        .id;
    let kept: Vec<i64> = raw_series(store, key)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(
        kept,
        vec![raw_cutoff, raw_cutoff + 1, NOW],
        "raw rows at or after the cutoff stay"
    );
    let activity: Vec<i64> = store
        .activity(&ActivityFilter::default(), Page::first(10))
        .await
        .unwrap()
        .items
        .iter()
        .map(|e| e.time_ns)
        .collect();
    assert_eq!(activity, vec![NOW, activity_cutoff]);
    let usage: Vec<i64> = store
        .usage(h, 0, i64::MAX, 10)
        .await
        .unwrap()
        .iter()
        .map(|u| u.time_ns)
        .collect();
    assert_eq!(usage, vec![activity_cutoff, NOW]);
    assert_eq!(
        report.deleted,
        2 + 1 + 1,
        "two raw samples, one event, one usage record"
    );

    // Rollups outlive the raw rows they came from.
    let query = StatsQuery {
        container: key,
        from_ns: 0,
        to_ns: i64::MAX,
        resolution: Some(Resolution::OneHour),
        max_points: 100,
    };
    let hourly = store
        .container_stats(&query, NOW, &retention)
        .await
        .unwrap();
    assert_eq!(hourly.points.iter().map(|p| p.samples).sum::<i64>(), 5);
}

async fn history_follows_a_container_across_re_creation(db: TestDb) {
    let store = &db.store;
    let h = host(store, "docker-1").await;
    ingest(
        store,
        h,
        &[
            inventory(true, vec![container("old", "web", NOW - 1000 * S)]),
            Record::Stats(sample("old", "web", NOW - 600 * S, Some(1.0), 100)),
        ],
    )
    .await;
    // `docker rm -f web && docker run --name web …`: a new id, the same name (Docker frees
    // the name only once the old one is gone, so the agent sees it stopped or removed
    // first). The old instance's removal arrives after the new one exists and must not
    // remove "web".
    let mut stopped = container("old", "web", NOW - 1000 * S);
    stopped.state = ContainerState::Exited;
    ingest(
        store,
        h,
        &[
            inventory(false, vec![container("new", "web", NOW - 300 * S), stopped]),
            Record::Inventory(InventoryUpdate {
                time_ns: NOW,
                removed: vec![ObjectRef {
                    kind: ObjectKind::Container,
                    id: "old".into(),
                }],
                ..Default::default()
            }),
            Record::Stats(sample("new", "web", NOW - 200 * S, Some(2.0), 200)),
            // A late sample of the old instance still lands in the same history.
            Record::Stats(sample("old", "web", NOW - 500 * S, Some(1.5), 150)),
        ],
    )
    .await;
    // A late update about the old instance does not overwrite the new one.
    ingest(
        store,
        h,
        &[inventory(
            false,
            vec![container("old", "web", NOW - 1000 * S)],
        )],
    )
    .await;

    let web = store
        .find_container(h, &ContainerSelector::Name("web".into()))
        .await
        .unwrap();
    assert_eq!(web.docker_id, "new");
    assert_eq!(web.removed_ns, None);
    assert_eq!(
        raw_series(store, web.id).await,
        vec![
            (NOW - 600 * S, 100.0),
            (NOW - 500 * S, 150.0),
            (NOW - 200 * S, 200.0)
        ],
        "one continuous series across both Docker ids"
    );
    assert_eq!(
        store
            .containers(&ContainerFilter::default(), Page::first(10))
            .await
            .unwrap()
            .total,
        1
    );
}

async fn compose_services_keep_their_history_under_a_new_name(db: TestDb) {
    let store = &db.store;
    let h = host(store, "docker-1").await;
    let compose = Compose {
        project: "shop".into(),
        service: "api".into(),
        number: Some(1),
    };
    let mut first = container("a1", "shop_api_1", NOW - 1000 * S);
    first.compose = Some(compose.clone());
    // Compose v2 names the re-created container differently.
    let mut second = container("a2", "shop-api-1", NOW - 100 * S);
    second.compose = Some(compose.clone());
    ingest(
        store,
        h,
        &[
            inventory(true, vec![first]),
            Record::Stats(sample("a1", "shop_api_1", NOW - 500 * S, None, 1)),
        ],
    )
    .await;
    ingest(
        store,
        h,
        &[
            inventory(true, vec![second]),
            Record::Stats(sample("a2", "shop-api-1", NOW - 50 * S, None, 2)),
        ],
    )
    .await;

    let selector = ContainerSelector::Compose {
        project: "shop".into(),
        service: "api".into(),
        number: None,
    };
    let api = store.find_container(h, &selector).await.unwrap();
    assert_eq!(
        (api.name.as_str(), api.docker_id.as_str(), api.removed_ns),
        ("shop-api-1", "a2", None)
    );
    assert_eq!(raw_series(store, api.id).await.len(), 2);
    assert_eq!(
        store
            .find_container(h, &ContainerSelector::Name("shop-api-1".into()))
            .await
            .unwrap()
            .id,
        api.id
    );
}

async fn removed_containers_keep_their_history(db: TestDb) {
    let store = &db.store;
    let h = host(store, "docker-1").await;
    ingest(
        store,
        h,
        &[
            inventory(
                true,
                vec![
                    container("c1", "batch", NOW - 100 * S),
                    container("c2", "web", NOW - 100 * S),
                ],
            ),
            Record::Stats(sample("c1", "batch", NOW - 50 * S, None, 7)),
        ],
    )
    .await;
    // The next full snapshot no longer has "batch".
    ingest(
        store,
        h,
        &[inventory(true, vec![container("c2", "web", NOW - 100 * S)])],
    )
    .await;

    let current = store
        .containers(&ContainerFilter::default(), Page::first(10))
        .await
        .unwrap();
    assert_eq!(
        current
            .items
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        vec!["web"]
    );
    let all = store
        .containers(
            &ContainerFilter {
                include_removed: true,
                ..Default::default()
            },
            Page::first(10),
        )
        .await
        .unwrap();
    assert_eq!(all.total, 2);
    let batch = store
        .find_container(h, &ContainerSelector::Name("batch".into()))
        .await
        .unwrap();
    assert!(batch.removed_ns.is_some());
    assert_eq!(raw_series(store, batch.id).await, vec![(NOW - 50 * S, 7.0)]);
    assert!(
        store.latest_stats(h).await.unwrap().is_empty(),
        "latest stats list current containers only"
    );
}

async fn lists_paginate_with_totals(db: TestDb) {
    let store = &db.store;
    let h = host(store, "docker-1").await;
    let containers: Vec<Container> = (0..25)
        .map(|i| container(&format!("c{i:02}"), &format!("svc-{i:02}"), NOW))
        .collect();
    let events: Vec<Record> = (0..30)
        .map(|i| Record::Event(event(NOW - i * S, "start", &format!("c{:02}", i % 25))))
        .collect();
    let mut records = vec![inventory(true, containers)];
    records.extend(events);
    ingest(store, h, &records).await;

    let filter = ContainerFilter {
        host: Some(h),
        ..Default::default()
    };
    let first = store
        .containers(&filter, Page::new(0, 10).unwrap())
        .await
        .unwrap();
    let last = store
        .containers(&filter, Page::new(20, 10).unwrap())
        .await
        .unwrap();
    let beyond = store
        .containers(&filter, Page::new(100, 10).unwrap())
        .await
        .unwrap();
    assert_eq!(
        (first.total, first.items.len(), last.total, last.items.len()),
        (25, 10, 25, 5)
    );
    assert_eq!(first.items[0].name, "svc-00");
    assert_eq!(last.items[4].name, "svc-24");
    assert_eq!((beyond.total, beyond.items.len()), (25, 0));

    let page = store
        .activity(
            &ActivityFilter {
                host: Some(h),
                ..Default::default()
            },
            Page::new(10, 15).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!((page.total, page.items.len()), (30, 15));
    assert_eq!(
        page.items[0].time_ns,
        NOW - 10 * S,
        "newest first, offset 10"
    );

    assert!(Page::new(0, 0).is_err());
    assert!(Page::new(0, Page::MAX_LIMIT + 1).is_err());
    assert!(Page::new(Page::MAX_OFFSET + 1, 10).is_err());
}

async fn filter_values_are_values_not_sql(db: TestDb) {
    let store = &db.store;
    let h = host(store, "docker-1").await;
    let mut tricky = container("c1", "x' OR '1'='1", NOW);
    tricky.labels = BTreeMap::from([("a\"b".into(), "'); DROP TABLE containers; --".into())]);
    ingest(
        store,
        h,
        &[
            inventory(true, vec![tricky.clone(), container("c2", "plain", NOW)]),
            Record::Event(event(NOW, "start", "c1")),
        ],
    )
    .await;

    let by_name = |name: &str| ContainerFilter {
        name: Some(name.into()),
        ..Default::default()
    };
    assert_eq!(
        store
            .containers(&by_name("x' OR '1'='1"), Page::first(10))
            .await
            .unwrap()
            .total,
        1,
        "matched literally"
    );
    assert_eq!(
        store
            .containers(&by_name("' OR 1=1 --"), Page::first(10))
            .await
            .unwrap()
            .total,
        0
    );
    let by_label = ContainerFilter {
        label: Some(("a\"b".into(), Some("'); DROP TABLE containers; --".into()))),
        ..Default::default()
    };
    let found = store.containers(&by_label, Page::first(10)).await.unwrap();
    assert_eq!(
        found
            .items
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        vec![tricky.name.as_str()]
    );
    let label_exists = ContainerFilter {
        label: Some(("tier".into(), None)),
        ..Default::default()
    };
    assert_eq!(
        store
            .containers(&label_exists, Page::first(10))
            .await
            .unwrap()
            .total,
        1,
        "only c2 kept the default label"
    );

    let hostile = ActivityFilter {
        action: Some("start' OR '1'='1".into()),
        kind: Some("container; DROP TABLE activity".into()),
        ..Default::default()
    };
    assert_eq!(
        store
            .activity(&hostile, Page::first(10))
            .await
            .unwrap()
            .total,
        0
    );
    // Everything is still there.
    assert_eq!(
        store
            .activity(&ActivityFilter::default(), Page::first(10))
            .await
            .unwrap()
            .total,
        1
    );
    assert_eq!(
        store
            .containers(&ContainerFilter::default(), Page::first(10))
            .await
            .unwrap()
            .total,
        2
    );
}

async fn activity_filters_combine(db: TestDb) {
    let store = &db.store;
    let (a, b) = (host(store, "docker-a").await, host(store, "docker-b").await);
    ingest(
        store,
        a,
        &[
            inventory(true, vec![container("c1", "web", NOW)]),
            Record::Event(event(NOW - 30 * S, "create", "c1")),
            Record::Event(event(NOW - 20 * S, "start", "c1")),
            Record::Event(event(NOW - 10 * S, "exec_start: sh -c date", "c1")),
            Record::Event(DockerEvent {
                kind: EventKind::Image,
                ..event(NOW - 5 * S, "pull", "nginx:1.27")
            }),
        ],
    )
    .await;
    ingest(
        store,
        b,
        &[Record::Event(event(NOW - 20 * S, "start", "zz"))],
    )
    .await;
    let web = store
        .find_container(a, &ContainerSelector::Name("web".into()))
        .await
        .unwrap()
        .id;

    let count = |filter: ActivityFilter| async move {
        store
            .activity(&filter, Page::first(100))
            .await
            .unwrap()
            .total
    };
    assert_eq!(
        count(ActivityFilter {
            host: Some(a),
            ..Default::default()
        })
        .await,
        4
    );
    assert_eq!(
        count(ActivityFilter {
            action: Some("start".into()),
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(ActivityFilter {
            action: Some("exec_start".into()),
            ..Default::default()
        })
        .await,
        1,
        "by action name"
    );
    assert_eq!(
        count(ActivityFilter {
            kind: Some("image".into()),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        count(ActivityFilter {
            container: Some(web),
            ..Default::default()
        })
        .await,
        3
    );
    assert_eq!(
        count(ActivityFilter {
            host: Some(a),
            from_ns: Some(NOW - 20 * S),
            to_ns: Some(NOW - 5 * S),
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(ActivityFilter {
            host: Some(b),
            action: Some("start".into()),
            ..Default::default()
        })
        .await,
        1
    );
}

async fn the_newest_sample_wins_whatever_the_delivery_order(db: TestDb) {
    let store = &db.store;
    let h = host(store, "docker-1").await;
    ingest(
        store,
        h,
        &[
            inventory(true, vec![container("c1", "web", NOW - 100 * S)]),
            Record::Stats(sample("c1", "web", NOW, Some(9.0), 900)),
        ],
    )
    .await;
    // An older sample arrives afterwards (replayed from a spool).
    ingest(
        store,
        h,
        &[Record::Stats(sample(
            "c1",
            "web",
            NOW - 60 * S,
            Some(1.0),
            100,
        ))],
    )
    .await;
    let latest = store.latest_stats(h).await.unwrap();
    assert_eq!(
        (
            latest[0].time_ns,
            latest[0].memory_usage_bytes,
            latest[0].cpu_percent
        ),
        (NOW, Some(900), Some(9.0))
    );
    ingest(
        store,
        h,
        &[Record::Stats(sample("c1", "web", NOW + 30 * S, None, 50))],
    )
    .await;
    let latest = store.latest_stats(h).await.unwrap();
    assert_eq!(
        (
            latest[0].time_ns,
            latest[0].memory_usage_bytes,
            latest[0].cpu_percent
        ),
        (NOW + 30 * S, Some(50), None)
    );
}

async fn stats_resolution_follows_the_range(db: TestDb) {
    let store = &db.store;
    let h = host(store, "docker-1").await;
    // Two days at 30 s, the last sample at NOW.
    let samples: Vec<Record> = (0..5760)
        .rev()
        .map(|i| Record::Stats(sample("c1", "web", NOW - i * 30 * S, Some(5.0), 10)))
        .collect();
    for chunk in samples.chunks(2000) {
        ingest(store, h, chunk).await;
    }
    store.run_rollups(NOW).await.unwrap();
    let key = store
        .find_container(h, &ContainerSelector::Name("web".into()))
        .await
        .unwrap()
        .id;
    let series = |hours: i64| {
        let query = StatsQuery {
            container: key,
            from_ns: NOW - hours * 3600 * S,
            to_ns: NOW + S,
            resolution: None,
            max_points: 500,
        };
        async move {
            store
                .container_stats(&query, NOW, &Retention::default())
                .await
                .unwrap()
        }
    };
    let hour = series(1).await;
    assert_eq!((hour.resolution, hour.points.len()), (Resolution::Raw, 121));
    let day = series(24).await;
    assert_eq!(day.resolution, Resolution::FiveMinutes);
    assert!(
        (288..=289).contains(&day.points.len()),
        "{}",
        day.points.len()
    );
    assert!(day.points.iter().all(|p| p.cpu_percent.unwrap().avg == 5.0));
    let two_days = series(48).await;
    assert_eq!(two_days.resolution, Resolution::OneHour);
    assert_eq!(two_days.points.iter().map(|p| p.samples).sum::<i64>(), 5760);
}

async fn one_replica_holds_a_lease_at_a_time(db: TestDb) {
    let store = &db.store;
    let ttl = 60 * S;
    assert!(
        store
            .acquire_lease("rollups", "replica-a", NOW, ttl)
            .await
            .unwrap()
    );
    assert!(
        !store
            .acquire_lease("rollups", "replica-b", NOW + S, ttl)
            .await
            .unwrap()
    );
    assert!(
        store
            .acquire_lease("rollups", "replica-a", NOW + 2 * S, ttl)
            .await
            .unwrap(),
        "renewal"
    );
    assert!(
        store
            .acquire_lease("retention", "replica-b", NOW, ttl)
            .await
            .unwrap(),
        "leases are independent"
    );
    // Replica a stops renewing; after expiry b takes over.
    assert!(
        !store
            .acquire_lease("rollups", "replica-b", NOW + 61 * S, ttl)
            .await
            .unwrap()
    );
    assert!(
        store
            .acquire_lease("rollups", "replica-b", NOW + 63 * S, ttl)
            .await
            .unwrap()
    );
    store.release_lease("rollups", "replica-b").await.unwrap();
    assert!(
        store
            .acquire_lease("rollups", "replica-a", NOW + 64 * S, ttl)
            .await
            .unwrap(),
        "released leases are free"
    );
}

async fn records_of_a_deleted_host_are_discarded(db: TestDb) {
    let store = &db.store;
    let gone = host(store, "gone").await;
    let kept = host(store, "kept").await;
    store
        .delete_host(&HostName::new("gone").unwrap(), NOW)
        .await
        .unwrap();
    let records = [
        inventory(true, vec![container("c1", "web", NOW)]),
        Record::Stats(sample("c1", "web", NOW, None, 1)),
    ];
    let report = store
        .ingest(&[(gone, &records), (kept, &records)])
        .await
        .unwrap();
    assert_eq!((report.records, report.discarded), (2, 2));
    let names: Vec<String> = store
        .hosts()
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.name)
        .collect();
    assert_eq!(names, vec!["kept"]);
    assert_eq!(
        store
            .containers(&ContainerFilter::default(), Page::first(10))
            .await
            .unwrap()
            .total,
        1
    );
}

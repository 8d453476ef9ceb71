//! Situations from public bug reports on other Docker monitors, reproduced on the real
//! engine with the test image, each asserting the value `docker inspect` or `docker events`
//! says is right: container identity, secrets in events, OOM kills, counters Docker does
//! not have, bounds and gaps, and inventory Docker does not announce.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, Row};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use dockermon_e2e::docker::{Cleanup, EventOracle, TEST_IMAGE, docker, unique_name};
use dockermon_e2e::fleet::WAIT;
use dockermon_e2e::wait::eventually;

use crate::support::{ADMIN_PASSWORD, Setup, await_destroys, call, scrape, sign_in, user_token};

const MIB: f64 = 1024.0 * 1024.0;

/// `GET path` as `token`, which must answer 200; its JSON.
async fn get(setup: &Setup, token: &str, path: &str) -> Value {
    let (status, body) = call(setup, "GET", path, Some(token), None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// The host's containers (removed ones too), with their descriptions.
async fn containers(setup: &Setup, token: &str, host: i64) -> Vec<Value> {
    let page = get(
        setup,
        token,
        &format!("/api/v1/containers?host={host}&include_removed=true&detail=true&limit=1000"),
    )
    .await;
    page["items"].as_array().unwrap().clone()
}

/// Waits for the container with Docker id `docker_id` in the API, as the inventory
/// describes it (not only as its first events do).
async fn container_by_id(setup: &Setup, token: &str, host: i64, docker_id: &str) -> Value {
    eventually(
        WAIT,
        &format!("container {docker_id} in the API"),
        || async {
            containers(setup, token, host)
                .await
                .into_iter()
                .find(|c| c["docker_id"] == docker_id && c["detail"].is_object())
        },
    )
    .await
    .unwrap()
}

/// Waits for at least `n` raw stats points of a container.
async fn raw_points(setup: &Setup, token: &str, key: i64, n: usize) -> Vec<Value> {
    let path = format!("/api/v1/containers/{key}/stats?resolution=raw&from=2000-01-01T00:00:00Z");
    eventually(WAIT, &format!("{n} samples of container {key}"), || async {
        let series = get(setup, token, &path).await;
        let points = series["points"].as_array().unwrap().clone();
        (points.len() >= n).then_some(points)
    })
    .await
    .unwrap()
}

/// The host's activity (newest first).
async fn activity(setup: &Setup, token: &str, host: i64, extra: &str) -> Vec<Value> {
    let page = get(
        setup,
        token,
        &format!("/api/v1/activity?host={host}&limit=1000{extra}"),
    )
    .await;
    page["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn two_live_containers_whose_names_share_256_bytes_stay_two() {
    let setup = Setup::new().await;
    let admin = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let mut cleanup = Cleanup::default();
    // Docker accepts 267-character names; both share the first 256 bytes, all Dockermon
    // keeps of a name.
    let mut stem = unique_name("twin");
    while stem.len() < 256 {
        stem.push('x');
    }
    let heavy = cleanup.container(&format!("{stem}-heavy-0001"));
    let light = cleanup.container(&format!("{stem}-light-0001"));
    assert_eq!(heavy.len(), 267);
    // One holds 40 MiB in /dev/shm (charged to its memory), the other nothing: samples
    // that went to the wrong container would show at once.
    let heavy_id = docker(&[
        "run",
        "-d",
        "--name",
        &heavy,
        TEST_IMAGE,
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/shm/fill bs=1M count=40 2>/dev/null && touch /tmp/filled; exec sleep 3600",
    ])
    .await
    .unwrap();
    let light_id = docker(&["run", "-d", "--name", &light, TEST_IMAGE, "sleep", "3600"])
        .await
        .unwrap();
    eventually(WAIT, "the heavy twin filled", || async {
        docker(&["exec", &heavy, "test", "-f", "/tmp/filled"])
            .await
            .ok()
    })
    .await
    .unwrap();

    let _agent = setup.agent("host-twins").await;
    let host = setup.host_id("host-twins").await.0;
    let heavy_row = container_by_id(&setup, &admin, host, &heavy_id).await;
    let light_row = container_by_id(&setup, &admin, host, &light_id).await;
    assert_ne!(
        heavy_row["id"], light_row["id"],
        "two containers, two records"
    );
    for row in [&heavy_row, &light_row] {
        assert_eq!(
            row["name"].as_str().unwrap(),
            stem,
            "the name is cut to 256 bytes"
        );
        assert_eq!(row["truncated"]["name"], true, "and the record says so");
        assert_eq!(row["state"], "running");
    }
    let twins: Vec<Value> = containers(&setup, &admin, host)
        .await
        .into_iter()
        .filter(|c| c["name"] == stem.as_str())
        .collect();
    assert_eq!(twins.len(), 2, "{twins:?}");

    let working_set = |point: &Value| point["memory_working_set_bytes"]["max"].as_f64().unwrap();
    let heavy_points = raw_points(&setup, &admin, heavy_row["id"].as_i64().unwrap(), 4).await;
    let light_points = raw_points(&setup, &admin, light_row["id"].as_i64().unwrap(), 4).await;
    for point in &heavy_points {
        assert!(working_set(point) > 30.0 * MIB, "heavy: {point}");
    }
    for point in &light_points {
        assert!(working_set(point) < 10.0 * MIB, "light: {point}");
    }
}

#[tokio::test]
async fn exec_and_health_check_command_lines_are_never_kept() {
    let setup = Setup::new().await;
    let _agent = setup.agent("host-secrets").await;
    let host = setup.host_id("host-secrets").await.0;
    let admin = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let viewer = user_token(&setup, &admin, "eyes@example.com", "viewer").await;

    // A viewer watching the host's events live.
    let url = format!("ws://{}/ws", setup.collector.ws_address);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    for request in [
        json!({"type": "identify", "token": viewer}),
        json!({"type": "subscribe", "topic": "events", "host": host}),
    ] {
        let text = request.to_string();
        socket.send(Message::Text(text.into())).await.unwrap();
    }
    let mut acknowledged = 0;
    while acknowledged < 2 {
        let text = match socket.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
            other => panic!("the socket closed: {other:?}"),
        };
        let answer: Value = serde_json::from_str(text.as_str()).unwrap();
        assert!(
            ["identified", "subscribed"].contains(&answer["type"].as_str().unwrap()),
            "{answer}"
        );
        acknowledged += 1;
    }

    let mut cleanup = Cleanup::default();
    let name = cleanup.container(&unique_name("secrets"));
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "com.example.db-password=label-hunter2",
        "--label",
        "com.example.team=ops",
        "--health-cmd",
        "echo HEALTH_TOKEN=health-hunter2",
        "--health-interval",
        "1s",
        TEST_IMAGE,
        "sleep",
        "3600",
    ])
    .await
    .unwrap();
    docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo DB_PASSWORD=exec-hunter2; true",
    ])
    .await
    .unwrap();

    // Live: the exec and the health checks arrive, as their actions' names only.
    let mut live_execs = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while live_execs < 4 {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("exec events in time")
            .expect("open")
            .expect("a frame");
        let Message::Text(text) = message else {
            continue;
        };
        assert!(
            !text.contains("hunter2"),
            "a secret reached a viewer live: {text}"
        );
        let update: Value = serde_json::from_str(text.as_str()).unwrap();
        for event in update["items"].as_array().into_iter().flatten() {
            let action = event["action"].as_str().unwrap();
            if action.starts_with("exec_") {
                assert!(
                    ["exec_create", "exec_start", "exec_die"].contains(&action),
                    "{event}"
                );
                live_execs += 1;
            }
        }
    }

    // Stored: the viewer's activity log has the execs, without their command lines.
    let entries = eventually(WAIT, "exec events stored", || async {
        let entries = activity(&setup, &viewer, host, "&action=exec_start").await;
        (entries.len() >= 2).then_some(entries)
    })
    .await
    .unwrap();
    for entry in &entries {
        assert_eq!(entry["action"], "exec_start", "{entry}");
    }
    let all = activity(&setup, &viewer, host, "").await;
    let text = serde_json::to_string(&all).unwrap();
    assert!(
        !text.contains("hunter2"),
        "a secret in the activity log: {text}"
    );
    assert!(
        !text.contains("com.example.team"),
        "labels copied into events are not kept"
    );

    // The secret-looking label's value is hidden; the others are kept for filters.
    let row = eventually(WAIT, "the container in the API", || async {
        containers(&setup, &viewer, host)
            .await
            .into_iter()
            .find(|c| c["name"] == name.as_str())
    })
    .await
    .unwrap();
    let labels = &row["detail"]["labels"];
    assert_eq!(labels["com.example.db-password"], "***");
    assert_eq!(labels["com.example.team"], "ops");

    // Not only hidden at read time: the database never had them.
    let mut db = sqlx::AnyConnection::connect(&setup.collector.database_url)
        .await
        .unwrap();
    for table in ["activity", "containers"] {
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT * FROM {table}")))
            .fetch_all(&mut db)
            .await
            .unwrap();
        for row in rows {
            for i in 0..row.len() {
                if let Ok(Some(text)) = row.try_get::<Option<String>, _>(i) {
                    assert!(!text.contains("hunter2"), "stored in {table}: {text}");
                }
            }
        }
    }
}

#[tokio::test]
async fn an_oom_kill_is_known_from_state_and_a_docker_kill_is_not_one() {
    let setup = Setup::new().await;
    let admin = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let mut cleanup = Cleanup::default();
    let oom = cleanup.container(&unique_name("oom"));
    let killed = cleanup.container(&unique_name("killed"));
    // Docker marks a container OOM-killed only when containerd's OOM event comes before its
    // exit; on a busy host the two race (cgroup v1), and a lost race leaves the flag false
    // for good. So the process the kernel kills is a child, and the container exits with
    // its status only once Docker has reported the `oom` event.
    let oracle = EventOracle::start(&["type=container", "event=oom"])
        .await
        .unwrap();
    let oom_id = docker(&[
        "run",
        "-d",
        "--name",
        &oom,
        "--memory",
        "16m",
        "--memory-swap",
        "16m",
        TEST_IMAGE,
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/null bs=64M count=1; status=$?; \
         until [ -e /tmp/release ]; do sleep 0.05; done; exit $status",
    ])
    .await
    .unwrap();
    eventually(WAIT, "Docker's oom event", || async {
        oracle
            .events()
            .iter()
            .any(|(action, id, _)| action == "oom" && *id == oom_id)
            .then_some(())
    })
    .await
    .unwrap();
    oracle.stop().await;
    docker(&["exec", &oom, "touch", "/tmp/release"])
        .await
        .unwrap();
    let killed_id = docker(&["run", "-d", "--name", &killed, TEST_IMAGE, "sleep", "3600"])
        .await
        .unwrap();
    docker(&["kill", &killed]).await.unwrap();
    for name in [&oom, &killed] {
        assert_eq!(docker(&["wait", name]).await.unwrap(), "137");
    }
    let inspect = |name: &str| {
        let name = name.to_owned();
        async move {
            docker(&["inspect", "-f", "{{.State.OOMKilled}}", &name])
                .await
                .unwrap()
        }
    };
    assert_eq!(inspect(&oom).await, "true");
    assert_eq!(inspect(&killed).await, "false");

    // An agent that starts afterwards saw neither event.
    let _agent = setup.agent("host-oom").await;
    let host = setup.host_id("host-oom").await.0;
    let oom_row = container_by_id(&setup, &admin, host, &oom_id).await;
    let killed_row = container_by_id(&setup, &admin, host, &killed_id).await;
    assert_eq!(oom_row["exit_code"], 137);
    assert_eq!(oom_row["oom_killed"], true);
    assert_eq!(oom_row["state"], "exited");
    assert_eq!(killed_row["exit_code"], 137);
    assert_eq!(killed_row["oom_killed"], false);
    assert_eq!(
        oom_row["detail"]["resources"]["memory_limit_bytes"],
        16 << 20
    );

    // And into the series the alert rules use.
    let series = |body: &str, name: &str| {
        body.lines()
            .find(|line| {
                line.starts_with("dockermon_container_oom_killed{")
                    && line.contains(&format!("name=\"{name}\""))
            })
            .map(|line| line.rsplit(' ').next().unwrap().to_owned())
    };
    let body = eventually(WAIT, "both containers in /metrics", || async {
        let body = scrape(&setup).await;
        (series(&body, &oom).is_some() && series(&body, &killed).is_some()).then_some(body)
    })
    .await
    .unwrap();
    assert_eq!(series(&body, &oom).unwrap(), "1");
    assert_eq!(series(&body, &killed).unwrap(), "0");
}

/// Serves `bytes` zero bytes over HTTP to one client on loopback; its port.
async fn serve_once(bytes: usize) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request).await;
        let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {bytes}\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&vec![0u8; bytes]).await.unwrap();
    });
    port
}

#[tokio::test]
async fn a_container_on_the_host_network_has_no_counters_and_one_without_a_network_reads_zero() {
    let setup = Setup::new().await;
    let _agent = setup.agent("host-netmodes").await;
    let host = setup.host_id("host-netmodes").await.0;
    let admin = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let mut cleanup = Cleanup::default();
    let on_host = cleanup.container(&unique_name("net-host"));
    let isolated = cleanup.container(&unique_name("net-none"));
    let port = serve_once(5 << 20).await;
    let fetch = format!(
        "wget -q -O /dev/null http://127.0.0.1:{port}/ && touch /tmp/fetched; exec sleep 3600"
    );
    let on_host_id = docker(&[
        "run",
        "-d",
        "--name",
        &on_host,
        "--network",
        "host",
        TEST_IMAGE,
        "sh",
        "-c",
        &fetch,
    ])
    .await
    .unwrap();
    let isolated_id = docker(&[
        "run",
        "-d",
        "--name",
        &isolated,
        "--network",
        "none",
        TEST_IMAGE,
        "sleep",
        "3600",
    ])
    .await
    .unwrap();
    eventually(WAIT, "5 MiB downloaded on the host's network", || async {
        docker(&["exec", &on_host, "test", "-f", "/tmp/fetched"])
            .await
            .ok()
    })
    .await
    .unwrap();

    let on_host_row = container_by_id(&setup, &admin, host, &on_host_id).await;
    let isolated_row = container_by_id(&setup, &admin, host, &isolated_id).await;
    let on_host_points = raw_points(&setup, &admin, on_host_row["id"].as_i64().unwrap(), 3).await;
    let isolated_points = raw_points(&setup, &admin, isolated_row["id"].as_i64().unwrap(), 3).await;
    for point in &on_host_points {
        assert!(
            point["net_rx_bytes_per_s"].is_null(),
            "no data, not 0: {point}"
        );
        assert!(
            point["net_tx_bytes_per_s"].is_null(),
            "no data, not 0: {point}"
        );
        assert!(point["cpu_percent"].is_object() || point == &on_host_points[0]);
    }
    // The first sample has no rate yet; every later one reads a real 0.
    for point in isolated_points.iter().skip(1) {
        assert_eq!(point["net_rx_bytes_per_s"]["avg"], 0.0, "{point}");
        assert_eq!(point["net_tx_bytes_per_s"]["avg"], 0.0, "{point}");
    }
    let latest = get(
        &setup,
        &admin,
        &format!("/api/v1/hosts/{host}/stats/latest"),
    )
    .await;
    let latest_of = |id: &str| {
        latest
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["docker_id"] == id)
            .cloned()
            .unwrap()
    };
    assert!(latest_of(&on_host_id)["net_rx_bytes_per_s"].is_null());
    assert_eq!(latest_of(&isolated_id)["net_rx_bytes_per_s"], 0.0);
    let body = scrape(&setup).await;
    let of_on_host = format!("name=\"{on_host}\"");
    assert!(
        body.lines()
            .any(|line| line.starts_with("container_last_seen{") && line.contains(&of_on_host)),
        "the container is in /metrics"
    );
    assert!(
        !body
            .lines()
            .any(|line| line.starts_with("container_network_")
                && line.contains(&format!("name=\"{on_host}\""))),
        "no network series for a container without counters of its own"
    );
}

#[tokio::test]
async fn labels_beyond_the_bound_are_counted_and_a_filter_on_them_says_it_may_miss() {
    let setup = Setup::new().await;
    let _agent = setup.agent("host-labels").await;
    let host = setup.host_id("host-labels").await.0;
    let admin = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let mut cleanup = Cleanup::default();
    let name = cleanup.container(&unique_name("labels"));
    let mut args: Vec<String> = ["run", "-d", "--name", &name]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for i in 0..73 {
        args.push("--label".into());
        args.push(format!("com.example.l{i:02}=v"));
    }
    args.extend(["--label".into(), "zz.team=ops".into()]);
    args.extend([TEST_IMAGE.into(), "sleep".into(), "3600".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let id = docker(&args).await.unwrap();
    let found = docker(&["ps", "-q", "--no-trunc", "--filter", "label=zz.team=ops"])
        .await
        .unwrap();
    assert!(found.contains(&id), "docker itself finds it");

    let row = container_by_id(&setup, &admin, host, &id).await;
    assert_eq!(row["truncated"]["labels"], 10, "74 labels, 64 kept: {row}");
    assert_eq!(
        row["detail"]["labels"].as_object().unwrap().len(),
        64,
        "{row}"
    );
    let page = get(
        &setup,
        &admin,
        &format!("/api/v1/containers?host={host}&label=zz.team=ops"),
    )
    .await;
    assert_eq!(page["total"], 0, "the label was left out");
    let warnings = page["warnings"].as_array().expect("a warning, not silence");
    assert!(
        warnings[0].as_str().unwrap().contains("1 container(s)"),
        "{warnings:?}"
    );
    // Removed containers are listed from the database: the same warning.
    let page = get(
        &setup,
        &admin,
        &format!("/api/v1/containers?host={host}&label=zz.team=ops&include_removed=true"),
    )
    .await;
    assert_eq!(page["warnings"], json!(warnings));
    // A filter on a kept label finds it, without doubt... about it.
    let page = get(
        &setup,
        &admin,
        &format!("/api/v1/containers?host={host}&label=com.example.l00=v"),
    )
    .await;
    assert_eq!(page["items"][0]["docker_id"], id.as_str());
}

#[tokio::test]
async fn more_events_than_docker_keeps_while_the_agent_is_down_leave_a_marked_gap() {
    let setup = Setup::new().await;
    let mut agent = setup.agent("host-gap").await;
    let host = setup.host_id("host-gap").await.0;
    let admin = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let mut cleanup = Cleanup::default();
    let names: Vec<String> = (0..4)
        .map(|i| cleanup.container(&unique_name(&format!("gap{i}"))))
        .collect();
    let mut last_id = String::new();
    for name in &names {
        last_id = docker(&["run", "-d", "--name", name, TEST_IMAGE, "sleep", "3600"])
            .await
            .unwrap();
    }
    eventually(WAIT, "the last start delivered", || async {
        activity(&setup, &admin, host, "&action=start")
            .await
            .iter()
            .any(|e| e["actor_id"] == last_id.as_str())
            .then_some(())
    })
    .await
    .unwrap();

    agent.kill9().await;
    let outage_from = dockermon_proto::now_ns();
    // 288 events: more than the 256 Docker keeps for a subscriber that comes back.
    futures::future::join_all(names.iter().map(|name| async move {
        for _ in 0..36 {
            docker(&["pause", name]).await.unwrap();
            docker(&["unpause", name]).await.unwrap();
        }
    }))
    .await;
    let outage_to = dockermon_proto::now_ns();
    agent.restart().await.unwrap();
    agent.wait_connected().await.unwrap();

    let gap = eventually(WAIT, "a gap record", || async {
        activity(&setup, &admin, host, "&kind=gap")
            .await
            .into_iter()
            .next()
    })
    .await
    .unwrap_or_else(|error| panic!("{error}; agent log:\n{}", agent.stderr()));
    assert_eq!(gap["action"], "gap");
    assert_eq!(gap["attributes"]["reason"], "docker_buffer_full");
    let from: i64 = gap["attributes"]["from_ns"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let to: i64 = gap["attributes"]["to_ns"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        from < outage_from,
        "the hole starts at the last event reported"
    );
    assert!(
        to > outage_from && to < outage_to,
        "and ends at the oldest event Docker still had"
    );
    // What Docker still had is there: the last unpause of each container.
    let unpauses = activity(&setup, &admin, host, "&action=unpause").await;
    for name in &names {
        assert!(unpauses.iter().any(|e| e["actor_name"] == name.as_str()));
    }
}

/// Builds an image from a Dockerfile with the classic builder; its id.
async fn build(tag: &str, dockerfile: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    let output = tokio::process::Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(dir.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn a_tag_moved_by_a_rebuild_leaves_the_old_image_untagged() {
    let setup = Setup::new().await;
    let _agent = setup.agent("host-retag").await;
    let host = setup.host_id("host-retag").await.0;
    let admin = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let mut cleanup = Cleanup::default();
    let tag = cleanup.image(&format!("{}:5", unique_name("retag")));
    let first = build(&tag, &format!("FROM {TEST_IMAGE}\nLABEL build=first\n")).await;
    cleanup.image(&first);
    let tags_of = |items: &[Value], id: &str| {
        items
            .iter()
            .find(|i| i["id"] == id)
            .map(|i| i["tags"].clone())
    };
    let path = format!("/api/v1/hosts/{host}/images?limit=1000");
    eventually(WAIT, "the first build tagged", || async {
        let items = get(&setup, &admin, &path).await["items"]
            .as_array()
            .unwrap()
            .clone();
        (tags_of(&items, &first) == Some(json!([tag]))).then_some(())
    })
    .await
    .unwrap();

    // Docker 20.10 sends `tag` for the new image and nothing for the old one.
    let second = build(&tag, &format!("FROM {TEST_IMAGE}\nLABEL build=second\n")).await;
    cleanup.image(&second);
    assert_ne!(first, second);
    let started = Instant::now();
    eventually(WAIT, "the old image untagged", || async {
        let items = get(&setup, &admin, &path).await["items"]
            .as_array()
            .unwrap()
            .clone();
        (tags_of(&items, &first) == Some(json!([]))
            && tags_of(&items, &second) == Some(json!([tag])))
        .then_some(())
    })
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "within one refresh, not the periodic reconciliation"
    );
}

#[tokio::test]
async fn short_lived_containers_during_a_collector_outage_get_records_and_linked_events() {
    const LIVES: usize = 12;
    let mut setup = Setup::new().await;
    let _agent = setup.agent("host-brief").await;
    let host = setup.host_id("host-brief").await.0;
    let admin = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let tag = unique_name("brief");
    let oracle = EventOracle::start(&["type=container", &format!("label=dmtest={tag}")])
        .await
        .unwrap();

    setup.collector.kill9().await;
    for i in 0..LIVES {
        let name = format!("{tag}-{i}");
        docker(&[
            "run",
            "--rm",
            "--name",
            &name,
            "--label",
            &format!("dmtest={tag}"),
            TEST_IMAGE,
            "true",
        ])
        .await
        .unwrap();
    }
    await_destroys(&oracle, LIVES).await;
    setup.collector.restart().await.unwrap();

    let ids: HashSet<String> = oracle.events().into_iter().map(|(_, id, _)| id).collect();
    assert_eq!(ids.len(), LIVES);
    let rows = eventually(WAIT, "a record for every short-lived container", || async {
        let rows: Vec<Value> = containers(&setup, &admin, host)
            .await
            .into_iter()
            .filter(|c| ids.contains(c["docker_id"].as_str().unwrap()))
            .collect();
        (rows.len() == LIVES && rows.iter().all(|r| r["state"] == "removed")).then_some(rows)
    })
    .await
    .unwrap();
    let expected_events = oracle.events().len();
    let entries = eventually(WAIT, "every event stored", || async {
        let entries: Vec<Value> = activity(&setup, &admin, host, "&kind=container")
            .await
            .into_iter()
            .filter(|e| ids.contains(e["actor_id"].as_str().unwrap()))
            .collect();
        (entries.len() >= expected_events).then_some(entries)
    })
    .await
    .unwrap();
    for row in &rows {
        assert!(row["removed_ns"].is_i64(), "{row}");
        assert!(row["name"].as_str().unwrap().starts_with(&tag), "{row}");
        assert_eq!(
            row["image"], TEST_IMAGE,
            "from the events' attributes: {row}"
        );
    }
    for entry in &entries {
        let row = rows
            .iter()
            .find(|r| r["docker_id"] == entry["actor_id"])
            .unwrap();
        assert_eq!(entry["container_id"], row["id"], "linked: {entry}");
    }
    oracle.stop().await;
}

#[tokio::test]
async fn disk_usage_is_measured_while_someone_else_measures_it_too() {
    let setup = Setup::with(&["--agent-usage-interval", "1s"]).await;
    let agent = setup.agent("host-df").await;
    let host = setup.host_id("host-df").await;
    let mut cleanup = Cleanup::default();
    // Volumes with files make each measurement take a while.
    for i in 0..8 {
        let volume = cleanup.volume(&unique_name(&format!("df{i}")));
        docker(&[
            "run",
            "--rm",
            "-v",
            &format!("{volume}:/data"),
            TEST_IMAGE,
            "sh",
            "-c",
            "for i in $(seq 1 300); do echo $i > /data/f$i; done",
        ])
        .await
        .unwrap();
    }
    // `docker system df` back to back for 4 s: engines before 23.0 refuse the agent's
    // measurement while one runs.
    let busy_until = Instant::now() + Duration::from_secs(4);
    let mut refused = 0;
    while Instant::now() < busy_until {
        if let Err(error) = docker(&["system", "df", "-v"]).await {
            assert!(error.to_string().contains("already running"), "{error}");
            refused += 1;
        }
    }
    let after = dockermon_proto::now_ns();
    let store = &setup.store;
    eventually(WAIT, "a measurement after the busy spell", || async {
        let usage = store.latest_usage(host).await.ok()??;
        (usage.time_ns > after).then_some(())
    })
    .await
    .unwrap();
    assert!(
        !agent.stderr().contains("disk usage measurement failed"),
        "a busy engine is asked again, not skipped ({refused} of the test's own refused)"
    );
}

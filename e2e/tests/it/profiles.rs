//! The 1-second profiler end to end: the real agent following Docker's streaming stats of
//! a real container, the real collector storing and fanning out, real WebSocket watchers.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use dockermon_e2e::docker::{Cleanup, TEST_IMAGE, docker, unique_name};
use dockermon_e2e::fleet::WAIT;
use dockermon_e2e::http;
use dockermon_e2e::wait::eventually;

use crate::support::{ADMIN_PASSWORD, Setup, call, sign_in, user_token};

/// A WebSocket client of the collector, signed in.
pub(crate) struct Watcher {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Watcher {
    pub(crate) async fn connect(setup: &Setup, token: &str) -> Watcher {
        let url = format!("ws://{}/ws", setup.collector.ws_address);
        let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut watcher = Watcher { socket };
        watcher
            .send(json!({"type": "identify", "token": token}))
            .await;
        let identified = watcher.next_of("identified").await;
        assert_eq!(identified["type"], "identified");
        watcher
    }

    pub(crate) async fn send(&mut self, message: Value) {
        let text = message.to_string();
        self.socket.send(Message::Text(text.into())).await.unwrap();
    }

    /// The next JSON message, within `WAIT`.
    pub(crate) async fn next(&mut self) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("a message in time")
                .expect("the socket is open")
                .expect("a frame");
            if let Message::Text(text) = message {
                return serde_json::from_str(text.as_str()).unwrap();
            }
        }
    }

    /// The next message of type `kind` (or an error, which fails the test).
    pub(crate) async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let message = self.next().await;
            if message["type"] == kind {
                return message;
            }
            assert_ne!(message["type"], "error", "waiting for {kind}: {message}");
        }
    }

    /// Subscribes to a container's profile; its session id and whether it was joined.
    pub(crate) async fn profile(&mut self, container: i64, options: Value) -> (i64, bool) {
        let mut request = json!({"type": "subscribe", "topic": "profile", "container": container});
        if let (Some(request), Some(options)) = (request.as_object_mut(), options.as_object()) {
            request.extend(options.clone());
        }
        self.send(request).await;
        let subscribed = self.next_of("subscribed").await;
        let state = self.next_of("profile_state").await;
        assert_eq!(state["state"], "started", "{state}");
        assert_eq!(state["profile"], subscribed["profile"]);
        (
            subscribed["profile"].as_i64().unwrap(),
            state["joined"].as_bool().unwrap(),
        )
    }

    /// The next `n` samples of session `id`.
    pub(crate) async fn samples(&mut self, id: i64, n: usize) -> Vec<Value> {
        let mut samples = Vec::new();
        while samples.len() < n {
            let message = self.next().await;
            if message["type"] == "profile" {
                assert_eq!(message["profile"], id, "{message}");
                samples.extend(message["items"].as_array().unwrap().iter().cloned());
            }
            assert_ne!(message["type"], "error", "{message}");
        }
        samples
    }

    /// Every sample of session `id` until it ends, and the `ended` state.
    pub(crate) async fn until_end(&mut self, id: i64) -> (Vec<Value>, Value) {
        let mut samples = Vec::new();
        loop {
            let message = self.next().await;
            match message["type"].as_str().unwrap() {
                "profile" => {
                    assert_eq!(message["profile"], id);
                    samples.extend(message["items"].as_array().unwrap().iter().cloned());
                }
                "profile_state" if message["state"] == "ended" => {
                    assert_eq!(message["profile"], id);
                    return (samples, message);
                }
                "error" => panic!("{message}"),
                _ => {}
            }
        }
    }
}

/// A running container from the test image, removed when `cleanup` goes.
pub(crate) async fn container(cleanup: &mut Cleanup, prefix: &str, command: &[&str]) -> String {
    let name = cleanup.container(&unique_name(prefix));
    let mut args = vec!["run", "-d", "--name", &name, TEST_IMAGE];
    args.extend_from_slice(command);
    docker(&args).await.unwrap();
    name
}

pub(crate) const SPIN: &[&str] = &["sh", "-c", "while :; do :; done"];
pub(crate) const SLEEP: &[&str] = &["sleep", "3600"];

/// The API's id for a container, once the collector knows it in `state`.
pub(crate) async fn container_key(setup: &Setup, token: &str, name: &str, state: &str) -> i64 {
    let path = format!("/api/v1/containers?name={name}");
    eventually(WAIT, &format!("{name} {state} in the API"), || {
        let path = path.clone();
        async move {
            let (_, page) = call(setup, "GET", &path, Some(token), None).await;
            let item = &page["items"][0];
            (item["state"] == state)
                .then(|| item["id"].as_i64())
                .flatten()
        }
    })
    .await
    .unwrap()
}

/// `POST /containers/{key}/profiles`, which must start a new session; the session.
async fn start_over_api(setup: &Setup, token: &str, key: i64, body: Value) -> Value {
    let path = format!("/api/v1/containers/{key}/profiles");
    let (status, started) = call(setup, "POST", &path, Some(token), Some(body)).await;
    assert_eq!(status, 201, "{started}");
    started
}

async fn profile(setup: &Setup, token: &str, id: i64) -> Value {
    let (status, profile) = call(
        setup,
        "GET",
        &format!("/api/v1/profiles/{id}"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{profile}");
    profile
}

/// The session once it has ended.
pub(crate) async fn ended(setup: &Setup, token: &str, id: i64) -> Value {
    eventually(WAIT, "the profile session to end", || async move {
        let profile = profile(setup, token, id).await;
        (profile["state"] == "ended").then_some(profile)
    })
    .await
    .unwrap()
}

async fn stored_samples(setup: &Setup, token: &str, id: i64) -> Vec<Value> {
    let path = format!("/api/v1/profiles/{id}/samples?limit=1000");
    let (status, page) = call(setup, "GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().clone()
}

/// What the host's agent says about itself (capabilities, profiles, Docker streams).
async fn agent_status(setup: &Setup, token: &str, host: i64) -> Value {
    let (status, host) = call(
        setup,
        "GET",
        &format!("/api/v1/hosts/{host}"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{host}");
    host["agent"].clone()
}

/// Waits until the host's agent holds no profile session and no Docker stream.
async fn agent_idle(setup: &Setup, token: &str, host: i64, within: Duration) {
    eventually(
        within,
        "the agent to hold no profile and no stream",
        || async move {
            let agent = agent_status(setup, token, host).await;
            (agent["docker_streams"] == 0 && agent["profiles"] == json!([])).then_some(())
        },
    )
    .await
    .unwrap();
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn times(samples: &[Value]) -> Vec<i64> {
    samples
        .iter()
        .map(|s| s["time_ns"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_spinning_container_is_profiled_every_second_and_what_was_seen_is_saved() {
    let setup = Setup::new().await;
    let _agent = setup.agent("host-spin").await;
    let admin = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let mut cleanup = Cleanup::default();
    let name = container(&mut cleanup, "spin", SPIN).await;
    let key = container_key(&setup, &admin, &name, "running").await;

    let mut watcher = Watcher::connect(&setup, &admin).await;
    let (id, joined) = watcher.profile(key, json!({"duration": 15})).await;
    assert!(!joined);
    let (streamed, end) = watcher.until_end(id).await;
    assert_eq!(end["reason"], "duration", "{end}");

    assert!(
        (13..=17).contains(&streamed.len()),
        "15 ± 2 samples in 15 s, got {}",
        streamed.len()
    );
    let spacing: Vec<f64> = times(&streamed)
        .windows(2)
        .map(|pair| (pair[1] - pair[0]) as f64 / 1e9)
        .collect();
    let spacing = median(spacing);
    assert!((0.8..=1.2).contains(&spacing), "median spacing {spacing} s");
    let cpu = median(
        streamed
            .iter()
            .map(|s| s["cpu_percent"].as_f64().unwrap())
            .collect(),
    );
    assert!((85.0..=115.0).contains(&cpu), "median CPU {cpu} %");
    assert_eq!(end["samples"], streamed.len(), "a live sample was lost");

    // What was stored is what the watcher saw, value for value.
    let stored = stored_samples(&setup, &admin, id).await;
    assert_eq!(stored, streamed);
    let profile = profile(&setup, &admin, id).await;
    assert_eq!(profile["state"], "ended");
    assert_eq!(profile["reason"], "duration");
    assert_eq!(profile["samples"], streamed.len());
    assert_eq!(profile["samples_read"], streamed.len());
    assert_eq!(profile["interval_ms"], 1000);
    let average = profile["summary"]["cpu_percent_avg"].as_f64().unwrap();
    assert!((85.0..=115.0).contains(&average), "average CPU {average}");

    // The same samples as CSV, for a spreadsheet.
    let answer = http::exchange(
        setup.collector.api_address,
        "GET",
        &format!("/api/v1/profiles/{id}/samples"),
        Some(&admin),
        &[("Accept", "text/csv")],
        None,
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("text/csv")
    );
    let lines: Vec<&str> = answer.body.lines().collect();
    assert_eq!(lines.len(), streamed.len() + 1);
    assert!(lines[0].starts_with("time,time_ns,"), "{}", lines[0]);
    let first_time = lines[1].split(',').nth(1).unwrap();
    assert_eq!(first_time, stored[0]["time_ns"].to_string());
}

#[tokio::test]
async fn two_watchers_share_one_session_and_the_agent_holds_one_docker_stream() {
    let setup = Setup::with(&["--profile-grace", "2s"]).await;
    let _agent = setup.agent("host-share").await;
    let host = setup.host_id("host-share").await.0;
    let admin = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let mut cleanup = Cleanup::default();
    let name = container(&mut cleanup, "shared", SLEEP).await;
    let key = container_key(&setup, &admin, &name, "running").await;

    let mut first = Watcher::connect(&setup, &admin).await;
    let mut second = Watcher::connect(&setup, &admin).await;
    let (id, joined) = first.profile(key, json!({})).await;
    assert!(!joined);
    let (same, joined) = second.profile(key, json!({})).await;
    assert_eq!(same, id);
    assert!(joined, "the second watcher joins the running session");
    // Starting it over the API joins it too.
    let (status, joined) = call(
        &setup,
        "POST",
        &format!("/api/v1/containers/{key}/profiles"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["id"], id);

    let seen_second = second.samples(id, 3).await;
    let seen_first = first.samples(id, 6).await;
    for sample in &seen_second {
        let twin = seen_first
            .iter()
            .find(|s| s["time_ns"] == sample["time_ns"])
            .unwrap_or_else(|| panic!("the first watcher never saw {sample}"));
        assert_eq!(twin, sample);
    }
    let agent = agent_status(&setup, &admin, host).await;
    // One reader for any number of watchers: a timer over the cgroup files where the agent
    // reads them (no Docker stream at all), else one Docker stream.
    let (_, view) = call(
        &setup,
        "GET",
        &format!("/api/v1/hosts/{host}"),
        Some(&admin),
        None,
    )
    .await;
    let streams = match view["info"]["stats_source"].as_str() {
        Some("cgroup") => 0,
        Some("docker") => 1,
        other => panic!("stats_source {other:?}: {view}"),
    };
    assert_eq!(agent["docker_streams"], streams, "{agent}");
    assert_eq!(agent["profiles"], json!([id]), "{agent}");
    assert!(
        agent["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("profile"))
    );
    let (_, running) = call(
        &setup,
        "GET",
        &format!("/api/v1/profiles?container={key}&state=running"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(running["total"], 1, "{running}");

    // One watcher leaving keeps the session; the last one leaving ends it.
    first
        .send(json!({"type": "unsubscribe", "topic": "profile", "container": key}))
        .await;
    second.samples(id, 3).await;
    assert_eq!(profile(&setup, &admin, id).await["state"], "running");
    second
        .send(json!({"type": "unsubscribe", "topic": "profile", "container": key}))
        .await;
    let profile = ended(&setup, &admin, id).await;
    assert_eq!(profile["reason"], "no_watchers");
    agent_idle(&setup, &admin, host, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_dropped_last_watcher_ends_the_session_and_cycles_leave_nothing_behind() {
    let grace = Duration::from_secs(1);
    let setup = Setup::with(&["--profile-grace", "1s"]).await;
    let agent = setup.agent("host-cycles").await;
    let host = setup.host_id("host-cycles").await.0;
    let admin = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let mut cleanup = Cleanup::default();
    let mut keys = Vec::new();
    for _ in 0..4 {
        let name = container(&mut cleanup, "cycle", SLEEP).await;
        keys.push(container_key(&setup, &admin, &name, "running").await);
    }

    // The watcher's connection drops without a word: no unsubscribe, no close frame.
    let mut watcher = Watcher::connect(&setup, &admin).await;
    let (id, _) = watcher.profile(keys[0], json!({})).await;
    watcher.samples(id, 2).await;
    drop(watcher);
    agent_idle(&setup, &admin, host, grace + Duration::from_secs(5)).await;
    let first = ended(&setup, &admin, id).await;
    assert_eq!(first["reason"], "no_watchers");
    assert!(first["samples"].as_i64().unwrap() >= 2);
    assert_eq!(first["samples"], first["samples_read"], "{first}");

    let pid = agent.process.as_ref().unwrap().id().unwrap();
    let rss_before = rss_kib(pid);
    let mut ids = vec![id];
    for cycle in 0..20 {
        let mut watcher = Watcher::connect(&setup, &admin).await;
        let key = keys[(cycle + 1) % keys.len()];
        // The previous session of this container must have ended, or this would join it.
        let previous = format!("/api/v1/profiles?container={key}&state=running");
        eventually(WAIT, "the container's previous session to end", || {
            let previous = previous.clone();
            let admin = admin.clone();
            let setup = &setup;
            async move {
                let (_, page) = call(setup, "GET", &previous, Some(&admin), None).await;
                (page["total"] == 0).then_some(())
            }
        })
        .await
        .unwrap();
        let (id, joined) = watcher.profile(key, json!({})).await;
        assert!(!joined, "cycle {cycle} joined an old session");
        watcher.samples(id, 1).await;
        ids.push(id);
        drop(watcher);
    }
    agent_idle(&setup, &admin, host, WAIT).await;
    for id in ids {
        let profile = ended(&setup, &admin, id).await;
        assert_eq!(profile["reason"], "no_watchers", "{profile}");
        assert_eq!(profile["samples"], profile["samples_read"], "{profile}");
    }
    let rss_after = rss_kib(pid);
    assert!(
        rss_after < rss_before + 3 * 1024,
        "the agent grew from {rss_before} KiB to {rss_after} KiB over 20 sessions"
    );
}

/// Resident memory of a process, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_longer_interval_samples_less_often() {
    let setup = Setup::new().await;
    let _agent = setup.agent("host-interval").await;
    let admin = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let mut cleanup = Cleanup::default();
    let name = container(&mut cleanup, "slow", SLEEP).await;
    let key = container_key(&setup, &admin, &name, "running").await;
    let mut watcher = Watcher::connect(&setup, &admin).await;
    let (id, _) = watcher
        .profile(key, json!({"interval": 2, "duration": 9}))
        .await;
    let (streamed, end) = watcher.until_end(id).await;
    assert_eq!(end["reason"], "duration");
    assert!(
        (3..=5).contains(&streamed.len()),
        "{} samples",
        streamed.len()
    );
    let spacing: Vec<f64> = times(&streamed)
        .windows(2)
        .map(|pair| (pair[1] - pair[0]) as f64 / 1e9)
        .collect();
    let spacing = median(spacing);
    assert!((1.7..=2.3).contains(&spacing), "median spacing {spacing} s");
    assert!(
        streamed
            .iter()
            .all(|s| (1_700_000_000..2_300_000_000).contains(&s["interval_ns"].as_i64().unwrap())),
        "every rate covers its two seconds: {streamed:?}"
    );
    assert_eq!(profile(&setup, &admin, id).await["interval_ms"], 2000);
}

#[tokio::test]
async fn a_container_that_stops_ends_its_session_with_its_samples_saved() {
    let setup = Setup::new().await;
    let _agent = setup.agent("host-stop").await;
    let admin = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let mut cleanup = Cleanup::default();
    let name = container(&mut cleanup, "stops", SLEEP).await;
    let key = container_key(&setup, &admin, &name, "running").await;

    let started = start_over_api(&setup, &admin, key, json!({"duration": 600})).await;
    assert_eq!(started["origin"], "api");
    let id = started["id"].as_i64().unwrap();
    let mut watcher = Watcher::connect(&setup, &admin).await;
    let (same, joined) = watcher.profile(key, json!({})).await;
    assert_eq!((same, joined), (id, true));
    watcher.samples(id, 2).await;
    docker(&["stop", "-t", "0", &name]).await.unwrap();
    let (_, end) = watcher.until_end(id).await;
    assert_eq!(end["reason"], "container_stopped", "{end}");
    let profile = ended(&setup, &admin, id).await;
    assert_eq!(profile["reason"], "container_stopped");
    assert!(profile["samples"].as_i64().unwrap() >= 2, "{profile}");
    assert_eq!(profile["samples"], end["samples"], "{profile}");
    assert_eq!(profile["samples"], profile["samples_read"]);
}

#[tokio::test]
async fn a_collector_killed_mid_profile_loses_no_sample_and_stores_none_twice() {
    let mut setup = Setup::new().await;
    let _agent = setup.agent("host-crash").await;
    let admin = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let mut cleanup = Cleanup::default();
    let name = container(&mut cleanup, "crash", SLEEP).await;
    let key = container_key(&setup, &admin, &name, "running").await;

    let started = start_over_api(&setup, &admin, key, json!({"duration": 14})).await;
    let id = started["id"].as_i64().unwrap();
    let mut watcher = Watcher::connect(&setup, &admin).await;
    watcher.profile(key, json!({})).await;
    watcher.samples(id, 3).await;
    drop(watcher);

    setup.collector.kill9().await;
    setup.collector.restart().await.unwrap();
    let admin = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let profile = ended(&setup, &admin, id).await;
    assert_eq!(profile["reason"], "duration", "{profile}");
    assert_eq!(profile["samples"], profile["samples_read"], "{profile}");
    let stored = stored_samples(&setup, &admin, id).await;
    assert_eq!(Some(stored.len() as i64), profile["samples"].as_i64());
    assert!(
        (12..=16).contains(&stored.len()),
        "{} samples",
        stored.len()
    );
    // Every second is there once: no gap, no repeat.
    let gaps: Vec<i64> = times(&stored).windows(2).map(|p| p[1] - p[0]).collect();
    assert!(
        gaps.iter()
            .all(|gap| (500_000_000..1_600_000_000).contains(gap)),
        "gaps between samples (ns): {gaps:?}"
    );
}

#[tokio::test]
async fn who_may_profile_what_and_the_bounds_answer_clearly() {
    let setup = Setup::with(&["--profile-max-per-host", "2", "--profile-max-per-user", "1"]).await;
    let mut agent = setup.agent("host-bounds").await;
    let host = setup.host_id("host-bounds").await;
    let admin = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let first = user_token(&setup, &admin, "first@example.com", "operator").await;
    let second = user_token(&setup, &admin, "second@example.com", "operator").await;
    let viewer = user_token(&setup, &admin, "viewer@example.com", "viewer").await;
    let mut cleanup = Cleanup::default();
    let mut keys = Vec::new();
    for _ in 0..3 {
        let name = container(&mut cleanup, "bounds", SLEEP).await;
        keys.push(container_key(&setup, &admin, &name, "running").await);
    }
    let exited = container(&mut cleanup, "exited", &["true"]).await;
    let exited = container_key(&setup, &admin, &exited, "exited").await;
    let start = |key: i64, token: String, body: Option<Value>| {
        let setup = &setup;
        async move {
            call(
                setup,
                "POST",
                &format!("/api/v1/containers/{key}/profiles"),
                Some(&token),
                body,
            )
            .await
        }
    };

    let (status, refused) = start(keys[0], viewer.clone(), None).await;
    assert_eq!(status, 403, "{refused}");
    for (body, what) in [
        (json!({"interval": 11}), "interval"),
        (json!({"interval": 0}), "interval"),
        (json!({"duration": 0}), "duration"),
        (json!({"duration": 86_401}), "duration"),
        (json!({"speed": "fast"}), "unknown field"),
    ] {
        let (status, refused) = start(keys[0], first.clone(), Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {refused}");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains(what), "{body}: {message}");
    }
    let (status, not_running) = start(exited, first.clone(), None).await;
    assert_eq!(status, 409, "{not_running}");
    assert_eq!(not_running["error"]["code"], "container_not_running");

    let (status, a) = start(keys[0], first.clone(), None).await;
    assert_eq!(status, 201, "{a}");
    let (status, busy) = start(keys[1], first.clone(), None).await;
    assert_eq!(status, 429, "{busy}");
    assert_eq!(busy["error"]["code"], "too_many_profiles");
    let (status, b) = start(keys[1], second.clone(), None).await;
    assert_eq!(status, 201, "{b}");
    let (status, full) = start(keys[2], admin.clone(), None).await;
    assert_eq!(status, 409, "{full}");
    assert_eq!(full["error"]["code"], "too_many_profiles");
    // Joining is not starting: no bound applies.
    let (status, joined) = start(keys[0], first.clone(), None).await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["id"], a["id"]);

    // A viewer reads but does not stop; over the WebSocket it cannot start one either.
    let a_path = format!("/api/v1/profiles/{}", a["id"]);
    let (status, _) = call(&setup, "GET", &a_path, Some(&viewer), None).await;
    assert_eq!(status, 200);
    let (status, _) = call(&setup, "DELETE", &a_path, Some(&viewer), None).await;
    assert_eq!(status, 403);
    let mut watching = Watcher::connect(&setup, &viewer).await;
    watching
        .send(json!({"type": "subscribe", "topic": "profile", "container": keys[2]}))
        .await;
    let refused = watching.next_of("error").await;
    assert_eq!(refused["code"], "forbidden", "{refused}");

    let (status, stopped) = call(&setup, "DELETE", &a_path, Some(&first), None).await;
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["state"], "ended");
    assert_eq!(stopped["reason"], "stopped");
    let (_, me) = call(&setup, "GET", "/api/v1/me", Some(&first), None).await;
    assert_eq!(stopped["stopped_by"], me["id"]);
    assert_eq!(stopped["started_by"], me["id"]);
    // Stopping twice answers the same ended session.
    let (status, again) = call(&setup, "DELETE", &a_path, Some(&first), None).await;
    assert_eq!((status, &again["reason"]), (200, &json!("stopped")));

    let path = format!("/api/v1/activity?kind=profile&user={}", me["id"]);
    let (_, log) = call(&setup, "GET", &path, Some(&viewer), None).await;
    let actions: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["stop", "start"], "{log}");

    // With the agent gone: nothing starts, and a stop ends the session here.
    agent.kill9().await;
    let host_path = format!("/api/v1/hosts/{}", host.0);
    eventually(WAIT, "the host to show disconnected", || {
        let (host_path, admin) = (host_path.clone(), admin.clone());
        let setup = &setup;
        async move {
            let (_, host) = call(setup, "GET", &host_path, Some(&admin), None).await;
            (host["connected"] == false).then_some(())
        }
    })
    .await
    .unwrap();
    let (status, gone) = start(keys[2], second.clone(), None).await;
    assert_eq!(status, 409, "{gone}");
    assert_eq!(gone["error"]["code"], "agent_not_connected");
    let b_path = format!("/api/v1/profiles/{}", b["id"]);
    let (status, stopped) = call(&setup, "DELETE", &b_path, Some(&second), None).await;
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["reason"], "stopped");
}

//! Collector replicas linked by a real NATS server (`--nats-url`), sharing one MariaDB
//! database: a person on one replica watches and acts on an agent connected to another.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use dockermon_e2e::docker::Cleanup;
use dockermon_e2e::fleet::{Agent, Collector, WAIT, readyz_answer};
use dockermon_e2e::haproxy::LoadBalancer;
use dockermon_e2e::nats::NatsServer;
use dockermon_e2e::tcp::TcpProxy;
use dockermon_e2e::wait::eventually;

use crate::api::state_of;
use crate::operations::clone_is_refused;
use crate::profiles::{SLEEP, SPIN, Watcher, container, container_key};
use crate::resources::{apply, condition, get};
use crate::support::{ADMIN_PASSWORD, Churn, Setup, call, sign_in};

/// What the replica holding the scheduler's lease (and the controller) logs.
const HOLDS_LEASE: &str = "this replica holds the scheduler's lease";

/// Two replicas of one collector, linked by `nats`, on a fresh database: A is the setup's
/// collector, B a replica of it.
struct Replicas {
    setup: Setup,
    b: Collector,
}

impl Replicas {
    async fn start(nats: &NatsServer) -> Replicas {
        let setup = Setup::with(&["--nats-url", &nats.url()]).await;
        let b = Replicas::another(&setup, nats, "b").await;
        Replicas { setup, b }
    }

    /// One more replica of the setup's collector, its data in the directory `name`.
    async fn another(setup: &Setup, nats: &NatsServer, name: &str) -> Collector {
        Replicas::another_via(setup, &nats.url(), name).await
    }

    /// As [`Replicas::another`], reaching NATS at `url`.
    async fn another_via(setup: &Setup, url: &str, name: &str) -> Collector {
        let args = [
            "--nats-url",
            url,
            "--agent-stats-interval",
            "1s",
            "--agent-usage-interval",
            "off",
            "--admin-password",
            ADMIN_PASSWORD,
        ];
        Collector::replica_of(&setup.collector, &setup.dir.path().join(name), &args)
            .await
            .unwrap()
    }

    fn a(&self) -> &Collector {
        &self.setup.collector
    }

    /// An agent enrolled as `host` and connected to replica B.
    async fn agent_on_b(&self, host: &str) -> Agent {
        self.agent(host, &self.b.url()).await
    }

    /// An agent enrolled as `host`, given the collector addresses `urls`, connected.
    async fn agent(&self, host: &str, urls: &str) -> Agent {
        let token = self.b.token(host, "10m").await.unwrap();
        let agent = Agent::start(
            urls,
            &self.setup.dir.path().join(host),
            &["--join-token", &token],
        )
        .await
        .unwrap();
        agent.wait_connected().await.unwrap();
        agent
    }
}

/// The host's id and whether it is connected, as the API of replica A says.
async fn host(setup: &Setup, token: &str, name: &str) -> Option<(i64, bool)> {
    let (_, hosts) = call(setup, "GET", "/api/v1/hosts", Some(token), None).await;
    hosts["items"].as_array()?.iter().find_map(|host| {
        (host["name"] == name).then(|| (host["id"].as_i64().unwrap(), host["connected"] == true))
    })
}

type Socket = dockermon_e2e::live::LiveSocket;

/// A WebSocket client of `replica`, identified and subscribed to `host`'s events, its
/// acknowledgements read.
async fn watch_events(replica: &Collector, token: &str, host: i64) -> Socket {
    watch_events_at(replica.ws_address, token, host)
        .await
        .unwrap()
}

/// As [`watch_events`], at `address` (a replica's or a load balancer's WebSocket port).
async fn watch_events_at(
    address: std::net::SocketAddr,
    token: &str,
    host: i64,
) -> anyhow::Result<Socket> {
    let mut socket =
        dockermon_e2e::live::subscribe(address, token, &[json!({"topic": "events", "host": host})])
            .await?;
    for expected in ["identified", "subscribed"] {
        let update = next_update(&mut socket).await;
        anyhow::ensure!(update["type"] == expected, "{update}");
    }
    Ok(socket)
}

async fn next_update(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a live update in time")
            .expect("the socket is open")
            .expect("a frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

/// Reads `socket` until an event `action` of container `name` arrives.
async fn await_event(socket: &mut Socket, name: &str, action: &str) {
    loop {
        let update = next_update(socket).await;
        if update["type"] == "events"
            && update["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|event| event["action"] == action && event["actor_name"] == name)
        {
            return;
        }
    }
}

/// Waits until the API of replica A says `name`'s agent is connected; the host's id.
async fn await_connected(setup: &Setup, token: &str, name: &str) -> i64 {
    let (id, _) = eventually(
        WAIT,
        "the host connected, as this replica sees it",
        || async move {
            host(setup, token, name)
                .await
                .filter(|(_, connected)| *connected)
        },
    )
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn a_person_on_one_replica_watches_and_acts_on_an_agent_connected_to_another() {
    let nats = NatsServer::start().await.unwrap();
    let replicas = Replicas::start(&nats).await;
    let _agent = replicas.agent_on_b("replica-host").await;
    let setup = &replicas.setup;
    let token = sign_in(setup, "admin@localhost", ADMIN_PASSWORD).await;

    // Replica A does not hold the agent, yet says it is connected.
    let host_id = await_connected(setup, &token, "replica-host").await;

    // Live: a container started on B's host shows up on A's WebSocket.
    let mut socket = watch_events(replicas.a(), &token, host_id).await;
    let mut cleanup = Cleanup::default();
    let name = container(&mut cleanup, "across", SLEEP).await;
    await_event(&mut socket, &name, "start").await;

    // A command from A reaches the agent on B, which really stops the container.
    let key = container_key(setup, &token, &name, "running").await;
    let stop = format!("/api/v1/containers/{key}/actions/stop");
    let (status, done) = call(setup, "POST", &stop, Some(&token), None).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(state_of(&name).await, "exited");
    await_event(&mut socket, &name, "die").await;
    // The activity log says who did it (besides Docker's own stop event).
    let path = format!("/api/v1/activity?container={key}&action=stop&kind=container");
    let (_, log) = call(setup, "GET", &path, Some(&token), None).await;
    let by_people: Vec<&Value> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| !entry["user_id"].is_null())
        .collect();
    assert_eq!(by_people.len(), 1, "{log}");
    assert_eq!(by_people[0]["attributes"]["user"], "admin@localhost");
    assert_eq!(by_people[0]["attributes"]["outcome"], "done", "{log}");
}

#[tokio::test]
async fn a_second_agent_process_for_a_host_held_by_another_replica_is_refused() {
    let nats = NatsServer::start().await.unwrap();
    let replicas = Replicas::start(&nats).await;
    let original = replicas.agent_on_b("cloned-host").await;

    // A copy of its state directory (a cloned machine) presents the same certificate to
    // replica A: refused there while the original is alive on B, which keeps its session.
    let _clone = clone_is_refused(
        &replicas.setup.dir.path().join("cloned-host"),
        &replicas.a().url(),
        &original,
    )
    .await;
}

#[tokio::test]
async fn an_agent_connected_nowhere_is_answered_at_once() {
    let nats = NatsServer::start().await.unwrap();
    let replicas = Replicas::start(&nats).await;
    let mut agent = replicas.agent_on_b("gone-host").await;
    let mut cleanup = Cleanup::default();
    let name = container(&mut cleanup, "orphan", SLEEP).await;
    let setup = &replicas.setup;
    let token = sign_in(setup, "admin@localhost", ADMIN_PASSWORD).await;
    let key = container_key(setup, &token, &name, "running").await;
    agent.kill9().await;
    eventually(WAIT, "A to see the host disconnected", || {
        let token = token.clone();
        async move {
            host(setup, &token, "gone-host")
                .await
                .filter(|(_, connected)| !connected)
        }
    })
    .await
    .unwrap();
    let asked = Instant::now();
    let stop = format!("/api/v1/containers/{key}/actions/stop");
    let (status, refused) = call(setup, "POST", &stop, Some(&token), None).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "agent_not_connected");
    // Not after the 30 s command timeout: no replica answers for the host, at once.
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(state_of(&name).await, "running");
}

#[tokio::test]
async fn replicas_cut_off_from_nats_are_not_ready_and_recover_when_it_returns() {
    let mut nats = NatsServer::start().await.unwrap();
    let replicas = Replicas::start(&nats).await;
    let _agent = replicas.agent_on_b("cut-host").await;
    let setup = &replicas.setup;
    let token = sign_in(setup, "admin@localhost", ADMIN_PASSWORD).await;
    let host_id = await_connected(setup, &token, "cut-host").await;
    let mut cleanup = Cleanup::default();
    let before = container(&mut cleanup, "before-cut", SLEEP).await;
    let key = container_key(setup, &token, &before, "running").await;

    nats.stop().await;
    for replica in [replicas.a(), &replicas.b] {
        let health = replica.health_address;
        let (_, body) = eventually(WAIT, "/readyz to say NATS is gone", || async move {
            readyz_answer(health)
                .await
                .filter(|(status, _)| *status == 503)
        })
        .await
        .unwrap();
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["failing"], json!(["nats"]), "{body}");
        assert!(
            body["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains("NATS") && reason.contains("disconnected")),
            "{body}"
        );
    }

    // A command for the agent on B, asked of A meanwhile: refused at once, never run later.
    let asked = Instant::now();
    let stop = format!("/api/v1/containers/{key}/actions/stop");
    let (status, refused) = call(setup, "POST", &stop, Some(&token), None).await;
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["error"]["code"], "agent_unavailable");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );

    // NATS back on its address: both ready again, and live updates cross again without
    // restarting either replica.
    nats.restart().await.unwrap();
    for replica in [replicas.a(), &replicas.b] {
        let health = replica.health_address;
        eventually(WAIT, "/readyz to be ready again", || async move {
            readyz_answer(health)
                .await
                .filter(|(status, _)| *status == 200)
        })
        .await
        .unwrap();
    }
    let mut socket = watch_events(replicas.a(), &token, host_id).await;
    let name = container(&mut cleanup, "after-nats", SLEEP).await;
    await_event(&mut socket, &name, "start").await;
    // The refused stop did not happen after all.
    assert_eq!(state_of(&before).await, "running");
}

#[tokio::test]
async fn an_agent_whose_replica_dies_reports_to_another_and_loses_nothing() {
    const LIVES: usize = 16;
    let nats = NatsServer::start().await.unwrap();
    let mut replicas = Replicas::start(&nats).await;
    let urls = format!("{},{}", replicas.a().url(), replicas.b.url());
    let agent = replicas.agent("failover-host", &urls).await;
    let host = replicas.setup.host_id("failover-host").await;
    // The agent starts at a random one of the two addresses.
    let connected_to = |url: &str| {
        agent
            .stderr()
            .contains(&format!("collector={url} host=failover-host"))
    };
    let on_a = connected_to(&replicas.a().url());
    let other = if on_a {
        replicas.b.url()
    } else {
        replicas.a().url()
    };
    assert!(!connected_to(&other));
    let churn = Churn::start().await;
    for i in 0..LIVES / 2 {
        churn.life(i).await;
    }
    // Mid-stream (frames in flight, some committed but not yet acknowledged), the replica
    // the agent reports to dies; containers keep changing meanwhile.
    let killed_at = Instant::now();
    if on_a {
        replicas.setup.collector.kill9().await;
    } else {
        replicas.b.kill9().await;
    }
    let reconnected = async {
        eventually(WAIT, "the agent connected to the other replica", || async {
            (agent.connections() >= 2).then(|| killed_at.elapsed())
        })
        .await
        .unwrap()
    };
    let moved = churn.lives_during(LIVES / 2..LIVES, reconnected).await;
    assert!(
        moved < Duration::from_secs(10),
        "took {moved:?} to report to the other replica"
    );
    assert!(connected_to(&other), "{}", agent.stderr());
    churn.settle(LIVES).await;
    let stored = replicas
        .setup
        .assert_stored_exactly(host, &churn.oracle)
        .await;
    assert!(
        stored >= LIVES * 4,
        "{stored} events for {LIVES} container lives"
    );
}

#[tokio::test]
async fn a_new_spec_reaches_an_agent_on_another_replica_than_the_controllers() {
    let nats = NatsServer::start().await.unwrap();
    let replicas = Replicas::start(&nats).await;
    // A started first and holds the scheduler's lease, so its controller reconciles; the
    // agent is on B.
    let setup = &replicas.setup;
    eventually(WAIT, "A to hold the lease", || async {
        setup.collector.stderr().contains(HOLDS_LEASE).then_some(())
    })
    .await
    .unwrap();
    let agent = replicas.agent_on_b("spec-host").await;
    eventually(WAIT, "the host's DockerHost connected", || async {
        let host = get(setup, "dockerhosts", "spec-host").await?;
        (condition(&host, "Connected")?["status"] == "True").then_some(())
    })
    .await
    .unwrap();
    let spec = "\
apiVersion: dockermon.io/v1alpha1
kind: DockerHost
metadata:
  name: spec-host
spec:
  statsInterval: 7s
";
    assert_eq!(
        apply(setup, "host.yaml", spec).await.unwrap(),
        "dockerhost.dockermon.io/spec-host configured"
    );
    let host = eventually(WAIT, "the agent on B acknowledged generation 2", || async {
        let host = get(setup, "dockerhosts", "spec-host").await?;
        let ready = condition(&host, "Ready")?;
        (host["status"]["observedGeneration"] == 2 && ready["status"] == "True").then_some(host)
    })
    .await
    .unwrap();
    assert_eq!(condition(&host, "Ready").unwrap()["reason"], "SpecApplied");
    assert!(
        agent.stderr().contains("stats_interval: 7s"),
        "the agent runs the new interval: {}",
        agent.stderr()
    );
    assert!(
        setup
            .collector
            .stderr()
            .contains("agent runs the new DockerHost spec"),
        "A's controller pushed it"
    );
}

#[tokio::test]
async fn a_profile_watched_on_one_replica_streams_from_an_agent_on_another() {
    let nats = NatsServer::start().await.unwrap();
    let replicas = Replicas::start(&nats).await;
    let _agent = replicas.agent_on_b("profile-host").await;
    let setup = &replicas.setup;
    let admin = sign_in(setup, "admin@localhost", ADMIN_PASSWORD).await;
    let mut cleanup = Cleanup::default();
    let name = container(&mut cleanup, "across-spin", SPIN).await;
    let key = container_key(setup, &admin, &name, "running").await;

    // Started from A (the watcher's replica); the agent on B streams through NATS.
    let mut watcher = Watcher::connect(setup, &admin).await;
    let (id, joined) = watcher.profile(key, json!({"duration": 8})).await;
    assert!(!joined);
    let (streamed, end) = watcher.until_end(id).await;
    assert_eq!(end["reason"], "duration", "{end}");
    assert!(
        (5..=11).contains(&streamed.len()),
        "about 8 samples in 8 s, got {}",
        streamed.len()
    );
    let busy = streamed
        .iter()
        .filter(|sample| sample["cpu_percent"].as_f64().unwrap_or(0.0) > 50.0)
        .count();
    assert!(
        busy * 2 >= streamed.len(),
        "a spinning container: {streamed:?}"
    );
    // What was seen is saved, whichever replica stored it.
    let saved = crate::profiles::ended(setup, &admin, id).await;
    assert_eq!(saved["reason"], "duration", "{saved}");
    assert!(
        saved["summary"]["cpu_percent_avg"].as_f64().unwrap() > 50.0,
        "{saved}"
    );
}

#[tokio::test]
async fn the_scheduler_moves_to_another_replica_when_its_holder_dies() {
    const HOLDS: &str = HOLDS_LEASE;
    let nats = NatsServer::start().await.unwrap();
    let mut replicas = Replicas::start(&nats).await;
    // A started first and holds it; B stands by.
    eventually(WAIT, "A to hold the lease", || async {
        replicas.a().stderr().contains(HOLDS).then_some(())
    })
    .await
    .unwrap();
    assert!(!replicas.b.stderr().contains(HOLDS));
    let killed_at = Instant::now();
    replicas.setup.collector.kill9().await;
    let b = &replicas.b;
    let took = eventually(WAIT, "B to take the lease", || async {
        b.stderr().contains(HOLDS).then(|| killed_at.elapsed())
    })
    .await
    .unwrap();
    // The lease lasts 20 s unrenewed and B tries every 5 s.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    // B now runs the jobs: the rollups at once, not at its next minute.
    let taken_at = Instant::now();
    eventually(WAIT, "B's rollups", || async {
        b.stderr().contains("rollups done").then_some(())
    })
    .await
    .unwrap();
    assert!(
        taken_at.elapsed() < Duration::from_secs(15),
        "rollups {:?} after the takeover",
        taken_at.elapsed()
    );
}

/// A gauge of the replica's own metrics (`dockermon_…`), as its `/metrics` says now.
async fn gauge(replica: &Collector, name: &str) -> Option<f64> {
    let (_, body) =
        dockermon_e2e::http::request(replica.health_address, "GET", "/metrics", None, None).await?;
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// What a client of [`watch_through`] saw (container name, action), and how often it
/// connected again.
#[derive(Default)]
struct Seen {
    events: std::collections::HashSet<(String, String)>,
    reconnections: usize,
}

/// A WebSocket client of the events of `host` behind the load balancer at `address` that,
/// as a UI does, connects again through it whenever its connection ends.
fn watch_through(
    address: std::net::SocketAddr,
    token: String,
    host: i64,
    seen: std::sync::Arc<std::sync::Mutex<Seen>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut socket = watch_events_at(address, &token, host).await.unwrap();
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let update: Value = serde_json::from_str(text.as_str()).unwrap();
                    if update["type"] == "events" {
                        let mut seen = seen.lock().unwrap();
                        for event in update["items"].as_array().unwrap() {
                            let name = event["actor_name"].as_str().unwrap_or_default();
                            let action = event["action"].as_str().unwrap_or_default();
                            seen.events.insert((name.to_owned(), action.to_owned()));
                        }
                    }
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => {
                    socket = eventually(WAIT, "a WebSocket through the balancer", || {
                        let token = token.clone();
                        async move { watch_events_at(address, &token, host).await.ok() }
                    })
                    .await
                    .unwrap();
                    seen.lock().unwrap().reconnections += 1;
                }
            }
        }
    })
}

#[tokio::test]
async fn a_replica_cut_off_from_nats_by_the_network_is_not_ready_until_it_returns() {
    let nats = NatsServer::start().await.unwrap();
    let setup = Setup::with(&["--nats-url", &nats.url()]).await;
    // B reaches NATS through a link that can be cut without closing anything, as a
    // network partition does; A keeps its own.
    let mut link = TcpProxy::reserve(nats.address).unwrap();
    link.start().await.unwrap();
    let b = Replicas::another_via(&setup, &format!("nats://{}", link.address()), "b").await;
    let token = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let join = b.token("partition-host", "10m").await.unwrap();
    let _agent = Agent::start(
        &setup.collector.url(),
        &setup.dir.path().join("partition-host"),
        &["--join-token", &join],
    )
    .await
    .unwrap();
    let host_id = await_connected(&setup, &token, "partition-host").await;
    eventually(WAIT, "B ready", || async {
        readyz_answer(b.health_address)
            .await
            .filter(|(status, _)| *status == 200)
    })
    .await
    .unwrap();

    link.freeze(true);
    let cut_at = Instant::now();
    let (_, body) = eventually(WAIT, "B's /readyz to say NATS is gone", || async {
        readyz_answer(b.health_address)
            .await
            .filter(|(status, _)| *status == 503)
    })
    .await
    .unwrap();
    let unready_after = cut_at.elapsed();
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["failing"], json!(["nats"]), "{body}");
    assert!(
        unready_after < Duration::from_secs(20),
        "noticed after {unready_after:?}"
    );
    let (status, body) = readyz_answer(setup.collector.health_address).await.unwrap();
    assert_eq!(status, 200, "A keeps its link: {body}");

    // The network comes back: B is ready again by itself, and what happens on A's agent
    // reaches B's watchers.
    link.freeze(false);
    eventually(WAIT, "B ready again", || async {
        readyz_answer(b.health_address)
            .await
            .filter(|(status, _)| *status == 200)
    })
    .await
    .unwrap();
    let mut socket = watch_events(&b, &token, host_id).await;
    let mut cleanup = Cleanup::default();
    let name = container(&mut cleanup, "after-partition", SLEEP).await;
    await_event(&mut socket, &name, "start").await;
    eprintln!("B cut off from NATS: not ready after {unready_after:?}");
}

#[tokio::test]
async fn behind_a_load_balancer_a_killed_replicas_agents_and_watchers_carry_on() {
    const LIVES: usize = 12;
    let nats = NatsServer::start().await.unwrap();
    let mut replicas = Replicas::start(&nats).await;
    let mut c = Replicas::another(&replicas.setup, &nats, "c").await;
    let balancer = LoadBalancer::start([replicas.a(), &replicas.b, &c], replicas.setup.dir.path())
        .await
        .unwrap();
    let setup = &replicas.setup;
    let token = sign_in(setup, "admin@localhost", ADMIN_PASSWORD).await;

    // Three agents and three WebSocket clients know only the balancer's address, which
    // spreads their connections over the replicas.
    let names = ["lb-1", "lb-2", "lb-3"];
    let mut agents = Vec::new();
    let mut hosts = Vec::new();
    for name in names {
        let join = replicas.b.token(name, "10m").await.unwrap();
        let agent = Agent::start(
            &balancer.url(),
            &setup.dir.path().join(name),
            &["--join-token", &join],
        )
        .await
        .unwrap();
        agent.wait_connected().await.unwrap();
        agents.push(agent);
        hosts.push(setup.host_id(name).await);
    }
    let watched = await_connected(setup, &token, "lb-1").await;
    let seen: Vec<_> = (0..3)
        .map(|_| std::sync::Arc::new(std::sync::Mutex::new(Seen::default())))
        .collect();
    for seen in &seen {
        watch_through(balancer.ws_address, token.clone(), watched, seen.clone());
    }

    // The replica holding lb-1's agent is the one to die; how many of the clients it
    // serves is what its own metrics say.
    let holds = |replica: &Collector, name: &str| {
        replica
            .stderr()
            .lines()
            .any(|line| line.contains("agent connected") && line.contains(&format!("host={name} ")))
    };
    eventually(WAIT, "the three clients connected", || async {
        let mut total = 0.0;
        for replica in [replicas.a(), &replicas.b, &c] {
            total += gauge(replica, "dockermon_ws_clients").await?;
        }
        (total == 3.0).then_some(())
    })
    .await
    .unwrap();
    let (victim, moving, clients) = {
        let all = [replicas.a(), &replicas.b, &c];
        let victim = all
            .iter()
            .position(|replica| holds(replica, "lb-1"))
            .expect("a replica holds lb-1");
        // The victim's agents, and how often each had connected before it dies.
        let moving: Vec<(&Agent, usize)> = agents
            .iter()
            .zip(names)
            .filter(|(_, name)| holds(all[victim], name))
            .map(|(agent, _)| (agent, agent.connections()))
            .collect();
        let clients = gauge(all[victim], "dockermon_ws_clients").await.unwrap() as usize;
        (victim, moving, clients)
    };
    assert!(clients >= 1, "the replica to kill serves a client");

    let churn = Churn::start().await;
    for i in 0..LIVES / 2 {
        churn.life(i).await;
    }
    let killed_at = Instant::now();
    match victim {
        0 => replicas.setup.collector.kill9().await,
        1 => replicas.b.kill9().await,
        _ => c.kill9().await,
    }
    let setup = &replicas.setup;
    // Its agents connect again through the balancer, to a live replica, within 10 s, while
    // containers keep changing.
    let reconnected = async {
        eventually(
            WAIT,
            "the killed replica's agents connected again",
            || async {
                moving
                    .iter()
                    .all(|(agent, before)| agent.connections() > *before)
                    .then(|| killed_at.elapsed())
            },
        )
        .await
        .unwrap()
    };
    let moved = churn.lives_during(LIVES / 2..LIVES, reconnected).await;
    assert!(moved < Duration::from_secs(10), "took {moved:?}");
    eprintln!(
        "replica {victim} killed: its {} agent(s) back through the balancer in {moved:?}",
        moving.len()
    );

    // Every event of the churn is stored exactly once for every host.
    churn.settle(LIVES).await;
    for host in &hosts {
        setup.assert_stored_exactly(*host, &churn.oracle).await;
    }

    // The clients it served connected again through the balancer, and every client sees
    // what happens next.
    eventually(
        WAIT,
        "the killed replica's clients connected again",
        || async {
            let again: usize = seen.iter().map(|s| s.lock().unwrap().reconnections).sum();
            (again >= clients).then_some(())
        },
    )
    .await
    .unwrap();
    let mut cleanup = Cleanup::default();
    let after = container(&mut cleanup, "after-failover", SLEEP).await;
    eventually(WAIT, "every client saw the new container start", || async {
        seen.iter()
            .all(|s| {
                s.lock()
                    .unwrap()
                    .events
                    .contains(&(after.clone(), "start".to_owned()))
            })
            .then_some(())
    })
    .await
    .unwrap();
}

//! The agent protocol under bad input: malformed, binary, oversized and out-of-order frames
//! and incompatible versions close that connection alone, with a logged reason; commands
//! reach a real agent and change what it does.

use std::sync::Arc;
use std::time::Duration;

use dockermon_collector::live::LiveBus;
use dockermon_collector::pki::{Authority, PkiPaths};
use dockermon_collector::store::{DatabaseUrl, Store};
use dockermon_collector::transport::{self, AgentService, Pipeline, Registry, TlsFiles};
use dockermon_e2e::docker::{Cleanup, TEST_IMAGE, docker, unique_name};
use dockermon_e2e::fleet::{Agent, WAIT, readyz};
use dockermon_e2e::raw_agent::RawAgent;
use dockermon_e2e::tcp::free_loopback_address;
use dockermon_e2e::wait::eventually;
use dockermon_proto::transport::{
    AgentConfig, AgentMessage, CollectorMessage, CommandAction, CommandOutcome, DataFrame, Dropped,
    Hello, JoinToken,
};
use dockermon_proto::{DiskUsage, HostName, Record, now_ns};
use futures::StreamExt;
use sqlx::Connection;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::support::{SHORT, Setup, raw_identity};

fn frame(seq: u64) -> AgentMessage {
    AgentMessage::Data(DataFrame {
        seq,
        records: vec![Record::Usage(DiskUsage {
            time_ns: seq as i64,
            ..Default::default()
        })],
        dropped: Dropped::default(),
    })
}

#[tokio::test]
async fn bad_frames_close_only_their_own_connection() {
    let setup = Setup::new().await;
    let witness = setup.agent("witness").await;
    let address = setup.collector.agent_address;
    let tls = raw_identity(&setup, "raw").tls_config().unwrap();

    let (mut malformed, _) = RawAgent::join(address, tls.clone()).await.unwrap();
    malformed
        .send_text("{\"type\":\"data\",\"seq\":".into())
        .await
        .unwrap();
    let (code, reason) = malformed.closed(SHORT).await.unwrap();
    assert_eq!(code, 1007, "{reason}");
    assert!(reason.starts_with("malformed message"), "{reason}");

    let (mut binary, _) = RawAgent::join(address, tls.clone()).await.unwrap();
    binary.send_binary(vec![0xde, 0xad]).await.unwrap();
    let (code, reason) = binary.closed(SHORT).await.unwrap();
    assert_eq!(
        (code, reason.as_str()),
        (1007, "binary messages are not part of the protocol")
    );

    let (mut disorderly, last) = RawAgent::join(address, tls.clone()).await.unwrap();
    disorderly.send(&frame(last + 5)).await.unwrap();
    assert_eq!(
        disorderly.next(SHORT).await.unwrap(),
        CollectorMessage::Ack { seq: last + 5 }
    );
    disorderly.send(&frame(last + 6)).await.unwrap();
    disorderly.send(&frame(last + 6)).await.unwrap();
    let (code, reason) = disorderly.closed(SHORT).await.unwrap();
    assert_eq!(code, 1008, "{reason}");
    assert!(
        reason.starts_with(&format!(
            "out-of-order frame {} after {}",
            last + 6,
            last + 6
        )),
        "{reason}"
    );

    // Too big, in fragments (today's agents) or in one frame (older ones): the collector
    // stops reading and closes, possibly while the agent still sends.
    for whole in [false, true] {
        let (mut oversized, _) = RawAgent::join(address, tls.clone()).await.unwrap();
        let text = "x".repeat(dockermon_proto::transport::MAX_FRAME_BYTES + 1);
        let sent = if whole {
            oversized.send_text_whole(text).await
        } else {
            oversized.send_text(text).await
        };
        if sent.is_ok() {
            oversized.closed(SHORT).await.unwrap();
        }
    }

    let mut future = RawAgent::connect(address, tls.clone()).await.unwrap();
    future
        .send(&AgentMessage::Hello(Hello {
            agent_version: "9.0".into(),
            protocol_version: 99,
            capabilities: Vec::new(),
            profiles: Vec::new(),
            instance: None,
        }))
        .await
        .unwrap();
    match future.next(SHORT).await.unwrap() {
        CollectorMessage::Refused { reason } => assert!(
            reason.contains("agent protocol 99 is not supported")
                && reason.contains("upgrade the collector"),
            "{reason}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Each was logged with its reason, and nothing else was disturbed.
    let log = setup.collector.stderr();
    for reason in [
        "malformed message",
        "binary messages",
        "out-of-order frame",
        "message larger than the limit",
    ] {
        assert!(log.contains(reason), "{reason} not logged:\n{log}");
    }
    assert!(
        !witness.stderr().contains("disconnected from the collector"),
        "{}",
        witness.stderr()
    );
    assert_eq!(readyz(setup.collector.health_address).await, Some(200));
    // A replay of committed frames after reconnecting is acknowledged, not stored again.
    let (mut again, committed) = RawAgent::join(address, tls.clone()).await.unwrap();
    assert_eq!(
        committed,
        last + 6,
        "frame {} committed before the close",
        last + 6
    );
    again.send(&frame(last + 5)).await.unwrap();
    assert_eq!(
        again.next(SHORT).await.unwrap(),
        CollectorMessage::Ack { seq: last + 6 }
    );

    // An agent from before fragments sends a long frame whole, and it is stored.
    let (mut older, last) = RawAgent::join(address, tls).await.unwrap();
    let long = AgentMessage::Data(DataFrame {
        seq: last + 1,
        records: (0..200)
            .map(|i| {
                Record::Usage(DiskUsage {
                    time_ns: i,
                    ..Default::default()
                })
            })
            .collect(),
        dropped: Dropped::default(),
    });
    let text = serde_json::to_string(&long).unwrap();
    assert!(text.len() > 2 * dockermon_agent::uplink::fragments::FRAGMENT_BYTES);
    older.send_text_whole(text).await.unwrap();
    assert_eq!(
        older.next(SHORT).await.unwrap(),
        CollectorMessage::Ack { seq: last + 1 }
    );
}

/// The collector's agent service in this process, so the test can reach its registry.
pub(crate) struct InProcessCollector {
    pub(crate) address: std::net::SocketAddr,
    registry: Registry,
    pub(crate) store: Store,
    pub(crate) authority: Arc<Authority>,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

impl InProcessCollector {
    async fn start() -> InProcessCollector {
        Self::start_with(None).await
    }

    /// With agents' ServiceAccount tokens reviewed by `token_reviewer`.
    pub(crate) async fn start_with(
        token_reviewer: Option<transport::token_review::TokenReviewer>,
    ) -> InProcessCollector {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let paths = PkiPaths::in_data_dir(dir.path());
        let authority = Arc::new(Authority::init(&paths, &["localhost".into()], false).unwrap());
        let store = Store::connect(
            &DatabaseUrl::parse(&format!("sqlite://{}/dm.db", dir.path().display())).unwrap(),
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        let tls = transport::tls::server_config(&TlsFiles {
            certificate: paths.server_cert(),
            key: paths.server_key(),
            client_ca: paths.ca_cert(),
        })
        .unwrap();
        let cancel = CancellationToken::new();
        let (pipeline, _writer) = Pipeline::start(
            store.clone(),
            LiveBus::default(),
            Arc::default(),
            cancel.clone(),
        );
        let registry = Registry::default();
        let profiler = dockermon_collector::profiles::Profiler::new(
            store.clone(),
            registry.clone(),
            LiveBus::default(),
            Default::default(),
        );
        let service = Arc::new(AgentService {
            store: store.clone(),
            pipeline,
            registry: registry.clone(),
            profiler,
            metrics: Arc::new(dockermon_collector::metrics::FleetMetrics::new(
                Default::default(),
            )),
            authority: Some(authority.clone()),
            token_reviewer,
            agent_config: AgentConfig {
                stats_interval_ms: 3_600_000,
                stats_concurrency: 8,
                usage_interval_ms: None,
                usage_timeout_ms: 60_000,
                paused: false,
            },
            agent_cert_ttl: Duration::from_secs(86_400),
            budget: transport::MemoryBudget::new(transport::COLLECTOR_BUDGET_BYTES),
            shutdown: cancel.clone(),
        });
        let address = free_loopback_address().unwrap();
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        tokio::spawn(transport::serve(listener, tls, service, cancel.clone()));
        InProcessCollector {
            address,
            registry,
            store,
            authority,
            cancel,
            _dir: dir,
        }
    }
}

#[tokio::test]
async fn a_set_config_command_changes_what_a_real_agent_collects() {
    let collector = InProcessCollector::start().await;
    let host = HostName::new("commanded").unwrap();
    let token = JoinToken {
        ca_fingerprint: collector.authority.fingerprint(),
        secret: rand::random(),
    };
    let now = now_ns();
    collector
        .store
        .create_join_token(&token.secret, &host, None, now, now + 600_000_000_000)
        .await
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let agent = Agent::start(
        &format!("wss://localhost:{}", collector.address.port()),
        state.path(),
        &["--join-token", &token.to_string()],
    )
    .await
    .unwrap();
    agent.wait_connected().await.unwrap();
    let host_id = collector.store.register_host(&host).await.unwrap();

    let mut cleanup = Cleanup::default();
    let name = cleanup.container(&unique_name("commanded"));
    docker(&["run", "-d", "--name", &name, TEST_IMAGE, "sleep", "3600"])
        .await
        .unwrap();
    // Told to sweep hourly by the welcome, the agent sends one sweep at most…
    let fast = AgentConfig {
        stats_interval_ms: 1000,
        stats_concurrency: 8,
        usage_interval_ms: None,
        usage_timeout_ms: 60_000,
        paused: false,
    };
    let outcome = collector
        .registry
        .command(
            host_id,
            CommandAction::SetConfig(fast),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(outcome, CommandOutcome::Done { detail: None });
    // …and now every second.
    let store = &collector.store;
    eventually(WAIT, "samples every second", || {
        let name = name.clone();
        async move {
            let container = store
                .find_container(
                    host_id,
                    &dockermon_collector::store::ContainerSelector::Name(name),
                )
                .await
                .ok()?;
            let latest = store.latest_stats(host_id).await.ok()?;
            let _ = latest.iter().find(|s| s.container_id == container.id)?;
            let query = dockermon_collector::store::StatsQuery {
                container: container.id,
                from_ns: 0,
                to_ns: i64::MAX,
                resolution: Some(dockermon_collector::store::Resolution::Raw),
                max_points: 100,
            };
            let series = store
                .container_stats(&query, now_ns(), &Default::default())
                .await
                .ok()?;
            (series.points.len() >= 3).then_some(())
        }
    })
    .await
    .unwrap();

    // A bad setting is refused by the agent, with its reason.
    let bad = AgentConfig {
        stats_interval_ms: 10,
        stats_concurrency: 8,
        usage_interval_ms: None,
        usage_timeout_ms: 60_000,
        paused: false,
    };
    match collector
        .registry
        .command(
            host_id,
            CommandAction::SetConfig(bad),
            Duration::from_secs(10),
        )
        .await
        .unwrap()
    {
        CommandOutcome::Failed { message } => {
            assert!(message.contains("out of range"), "{message}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    // An agent that is not connected: the command says so at once.
    let absent = collector
        .store
        .register_host(&HostName::new("absent").unwrap())
        .await
        .unwrap();
    let error = collector
        .registry
        .command(
            absent,
            CommandAction::SetConfig(AgentConfig {
                stats_interval_ms: 1000,
                stats_concurrency: 1,
                usage_interval_ms: None,
                usage_timeout_ms: 1000,
                paused: false,
            }),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "the host's agent is not connected");
    collector.cancel.cancel();
}

/// The peak resident memory of a process, from `/proc/<pid>/status` (`VmHWM`), in MiB.
fn peak_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap()
        / 1024
}

#[tokio::test]
async fn an_agent_held_back_by_a_stalled_store_keeps_its_connection_and_hears_pings() {
    // More than one writer's queue holds (4,096 frames shared by MySQL's 4 writers): the
    // session then waits to queue a frame and reads nothing more from this agent.
    const FRAMES: u64 = 1_100;
    // A stall this long outlasts the 45 s after which a silent peer counts as dead.
    const PINGS: usize = 4;
    let setup = Setup::new().await;
    let tls = raw_identity(&setup, "stalled").tls_config().unwrap();
    let (mut agent, joined) = RawAgent::join(setup.collector.agent_address, tls)
        .await
        .unwrap();
    // A first frame stored: the session has loaded what it needs and reads frames.
    let last = joined + 1;
    agent.send(&frame(last)).await.unwrap();
    acknowledged(&mut agent, last).await;
    // Then the store stalls, as an overloaded database does.
    let mut lock = sqlx::MySqlConnection::connect(&setup.database.url)
        .await
        .unwrap();
    sqlx::query("LOCK TABLES host_usage WRITE")
        .execute(&mut lock)
        .await
        .unwrap();
    for i in 1..=FRAMES {
        agent.send(&frame(last + i)).await.unwrap();
    }
    // Real agents take a collector silent for 45 s for a dead one: it keeps pinging.
    let mut pings = 0;
    while pings < PINGS {
        match tokio::time::timeout(Duration::from_secs(30), agent.stream.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(Message::Pong(_)))) => {}
            Ok(Some(Ok(Message::Text(text))))
                if matches!(
                    serde_json::from_str(text.as_str()),
                    Ok(CollectorMessage::Command(_))
                ) => {}
            other => panic!(
                "while the store stalls, after {pings} pings: {other:?}\n{}",
                setup.collector.stderr()
            ),
        }
    }
    sqlx::query("UNLOCK TABLES")
        .execute(&mut lock)
        .await
        .unwrap();
    // Its silence while the collector did not read is not held against it: every frame is
    // stored and the connection stays.
    acknowledged(&mut agent, last + FRAMES).await;
    agent.send(&frame(last + FRAMES + 1)).await.unwrap();
    acknowledged(&mut agent, last + FRAMES + 1).await;
    assert!(
        !setup.collector.stderr().contains("no message or pong"),
        "{}",
        setup.collector.stderr()
    );
}

/// Reads until the collector acknowledges exactly `seq`, past lower acknowledgements and
/// the commands it pushes (the host's DockerHost settings, nothing these tests look at);
/// anything else fails the test.
async fn acknowledged(agent: &mut RawAgent, seq: u64) {
    loop {
        match agent.next(WAIT).await.unwrap() {
            CollectorMessage::Ack { seq: acked } if acked >= seq => {
                assert_eq!(acked, seq, "acknowledged beyond what was sent");
                return;
            }
            CollectorMessage::Ack { .. } | CollectorMessage::Command(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A data frame of about `bytes`: events with the largest attributes the bounds allow,
/// about 1× their wire size once decoded.
fn flood_frame(seq: u64, bytes: usize) -> String {
    use dockermon_proto::limits::{MAX_LABEL_KEY_BYTES, MAX_LABEL_VALUE_BYTES, MAX_LABELS};
    let event = serde_json::to_string(&Record::Event(dockermon_proto::DockerEvent {
        time_ns: 1,
        kind: dockermon_proto::EventKind::Container,
        action: "x".into(),
        actor_id: "a".into(),
        actor_name: None,
        attributes: (0..MAX_LABELS)
            .map(|i| {
                let key = format!("{i:03}{}", "k".repeat(MAX_LABEL_KEY_BYTES - 3));
                (key, "v".repeat(MAX_LABEL_VALUE_BYTES))
            })
            .collect(),
        scope: None,
    }))
    .unwrap();
    let empty = serde_json::to_string(&AgentMessage::Data(DataFrame {
        seq,
        records: Vec::new(),
        dropped: Dropped::default(),
    }))
    .unwrap();
    // `…"records":[]…` with the events spliced in between the brackets.
    let (head, tail) = empty.split_once("[]").unwrap();
    let mut text = String::with_capacity(bytes);
    text.push_str(head);
    text.push('[');
    let mut first = true;
    while text.len() + event.len() + tail.len() + 2 < bytes {
        if !first {
            text.push(',');
        }
        first = false;
        text.push_str(&event);
    }
    text.push(']');
    text.push_str(tail);
    text
}

#[tokio::test]
async fn an_agent_flooding_large_frames_waits_on_its_own_memory_budget() {
    const FRAMES: u64 = 8;
    let setup = Setup::new().await;
    let witness = setup.agent("witness").await;
    let pid = setup.collector.process.as_ref().unwrap().id().unwrap();
    // The store stalls (as a slow database does): nothing reaches the activity table, so
    // the flood's frames cannot be stored and their memory cannot be given back.
    let mut lock = sqlx::MySqlConnection::connect(&setup.database.url)
        .await
        .unwrap();
    sqlx::query("LOCK TABLES activity WRITE")
        .execute(&mut lock)
        .await
        .unwrap();
    let before = peak_mib(pid);
    let tls = raw_identity(&setup, "flood").tls_config().unwrap();
    let (mut flood, last) = RawAgent::join(setup.collector.agent_address, tls)
        .await
        .unwrap();
    // Frames of ~16 MiB, as fast as the socket takes them: 128 MiB on the wire.
    let sender = tokio::spawn(async move {
        for i in 1..=FRAMES {
            let text = flood_frame(last + i, dockermon_proto::transport::MAX_FRAME_BYTES - 1024);
            assert!(text.len() < dockermon_proto::transport::MAX_FRAME_BYTES);
            flood.send_text(text).await?;
        }
        anyhow::Ok(flood)
    });
    // The collector stops reading this agent once its budget is spent...
    eventually(WAIT, "the flood to wait on its budget", || async {
        setup
            .collector
            .stderr()
            .contains("reading from it pauses")
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", setup.collector.stderr()));
    assert!(
        !sender.is_finished(),
        "every frame was read while none could be stored"
    );
    let peak = peak_mib(pid);
    assert!(
        peak < before + 150,
        "the collector grew from {before} MiB to {peak} MiB"
    );
    // ...and once the store moves again, every frame is stored, in order: the budget
    // delays, never drops.
    sqlx::query("UNLOCK TABLES")
        .execute(&mut lock)
        .await
        .unwrap();
    let mut flood = sender.await.unwrap().unwrap();
    let mut acked = last;
    while acked < last + FRAMES {
        match flood.next(WAIT).await.unwrap() {
            CollectorMessage::Ack { seq } => acked = seq,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        !witness.stderr().contains("disconnected from the collector"),
        "{}",
        witness.stderr()
    );
}

//! The Kubernetes operator against kube's mock API service (tower-test): no API server can
//! run on these machines. Each test is one named scenario, one conversation: the reconcile
//! function runs for real against a real SQLite store, a real registry with an agent
//! session in it (answering commands as an agent does) and the real profiler; the mock
//! server checks each request the operator makes (method, path, field manager, body) and
//! answers as an API server would.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dockermon_collector::live::{LiveBus, LiveUpdate, ProfileChange, ProfileChangeKind};
use dockermon_collector::operator::leadership::{LeaseSettings, hold_lease, run_while_leader};
use dockermon_collector::operator::{
    FIELD_MANAGER, LEASE_NAME, Operator, RESYNC, docker_hosts, profile_sessions,
};
use dockermon_collector::profiles::{ProfileSettings, Profiler};
use dockermon_collector::resources::host_status::format_time;
use dockermon_collector::resources::reconcile::{Context, settings_for};
use dockermon_collector::resources::{
    DockerHost, DockerHostSpec, DockerHostStatus, Phase, ProfileSession, ProfileSessionSpec,
    ProfileSessionStatus,
};
use dockermon_collector::store::{ContainerKey, HostId, IssuedCertificate};
use dockermon_collector::transport::registry::AppliedSpec;
use dockermon_collector::transport::{Peer, Registry};
use dockermon_proto::transport::{
    AgentConfig, CAPABILITY_PAUSE, CAPABILITY_PROFILE, CommandAction, CommandOutcome,
};
use dockermon_proto::{
    ContainerId, HostName, ProfileBatch, ProfileEnd, ProfileEndReason, ProfileSample, Record,
    StatsCounters, StatsRates, now_ns,
};
use http::Method;
use kube::runtime::controller::Action;
use kube::{CustomResourceExt, Resource};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::fixtures::{S, container, host, host_info, ingest, inventory};
use crate::kube_mock::{ApiServer, Responder, respond};
use crate::support::TestDb;

/// Status writes: server-side apply, forced, under the operator's field manager.
const HOST_STATUS: &str = "/apis/dockermon.io/v1alpha1/dockerhosts/web-1/status?&force=true&fieldManager=dockermon-operator";
const SESSION_STATUS: &str = "/apis/dockermon.io/v1alpha1/namespaces/default/profilesessions/api-cpu/status?&force=true&fieldManager=dockermon-operator";

/// The collector side: store, registry, profiler, and the operator over a mock client.
struct World {
    db: TestDb,
    registry: Registry,
    live: LiveBus,
    operator: Arc<Operator>,
    server: ApiServer,
}

impl World {
    async fn new() -> World {
        let db = TestDb::sqlite().await;
        let registry = Registry::default();
        let live = LiveBus::default();
        let profiler = Profiler::new(
            db.store.clone(),
            registry.clone(),
            live.clone(),
            ProfileSettings::default(),
        );
        let context = Context {
            store: db.store.clone(),
            registry: registry.clone(),
            profiler,
            defaults: defaults(),
        };
        let (client, server) = crate::kube_mock::client();
        World {
            operator: Arc::new(Operator::new(client, context, Some("test".into()))),
            db,
            registry,
            live,
            server,
        }
    }

    /// An enrolled host (a live certificate, a host record, one running container `api`).
    async fn enrolled_host(&self, name: &str) -> HostId {
        let store = &self.db.store;
        let id = host(store, name).await;
        let now = now_ns();
        store
            .record_certificate(
                &IssuedCertificate {
                    serial: format!("{name}-serial"),
                    host: HostName::new(name).unwrap(),
                    fingerprint: "f".into(),
                    not_before_ns: now - 60 * S,
                    not_after_ns: now + 30 * 86_400 * S,
                },
                false,
                now,
            )
            .await
            .unwrap();
        ingest(
            store,
            id,
            &[
                Record::Host(host_info()),
                inventory(true, vec![container("c1", "api", now - 100 * S)]),
            ],
        )
        .await;
        id
    }

    /// An agent session for `host` that answers every command with "done" and keeps what
    /// it was sent.
    fn connect_agent(&self, host: HostId, name: &str) -> FakeAgent {
        let peer = Peer {
            host: HostName::new(name).unwrap(),
            serial: format!("{name}-serial"),
            not_after_s: now_ns() / S + 86_400,
        };
        let mut connection = self
            .registry
            .connect(
                host,
                &peer,
                Some("agent-1".into()),
                vec![CAPABILITY_PROFILE.into(), CAPABILITY_PAUSE.into()],
            )
            .unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let registry = self.registry.clone();
        let kept = received.clone();
        let close = connection.close.clone();
        let id = connection.id;
        tokio::spawn(async move {
            while let Some(command) = connection.commands.recv().await {
                kept.lock().unwrap().push(command.action.clone());
                registry.complete(host, command.id, CommandOutcome::Done { detail: None });
            }
        });
        FakeAgent {
            host,
            id,
            close,
            received,
        }
    }
}

struct FakeAgent {
    host: HostId,
    id: u64,
    close: CancellationToken,
    received: Arc<Mutex<Vec<CommandAction>>>,
}

impl FakeAgent {
    fn settings_received(&self) -> Vec<AgentConfig> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter_map(|action| match action {
                CommandAction::SetConfig(config) => Some(config.clone()),
                _ => None,
            })
            .collect()
    }
}

fn defaults() -> AgentConfig {
    AgentConfig {
        stats_interval_ms: 30_000,
        stats_concurrency: 64,
        usage_interval_ms: Some(120_000),
        usage_timeout_ms: 60_000,
        paused: false,
    }
}

/// A DockerHost as the API server holds it: with the operator's finalizer already added.
fn docker_host(name: &str, generation: i64, spec: DockerHostSpec) -> DockerHost {
    let mut object = DockerHost::new(name, spec);
    object.meta_mut().generation = Some(generation);
    object.meta_mut().uid = Some(format!("uid-{name}"));
    object.meta_mut().resource_version = Some("1".into());
    object.meta_mut().finalizers = Some(vec![docker_hosts::FINALIZER.into()]);
    object
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

/// Answers a status apply with the object carrying the applied status, as the API
/// server does; returns the status.
fn answer_status(object: &impl serde::Serialize, body: &Value, send: Responder) -> Value {
    let mut answer = serde_json::to_value(object).unwrap();
    answer["status"] = body["status"].clone();
    respond(send, 200, &answer);
    body["status"].clone()
}

/// Answers an event's creation (201, the event back).
async fn expect_event(server: &mut ApiServer, reason: &str, type_: &str) {
    let (event, send) = server
        .expect(
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/default/events?",
        )
        .await;
    assert_eq!(
        (event["reason"].as_str(), event["type"].as_str()),
        (Some(reason), Some(type_))
    );
    assert_eq!(event["reportingController"], FIELD_MANAGER);
    respond(send, 201, &event);
}

#[tokio::test]
async fn scenario_status_follows_the_agent_connecting_and_disconnecting() {
    let mut world = World::new().await;
    let id = world.enrolled_host("web-1").await;
    let agent = world.connect_agent(id, "web-1");
    let object = docker_host("web-1", 1, DockerHostSpec::default());

    let reconcile = tokio::spawn(docker_hosts::reconcile(
        Arc::new(object.clone()),
        world.operator.clone(),
    ));
    let uri = HOST_STATUS;
    let (body, send) = world.server.expect(Method::PATCH, uri).await;
    assert_eq!(body["apiVersion"], "dockermon.io/v1alpha1");
    let status = answer_status(&object, &body, send);
    assert_eq!(condition(&status, "Enrolled")["status"], "True");
    assert_eq!(condition(&status, "Connected")["reason"], "AgentConnected");
    assert_eq!(
        condition(&status, "Ready")["reason"],
        "SpecApplied",
        "{status}"
    );
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["dockerVersion"], host_info().docker_version);
    assert_eq!(
        status["containers"]["running"],
        host_info().containers_running
    );
    expect_event(&mut world.server, "AgentConnected", "Normal").await;
    assert_eq!(reconcile.await.unwrap().unwrap(), Action::requeue(RESYNC));
    assert_eq!(
        agent.settings_received(),
        vec![defaults()],
        "the spec (empty: defaults) was pushed once"
    );

    // Reconciled again with nothing changed: no write at all.
    let mut current = object.clone();
    current.status = Some(serde_json::from_value::<DockerHostStatus>(status.clone()).unwrap());
    let action = docker_hosts::reconcile(Arc::new(current.clone()), world.operator.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(RESYNC));
    assert_eq!(
        agent.settings_received().len(),
        1,
        "an applied spec is not pushed again"
    );

    // The agent goes: Connected and Ready turn False, with an event.
    world.registry.disconnect(agent.host, agent.id);
    let reconcile = tokio::spawn(docker_hosts::reconcile(
        Arc::new(current.clone()),
        world.operator.clone(),
    ));
    let (body, send) = world.server.expect(Method::PATCH, uri).await;
    let gone = answer_status(&current, &body, send);
    assert_eq!(condition(&gone, "Connected")["status"], "False");
    assert_eq!(condition(&gone, "Connected")["reason"], "AgentDisconnected");
    assert_eq!(condition(&gone, "Ready")["status"], "False");
    assert_eq!(
        condition(&gone, "Enrolled")["lastTransitionTime"],
        condition(&status, "Enrolled")["lastTransitionTime"],
        "an unchanged condition keeps its transition time"
    );
    expect_event(&mut world.server, "AgentDisconnected", "Warning").await;
    reconcile.await.unwrap().unwrap();
}

#[tokio::test]
async fn scenario_spec_change_is_pushed_and_acknowledged() {
    let mut world = World::new().await;
    let id = world.enrolled_host("web-1").await;
    let agent = world.connect_agent(id, "web-1");
    // The agent runs generation 1 (what it got with its welcome).
    world.registry.set_applied_spec(
        id,
        agent.id,
        AppliedSpec {
            generation: Some(1),
            error: None,
        },
    );
    let spec = DockerHostSpec {
        stats_interval: Some("10s".into()),
        disk_usage_interval: Some("off".into()),
        paused: true,
        ..DockerHostSpec::default()
    };
    let object = docker_host("web-1", 2, spec);

    let reconcile = tokio::spawn(docker_hosts::reconcile(
        Arc::new(object.clone()),
        world.operator.clone(),
    ));
    let uri = HOST_STATUS;
    let (body, send) = world.server.expect(Method::PATCH, uri).await;
    let status = answer_status(&object, &body, send);
    expect_event(&mut world.server, "AgentConnected", "Normal").await;
    reconcile.await.unwrap().unwrap();

    let pushed = agent.settings_received();
    assert_eq!(pushed.len(), 1);
    assert_eq!(
        (
            pushed[0].stats_interval_ms,
            pushed[0].usage_interval_ms,
            pushed[0].paused
        ),
        (10_000, None, true),
        "the agent got the new spec's settings"
    );
    assert_eq!(status["observedGeneration"], 2, "{status}");
    assert_eq!(condition(&status, "Ready")["reason"], "SpecApplied");
    assert_eq!(condition(&status, "Ready")["observedGeneration"], 2);
    // Every replica finds the spec in the store for the agent's next connection.
    let (config, generation) = settings_for(&world.db.store, "web-1", &defaults()).await;
    assert_eq!(
        (config.stats_interval_ms, config.paused, generation),
        (10_000, true, Some(2))
    );
}

#[tokio::test]
async fn scenario_deleting_a_dockerhost_revokes_the_host_through_the_finalizer() {
    let mut world = World::new().await;
    let id = world.enrolled_host("web-1").await;
    let agent = world.connect_agent(id, "web-1");
    let mut object = docker_host("web-1", 1, DockerHostSpec::default());
    object.meta_mut().deletion_timestamp =
        Some(dockermon_collector::resources::host_status::time(now_ns()));

    let reconcile = tokio::spawn(docker_hosts::reconcile(
        Arc::new(object.clone()),
        world.operator.clone(),
    ));
    answer_crd(&mut world.server, false).await;
    let (patch, send) = world
        .server
        .expect(
            Method::PATCH,
            "/apis/dockermon.io/v1alpha1/dockerhosts/web-1?",
        )
        .await;
    assert_eq!(
        patch,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": docker_hosts::FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ]),
        "the finalizer is removed only after the cleanup"
    );
    // The host was revoked before the finalizer went.
    assert!(
        world.db.store.hosts().await.unwrap().is_empty(),
        "the host's data is removed"
    );
    assert!(agent.close.is_cancelled(), "the agent's session is closed");
    let admission = world
        .db
        .store
        .admission(&HostName::new("web-1").unwrap(), "web-1-serial")
        .await
        .unwrap();
    assert_eq!(
        admission,
        dockermon_collector::store::Admission::HostRevoked,
        "its agent is refused"
    );
    let mut answer = serde_json::to_value(&object).unwrap();
    answer["metadata"]["finalizers"] = json!([]);
    respond(send, 200, &answer);
    assert_eq!(reconcile.await.unwrap().unwrap(), Action::await_change());
}

/// Answers the operator's look at the DockerHost CRD: present, and being deleted or not.
async fn answer_crd(server: &mut ApiServer, deleting: bool) {
    let (_, send) = server
        .expect(
            Method::GET,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/dockerhosts.dockermon.io",
        )
        .await;
    let mut crd = serde_json::to_value(DockerHost::crd()).unwrap();
    if deleting {
        crd["metadata"]["deletionTimestamp"] = json!("2026-11-30T00:00:00Z");
    }
    respond(send, 200, &crd);
}

#[tokio::test]
async fn scenario_uninstalling_the_crd_keeps_the_hosts() {
    let mut world = World::new().await;
    world.enrolled_host("web-1").await;
    let mut object = docker_host("web-1", 1, DockerHostSpec::default());
    object.meta_mut().deletion_timestamp =
        Some(dockermon_collector::resources::host_status::time(now_ns()));
    let reconcile = tokio::spawn(docker_hosts::reconcile(
        Arc::new(object.clone()),
        world.operator.clone(),
    ));
    answer_crd(&mut world.server, true).await;
    let (_, send) = world
        .server
        .expect(
            Method::PATCH,
            "/apis/dockermon.io/v1alpha1/dockerhosts/web-1?",
        )
        .await;
    respond(send, 200, &serde_json::to_value(&object).unwrap());
    reconcile.await.unwrap().unwrap();
    assert_eq!(
        world.db.store.hosts().await.unwrap().len(),
        1,
        "the host is kept"
    );
    let admission = world
        .db
        .store
        .admission(&HostName::new("web-1").unwrap(), "web-1-serial")
        .await
        .unwrap();
    assert_eq!(admission, dockermon_collector::store::Admission::Allowed);
}

fn profile_session(
    name: &str,
    spec: ProfileSessionSpec,
    status: Option<ProfileSessionStatus>,
) -> ProfileSession {
    let mut object = ProfileSession::new(name, spec);
    object.meta_mut().namespace = Some("default".into());
    object.meta_mut().uid = Some(format!("uid-{name}"));
    object.meta_mut().finalizers = Some(vec![profile_sessions::FINALIZER.into()]);
    object.status = status;
    object
}

fn session_spec(container: &str) -> ProfileSessionSpec {
    ProfileSessionSpec {
        host: "web-1".into(),
        container: container.into(),
        duration: "1m".into(),
        interval: None,
        ttl_seconds_after_finished: None,
    }
}

#[tokio::test]
async fn scenario_profile_session_goes_pending_running_succeeded_with_its_summary() {
    let mut world = World::new().await;
    let id = world.enrolled_host("web-1").await;
    let agent = world.connect_agent(id, "web-1");
    let object = profile_session("api-cpu", session_spec("api"), None);
    let uri = SESSION_STATUS;

    // Pending → Running: the profile starts on the agent.
    let reconcile = tokio::spawn(profile_sessions::reconcile(
        Arc::new(object.clone()),
        world.operator.clone(),
    ));
    let (body, send) = world.server.expect(Method::PATCH, uri).await;
    let running = answer_status(&object, &body, send);
    assert_eq!(running["phase"], "Running", "{running}");
    assert_eq!(
        reconcile.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(2))
    );
    let profile_id = running["profileId"].as_i64().unwrap();
    let started = agent
        .received
        .lock()
        .unwrap()
        .iter()
        .find_map(|action| match action {
            CommandAction::ProfileStart(start) => Some(start.clone()),
            _ => None,
        })
        .expect("the agent was asked to start the profile");
    assert_eq!(
        (started.profile_id, started.duration_ms, started.interval_ms),
        (profile_id as u64, 60_000, 1000)
    );

    // The agent's samples and its end arrive, as they do over the transport.
    let start = now_ns();
    let samples: Vec<ProfileSample> = (0..5)
        .map(|i| ProfileSample {
            time_ns: start + i * S,
            counters: StatsCounters {
                memory_usage_bytes: 1000 + i as u64,
                ..Default::default()
            },
            rates: StatsRates {
                interval_ns: S,
                cpu_percent: 10.0 * (i + 1) as f64,
                ..Default::default()
            },
        })
        .collect();
    let end = ProfileEnd {
        time_ns: start + 5 * S,
        reason: ProfileEndReason::Duration,
        samples: 5,
        message: None,
    };
    ingest(
        &world.db.store,
        id,
        &[Record::Profile(ProfileBatch {
            profile_id: profile_id as u64,
            container_id: ContainerId::from("c1"),
            samples,
            ended: Some(end),
        })],
    )
    .await;

    // Running → Succeeded, with the profiler's summary and an event.
    let mut current = object.clone();
    current.status = Some(serde_json::from_value(running).unwrap());
    let reconcile = tokio::spawn(profile_sessions::reconcile(
        Arc::new(current.clone()),
        world.operator.clone(),
    ));
    let (body, send) = world.server.expect(Method::PATCH, uri).await;
    let done = answer_status(&current, &body, send);
    assert_eq!(
        (done["phase"].as_str(), done["reason"].as_str()),
        (Some("Succeeded"), Some("Completed"))
    );
    assert_eq!(done["samples"], 5);
    assert_eq!(done["summary"]["cpuPercentMax"], 50.0);
    assert_eq!(done["summary"]["memoryUsageMaxBytes"], 1004);
    assert!(done["completionTime"].is_string());
    let (event, send) = world
        .server
        .expect(
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/default/events?",
        )
        .await;
    assert_eq!(event["reason"], "ProfileCompleted");
    assert_eq!(event["note"], "5 samples stored");
    respond(send, 201, &event);
    assert_eq!(
        reconcile.await.unwrap().unwrap(),
        Action::await_change(),
        "no TTL: kept"
    );
}

#[tokio::test]
async fn scenario_profile_on_a_disconnected_host_fails_with_a_reason() {
    let mut world = World::new().await;
    world.enrolled_host("web-1").await;
    let object = profile_session("api-cpu", session_spec("api"), None);
    let uri = SESSION_STATUS;
    let reconcile = tokio::spawn(profile_sessions::reconcile(
        Arc::new(object.clone()),
        world.operator.clone(),
    ));
    let (body, send) = world.server.expect(Method::PATCH, uri).await;
    let status = answer_status(&object, &body, send);
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["reason"], "AgentNotConnected");
    assert_eq!(status["message"], "the host's agent is not connected");
    let (event, send) = world
        .server
        .expect(
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/default/events?",
        )
        .await;
    assert_eq!(
        (event["reason"].as_str(), event["type"].as_str()),
        (Some("ProfileFailed"), Some("Warning"))
    );
    respond(send, 201, &event);
    reconcile.await.unwrap().unwrap();
    let phase: Phase = serde_json::from_value(status["phase"].clone()).unwrap();
    assert!(phase.is_finished());
}

#[tokio::test]
async fn scenario_a_failing_api_server_backs_off() {
    let mut world = World::new().await;
    let id = world.enrolled_host("web-1").await;
    world.connect_agent(id, "web-1");
    let object = Arc::new(docker_host("web-1", 1, DockerHostSpec::default()));
    let uri = HOST_STATUS;
    let mut delays = Vec::new();
    for _ in 0..3 {
        let reconcile = tokio::spawn(docker_hosts::reconcile(
            object.clone(),
            world.operator.clone(),
        ));
        let (_, send) = world.server.expect(Method::PATCH, uri).await;
        // A forced apply carries no resourceVersion, so it meets no conflict; what it can
        // meet is a server that cannot answer, as an API server says so.
        respond(
            send,
            500,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": "InternalError", "code": 500,
            "message": "Internal error occurred: etcdserver: request timed out"}),
        );
        let error = reconcile.await.unwrap().unwrap_err();
        delays.push(docker_hosts::error_policy(
            object.clone(),
            &error,
            world.operator.clone(),
        ));
    }
    assert_eq!(
        delays,
        [2, 4, 8]
            .map(|s| Action::requeue(Duration::from_secs(s)))
            .to_vec(),
        "retries back off, doubling"
    );
}

#[tokio::test]
async fn scenario_a_session_deleted_before_its_status_write_ends_quietly() {
    let mut world = World::new().await;
    world.enrolled_host("web-1").await;
    let object = profile_session("api-cpu", session_spec("api"), None);
    let uri = SESSION_STATUS;
    let reconcile = tokio::spawn(profile_sessions::reconcile(
        Arc::new(object),
        world.operator.clone(),
    ));
    let (_, send) = world.server.expect(Method::PATCH, uri).await;
    respond(
        send,
        404,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": "NotFound", "code": 404,
        "message": "profilesessions.dockermon.io \"api-cpu\" not found"}),
    );
    assert_eq!(
        reconcile.await.unwrap().unwrap(),
        Action::await_change(),
        "no error, no event: the object is gone"
    );
}

/// Starts `object` (pending) on `world`'s agent: the status apply is answered, and the
/// running status is returned.
async fn start_session(world: &mut World, object: &ProfileSession) -> ProfileSessionStatus {
    let reconcile = tokio::spawn(profile_sessions::reconcile(
        Arc::new(object.clone()),
        world.operator.clone(),
    ));
    let (body, send) = world.server.expect(Method::PATCH, SESSION_STATUS).await;
    let running = answer_status(object, &body, send);
    assert_eq!(running["phase"], "Running", "{running}");
    reconcile.await.unwrap().unwrap();
    serde_json::from_value(running).unwrap()
}

#[tokio::test]
async fn scenario_deleting_a_running_session_stops_its_profile() {
    let mut world = World::new().await;
    let id = world.enrolled_host("web-1").await;
    let agent = world.connect_agent(id, "web-1");
    let mut object = profile_session("api-cpu", session_spec("api"), None);
    let running = start_session(&mut world, &object).await;
    let profile_id = running.profile_id.unwrap();

    // `kubectl delete`: the API server sets deletionTimestamp and keeps the object while
    // the finalizer is on it.
    object.status = Some(running);
    let mut deleting = serde_json::to_value(&object).unwrap();
    deleting["metadata"]["deletionTimestamp"] = json!(format_time(now_ns()));
    let object: ProfileSession = serde_json::from_value(deleting).unwrap();
    // The agent ends the profile when told to, and its end goes live once committed.
    let ending = tokio::spawn({
        let (received, live) = (agent.received.clone(), world.live.clone());
        async move {
            crate::support::eventually("the agent is told to stop the profile", || {
                received
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|action| matches!(action, CommandAction::ProfileStop { .. }))
            })
            .await;
            live.publish(LiveUpdate::Profile(ProfileChange {
                profile_id,
                host: id,
                container: ContainerKey(1),
                change: ProfileChangeKind::Ended {
                    reason: ProfileEndReason::Stopped,
                    samples_read: Some(3),
                },
            }));
        }
    });
    let deleted = std::time::Instant::now();
    let reconcile = tokio::spawn(profile_sessions::reconcile(
        Arc::new(object.clone()),
        world.operator.clone(),
    ));
    let (patch, send) = world
        .server
        .expect(
            Method::PATCH,
            "/apis/dockermon.io/v1alpha1/namespaces/default/profilesessions/api-cpu?",
        )
        .await;
    assert_eq!(
        patch,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": profile_sessions::FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ]),
        "the finalizer comes off only after the cleanup"
    );
    let stops: Vec<_> = agent
        .received
        .lock()
        .unwrap()
        .iter()
        .filter_map(|action| match action {
            CommandAction::ProfileStop { profile_id, reason } => Some((*profile_id, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        stops,
        [(profile_id as u64, ProfileEndReason::Stopped)],
        "the agent was told to stop that profile before the finalizer was removed"
    );
    ending.await.unwrap();
    // The profiler saw the agent's end (it waits up to 10 s for it before ending the
    // session itself, which would also say "stopped").
    assert!(
        deleted.elapsed() < Duration::from_secs(5),
        "{:?}",
        deleted.elapsed()
    );
    let mut gone = serde_json::to_value(&object).unwrap();
    gone["metadata"]["finalizers"] = json!([]);
    respond(send, 200, &gone);
    assert_eq!(reconcile.await.unwrap().unwrap(), Action::await_change());
}

#[tokio::test]
async fn scenario_a_finished_session_is_deleted_after_its_ttl() {
    let mut world = World::new().await;
    world.enrolled_host("web-1").await;
    let mut spec = session_spec("api");
    spec.ttl_seconds_after_finished = Some(60);
    let finished = |ago_s: i64| ProfileSessionStatus {
        phase: Phase::Succeeded,
        reason: Some("Completed".into()),
        completion_time: Some(format_time(now_ns() - ago_s * S)),
        ..Default::default()
    };

    // Ended 20 s ago: kept, and looked at again when its TTL is up (40 s, and a second).
    let young = profile_session("api-cpu", spec.clone(), Some(finished(20)));
    let action = profile_sessions::reconcile(Arc::new(young), world.operator.clone())
        .await
        .unwrap();
    // `Action` shows its delay only through Debug (`Some(40.2s)`).
    let shown = format!("{action:?}");
    let delay: f64 = shown
        .split_once("Some(")
        .and_then(|(_, rest)| rest.split_once("s)"))
        .and_then(|(seconds, _)| seconds.parse().ok())
        .unwrap_or_else(|| panic!("not a requeue: {shown}"));
    assert!(
        (39.0..=42.0).contains(&delay),
        "requeued when the TTL is up (40 s after the 20 s already passed, plus 1 s), not {shown}"
    );

    // Ended 90 s ago: deleted, as the Job controller does.
    let old = profile_session("api-cpu", spec, Some(finished(90)));
    let reconcile = tokio::spawn(profile_sessions::reconcile(
        Arc::new(old.clone()),
        world.operator.clone(),
    ));
    let (_, send) = world
        .server
        .expect(
            Method::DELETE,
            "/apis/dockermon.io/v1alpha1/namespaces/default/profilesessions/api-cpu?",
        )
        .await;
    let mut deleting = serde_json::to_value(&old).unwrap();
    deleting["metadata"]["deletionTimestamp"] = json!(format_time(now_ns()));
    respond(send, 200, &deleting);
    assert_eq!(reconcile.await.unwrap().unwrap(), Action::await_change());
}

/// The operator's Lease as the API server holds it: `spec` as given.
fn lease(spec: Value) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": LEASE_NAME, "namespace": "default", "resourceVersion": "7"},
        "spec": spec,
    })
}

/// RFC 3339 with microseconds, as the API server writes a Lease's MicroTime.
fn micro_time(ns: i64) -> String {
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(ns.into()).unwrap();
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[tokio::test]
async fn scenario_lease_lost_stops_the_controllers() {
    const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases/dockermon-operator";
    let (client, mut server) = crate::kube_mock::client();
    let settings = LeaseSettings {
        client,
        namespace: "default".into(),
        identity: "replica-a".into(),
    };

    // No Lease yet: it is created empty.
    let building = tokio::spawn(async move {
        let manager = settings.manager().await.unwrap();
        (settings, manager)
    });
    let (_, send) = server.expect(Method::GET, LEASE).await;
    respond(
        send,
        404,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
        "code": 404, "message": "leases.coordination.k8s.io \"dockermon-operator\" not found"}),
    );
    let (created, send) = server
        .expect(
            Method::POST,
            "/apis/coordination.k8s.io/v1/namespaces/default/leases?",
        )
        .await;
    assert_eq!(created["metadata"]["name"], LEASE_NAME);
    respond(send, 201, &lease(json!({})));
    let (settings, manager) = building.await.unwrap();

    let (lead, leader) = tokio::sync::watch::channel(false);
    let cancel = CancellationToken::new();
    let holding = tokio::spawn(hold_lease(settings, manager, lead, cancel.clone()));
    let running = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let controllers = tokio::spawn(run_while_leader(leader, cancel.clone(), {
        let running = running.clone();
        move |stop| {
            let running = running.clone();
            async move {
                running.store(true, std::sync::atomic::Ordering::SeqCst);
                stop.cancelled().await;
                running.store(false, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }));

    // The free Lease is read, taken by server-side apply, its transitions counted, and
    // read back held. Its renewTime is 10 s old, so renewal (5 s before the 15 s expire)
    // is due at once.
    for _ in 0..2 {
        let (_, send) = server.expect(Method::GET, LEASE).await;
        respond(send, 200, &lease(json!({})));
    }
    let apply = format!("{LEASE}?&fieldManager=");
    let (taken, send) = server.expect_prefix(Method::PATCH, &apply).await;
    assert_eq!(taken["spec"]["holderIdentity"], "replica-a");
    assert_eq!(taken["spec"]["leaseDurationSeconds"], 15);
    let held = lease(json!({
        "holderIdentity": "replica-a", "leaseDurationSeconds": 15, "leaseTransitions": 1,
        "acquireTime": micro_time(now_ns() - 10 * S), "renewTime": micro_time(now_ns() - 10 * S),
    }));
    respond(send, 200, &held);
    let (counted, send) = server.expect_prefix(Method::PATCH, &apply).await;
    assert_eq!(counted["spec"]["leaseTransitions"], 1);
    respond(send, 200, &held);
    let (_, send) = server.expect(Method::GET, LEASE).await;
    respond(send, 200, &held);
    crate::support::eventually("the controllers start on the lease holder", || {
        running.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;

    // The renewal meets an API server that cannot be reached: by the time the Lease
    // expires another replica may hold it, so the controllers stop now.
    let (renewal, send) = server.expect_prefix(Method::PATCH, &apply).await;
    assert!(renewal["spec"]["renewTime"].is_string(), "{renewal}");
    respond(
        send,
        503,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": "ServiceUnavailable", "code": 503, "message": "the server is currently unable to handle the request"}),
    );
    crate::support::eventually("the controllers stop when the renewal fails", || {
        !running.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    assert!(
        !controllers.is_finished(),
        "the replica stands by for the lease again"
    );
    cancel.cancel();
    drop(server);
    tokio::time::timeout(Duration::from_secs(5), controllers)
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), holding)
        .await
        .unwrap()
        .unwrap();
}

//! What the end-to-end tests share: a collector on a fresh MariaDB database, agents, the
//! store read directly, and container churn with an independent record of its events.

use std::collections::HashSet;
use std::time::Duration;

use dockermon_collector::pki::{Authority, PkiPaths};
use dockermon_collector::store::{ActivityFilter, DatabaseUrl, HostId, Page, Store};
use dockermon_e2e::docker::{
    Cleanup, EventOracle, TEST_IMAGE, docker, ensure_test_image, unique_name,
};
use dockermon_e2e::fleet::{Agent, Collector, WAIT};
use dockermon_e2e::http;
use dockermon_e2e::mysql::MysqlDatabase;
use dockermon_e2e::raw_agent::ClientIdentity;
use dockermon_e2e::wait::eventually;
use dockermon_proto::HostName;
use rcgen::KeyPair;
use serde_json::{Value, json};

/// The password of the collector's first admin, `admin@localhost`.
pub(crate) const ADMIN_PASSWORD: &str = "end-to-end admin password";

/// A collector on its own MariaDB database, its data in a temporary directory.
pub(crate) struct Setup {
    pub(crate) collector: Collector,
    pub(crate) store: Store,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) database: MysqlDatabase,
}

impl Setup {
    pub(crate) async fn new() -> Setup {
        Setup::with(&[]).await
    }

    /// A collector with `extra` flags besides the suite's usual ones (or instead of them:
    /// a usual flag given in `extra` takes its value from there).
    pub(crate) async fn with(extra: &[&str]) -> Setup {
        ensure_test_image().await.unwrap();
        let database = MysqlDatabase::create().await;
        let dir = tempfile::tempdir().unwrap();
        let usual = [
            ("--agent-stats-interval", "1s"),
            ("--agent-usage-interval", "off"),
            ("--admin-password", ADMIN_PASSWORD),
        ];
        let mut args: Vec<&str> = usual
            .iter()
            .filter(|(flag, _)| !extra.contains(flag))
            .flat_map(|(flag, value)| [*flag, *value])
            .collect();
        args.extend_from_slice(extra);
        let collector = Collector::start(&dir.path().join("collector"), &database.url, &args)
            .await
            .unwrap();
        let store = Store::connect(&DatabaseUrl::parse(&database.url).unwrap())
            .await
            .unwrap();
        Setup {
            collector,
            store,
            dir,
            database,
        }
    }

    /// An agent enrolled as `host`, connected.
    pub(crate) async fn agent(&self, host: &str) -> Agent {
        let token = self.collector.token(host, "10m").await.unwrap();
        self.agent_with_token(host, &token).await
    }

    pub(crate) async fn agent_with_token(&self, host: &str, token: &str) -> Agent {
        let agent = Agent::start(
            &self.collector.url(),
            &self.dir.path().join(host),
            &["--join-token", token],
        )
        .await
        .unwrap();
        agent.wait_connected().await.unwrap();
        agent
    }

    pub(crate) async fn host_id(&self, name: &str) -> HostId {
        let store = &self.store;
        eventually(WAIT, &format!("host {name} registered"), || async move {
            store
                .hosts()
                .await
                .ok()?
                .into_iter()
                .find(|h| h.name == name)
                .map(|h| h.id)
        })
        .await
        .unwrap()
    }

    /// Stored container events of the containers `actors` (Docker ids), in insertion
    /// order, as (actor id, action, time).
    pub(crate) async fn stored_events(
        &self,
        host: HostId,
        actors: &HashSet<String>,
    ) -> Vec<(String, String, i64)> {
        let filter = ActivityFilter {
            host: Some(host),
            kind: Some("container".into()),
            ..Default::default()
        };
        let mut all = Vec::new();
        let mut offset = 0;
        loop {
            let page = self
                .store
                .activity(&filter, Page::new(offset, 1000).unwrap())
                .await
                .unwrap();
            let done = page.items.len() < 1000;
            all.extend(page.items);
            offset += 1000;
            if done {
                break;
            }
        }
        all.sort_by_key(|e| e.id);
        all.into_iter()
            .filter(|e| actors.contains(&e.actor_id))
            .map(|e| (e.actor_id, e.action, e.time_ns))
            .collect()
    }

    /// Waits until the store holds exactly the oracle's events (same events, same order,
    /// none twice) and returns how many.
    pub(crate) async fn assert_stored_exactly(&self, host: HostId, oracle: &EventOracle) -> usize {
        let expected: Vec<(String, String, i64)> = oracle
            .events()
            .into_iter()
            .map(|(action, actor, time)| (actor, action, time))
            .collect();
        assert!(!expected.is_empty(), "the churn produced no events");
        // Events no longer carry the containers' labels (see proto/src/redact.rs): they are
        // picked by the Docker ids the oracle saw.
        let actors: HashSet<String> = expected.iter().map(|(actor, _, _)| actor.clone()).collect();
        let stored = eventually(WAIT, "every event stored", || async {
            let stored = self.stored_events(host, &actors).await;
            (stored.len() >= expected.len()).then_some(stored)
        })
        .await
        .unwrap_or_else(|e| {
            let log = self.collector.stderr();
            let tail: String = log
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            panic!(
                "{e}: {} events expected; collector log:\n{tail}",
                expected.len()
            )
        });
        let mut unique = stored.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), stored.len(), "an event was stored twice");
        assert_eq!(stored, expected, "stored events differ from Docker's");
        stored.len()
    }
}

/// Container churn labelled `dmtest=<tag>`: `lives` containers created, started and removed,
/// one after another. Returns the oracle recording Docker's own view.
pub(crate) struct Churn {
    pub(crate) tag: String,
    pub(crate) oracle: EventOracle,
    _cleanup: Cleanup,
}

impl Churn {
    pub(crate) async fn start() -> Churn {
        let tag = unique_name("churn");
        let oracle = EventOracle::start(&["type=container", &format!("label=dmtest={tag}")])
            .await
            .unwrap();
        Churn {
            tag,
            oracle,
            _cleanup: Cleanup::default(),
        }
    }

    /// One container life: run, then remove (about 5 events).
    pub(crate) async fn life(&self, i: usize) {
        let name = format!("{}-{i}", self.tag);
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            &format!("dmtest={}", self.tag),
            TEST_IMAGE,
            "sleep",
            "3600",
        ])
        .await
        .unwrap();
        docker(&["rm", "-f", &name]).await.unwrap();
    }

    /// Lives `lives` one after another while `meanwhile` runs; what `meanwhile` gave.
    pub(crate) async fn lives_during<T>(
        &self,
        lives: std::ops::Range<usize>,
        meanwhile: impl std::future::Future<Output = T>,
    ) -> T {
        let churning = async {
            for i in lives {
                self.life(i).await;
            }
        };
        tokio::join!(meanwhile, churning).0
    }

    /// Waits until Docker has published the last life's destroy.
    pub(crate) async fn settle(&self, lives: usize) {
        await_destroys(&self.oracle, lives).await;
    }
}

/// Waits until the oracle has seen `count` containers destroyed.
pub(crate) async fn await_destroys(oracle: &EventOracle, count: usize) {
    eventually(WAIT, "docker's destroy events", || async move {
        let destroys = oracle
            .events()
            .iter()
            .filter(|(action, _, _)| action == "destroy")
            .count();
        (destroys >= count).then_some(())
    })
    .await
    .unwrap();
}

/// The collector's `/metrics`, as text 0.0.4.
pub(crate) async fn scrape(setup: &Setup) -> String {
    let (status, body) = http::request(
        setup.collector.health_address,
        "GET",
        "/metrics",
        None,
        None,
    )
    .await
    .expect("the collector answers");
    assert_eq!(status, 200);
    body
}

pub(crate) const SHORT: Duration = Duration::from_secs(30);

/// One API request to the setup's collector; its status and JSON answer.
pub(crate) async fn call(
    setup: &Setup,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    http::json(
        setup.collector.api_address,
        method,
        path,
        token,
        body.as_ref(),
    )
    .await
    .expect("the API answers")
}

/// Signs in; the access token.
pub(crate) async fn sign_in(setup: &Setup, email: &str, password: &str) -> String {
    let body = json!({"email": email, "password": password});
    let (status, tokens) = call(setup, "POST", "/api/v1/auth/login", None, Some(body)).await;
    assert_eq!(status, 200, "{tokens}");
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// Creates a user with `role` (as the admin) and signs them in; their access token.
pub(crate) async fn user_token(setup: &Setup, admin: &str, email: &str, role: &str) -> String {
    const PASSWORD: &str = "a long enough password";
    let body = json!({"email": email, "password": PASSWORD, "role": role});
    let (status, user) = call(setup, "POST", "/api/v1/users", Some(admin), Some(body)).await;
    assert_eq!(status, 201, "{user}");
    sign_in(setup, email, PASSWORD).await
}

/// A certificate for `host` signed by the setup's CA, for an agent that speaks the
/// protocol directly ([`RawAgent`](dockermon_e2e::raw_agent::RawAgent)).
pub(crate) fn raw_identity(setup: &Setup, host: &str) -> ClientIdentity {
    let authority = Authority::load(&PkiPaths {
        dir: setup.collector.pki_dir(),
    })
    .unwrap();
    let key = KeyPair::generate().unwrap();
    let (certificate_pem, _) = authority
        .sign_agent_key(
            &key,
            &HostName::new(host).unwrap(),
            Duration::from_secs(3600),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
    ClientIdentity {
        certificate_pem,
        key_pem: key.serialize_pem(),
        ca_pem: authority.ca_pem().to_owned(),
    }
}

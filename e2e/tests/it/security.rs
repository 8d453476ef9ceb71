//! Who may report: certificates from another CA, expired certificates, deleted hosts and
//! used, expired or unknown join tokens are refused, and the collector carries on serving
//! the agents it should.

use std::time::Duration;

use dockermon_collector::pki::{Authority, PkiPaths};
use dockermon_e2e::fleet::{Agent, WAIT, readyz};
use dockermon_e2e::raw_agent::{ClientIdentity, RawAgent};
use dockermon_e2e::wait::eventually;
use dockermon_proto::HostName;
use dockermon_proto::transport::{JoinToken, to_hex};
use rcgen::KeyPair;

use crate::support::{SHORT, Setup};

/// A client identity for `host` signed by `authority`, valid from `now` for `validity`.
fn identity(
    authority: &Authority,
    host: &str,
    now: time::OffsetDateTime,
    validity: Duration,
    ca_pem: &str,
) -> ClientIdentity {
    let key = KeyPair::generate().unwrap();
    let (certificate_pem, _) = authority
        .sign_agent_key(&key, &HostName::new(host).unwrap(), validity, now)
        .unwrap();
    ClientIdentity {
        certificate_pem,
        key_pem: key.serialize_pem(),
        ca_pem: ca_pem.to_owned(),
    }
}

/// Runs an agent that must fail; returns its exit code and stderr.
async fn refused_agent(setup: &Setup, name: &str, token: &str) -> (Option<i32>, String) {
    let mut agent = Agent::start(
        &setup.collector.url(),
        &setup.dir.path().join(name),
        &["--join-token", token],
    )
    .await
    .unwrap();
    let process = agent.process.as_mut().unwrap();
    let status = process.wait_exit(WAIT).await.unwrap();
    (status.code(), process.stderr())
}

#[tokio::test]
async fn strangers_are_refused_and_the_collector_stays_up() {
    let setup = Setup::new().await;
    let witness = setup.agent("witness").await;
    let address = setup.collector.agent_address;
    let own = Authority::load(&PkiPaths {
        dir: setup.collector.pki_dir(),
    })
    .unwrap();
    let ca_pem = own.ca_pem().to_owned();
    let now = time::OffsetDateTime::now_utc();

    // A certificate from another CA: the TLS handshake fails.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Authority::init(
        &PkiPaths {
            dir: other_dir.path().to_owned(),
        },
        &["localhost".into()],
        false,
    )
    .unwrap();
    let stranger = identity(
        &other,
        "intruder",
        now,
        Duration::from_secs(86_400),
        &ca_pem,
    );
    let error = RawAgent::join(address, stranger.tls_config().unwrap())
        .await
        .err()
        .expect("refused");
    assert!(format!("{error:#}").contains("UnknownCA"), "{error:#}");

    // An expired certificate from the right CA: refused too.
    let expired = identity(
        &own,
        "expired",
        now - time::Duration::days(30),
        Duration::from_secs(86_400),
        &ca_pem,
    );
    let error = RawAgent::join(address, expired.tls_config().unwrap())
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{error:#}").contains("CertificateExpired"),
        "{error:#}"
    );

    // Join tokens: used once only, not after expiry, not made up.
    let token = setup.collector.token("twice", "10m").await.unwrap();
    let first = setup.agent_with_token("twice", &token).await;
    let (code, stderr) = refused_agent(&setup, "twice-again", &token).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("join token already used"), "{stderr}");
    let stale = setup.collector.token("stale", "1s").await.unwrap();
    let collector = &setup.collector;
    eventually(WAIT, "the token expired", || async {
        let list = collector.cli(&["token", "list", "--all"]).await.ok()?;
        list.lines()
            .any(|line| line.contains("stale") && line.contains("expired"))
            .then_some(())
    })
    .await
    .unwrap();
    let (_, stderr) = refused_agent(&setup, "stale", &stale).await;
    assert!(stderr.contains("join token expired"), "{stderr}");
    let made_up = JoinToken {
        ca_fingerprint: own.fingerprint(),
        secret: [7; 32],
    }
    .to_string();
    let (_, stderr) = refused_agent(&setup, "made-up", &made_up).await;
    assert!(stderr.contains("unknown join token"), "{stderr}");
    let wrong_ca = JoinToken {
        ca_fingerprint: other.fingerprint(),
        secret: [7; 32],
    }
    .to_string();
    let (_, stderr) = refused_agent(&setup, "wrong-ca", &wrong_ca).await;
    assert!(
        stderr.contains("does not match the join token's fingerprint"),
        "{stderr}: {}",
        to_hex(&other.fingerprint())
    );

    // The collector is still up and still serving the agents it should.
    assert_eq!(readyz(setup.collector.health_address).await, Some(200));
    assert!(
        !witness.stderr().contains("disconnected from the collector"),
        "{}",
        witness.stderr()
    );
    drop(first);
}

#[tokio::test]
async fn deleting_a_host_closes_its_connection_and_refuses_it_after() {
    let setup = Setup::new().await;
    let doomed = setup.agent("doomed").await;
    let witness = setup.agent("witness").await;
    setup.host_id("doomed").await;

    setup.collector.delete_host("doomed").await.unwrap();
    let process = doomed.process.as_ref().unwrap();
    process
        .wait_for_stderr(SHORT, "certificate revoked")
        .await
        .unwrap();
    // It keeps trying and keeps being refused, by name.
    process
        .wait_for_stderr(WAIT, "this host was deleted")
        .await
        .unwrap();
    let store = &setup.store;
    eventually(WAIT, "the host gone from the store", || async {
        let hosts = store.hosts().await.ok()?;
        (!hosts.iter().any(|h| h.name == "doomed")).then_some(())
    })
    .await
    .unwrap();
    assert!(
        !witness.stderr().contains("disconnected from the collector"),
        "{}",
        witness.stderr()
    );
    assert_eq!(readyz(setup.collector.health_address).await, Some(200));
}

#[tokio::test]
async fn agents_with_certificates_from_elsewhere_are_accepted() {
    // A CA the collector did not make (as cert-manager would provide), for both sides.
    let external = tempfile::tempdir().unwrap();
    let paths = PkiPaths {
        dir: external.path().to_owned(),
    };
    let authority = Authority::init(&paths, &["localhost".into()], false).unwrap();
    let key = KeyPair::generate().unwrap();
    let (certificate, _) = authority
        .sign_agent_key(
            &key,
            &HostName::new("byo-1").unwrap(),
            Duration::from_secs(86_400),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
    let agent_dir = external.path().join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    std::fs::write(agent_dir.join("tls.crt"), certificate).unwrap();
    std::fs::write(agent_dir.join("tls.key"), key.serialize_pem()).unwrap();
    std::fs::write(agent_dir.join("ca.crt"), authority.ca_pem()).unwrap();

    let database = dockermon_e2e::mysql::MysqlDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let server_cert = paths.server_cert();
    let server_key = paths.server_key();
    let ca = paths.ca_cert();
    let collector = dockermon_e2e::fleet::Collector::start(
        dir.path(),
        &database.url,
        &[
            "--tls-cert",
            server_cert.to_str().unwrap(),
            "--tls-key",
            server_key.to_str().unwrap(),
            "--client-ca",
            ca.to_str().unwrap(),
        ],
    )
    .await
    .unwrap();
    let file = |name: &str| agent_dir.join(name).to_str().unwrap().to_owned();
    let (cert, key_file, ca_file) = (file("tls.crt"), file("tls.key"), file("ca.crt"));
    let agent = Agent::start(
        &collector.url(),
        &dir.path().join("state"),
        &["--cert", &cert, "--key", &key_file, "--ca", &ca_file],
    )
    .await
    .unwrap();
    agent.wait_connected().await.unwrap();
    let store = dockermon_collector::store::Store::connect(
        &dockermon_collector::store::DatabaseUrl::parse(&database.url).unwrap(),
    )
    .await
    .unwrap();
    eventually(WAIT, "the agent's host record", || async {
        let hosts = store.hosts().await.ok()?;
        hosts
            .iter()
            .find(|h| h.name == "byo-1" && h.info.is_some())
            .map(|_| ())
    })
    .await
    .unwrap();
    // Enrollment is off in this mode.
    assert!(
        !dir.path().join("state/agent.key").exists(),
        "no key was generated"
    );
}

#[tokio::test]
async fn a_silent_network_is_detected_by_both_sides() {
    let setup = Setup::new().await;
    let mut path = dockermon_e2e::tcp::TcpProxy::reserve(setup.collector.agent_address).unwrap();
    path.start().await.unwrap();
    let token = setup.collector.token("quiet", "10m").await.unwrap();
    let agent = Agent::start(
        &format!("wss://localhost:{}", path.address().port()),
        &setup.dir.path().join("quiet"),
        &["--join-token", &token],
    )
    .await
    .unwrap();
    agent.wait_connected().await.unwrap();
    // Packets stop, nothing closes: only heartbeats can tell.
    path.freeze(true);
    let process = agent.process.as_ref().unwrap();
    process
        .wait_for_stderr(Duration::from_secs(120), "the collector stopped answering")
        .await
        .unwrap();
    setup
        .collector
        .process
        .as_ref()
        .unwrap()
        .wait_for_stderr(Duration::from_secs(120), "no message or pong for 45 s")
        .await
        .unwrap();
    path.freeze(false);
    // The agent comes back by itself once the path works again.
    eventually(WAIT, "a reconnection", || async {
        (process
            .stderr()
            .matches("connected to the collector")
            .count()
            >= 2)
            .then_some(())
    })
    .await
    .unwrap();
}

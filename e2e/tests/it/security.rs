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
    let stale = setup.collector.token("stale", "1ns").await.unwrap();
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

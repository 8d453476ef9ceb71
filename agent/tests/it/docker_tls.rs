//! Docker over TCP with TLS, as `dockerd --tlsverify` serves it: here a TLS terminator in
//! front of the real engine's socket that requires a client certificate from its own CA,
//! with a server certificate for 127.0.0.1 and a client certificate laid out as the docker
//! CLI's `DOCKER_CERT_PATH` (ca.pem, cert.pem, key.pem).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use dockermon_e2e::process::RecordedProcess;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, UnixStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::support::{WAIT, agent_command, full_inventories, of_type};

/// A CA; a server certificate for 127.0.0.1 into `server/`; a client certificate with the
/// CA into `client/` as ca.pem, cert.pem, key.pem.
fn certificates(dir: &Path) {
    // Every certificate names itself: a subject equal to its issuer's reads as self-signed.
    let named = |names: Vec<String>, common_name: &str| {
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = named(Vec::new(), "dockermon test Docker CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let sign = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = named(vec![name.to_owned()], name)
            .signed_by(&key, &issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = sign("127.0.0.1");
    let (client_cert, client_key) = sign("dockermon-agent");
    for (name, text) in [
        ("server/cert.pem", server_cert),
        ("server/key.pem", server_key),
        ("server/ca.pem", ca_cert.pem()),
        ("client/cert.pem", client_cert),
        ("client/key.pem", client_key),
        ("client/ca.pem", ca_cert.pem()),
    ] {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// Serves `dir/server`'s certificate on a loopback port, accepts only clients with a
/// certificate from its CA, and relays each connection to the Docker socket. Stops when the
/// returned set is dropped.
async fn tls_front(dir: &Path) -> (SocketAddr, JoinSet<()>) {
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&read("ca.pem")).unwrap())
        .unwrap();
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(&read("cert.pem")).unwrap()],
            PrivateKeyDer::from_pem_slice(&read("key.pem")).unwrap(),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            connections.spawn(async move {
                // A client without a valid certificate fails here, as with dockerd.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut docker) = UnixStream::connect("/var/run/docker.sock").await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut docker).await;
                }
            });
            while connections.try_join_next().is_some() {}
        }
    });
    (address, tasks)
}

#[tokio::test]
async fn the_agent_talks_to_docker_over_verified_tls() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let (address, _front) = tls_front(&dir.path().join("server")).await;
    let endpoint = format!("tcp://{address}");
    let client = dir.path().join("client");

    // Verified TLS both ways: inventory over bollard, disk usage over the raw client.
    let agent = RecordedProcess::spawn({
        let mut command = agent_command(&["--usage-interval", "1s"]);
        command
            .env("DOCKER_HOST", &endpoint)
            .env("DOCKER_TLS_VERIFY", "1")
            .env("DOCKER_CERT_PATH", &client);
        command
    })
    .unwrap();
    agent
        .wait_for(
            WAIT,
            "a snapshot and a disk usage record over TLS",
            |records| {
                (full_inventories(records).next().is_some()
                    && of_type(records, "usage").next().is_some())
                .then_some(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", agent.stderr()));
    assert!(agent.stderr().contains("(TLS)"), "{}", agent.stderr());
    drop(agent);

    // Without TLS the engine behind TLS is unreachable, and the agent says so.
    let output = agent_command(&["--docker-host", &endpoint])
        .env_remove("DOCKER_TLS_VERIFY")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot reach Docker"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

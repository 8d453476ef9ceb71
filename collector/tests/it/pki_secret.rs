//! The built-in CA kept in a Kubernetes Secret, against kube's mock API service (no API
//! server can run here): the first replica creates it, later ones and the loser of a
//! creation race use the one that exists, and a change of the server's names re-issues the
//! server certificate under the same CA.

use dockermon_collector::config::PkiSecret;
use dockermon_collector::operator::pki_secret::{SANS_ANNOTATION, publish_ca, sync};
use dockermon_collector::pki::{Authority, PkiPaths};
use http::Method;
use serde_json::{Value, json};

use crate::kube_mock::{self, ApiServer, respond};

const SECRET: &str = "/api/v1/namespaces/dockermon/secrets/dockermon-pki";
const SECRETS: &str = "/api/v1/namespaces/dockermon/secrets?";
const NAMES: &str = "dockermon-agents.dockermon.svc";

fn settings(names: &[&str]) -> PkiSecret {
    PkiSecret {
        secret: "dockermon-pki".into(),
        sans: names.iter().map(|name| (*name).to_owned()).collect(),
    }
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code})
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A Secret as another replica (or `pki init`) made it, from a real CA, with the names it
/// was issued for (`None`: made by hand, no annotation).
fn existing_secret(dir: &std::path::Path, names: Option<&str>) -> (Value, String) {
    let paths = PkiPaths::in_data_dir(dir);
    let authority = Authority::init(&paths, &[NAMES.to_owned()], false).unwrap();
    let file = |path: std::path::PathBuf| base64(&std::fs::read(path).unwrap());
    let mut secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "dockermon-pki", "namespace": "dockermon", "resourceVersion": "7"},
        "data": {
            "ca.crt": file(paths.ca_cert()), "ca.key": file(paths.ca_key()),
            "server.crt": file(paths.server_cert()), "server.key": file(paths.server_key()),
        },
    });
    if let Some(names) = names {
        secret["metadata"]["annotations"] = json!({ SANS_ANNOTATION: names });
    }
    (secret, authority.ca_pem().to_owned())
}

/// Runs `sync` against the mock while `api` plays the API server, in a new data dir.
async fn run_sync(
    names: &[&str],
    api: impl AsyncFnOnce(&mut ApiServer),
) -> (anyhow::Result<()>, PkiPaths, tempfile::TempDir) {
    run_sync_in(tempfile::tempdir().unwrap(), names, api).await
}

/// Runs `sync` with the data dir `dir`.
async fn run_sync_in(
    dir: tempfile::TempDir,
    names: &[&str],
    api: impl AsyncFnOnce(&mut ApiServer),
) -> (anyhow::Result<()>, PkiPaths, tempfile::TempDir) {
    let (client, mut server) = kube_mock::client();
    let paths = PkiPaths::in_data_dir(dir.path());
    let settings = settings(names);
    let (result, ()) = tokio::join!(sync(client, "dockermon", &settings, &paths), async {
        api(&mut server).await;
        // Anything more the collector asked for would go unanswered and fail the sync.
        drop(server);
    });
    (result, paths, dir)
}

/// A start that finds no Secret and creates it: the Secret it created.
async fn first_start(dir: tempfile::TempDir) -> (Value, PkiPaths, tempfile::TempDir) {
    let mut created = Value::Null;
    let (result, paths, dir) = run_sync_in(dir, &[NAMES], async |api| {
        let (_, send) = api.expect(Method::GET, SECRET).await;
        respond(send, 404, &status(404, "NotFound"));
        let (body, send) = api.expect(Method::POST, SECRETS).await;
        respond(send, 201, &body);
        created = body;
    })
    .await;
    result.unwrap();
    (created, paths, dir)
}

/// A start that finds `secret` and issues its server certificate again for `names`: the
/// patch it sent.
async fn reissuing_start(names: &[&str], secret: &Value) -> (Value, PkiPaths, tempfile::TempDir) {
    let mut patch = Value::Null;
    let (result, paths, dir) = run_sync(names, async |api| {
        let (_, send) = api.expect(Method::GET, SECRET).await;
        respond(send, 200, secret);
        let (body, send) = api.expect(Method::PATCH, &format!("{SECRET}?")).await;
        respond(send, 200, secret);
        patch = body;
    })
    .await;
    result.unwrap();
    (patch, paths, dir)
}

#[tokio::test]
async fn the_first_replica_creates_the_ca_and_keeps_it_in_the_secret() {
    let (created, paths, _dir) = first_start(tempfile::tempdir().unwrap()).await;
    assert_eq!(created["metadata"]["name"], "dockermon-pki");
    assert_eq!(created["metadata"]["annotations"][SANS_ANNOTATION], NAMES);
    let authority = Authority::load(&paths).unwrap();
    assert_eq!(
        created["data"]["ca.crt"],
        base64(authority.ca_pem().as_bytes()),
        "the Secret holds the CA this replica signs with"
    );
    for key in ["ca.key", "server.crt", "server.key"] {
        assert!(created["data"][key].is_string(), "{key} missing: {created}");
    }
}

#[tokio::test]
async fn a_ca_the_collector_already_had_goes_into_the_new_secret() {
    let dir = tempfile::tempdir().unwrap();
    let before = Authority::init(
        &PkiPaths::in_data_dir(dir.path()),
        &[NAMES.to_owned()],
        false,
    )
    .unwrap()
    .ca_pem()
    .to_owned();
    let (created, paths, _dir) = first_start(dir).await;
    assert_eq!(
        created["data"]["ca.crt"],
        base64(before.as_bytes()),
        "not a new CA"
    );
    assert_eq!(Authority::load(&paths).unwrap().ca_pem(), before);
}

#[tokio::test]
async fn a_server_certificate_near_its_end_is_issued_again() {
    let other = tempfile::tempdir().unwrap();
    let (mut secret, ca_pem) = existing_secret(other.path(), Some(NAMES));
    // Replace the Secret's server certificate with one of the same CA ending in 10 days.
    let paths = PkiPaths::in_data_dir(other.path());
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(paths.ca_key()).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![NAMES.to_owned()]).unwrap();
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(10);
    let key = rcgen::KeyPair::generate().unwrap();
    let old = params.signed_by(&key, &issuer).unwrap().pem();
    secret["data"]["server.crt"] = json!(base64(old.as_bytes()));
    secret["data"]["server.key"] = json!(base64(key.serialize_pem().as_bytes()));
    let (patch, paths, _dir) = reissuing_start(&[NAMES], &secret).await;
    let renewed = std::fs::read(paths.server_cert()).unwrap();
    assert_eq!(patch["data"]["server.crt"], base64(&renewed));
    assert!(
        !String::from_utf8(renewed).unwrap().starts_with(&old),
        "a new certificate"
    );
    assert_eq!(
        Authority::load(&paths).unwrap().ca_pem(),
        ca_pem,
        "under the same CA"
    );
}

#[tokio::test]
async fn later_replicas_sign_with_the_ca_in_the_secret() {
    let other = tempfile::tempdir().unwrap();
    let (secret, ca_pem) = existing_secret(other.path(), Some(NAMES));
    let (result, paths, _dir) = run_sync(&[NAMES], async |api| {
        let (_, send) = api.expect(Method::GET, SECRET).await;
        respond(send, 200, &secret);
    })
    .await;
    result.unwrap();
    assert_eq!(Authority::load(&paths).unwrap().ca_pem(), ca_pem);
}

#[tokio::test]
async fn the_loser_of_a_creation_race_takes_the_winners_ca() {
    let other = tempfile::tempdir().unwrap();
    let (winner, winner_ca) = existing_secret(other.path(), Some(NAMES));
    let (result, paths, _dir) = run_sync(&[NAMES], async |api| {
        let (_, send) = api.expect(Method::GET, SECRET).await;
        respond(send, 404, &status(404, "NotFound"));
        let (_, send) = api.expect(Method::POST, SECRETS).await;
        respond(send, 409, &status(409, "AlreadyExists"));
        let (_, send) = api.expect(Method::GET, SECRET).await;
        respond(send, 200, &winner);
    })
    .await;
    result.unwrap();
    assert_eq!(
        Authority::load(&paths).unwrap().ca_pem(),
        winner_ca,
        "the CA this replica made was dropped for the winner's"
    );
}

#[tokio::test]
async fn new_server_names_reissue_the_server_certificate_under_the_same_ca() {
    let other = tempfile::tempdir().unwrap();
    let (secret, ca_pem) = existing_secret(other.path(), Some(NAMES));
    let names = [NAMES, "collector.example.com"];
    let (patch, paths, _dir) = reissuing_start(&names, &secret).await;
    assert_eq!(
        patch["metadata"]["annotations"][SANS_ANNOTATION],
        names.join(",")
    );
    let server = std::fs::read(paths.server_cert()).unwrap();
    assert_eq!(patch["data"]["server.crt"], base64(&server));
    assert_ne!(patch["data"]["server.crt"], secret["data"]["server.crt"]);
    assert!(
        patch["data"].get("ca.key").is_none(),
        "the CA is not touched"
    );
    assert_eq!(Authority::load(&paths).unwrap().ca_pem(), ca_pem);
}

#[tokio::test]
async fn a_hand_made_secret_is_used_as_it_is_and_an_incomplete_one_is_named() {
    let other = tempfile::tempdir().unwrap();
    let (hand_made, _) = existing_secret(other.path(), None);
    let (result, _paths, _dir) = run_sync(&[NAMES, "other.example.com"], async |api| {
        let (_, send) = api.expect(Method::GET, SECRET).await;
        respond(send, 200, &hand_made);
    })
    .await;
    result.expect("no re-issue, no write for a Secret without the collector's annotation");

    let mut incomplete = hand_made.clone();
    incomplete["data"].as_object_mut().unwrap().remove("ca.key");
    let (result, _paths, _dir) = run_sync(&[NAMES], async |api| {
        let (_, send) = api.expect(Method::GET, SECRET).await;
        respond(send, 200, &incomplete);
    })
    .await;
    let error = format!("{:#}", result.unwrap_err());
    assert!(
        error.contains("dockermon/dockermon-pki") && error.contains("\"ca.key\""),
        "{error}"
    );
}

#[tokio::test]
async fn the_ca_certificate_alone_is_published_for_agents() {
    let (client, mut server) = kube_mock::client();
    let ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let (result, body) = tokio::join!(publish_ca(client, "dockermon", "dockermon-ca", ca), async {
        let (body, send) = server
                .expect(
                    Method::PATCH,
                    "/api/v1/namespaces/dockermon/configmaps/dockermon-ca?&force=true&fieldManager=dockermon-collector",
                )
                .await;
        respond(send, 200, &body);
        body
    });
    result.unwrap();
    assert_eq!(body["kind"], "ConfigMap");
    assert_eq!(
        body["data"],
        json!({"ca.crt": ca}),
        "nothing but the certificate"
    );
}

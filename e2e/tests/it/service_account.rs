//! Agents in a Kubernetes cluster enroll with their ServiceAccount token: the real agent
//! enrollment code against the collector's real agent listener (real TLS, real SQLite), the
//! collector reviewing tokens with kube's mock API service (no API server can run here),
//! which answers as an API server does: a pod's token names the pod's node; an expired
//! token is not authenticated.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dockermon_agent::uplink::{CollectorUrl, Enrollment, Identity, IdentityError};
use dockermon_collector::store::IssuedCertificate;
use dockermon_collector::transport::token_review::{
    NODE_NAME_EXTRA, ServiceAccountRef, TokenReviewer,
};
use dockermon_proto::{HostName, now_ns};
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

use crate::protocol::InProcessCollector;

/// Tokens the mock API server knows: token → the node of its pod, or `None` if expired.
const TOKENS: &[(&str, Option<&str>)] = &[
    ("token-of-node-1", Some("node-1")),
    ("token-of-node-9", Some("node-9")),
    ("expired", None),
];

/// The token file's content for a name of [`TOKENS`]: a JWT, as ServiceAccount tokens are.
fn jwt(name: &str) -> String {
    format!("eyJhbGciOiJSUzI1NiIsImtpZCI6ImRtIn0.{name}.c2lnbmF0dXJl")
}

/// What the API server answers for a review of `token`.
fn review_status(token: &str) -> Value {
    match TOKENS.iter().find(|(known, _)| jwt(known) == token) {
        Some((_, Some(node))) => json!({
            "authenticated": true,
            "audiences": ["dockermon"],
            "user": {
                "username": "system:serviceaccount:dockermon:dockermon-agent",
                "extra": {
                    "authentication.kubernetes.io/pod-name": ["dockermon-agent-x7k2p"],
                    NODE_NAME_EXTRA: [node],
                },
            },
        }),
        Some((_, None)) => json!({
            "authenticated": false,
            "error": "[invalid bearer token, service account token has expired, unknown]",
        }),
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
    }
}

/// A reviewer whose API server is the mock, answering every review for the test's life;
/// and how many tokens it was asked about.
fn reviewer() -> (TokenReviewer, Arc<AtomicUsize>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let reviews = Arc::new(AtomicUsize::new(0));
    let counted = reviews.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            counted.fetch_add(1, Ordering::SeqCst);
            assert_eq!(
                request.uri().path(),
                "/apis/authentication.k8s.io/v1/tokenreviews"
            );
            let body = request.into_body().collect_bytes().await.unwrap();
            let mut review: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(review["spec"]["audiences"], json!(["dockermon"]));
            review["status"] = review_status(review["spec"]["token"].as_str().unwrap());
            send.send_response(
                Response::builder()
                    .status(201)
                    .body(Body::from(serde_json::to_vec(&review).unwrap()))
                    .unwrap(),
            );
        }
    });
    let account: ServiceAccountRef = "dockermon/dockermon-agent".parse().unwrap();
    let reviewer = TokenReviewer::new(
        kube::Client::new(service, "default"),
        "dockermon".into(),
        account,
    );
    (reviewer, reviews)
}

/// An agent's state directory, its token file and the CA bundle it was given.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new(token: &str, ca_pem: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), format!("{}\n", jwt(token))).unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca_pem).unwrap();
        Node { dir }
    }

    async fn enroll(
        &self,
        collector: &InProcessCollector,
        as_host: &str,
    ) -> Result<Identity, IdentityError> {
        let identity = Identity::Managed {
            state_dir: self.dir.path().join("state"),
        };
        let enrollment = Enrollment::ServiceAccount {
            token_file: self.dir.path().join("token"),
            host: HostName::new(as_host).unwrap(),
            ca: self.dir.path().join("ca.crt"),
        };
        let url =
            CollectorUrl::parse(&format!("wss://localhost:{}", collector.address.port())).unwrap();
        identity.enroll(&url, &enrollment).await.map(|()| identity)
    }
}

async fn certificates(collector: &InProcessCollector, host: &str) -> usize {
    collector
        .store
        .live_certificates(&HostName::new(host).unwrap(), now_ns())
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_pods_token_gets_a_certificate_for_its_own_node_only() {
    let (reviewer, _) = reviewer();
    let collector = InProcessCollector::start_with(Some(reviewer)).await;
    let ca = collector.authority.ca_pem().to_owned();

    let node = Node::new("token-of-node-1", &ca);
    let identity = node.enroll(&collector, "node-1").await.unwrap();
    assert!(
        identity.enrolled(),
        "key, certificate and CA are in the state directory"
    );
    assert_eq!(certificates(&collector, "node-1").await, 1);

    // The same token asking for another node's name is refused, and nothing is issued.
    let error = node.enroll(&collector, "node-2").await.unwrap_err();
    assert!(
        matches!(&error, IdentityError::Refused(message) if message.contains("node \"node-1\"")),
        "{error}"
    );
    assert_eq!(certificates(&collector, "node-2").await, 0);

    let expired = Node::new("expired", &ca)
        .enroll(&collector, "node-1")
        .await
        .unwrap_err();
    assert!(
        matches!(&expired, IdentityError::Refused(message) if message.contains("expired")),
        "{expired}"
    );
    let unknown = Node::new("forged", &ca)
        .enroll(&collector, "node-3")
        .await
        .unwrap_err();
    assert!(matches!(unknown, IdentityError::Refused(_)), "{unknown}");
    assert_eq!(certificates(&collector, "node-3").await, 0);
    assert_eq!(
        certificates(&collector, "node-1").await,
        1,
        "refusals issue nothing"
    );
}

#[tokio::test]
async fn a_deleted_host_stays_refused_whatever_token_its_pod_has() {
    let (reviewer, _) = reviewer();
    let collector = InProcessCollector::start_with(Some(reviewer)).await;
    let node = Node::new("token-of-node-1", collector.authority.ca_pem());
    node.enroll(&collector, "node-1").await.unwrap();
    // As `host delete` does (the host never connected, so there is no data to remove).
    collector
        .store
        .delete_host(&HostName::new("node-1").unwrap(), now_ns())
        .await
        .unwrap();
    let error = node.enroll(&collector, "node-1").await.unwrap_err();
    assert!(
        matches!(&error, IdentityError::Refused(message) if message.contains("deleted")),
        "{error}"
    );
    assert!(!error.is_transient(), "a person's decision is not retried");
    assert_eq!(certificates(&collector, "node-1").await, 0);
}

#[tokio::test]
async fn a_node_replaces_its_own_agent_but_never_one_admitted_with_a_join_token() {
    let (reviewer, _) = reviewer();
    let collector = InProcessCollector::start_with(Some(reviewer)).await;
    let ca = collector.authority.ca_pem().to_owned();
    // node-1's agent enrolls, and again with a lost state directory: the second replaces it.
    Node::new("token-of-node-1", &ca)
        .enroll(&collector, "node-1")
        .await
        .unwrap();
    Node::new("token-of-node-1", &ca)
        .enroll(&collector, "node-1")
        .await
        .unwrap();
    assert_eq!(
        certificates(&collector, "node-1").await,
        1,
        "the first one was revoked"
    );

    // A machine outside the cluster, admitted by a person with a join token as "node-9",
    // offline for longer than its certificate's life: it still owns its name.
    let now = now_ns();
    let day = 86_400_000_000_000;
    collector
        .store
        .record_certificate(
            &IssuedCertificate {
                serial: "join-token-agent".into(),
                host: HostName::new("node-9").unwrap(),
                fingerprint: "f".into(),
                not_before_ns: now - 31 * day,
                not_after_ns: now - day,
            },
            false,
            now - 31 * day,
        )
        .await
        .unwrap();
    let error = Node::new("token-of-node-9", &ca)
        .enroll(&collector, "node-9")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, IdentityError::Refused(message) if message.contains("join token")),
        "{error}"
    );
    assert!(!error.is_transient());
    assert_eq!(
        certificates(&collector, "node-9").await,
        0,
        "nothing was issued"
    );
}

#[tokio::test]
async fn the_agent_trusts_only_the_ca_it_was_given() {
    let (reviewer, reviews) = reviewer();
    let collector = InProcessCollector::start_with(Some(reviewer)).await;
    let other_ca = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap()
        .pem();
    let error = Node::new("token-of-node-1", &other_ca)
        .enroll(&collector, "node-1")
        .await
        .unwrap_err();
    assert!(matches!(error, IdentityError::Tls(_)), "{error}");
    assert_eq!(
        reviews.load(Ordering::SeqCst),
        0,
        "the token never reached a collector the agent does not trust"
    );
    assert_eq!(certificates(&collector, "node-1").await, 0);
}

#[tokio::test]
async fn a_collector_without_token_review_says_so() {
    let collector = InProcessCollector::start_with(None).await;
    let error = Node::new("token-of-node-1", collector.authority.ca_pem())
        .enroll(&collector, "node-1")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, IdentityError::Refused(message) if message.contains("--agent-service-account")),
        "{error}"
    );
}

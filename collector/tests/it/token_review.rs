//! Enrollment by ServiceAccount token: the collector's review of an agent's token against
//! kube's mock API service (no API server can run here). The mock answers each TokenReview
//! as a real API server does for that kind of token: authenticated with the pod's node in
//! `extra`, or not authenticated with the API server's own error text.

use dockermon_collector::transport::token_review::{
    NODE_NAME_EXTRA, POD_NAME_EXTRA, ReviewRefusal, ServiceAccountRef, TokenReviewer,
};
use std::time::Duration;

use http::Method;
use serde_json::{Value, json};

use crate::kube_mock::{self, respond};

const REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews?";

fn account() -> ServiceAccountRef {
    "dockermon/dockermon-agent".parse().unwrap()
}

/// A token of the shape ServiceAccount tokens have (a JWT), told apart by `name`.
fn jwt(name: &str) -> String {
    format!("eyJhbGciOiJSUzI1NiIsImtpZCI6ImRtIn0.{name}.c2lnbmF0dXJl")
}

/// Reviews the token `jwt(name)` for node `asked`; the mock API server checks the request
/// and answers with `status` (HTTP `code`).
async fn review(name: &str, asked: &str, code: u16, status: Value) -> Result<(), ReviewRefusal> {
    let token = &jwt(name);
    let (client, mut server) = kube_mock::client();
    let reviewer = TokenReviewer::new(client, "dockermon".into(), account());
    let api = tokio::spawn(async move {
        let (body, send) = server.expect(Method::POST, REVIEWS).await;
        assert_eq!(body["kind"], "TokenReview", "{body}");
        assert_eq!(body["spec"]["audiences"], json!(["dockermon"]), "{body}");
        let token = body["spec"]["token"].as_str().unwrap().to_owned();
        let mut answer = body.clone();
        answer["status"] = status;
        if code == 200 {
            respond(send, code, &answer);
        } else {
            respond(
                send,
                code,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "message": "etcdserver: request timed out", "code": code}),
            );
        }
        token
    });
    let verdict = reviewer.node(token, asked).await;
    assert_eq!(
        api.await.unwrap(),
        *token,
        "the token reviewed is the agent's"
    );
    verdict
}

/// What the API server says of a valid projected token of a pod of `account` on `node`.
fn authenticated(account: &str, node: &str) -> Value {
    json!({
        "authenticated": true,
        "audiences": ["dockermon"],
        "user": {
            "username": format!("system:serviceaccount:{account}"),
            "uid": "7d1c3f2e-0000-4000-8000-000000000001",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:dockermon", "system:authenticated"],
            "extra": {
                "authentication.kubernetes.io/credential-id": ["JTI=0b6f8f8e"],
                POD_NAME_EXTRA: ["dockermon-agent-x7k2p"],
                "authentication.kubernetes.io/pod-uid": ["5a1e0c9d-0000-4000-8000-000000000002"],
                NODE_NAME_EXTRA: [node],
                "authentication.kubernetes.io/node-uid": ["9f3b2a1c-0000-4000-8000-000000000003"],
            },
        },
    })
}

fn refused(error: &str) -> Value {
    json!({"authenticated": false, "user": {}, "error": error})
}

#[tokio::test]
async fn a_valid_token_proves_its_own_node_only() {
    let valid = authenticated("dockermon:dockermon-agent", "node-1");
    review("token-of-node-1", "node-1", 200, valid.clone())
        .await
        .expect("a pod's token vouches for its node");
    match review("token-of-node-1", "node-2", 200, valid).await {
        Err(ReviewRefusal::OtherNode { asked, actual }) => {
            assert_eq!((asked.as_str(), actual.as_str()), ("node-2", "node-1"));
        }
        other => panic!("a token of node-1 asked for node-2: {other:?}"),
    }
}

#[tokio::test]
async fn tokens_for_another_audience_expired_or_of_another_account_are_refused() {
    // The API server's own error texts for these tokens.
    let other_audience = refused(
        "[invalid bearer token, token audiences [\"https://kubernetes.default.svc\"] is invalid for the target audiences [\"dockermon\"], unknown]",
    );
    let refusal = review("api-token", "node-1", 200, other_audience)
        .await
        .unwrap_err();
    assert_eq!(refusal.code(), "token_invalid");
    assert!(
        refusal
            .to_string()
            .contains("is invalid for the target audiences"),
        "{refusal}"
    );

    let expired = refused("[invalid bearer token, service account token has expired, unknown]");
    let refusal = review("old-token", "node-1", 200, expired)
        .await
        .unwrap_err();
    assert_eq!(refusal.code(), "token_invalid");
    assert!(refusal.to_string().contains("expired"), "{refusal}");

    // Authenticated, but for an audience list that lacks ours (an API server that ignored
    // the requested audiences): refused all the same.
    let mut wrong_audiences = authenticated("dockermon:dockermon-agent", "node-1");
    wrong_audiences["audiences"] = json!(["https://kubernetes.default.svc"]);
    let refusal = review("t", "node-1", 200, wrong_audiences)
        .await
        .unwrap_err();
    assert_eq!(refusal.code(), "token_invalid");

    let other_account = authenticated("default:default", "node-1");
    match review("t", "node-1", 200, other_account).await {
        Err(ReviewRefusal::OtherAccount { expected, actual }) => {
            assert_eq!(expected, "dockermon/dockermon-agent");
            assert_eq!(actual, "system:serviceaccount:default:default");
        }
        other => panic!("another account's token: {other:?}"),
    }

    let mut no_node = authenticated("dockermon:dockermon-agent", "node-1");
    no_node["user"]["extra"]
        .as_object_mut()
        .unwrap()
        .remove(NODE_NAME_EXTRA);
    let refusal = review("t", "node-1", 200, no_node).await.unwrap_err();
    assert_eq!(refusal.code(), "token_no_node");

    // A token bound to a node, not a pod (`kubectl create token --bound-object-kind Node`):
    // it names a node but proves no pod runs there.
    let mut node_bound = authenticated("dockermon:dockermon-agent", "node-1");
    node_bound["user"]["extra"]
        .as_object_mut()
        .unwrap()
        .remove(POD_NAME_EXTRA);
    let refusal = review("t", "node-1", 200, node_bound).await.unwrap_err();
    assert_eq!(refusal.code(), "token_no_node");
}

#[tokio::test]
async fn what_cannot_be_a_service_account_token_is_refused_without_asking() {
    // The mock API server is gone: a review would come back Unavailable, not refused.
    let (client, server) = kube_mock::client();
    drop(server);
    let reviewer = TokenReviewer::new(client, "dockermon".into(), account());
    for token in [
        String::new(),
        "token-of-node-1".into(),
        "a.b".into(),
        "a..c".into(),
        "a.b.c.d".into(),
        "a.b c.d".into(),
        "eyJ.eyJ+/=.sig".into(),
        jwt(&"x".repeat(16 * 1024)),
    ] {
        match reviewer.node(&token, "node-1").await {
            Err(ReviewRefusal::NotAuthenticated { reason, .. }) => {
                assert!(reason.contains("not a ServiceAccount token"), "{reason}")
            }
            other => panic!("{:.40}: {other:?}", token),
        }
    }
}

#[tokio::test]
async fn reviews_in_flight_are_bounded_and_the_rest_are_told_to_come_back() {
    let (client, mut server) = kube_mock::client();
    let reviewer = TokenReviewer::new(client, "dockermon".into(), account())
        .with_limit(1, Duration::from_millis(200));
    let first = tokio::spawn({
        let reviewer = reviewer.clone();
        async move { reviewer.node(&jwt("node-1-token"), "node-1").await }
    });
    // The first review is with the API server, which has not answered yet.
    let (body, send) = server.expect(Method::POST, REVIEWS).await;
    let refusal = reviewer
        .node(&jwt("node-2-token"), "node-2")
        .await
        .unwrap_err();
    assert!(
        matches!(&refusal, ReviewRefusal::Unavailable(reason) if reason.contains("too many")),
        "{refusal:?}"
    );
    let mut answer = body;
    answer["status"] = authenticated("dockermon:dockermon-agent", "node-1");
    respond(send, 200, &answer);
    first
        .await
        .unwrap()
        .expect("the review in flight completes");

    // Its review done, the next one is made.
    let second = tokio::spawn({
        let reviewer = reviewer.clone();
        async move { reviewer.node(&jwt("node-2-token"), "node-2").await }
    });
    let (mut body, send) = server.expect(Method::POST, REVIEWS).await;
    body["status"] = authenticated("dockermon:dockermon-agent", "node-2");
    respond(send, 200, &body);
    second.await.unwrap().expect("a free review is made");
}

#[tokio::test]
async fn an_api_server_that_fails_is_unavailable_not_a_refusal() {
    let refusal = review("t", "node-1", 503, Value::Null).await.unwrap_err();
    assert!(
        matches!(refusal, ReviewRefusal::Unavailable(_)),
        "{refusal:?}"
    );
    assert_eq!(refusal.code(), "unavailable");
}

#[test]
fn service_accounts_are_namespace_slash_name() {
    let account: ServiceAccountRef = "dockermon/dockermon-agent".parse().unwrap();
    assert_eq!(
        account.username(),
        "system:serviceaccount:dockermon:dockermon-agent"
    );
    for bad in [
        "dockermon",
        "/agent",
        "dockermon/",
        "Dockermon/agent",
        "a/b/c",
        "a b/c",
    ] {
        assert!(
            bad.parse::<ServiceAccountRef>().is_err(),
            "{bad} was accepted"
        );
    }
}

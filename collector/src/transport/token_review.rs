//! Workload identity for agents in a Kubernetes cluster: an agent of the chart's DaemonSet
//! enrolls with its projected, audience-bound ServiceAccount token instead of a join token,
//! and the collector asks the API server who that token belongs to (the TokenReview API),
//! as service meshes do for their workloads.
//!
//! A token is accepted when the API server says it is authenticated for our audience, belongs
//! to the one ServiceAccount agents run as (`--agent-service-account NAMESPACE/NAME`), and
//! was issued to a pod on the node whose name the agent asks for: the node name comes from
//! the token's own claims (`authentication.kubernetes.io/node-name` in the review's `extra`,
//! which Kubernetes adds to pod-bound tokens from 1.30 on; the token must be bound to a pod),
//! never from the request. So a
//! stolen token gets a certificate for its own node only, and only until it expires (an hour
//! for the chart's projected tokens).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::Semaphore;

/// The key of the reviewed user's `extra` that names the node of the token's pod.
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";
/// The key that names the token's pod: present only for tokens bound to a pod, which a
/// node-bound token (`kubectl create token --bound-object-kind Node`) is not.
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";

/// The ServiceAccount agents run as: `NAMESPACE/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountRef {
    pub namespace: String,
    pub name: String,
}

impl ServiceAccountRef {
    /// The user name the API server gives the account's tokens:
    /// `system:serviceaccount:NAMESPACE:NAME`.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

impl std::str::FromStr for ServiceAccountRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let valid = |part: &str| {
            !part.is_empty()
                && part.len() <= 253
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        match text.split_once('/') {
            Some((namespace, name)) if valid(namespace) && valid(name) => Ok(ServiceAccountRef {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            }),
            _ => Err(format!(
                "{text:?} is not NAMESPACE/NAME of a ServiceAccount (e.g. dockermon/dockermon-agent)"
            )),
        }
    }
}

impl fmt::Display for ServiceAccountRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Why a token gets no certificate.
#[derive(Debug, thiserror::Error)]
pub enum ReviewRefusal {
    /// The API server could not be asked; the agent should try again later.
    #[error("the Kubernetes API cannot review the token now: {0}")]
    Unavailable(String),
    /// Not valid for this audience, expired, or not a token at all (the API server's reason).
    #[error("the ServiceAccount token is not valid for audience {audience:?}: {reason}")]
    NotAuthenticated { audience: String, reason: String },
    #[error("the token belongs to {actual}, not to the agents' ServiceAccount {expected}")]
    OtherAccount { expected: String, actual: String },
    #[error("the token was issued to a pod on node {actual:?}, not on {asked:?}")]
    OtherNode { asked: String, actual: String },
    #[error(
        "the token names no pod and node (`{POD_NAME_EXTRA}`, `{NODE_NAME_EXTRA}`): use a projected ServiceAccount token of a pod, on Kubernetes 1.30 or newer"
    )]
    NoNode,
}

impl ReviewRefusal {
    /// The machine-readable code of the enrollment error answer.
    pub fn code(&self) -> &'static str {
        match self {
            ReviewRefusal::Unavailable(_) => "unavailable",
            ReviewRefusal::NotAuthenticated { .. } => "token_invalid",
            ReviewRefusal::OtherAccount { .. } => "token_other_account",
            ReviewRefusal::OtherNode { .. } => "token_other_node",
            ReviewRefusal::NoNode => "token_no_node",
        }
    }
}

/// At most this many TokenReviews in flight. Enrollment is unauthenticated: unbounded,
/// anyone who reaches the agent port could have the collector load the API server with a
/// review per request. A DaemonSet's agents need one review each, at their first start.
pub const CONCURRENT_REVIEWS: usize = 8;
/// How long an enrollment waits for a free review before it is told to come back (503,
/// which agents retry with backoff).
pub const REVIEW_WAIT: Duration = Duration::from_secs(5);
/// The longest token sent for review: projected ServiceAccount tokens are about 1 KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Reviews agents' ServiceAccount tokens with the API server, [`CONCURRENT_REVIEWS`] at a
/// time.
#[derive(Clone)]
pub struct TokenReviewer {
    client: Client,
    audience: String,
    account: ServiceAccountRef,
    reviews: Arc<Semaphore>,
    wait: Duration,
}

impl TokenReviewer {
    pub fn new(client: Client, audience: String, account: ServiceAccountRef) -> Self {
        TokenReviewer {
            client,
            audience,
            account,
            reviews: Arc::new(Semaphore::new(CONCURRENT_REVIEWS)),
            wait: REVIEW_WAIT,
        }
    }

    /// Other bounds than [`CONCURRENT_REVIEWS`] and [`REVIEW_WAIT`] (tests).
    pub fn with_limit(mut self, concurrent: usize, wait: Duration) -> Self {
        self.reviews = Arc::new(Semaphore::new(concurrent));
        self.wait = wait;
        self
    }

    /// The node `token` proves its bearer runs on, if that is `asked`. One `create` of a
    /// `TokenReview` (cluster-scoped; the collector's ClusterRole allows it), unless the
    /// token cannot be a ServiceAccount token (a JWT of at most [`MAX_TOKEN_BYTES`]), which
    /// is refused without asking. `Unavailable` when the API server fails or no review is
    /// free within the wait.
    pub async fn node(&self, token: &str, asked: &str) -> Result<(), ReviewRefusal> {
        if !is_jwt(token) {
            return Err(ReviewRefusal::NotAuthenticated {
                audience: self.audience.clone(),
                reason: format!(
                    "not a ServiceAccount token (a JWT of at most {MAX_TOKEN_BYTES} bytes)"
                ),
            });
        }
        let _review = tokio::time::timeout(self.wait, self.reviews.acquire())
            .await
            .map_err(|_| ReviewRefusal::Unavailable("too many token reviews in flight".into()))?
            .expect("the semaphore is never closed");
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..Default::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|error| ReviewRefusal::Unavailable(error.to_string()))?;
        let status = reviewed.status.unwrap_or_default();
        verdict(&status, &self.audience, &self.account, asked)
    }
}

/// Whether `token` has the shape of a JWT (three non-empty base64url parts), as every
/// ServiceAccount token does, and is no longer than [`MAX_TOKEN_BYTES`].
fn is_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    token.len() <= MAX_TOKEN_BYTES
        && parts.len() == 3
        && parts.iter().all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The decision on an API server's review of a token, for an agent asking for node `asked`.
pub fn verdict(
    status: &TokenReviewStatus,
    audience: &str,
    account: &ServiceAccountRef,
    asked: &str,
) -> Result<(), ReviewRefusal> {
    let for_us = status
        .audiences
        .as_ref()
        .is_some_and(|audiences| audiences.iter().any(|a| a == audience));
    if status.authenticated != Some(true) || !for_us {
        return Err(ReviewRefusal::NotAuthenticated {
            audience: audience.to_owned(),
            reason: status
                .error
                .clone()
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "not issued for this audience".to_owned()),
        });
    }
    let user = status.user.clone().unwrap_or_default();
    let username = user.username.unwrap_or_default();
    if username != account.username() {
        return Err(ReviewRefusal::OtherAccount {
            expected: account.to_string(),
            actual: username,
        });
    }
    let claim = |key: &str| {
        user.extra
            .as_ref()
            .and_then(|extra| extra.get(key))
            .cloned()
            .unwrap_or_default()
    };
    if claim(POD_NAME_EXTRA).len() != 1 {
        return Err(ReviewRefusal::NoNode);
    }
    match claim(NODE_NAME_EXTRA).as_slice() {
        [node] if node == asked => Ok(()),
        [node] => Err(ReviewRefusal::OtherNode {
            asked: asked.to_owned(),
            actual: node.clone(),
        }),
        _ => Err(ReviewRefusal::NoNode),
    }
}

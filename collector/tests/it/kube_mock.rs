//! kube's mock API service (tower-test), the API server of these tests: no real one can run
//! on these machines. Each test holds the server's side of one conversation and checks each
//! request the client makes before answering as an API server would.

use std::time::Duration;

use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::Value;

/// A client whose every request goes to the returned [`ApiServer`].
pub(crate) fn client() -> (Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer(handle))
}

/// The API server's side of the conversation.
pub(crate) struct ApiServer(tower_test::mock::Handle<Request<Body>, Response<Body>>);

pub(crate) type Responder = tower_test::mock::SendResponse<Response<Body>>;

impl ApiServer {
    /// The operator's next request: it must be `method` on `uri` (path and query).
    pub(crate) async fn expect(&mut self, method: Method, uri: &str) -> (Value, Responder) {
        let (request, send) = self.next(&method, uri).await;
        assert_eq!(
            (request.method(), request.uri().to_string().as_str()),
            (&method, uri),
            "unexpected request"
        );
        Self::read(request, send).await
    }

    /// As [`ApiServer::expect`], for a request whose path and query start with `prefix`
    /// (a query that names a library's field manager, say).
    pub(crate) async fn expect_prefix(
        &mut self,
        method: Method,
        prefix: &str,
    ) -> (Value, Responder) {
        let (request, send) = self.next(&method, prefix).await;
        let uri = request.uri().to_string();
        assert!(
            request.method() == method && uri.starts_with(prefix),
            "unexpected request {} {uri}; expected {method} {prefix}…",
            request.method()
        );
        Self::read(request, send).await
    }

    async fn next(&mut self, method: &Method, uri: &str) -> (Request<Body>, Responder) {
        tokio::time::timeout(Duration::from_secs(10), self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request came; expected {method} {uri}"))
            .expect("the client is gone")
    }

    async fn read(request: Request<Body>, send: Responder) -> (Value, Responder) {
        let body = request.into_body().collect_bytes().await.unwrap();
        let value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap()
        };
        (value, send)
    }
}

pub(crate) fn respond(send: Responder, status: u16, body: &Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

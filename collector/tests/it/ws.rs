//! The WebSocket API with real clients over real sockets, on SQLite (the API's logic does
//! not depend on the backend; the store's sessions are tested on both in `api`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dockermon_collector::api::ApiState;
use dockermon_collector::live::LiveBatch;
use dockermon_collector::store::{HostId, Role};
use dockermon_collector::ws::{Feed, WsSettings, WsState, router};
use dockermon_proto::{HostName, Record};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use tokio_util::sync::CancellationToken;

use crate::fixtures::{NOW, S, event, sample};
use crate::support::{TestDb, WAIT, api_state, user};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Server {
    address: SocketAddr,
    feed: Feed,
    api: ApiState,
    shutdown: CancellationToken,
    _db: TestDb,
}

impl Server {
    async fn start(token_ttl: Duration, settings: WsSettings) -> Server {
        let db = TestDb::sqlite().await;
        let api = api_state(db.store.clone(), token_ttl, None);
        let feed = Feed::default();
        let shutdown = CancellationToken::new();
        let state = WsState {
            api: api.clone(),
            feed: feed.clone(),
            settings: Arc::new(settings),
            shutdown: shutdown.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, router(state))
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
                .unwrap();
        });
        Server {
            address,
            feed,
            api,
            shutdown,
            _db: db,
        }
    }

    async fn client(&self) -> Client {
        let url = format!("ws://{}/ws", self.address);
        connect_async(url).await.unwrap().0
    }

    /// An access token for a new user, and the session it names.
    async fn token(&self, email: &str, role: Role) -> (String, String) {
        let id = user(&self.api.store, email, role).await;
        let session = format!("session-of-{id}");
        let now = dockermon_proto::now_ns();
        self.api
            .store
            .create_session(&session, id, "hash", now, now + 3600 * S)
            .await
            .unwrap();
        let token = self.api.tokens.issue(
            id,
            &session,
            role,
            dockermon_collector::api::auth::tokens::unix_now(),
        );
        (token, session)
    }

    /// A client that has identified.
    async fn identified(&self, email: &str) -> Client {
        let (token, _) = self.token(email, Role::Viewer).await;
        let mut client = self.client().await;
        send(&mut client, json!({"type": "identify", "token": token})).await;
        assert_eq!(next(&mut client).await["type"], "identified");
        client
    }

    fn publish(&self, host: i64, records: Vec<Record>) {
        self.feed.publish(&LiveBatch {
            host: HostId(host),
            host_name: HostName::new(format!("docker-{host}")).unwrap(),
            records,
            dropped: Default::default(),
        });
    }
}

async fn send(client: &mut Client, message: Value) {
    client
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON message (pings are answered by the client library and skipped).
async fn next(client: &mut Client) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, client.next())
            .await
            .expect("a message in time")
            .expect("the connection is open")
            .expect("a valid frame");
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Asserts nothing but the answer to a ping is waiting: a round trip proves that anything
/// sent before it would have arrived first.
async fn assert_nothing_else(client: &mut Client) {
    send(client, json!({"type": "ping"})).await;
    let answer = next(client).await;
    assert_eq!(
        answer["type"], "pong",
        "expected nothing before the pong, got {answer}"
    );
}

/// How the connection ended: the last error message's code, and the close code.
async fn ending(client: &mut Client) -> (Option<String>, Option<u16>) {
    let mut error = None;
    loop {
        match tokio::time::timeout(WAIT, client.next())
            .await
            .expect("the connection ends in time")
        {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(text.as_str()).unwrap();
                if value["type"] == "error" {
                    error = value["code"].as_str().map(str::to_owned);
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return (error, frame.map(|f| u16::from(f.code)));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (error, None),
        }
    }
}

fn events(host_id: &str, count: usize) -> Vec<Record> {
    (0..count)
        .map(|i| Record::Event(event(NOW + i as i64, "start", host_id)))
        .collect()
}

#[tokio::test]
async fn only_ping_and_identify_work_before_identify() {
    let server = Server::start(Duration::from_secs(60), WsSettings::default()).await;
    let mut client = server.client().await;
    send(&mut client, json!({"type": "ping"})).await;
    assert_eq!(next(&mut client).await["type"], "pong");

    send(&mut client, json!({"type": "subscribe", "topic": "events"})).await;
    let refused = next(&mut client).await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("unauthorized"))
    );
    server.publish(1, events("a", 1));
    assert_nothing_else(&mut client).await;

    send(&mut client, json!({"type": "identify"})).await;
    assert_eq!(
        next(&mut client).await["code"],
        "bad_message",
        "a token is required"
    );
    send(
        &mut client,
        json!({"type": "subscribe", "topic": "everything"}),
    )
    .await;
    assert_eq!(next(&mut client).await["code"], "bad_message");

    // A bad token ends the connection.
    send(
        &mut client,
        json!({"type": "identify", "token": "forged.token.here"}),
    )
    .await;
    let (error, code) = ending(&mut client).await;
    assert_eq!(error.as_deref(), Some("unauthorized"));
    assert_eq!(code, Some(1008));

    // A connection that never identifies is closed after the deadline.
    let settings = WsSettings {
        identify_within: Duration::from_millis(300),
        ..WsSettings::default()
    };
    let server = Server::start(Duration::from_secs(60), settings).await;
    let mut idle = server.client().await;
    let (error, code) = ending(&mut idle).await;
    assert_eq!((error.as_deref(), code), (Some("unauthorized"), Some(1008)));
}

#[tokio::test]
async fn subscribers_get_what_they_subscribed_to_and_nothing_else() {
    let server = Server::start(Duration::from_secs(60), WsSettings::default()).await;
    let host = server
        .api
        .store
        .register_host(&HostName::new("docker-1").unwrap())
        .await
        .unwrap();
    assert_eq!(host, HostId(1));
    let mut client = server.identified("viewer@example.com").await;
    // A host that does not exist is an error, not a subscription that never delivers.
    send(
        &mut client,
        json!({"type": "subscribe", "topic": "events", "host": 999}),
    )
    .await;
    let refused = next(&mut client).await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("not_found")),
        "{refused}"
    );
    send(
        &mut client,
        json!({"type": "subscribe", "topic": "events", "host": 1}),
    )
    .await;
    let subscribed = next(&mut client).await;
    assert_eq!(
        (subscribed["type"].as_str(), subscribed["host"].as_i64()),
        (Some("subscribed"), Some(1))
    );

    server.publish(2, events("b", 1));
    server.publish(
        1,
        vec![Record::Stats(sample("a", "web", NOW, Some(5.0), 100))],
    );
    server.publish(1, events("a", 3));
    let update = next(&mut client).await;
    assert_eq!(update["type"], "events");
    assert_eq!(update["host"], 1);
    assert_eq!(update["host_name"], "docker-1");
    assert_eq!(update["items"].as_array().unwrap().len(), 3);
    assert_eq!(update["items"][2]["time_ns"], NOW + 2);
    assert_nothing_else(&mut client).await;

    // Fleet-wide stats, from any host.
    send(&mut client, json!({"type": "subscribe", "topic": "stats"})).await;
    assert_eq!(next(&mut client).await["type"], "subscribed");
    server.publish(
        7,
        vec![Record::Stats(sample("c", "db", NOW, Some(42.5), 100))],
    );
    let update = next(&mut client).await;
    assert_eq!(
        (update["type"].as_str(), update["host"].as_i64()),
        (Some("stats"), Some(7))
    );
    assert_eq!(update["items"][0]["rates"]["cpu_percent"], 42.5);

    send(
        &mut client,
        json!({"type": "unsubscribe", "topic": "events", "host": 1}),
    )
    .await;
    assert_eq!(next(&mut client).await["type"], "unsubscribed");
    server.publish(1, events("a", 1));
    assert_nothing_else(&mut client).await;
}

#[tokio::test]
async fn expired_tokens_and_ended_sessions_close_the_connection() {
    let settings = WsSettings {
        session_check: Duration::from_millis(100),
        ..WsSettings::default()
    };
    let server = Server::start(Duration::from_secs(2), settings).await;
    let mut client = server.identified("short@example.com").await;
    let started = std::time::Instant::now();
    let (error, code) = ending(&mut client).await;
    assert_eq!(
        (error.as_deref(), code),
        (Some("token_expired"), Some(1008))
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // Identifying again with a fresh token keeps a connection past the first expiry.
    let (token, _) = server.token("renewing@example.com", Role::Viewer).await;
    let mut client = server.client().await;
    send(&mut client, json!({"type": "identify", "token": token})).await;
    let first = next(&mut client).await["expires_at"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let id = server
        .api
        .store
        .credentials("renewing@example.com")
        .await
        .unwrap()
        .unwrap()
        .user
        .id;
    let fresh = server.api.tokens.issue(
        id,
        &format!("session-of-{id}"),
        Role::Viewer,
        dockermon_collector::api::auth::tokens::unix_now(),
    );
    send(&mut client, json!({"type": "identify", "token": fresh})).await;
    let second = next(&mut client).await["expires_at"].as_u64().unwrap();
    assert!(second > first, "{second} > {first}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_nothing_else(&mut client).await;

    // Logging out elsewhere ends the connection.
    let (token, session) = server.token("leaving@example.com", Role::Viewer).await;
    let mut client = server.client().await;
    send(&mut client, json!({"type": "identify", "token": token})).await;
    assert_eq!(next(&mut client).await["type"], "identified");
    server
        .api
        .store
        .revoke_session(&session, dockermon_proto::now_ns())
        .await
        .unwrap();
    let (error, code) = ending(&mut client).await;
    assert_eq!(
        (error.as_deref(), code),
        (Some("session_ended"), Some(1008))
    );
}

#[tokio::test]
async fn a_slow_client_is_dropped_and_the_others_are_not() {
    let settings = WsSettings {
        send_queue: 16,
        ..WsSettings::default()
    };
    let server = Server::start(Duration::from_secs(60), settings).await;
    let mut fast = server.identified("fast@example.com").await;
    let mut slow = server.identified("slow@example.com").await;
    for client in [&mut fast, &mut slow] {
        send(client, json!({"type": "subscribe", "topic": "stats"})).await;
        assert_eq!(next(client).await["type"], "subscribed");
    }
    // Sweeps of 500 samples (about 300 KB each), faster than the slow client reads: it
    // reads nothing at all. The fast one reads every one as it comes.
    let sweep: Vec<Record> = (0..500)
        .map(|i| {
            Record::Stats(sample(
                &format!("{i:064}"),
                &format!("c{i}"),
                NOW,
                Some(1.0),
                100,
            ))
        })
        .collect();
    let sweeps = 200;
    let reader = tokio::spawn(async move {
        for _ in 0..sweeps {
            let update = next(&mut fast).await;
            assert_eq!(update["items"].as_array().unwrap().len(), 500);
        }
        fast
    });
    for _ in 0..sweeps {
        server.publish(3, sweep.clone());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut fast = tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
    assert_nothing_else(&mut fast).await;

    // The slow one was cut off: after what was in flight, its connection ends.
    let mut received = 0;
    let ended = loop {
        match tokio::time::timeout(WAIT, slow.next())
            .await
            .expect("the slow client is closed")
        {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(text.as_str()).unwrap();
                if value["type"] == "error" {
                    break value["code"].as_str().map(str::to_owned);
                }
                received += 1;
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
            Some(Ok(_)) => {}
        }
    };
    assert!(
        received < sweeps,
        "the slow client got everything ({received})"
    );
    assert!(
        matches!(ended.as_deref(), Some("too_slow") | None),
        "{ended:?}"
    );
    // And the server goes on serving.
    let mut late = server.identified("late@example.com").await;
    assert_nothing_else(&mut late).await;
}

#[tokio::test]
async fn oversized_messages_and_silent_clients_are_closed() {
    let settings = WsSettings {
        ping_every: Duration::from_millis(100),
        dead_after: Duration::from_millis(600),
        ..WsSettings::default()
    };
    let server = Server::start(Duration::from_secs(60), settings).await;
    let mut client = server.identified("big@example.com").await;
    let huge = json!({"type": "identify", "token": "x".repeat(64 * 1024)});
    let _ = client.send(Message::Text(huge.to_string().into())).await;
    let (_, code) = ending(&mut client).await;
    assert_ne!(code, Some(1000), "closed as a violation, not normally");

    // A client that never reads never answers pings: closed well within the deadline.
    let mut silent = server.identified("silent@example.com").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reading = std::time::Instant::now();
    ending(&mut silent).await;
    assert!(
        reading.elapsed() < Duration::from_millis(500),
        "already closed by the server: {:?}",
        reading.elapsed()
    );
    // The server is fine.
    let mut other = server.identified("other@example.com").await;
    assert_nothing_else(&mut other).await;

    server.shutdown.cancel();
    let (error, code) = ending(&mut other).await;
    assert_eq!(
        (error.as_deref(), code),
        (Some("shutting_down"), Some(1001))
    );
}

/// A REST request to `api`'s handlers; its status.
async fn rest(api: &ApiState, method: &str, path: &str, token: &str, body: Option<Value>) -> u16 {
    use tower::ServiceExt;
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        ))
        .unwrap();
    let response = dockermon_collector::api::router(api.clone())
        .oneshot(request)
        .await
        .unwrap();
    response.status().as_u16()
}

/// Subscribes `client` to every host's stats and checks one arrives.
async fn watching_stats(server: &Server, client: &mut Client) {
    send(client, json!({"type": "subscribe", "topic": "stats"})).await;
    assert_eq!(next(client).await["type"], "subscribed");
    server.publish(
        1,
        vec![Record::Stats(sample("c1", "web", NOW, Some(1.0), 100))],
    );
    assert_eq!(next(client).await["type"], "stats");
}

#[tokio::test]
async fn access_that_ends_or_shrinks_closes_live_connections_at_once() {
    // The periodic check is far away: only the announcement can close them in time.
    let settings = WsSettings {
        session_check: Duration::from_secs(3600),
        ..WsSettings::default()
    };
    let server = Server::start(Duration::from_secs(900), settings).await;
    let prompt = Duration::from_secs(5);

    // Logout over REST, with the session the socket identified with.
    let (token, _) = server.token("leaving@example.com", Role::Viewer).await;
    let mut client = server.client().await;
    send(&mut client, json!({"type": "identify", "token": token})).await;
    assert_eq!(next(&mut client).await["type"], "identified");
    watching_stats(&server, &mut client).await;
    let started = std::time::Instant::now();
    assert_eq!(
        rest(&server.api, "POST", "/api/v1/auth/logout", &token, None).await,
        204
    );
    let (error, code) = ending(&mut client).await;
    assert_eq!(
        (error.as_deref(), code),
        (Some("session_ended"), Some(1008))
    );
    assert!(started.elapsed() < prompt, "{:?}", started.elapsed());

    // An admin demotes an operator, then disables a viewer.
    let (admin, _) = server.token("boss@example.com", Role::Admin).await;
    let (operator, _) = server.token("ops@example.com", Role::Operator).await;
    let mut demoted = server.client().await;
    send(&mut demoted, json!({"type": "identify", "token": operator})).await;
    assert_eq!(next(&mut demoted).await["type"], "identified");
    watching_stats(&server, &mut demoted).await;
    let (viewer, _) = server.token("eyes@example.com", Role::Viewer).await;
    let mut disabled = server.client().await;
    send(&mut disabled, json!({"type": "identify", "token": viewer})).await;
    assert_eq!(next(&mut disabled).await["type"], "identified");
    let ids = |email: &'static str| {
        let store = server.api.store.clone();
        async move { store.credentials(email).await.unwrap().unwrap().user.id }
    };
    let ops_id = ids("ops@example.com").await;
    let started = std::time::Instant::now();
    let path = format!("/api/v1/users/{ops_id}");
    let status = rest(
        &server.api,
        "PATCH",
        &path,
        &admin,
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(status, 200);
    let (error, code) = ending(&mut demoted).await;
    assert_eq!(
        (error.as_deref(), code),
        (Some("access_changed"), Some(1008))
    );
    assert!(started.elapsed() < prompt, "{:?}", started.elapsed());
    // Someone else's change leaves a connection alone.
    assert_nothing_else(&mut disabled).await;

    let eyes_id = ids("eyes@example.com").await;
    let path = format!("/api/v1/users/{eyes_id}");
    let status = rest(
        &server.api,
        "PATCH",
        &path,
        &admin,
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(status, 200);
    let (error, code) = ending(&mut disabled).await;
    assert_eq!(
        (error.as_deref(), code),
        (Some("session_ended"), Some(1008))
    );
}

#[tokio::test]
async fn a_logout_on_one_replica_closes_the_sessions_sockets_on_another() {
    // Two replicas on one database and one live bus.
    let settings = WsSettings {
        session_check: Duration::from_secs(3600),
        ..WsSettings::default()
    };
    let server = Server::start(Duration::from_secs(900), settings).await;
    let bus = dockermon_collector::live::LiveBus::default();
    let here = Arc::new(dockermon_collector::api::auth::SessionCache::new(
        bus.clone(),
    ));
    let there = ApiState {
        sessions: Arc::new(dockermon_collector::api::auth::SessionCache::new(bus)),
        ..server.api.clone()
    };
    let cancel = CancellationToken::new();
    tokio::spawn({
        let (here, cancel) = (here.clone(), cancel.clone());
        async move { here.follow(cancel).await }
    });
    let here_api = ApiState {
        sessions: here,
        ..server.api.clone()
    };
    // The socket is served with `here_api`'s cache.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let state = WsState {
        api: here_api,
        feed: server.feed.clone(),
        settings: Arc::new(WsSettings {
            session_check: Duration::from_secs(3600),
            ..WsSettings::default()
        }),
        shutdown: cancel.clone(),
    };
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });

    let (token, _) = server.token("roaming@example.com", Role::Viewer).await;
    let (mut client, _) = connect_async(format!("ws://{address}/ws")).await.unwrap();
    send(&mut client, json!({"type": "identify", "token": token})).await;
    assert_eq!(next(&mut client).await["type"], "identified");
    let started = std::time::Instant::now();
    assert_eq!(
        rest(&there, "POST", "/api/v1/auth/logout", &token, None).await,
        204
    );
    let (error, code) = ending(&mut client).await;
    assert_eq!(
        (error.as_deref(), code),
        (Some("session_ended"), Some(1008))
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    cancel.cancel();
}

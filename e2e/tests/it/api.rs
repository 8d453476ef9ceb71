//! People acting on real containers through the API: the request goes to the host's agent
//! over the command channel, Docker changes the container's real state, and the activity
//! log says who did it.

use serde_json::{Value, json};

use dockermon_e2e::docker::{Cleanup, TEST_IMAGE, docker, unique_name};
use dockermon_e2e::fleet::WAIT;
use dockermon_e2e::wait::eventually;

use crate::support::{ADMIN_PASSWORD, Setup, call, sign_in};

pub(crate) async fn state_of(name: &str) -> String {
    docker(&["inspect", "-f", "{{.State.Status}}", name])
        .await
        .unwrap()
}

#[tokio::test]
async fn an_operator_stops_and_starts_a_real_container_and_the_log_says_who() {
    let setup = Setup::new().await;
    let _agent = setup.agent("host-act").await;
    let admin = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    for (email, role) in [
        ("ops@example.com", "operator"),
        ("eyes@example.com", "viewer"),
    ] {
        let body = json!({"email": email, "password": "a long enough password", "role": role});
        let (status, user) = call(&setup, "POST", "/api/v1/users", Some(&admin), Some(body)).await;
        assert_eq!(status, 201, "{user}");
    }
    let operator = sign_in(&setup, "ops@example.com", "a long enough password").await;
    let viewer = sign_in(&setup, "eyes@example.com", "a long enough password").await;

    let mut cleanup = Cleanup::default();
    let name = cleanup.container(&unique_name("acted-on"));
    docker(&["run", "-d", "--name", &name, TEST_IMAGE, "sleep", "3600"])
        .await
        .unwrap();
    let setup_ref = &setup;
    let list = format!("/api/v1/containers?name={name}");
    let key = eventually(WAIT, "the container in the API", || {
        let (list, viewer) = (list.clone(), viewer.clone());
        async move {
            let (_, page) = call(setup_ref, "GET", &list, Some(&viewer), None).await;
            page["items"][0]["id"].as_i64()
        }
    })
    .await
    .unwrap();
    let act = |action: &str| format!("/api/v1/containers/{key}/actions/{action}");

    // A viewer may look but not act.
    let (status, refused) = call(&setup, "POST", &act("stop"), Some(&viewer), None).await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(state_of(&name).await, "running");

    let (status, done) = call(&setup, "POST", &act("stop"), Some(&operator), None).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["action"], "stop");
    assert_eq!(state_of(&name).await, "exited");

    let (status, done) = call(&setup, "POST", &act("start"), Some(&operator), None).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(state_of(&name).await, "running");
    let (status, _) = call(&setup, "POST", &act("pause"), Some(&operator), None).await;
    assert_eq!(status, 200);
    assert_eq!(state_of(&name).await, "paused");
    let (status, _) = call(&setup, "POST", &act("unpause"), Some(&operator), None).await;
    assert_eq!(status, 200);
    assert_eq!(state_of(&name).await, "running");

    // `remove` is outside the agent's default allowlist: refused by the agent itself.
    let (status, refused) = call(&setup, "POST", &act("remove"), Some(&admin), None).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "action_failed");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not allowed on this host"),
        "{refused}"
    );
    assert_eq!(state_of(&name).await, "running");

    // The activity log has every attempt, with who made it and how it went.
    let (_, me) = call(&setup, "GET", "/api/v1/me", Some(&operator), None).await;
    let operator_id = me["id"].as_i64().unwrap();
    let path = format!("/api/v1/activity?user={operator_id}&container={key}");
    let (_, log) = call(&setup, "GET", &path, Some(&admin), None).await;
    let actions: Vec<(&str, &str)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["attributes"]["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("unpause", "done"),
            ("pause", "done"),
            ("start", "done"),
            ("stop", "done")
        ],
        "{log}"
    );
    assert_eq!(log["items"][0]["attributes"]["user"], "ops@example.com");
    // The viewer's refused attempt is on the record too.
    let path = format!("/api/v1/activity?container={key}&action=stop&kind=container");
    let (_, log) = call(&setup, "GET", &path, Some(&admin), None).await;
    let refused: Vec<&Value> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["attributes"]["user"] == "eyes@example.com")
        .collect();
    assert_eq!(refused.len(), 1, "{log}");
    assert!(
        refused[0]["attributes"]["outcome"]
            .as_str()
            .unwrap()
            .starts_with("refused:"),
        "{log}"
    );
    let path = format!("/api/v1/activity?container={key}&action=remove");
    let (_, log) = call(&setup, "GET", &path, Some(&viewer), None).await;
    assert_eq!(log["total"], 1, "{log}");
    // Viewers see who acted by id, not by email.
    assert!(log["items"][0]["attributes"]["user"].is_null(), "{log}");
    assert!(log["items"][0]["user_id"].is_i64(), "{log}");
    assert!(
        log["items"][0]["attributes"]["outcome"]
            .as_str()
            .unwrap()
            .starts_with("failed: remove is not allowed"),
        "{log}"
    );
    // Docker's own events for what the operator did arrive too.
    let path = format!("/api/v1/activity?container={key}&action=die");
    eventually(WAIT, "docker's die event in the log", || {
        let (path, viewer) = (path.clone(), viewer.clone());
        async move {
            let (_, log) = call(setup_ref, "GET", &path, Some(&viewer), None).await;
            (log["total"].as_u64() >= Some(1)).then_some(())
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_websocket_client_sees_a_real_container_start_live() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let setup = Setup::new().await;
    let _agent = setup.agent("host-live").await;
    let host = setup.host_id("host-live").await;
    let token = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let url = format!("ws://{}/ws", setup.collector.ws_address);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    for request in [
        json!({"type": "identify", "token": token}),
        json!({"type": "subscribe", "topic": "events", "host": host.0}),
        json!({"type": "subscribe", "topic": "stats", "host": host.0}),
    ] {
        let text = request.to_string();
        socket.send(Message::Text(text.into())).await.unwrap();
    }
    let mut cleanup = Cleanup::default();
    let name = cleanup.container(&unique_name("live"));
    let mut saw_start = false;
    let mut saw_stats = false;
    let mut acknowledged = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut started = false;
    while !(saw_start && saw_stats) {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("live updates in time")
            .expect("open")
            .expect("a frame");
        let Message::Text(text) = message else {
            continue;
        };
        let update: Value = serde_json::from_str(text.as_str()).unwrap();
        match update["type"].as_str().unwrap() {
            "identified" | "subscribed" => {
                acknowledged.push(update["type"].as_str().unwrap().to_owned());
                if acknowledged.len() == 3 && !started {
                    started = true;
                    docker(&["run", "-d", "--name", &name, TEST_IMAGE, "sleep", "3600"])
                        .await
                        .unwrap();
                }
            }
            "events" => {
                assert_eq!(update["host"], host.0);
                saw_start |= update["items"].as_array().unwrap().iter().any(|event| {
                    event["action"] == "start" && event["actor_name"] == name.as_str()
                });
            }
            "stats" => {
                assert_eq!(update["host"], host.0);
                saw_stats |= update["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|sample| sample["name"] == name.as_str());
            }
            other => panic!("unexpected {other}: {update}"),
        }
    }
    assert_eq!(acknowledged, ["identified", "subscribed", "subscribed"]);
}

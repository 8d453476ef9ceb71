//! The REST API through its router (no socket), on real MariaDB and real SQLite.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use dockermon_collector::api::auth::TokenKeys;
use dockermon_collector::api::auth::tokens::unix_now;
use dockermon_collector::api::{MAX_BODY, router};
use dockermon_collector::pki::{Authority, PkiPaths};
use dockermon_collector::store::{Role, Store};
use dockermon_proto::Record;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::fixtures::{NOW, S, container, event, host, host_info, ingest, inventory, sample};
use crate::support::{PASSWORD, TOKEN_SECRET, TestDb, api_state, on_both_backends};

on_both_backends!(
    a_session_lives_from_login_to_logout,
    a_browser_session_keeps_its_refresh_token_in_a_cookie_only_it_can_use,
    forged_expired_and_ended_tokens_are_refused,
    roles_decide_what_a_user_may_do,
    repeated_failed_logins_are_throttled,
    bad_input_gets_a_clear_error_in_one_shape,
    reads_show_what_the_agents_reported,
    admins_manage_users_and_hosts,
    resources_apply_like_an_api_server,
);

struct Api {
    router: Router,
    store: Store,
    _db: TestDb,
    _pki: tempfile::TempDir,
}

impl Api {
    async fn new(db: TestDb) -> Api {
        let pki = tempfile::tempdir().unwrap();
        let paths = PkiPaths::in_data_dir(pki.path());
        let authority = Authority::init(&paths, &["localhost".to_owned()], false).unwrap();
        let state = api_state(
            db.store.clone(),
            Duration::from_secs(900),
            Some(Arc::new(authority)),
        );
        Api {
            router: router(state),
            store: db.store.clone(),
            _db: db,
            _pki: pki,
        }
    }

    async fn user(&self, email: &str, role: Role) -> i64 {
        crate::support::user(&self.store, email, role).await
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&body)))
        };
        (status, value)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        };
        self.send(request.unwrap()).await
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call("GET", path, Some(token), None).await
    }

    /// Signs in; the whole token response.
    async fn login(&self, email: &str, password: &str) -> (StatusCode, Value) {
        let body = json!({"email": email, "password": password});
        self.call("POST", "/api/v1/auth/login", None, Some(body))
            .await
    }

    /// Signs in from `address`, as a client connected from there would.
    async fn login_from(&self, address: &str, email: &str, password: &str) -> (StatusCode, Value) {
        let body = json!({"email": email, "password": password});
        let mut request = Request::post("/api/v1/auth/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let socket: std::net::SocketAddr = format!("{address}:40000").parse().unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(socket));
        self.send(request).await
    }

    async fn access(&self, email: &str) -> String {
        let (status, body) = self.login(email, PASSWORD).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }
}

fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["error"]["code"], code, "{}", answer.1);
    assert!(
        !answer.1["error"]["message"].as_str().unwrap().is_empty(),
        "{}",
        answer.1
    );
}

/// One request with headers; its status, headers and JSON answer.
async fn exchange(
    api: &Api,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, value)
}

/// The `name=value` of a response's `Set-Cookie`, and its attributes.
fn set_cookie(headers: &axum::http::HeaderMap) -> (String, String) {
    let value = headers[header::SET_COOKIE].to_str().unwrap();
    let (pair, attributes) = value.split_once(';').unwrap();
    (pair.to_owned(), attributes.to_owned())
}

async fn a_browser_session_keeps_its_refresh_token_in_a_cookie_only_it_can_use(db: TestDb) {
    let api = Api::new(db).await;
    api.user("web@example.com", Role::Viewer).await;
    let body = json!({"email": "web@example.com", "password": PASSWORD, "refresh_cookie": true});
    let (status, headers, tokens) = exchange(&api, "POST", "/api/v1/auth/login", &[], body).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(
        tokens.get("refresh_token").is_none(),
        "not in the body: {tokens}"
    );
    let (cookie, attributes) = set_cookie(&headers);
    assert!(
        cookie.starts_with("dockermon_refresh=") && cookie.len() > 40,
        "{cookie}"
    );
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/api/v1/auth",
        "Max-Age=",
    ] {
        assert!(
            attributes.contains(attribute),
            "{attribute} in {attributes}"
        );
    }

    // The cookie alone is not enough: another origin could make the browser send it.
    let refresh = |headers: Vec<(&'static str, String)>| {
        let api = &api;
        async move {
            let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            exchange(api, "POST", "/api/v1/auth/refresh", &pairs, json!({})).await
        }
    };
    let answer = refresh(vec![("cookie", cookie.clone())]).await;
    assert_eq!(answer.0, StatusCode::FORBIDDEN, "{}", answer.2);
    let answer = refresh(vec![
        ("cookie", cookie.clone()),
        ("x-dockermon-client", "web".into()),
        ("host", "collector:3810".into()),
        ("origin", "http://evil.example:3810".into()),
    ])
    .await;
    assert_eq!(answer.0, StatusCode::FORBIDDEN, "{}", answer.2);
    let answer = refresh(vec![("x-dockermon-client", "web".into())]).await;
    assert_eq!(
        answer.0,
        StatusCode::UNAUTHORIZED,
        "no cookie: {}",
        answer.2
    );

    // Same origin, with the header: a new access token and a new cookie.
    let same_origin = |cookie: &str| {
        vec![
            ("cookie", format!("theme=dark; {cookie}")),
            ("x-dockermon-client", "web".to_owned()),
            ("host", "collector:3810".to_owned()),
            ("origin", "http://collector:3810".to_owned()),
        ]
    };
    let (status, headers, renewed) = refresh(same_origin(&cookie)).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert!(renewed.get("refresh_token").is_none());
    let (rotated, _) = set_cookie(&headers);
    assert_ne!(rotated, cookie, "each refresh rotates the cookie");
    let access = renewed["access_token"].as_str().unwrap().to_owned();
    assert_eq!(api.get("/api/v1/me", &access).await.0, StatusCode::OK);

    // A spent cookie ends the session, as a spent refresh token does.
    let (status, _, _) = refresh(same_origin(&cookie)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.get("/api/v1/me", &access).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Logout deletes the cookie.
    let body = json!({"email": "web@example.com", "password": PASSWORD, "refresh_cookie": true});
    let (_, _, tokens) = exchange(&api, "POST", "/api/v1/auth/login", &[], body).await;
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    let (status, headers, _) = exchange(
        &api,
        "POST",
        "/api/v1/auth/logout",
        &[("authorization", &bearer)],
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (pair, attributes) = set_cookie(&headers);
    assert_eq!(pair, "dockermon_refresh=");
    assert!(attributes.contains("Max-Age=0"), "{attributes}");
}

async fn a_session_lives_from_login_to_logout(db: TestDb) {
    let api = Api::new(db).await;
    api.user("Ops@Example.com", Role::Operator).await;

    let (status, tokens) = api.login("ops@example.COM", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert_eq!(tokens["user"]["email"], "ops@example.com");
    assert_eq!(tokens["user"]["role"], "operator");
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();

    let (status, me) = api.get("/api/v1/me", access).await;
    assert_eq!(
        (status, me["email"].as_str()),
        (StatusCode::OK, Some("ops@example.com"))
    );

    // A refresh gives a new pair; the old refresh token is then spent.
    let body = json!({"refresh_token": refresh});
    let (status, renewed) = api
        .call("POST", "/api/v1/auth/refresh", None, Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    let renewed_access = renewed["access_token"].as_str().unwrap().to_owned();
    assert_ne!(renewed["refresh_token"], tokens["refresh_token"]);
    assert_eq!(
        api.get("/api/v1/me", &renewed_access).await.0,
        StatusCode::OK
    );

    // Presenting the spent one again means it leaked: the whole session ends.
    let replay = api
        .call("POST", "/api/v1/auth/refresh", None, Some(body))
        .await;
    assert_error(&replay, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_error(
        &api.get("/api/v1/me", &renewed_access).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );

    // Logout ends the session at once, though the token has not expired.
    let access = api.access("ops@example.com").await;
    let (status, _) = api
        .call("POST", "/api/v1/auth/logout", Some(&access), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let after = api.get("/api/v1/me", &access).await;
    assert_error(&after, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(after.1["error"]["message"], "the session has ended");

    // A password change ends every session; the new password works, the old does not.
    let access = api.access("ops@example.com").await;
    let other = api.access("ops@example.com").await;
    let change =
        json!({"current_password": "wrong password!", "new_password": "another long password"});
    let wrong = api
        .call("POST", "/api/v1/me/password", Some(&access), Some(change))
        .await;
    assert_error(&wrong, StatusCode::FORBIDDEN, "forbidden");
    let change = json!({"current_password": PASSWORD, "new_password": "another long password"});
    let (status, _) = api
        .call("POST", "/api/v1/me/password", Some(&access), Some(change))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.get("/api/v1/me", &other).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.login("ops@example.com", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, live) = api.login("ops@example.com", "another long password").await;
    let live = live["access_token"].as_str().unwrap();

    // Ended sessions are purged by retention; the live one stays.
    let purged = api
        .store
        .purge_sessions(dockermon_proto::now_ns())
        .await
        .unwrap();
    assert_eq!(
        purged, 4,
        "the replayed, logged-out and two password-changed sessions"
    );
    assert_eq!(api.get("/api/v1/me", live).await.0, StatusCode::OK);
}

async fn forged_expired_and_ended_tokens_are_refused(db: TestDb) {
    let api = Api::new(db).await;
    let id = api.user("viewer@example.com", Role::Viewer).await;
    let admin_id = api.user("admin@example.com", Role::Admin).await;
    let access = api.access("viewer@example.com").await;
    let (_, me) = api.get("/api/v1/me", &access).await;
    assert_eq!(me["id"], id);

    // No header, another scheme, garbage.
    let none = api.call("GET", "/api/v1/me", None, None).await;
    assert_error(&none, StatusCode::UNAUTHORIZED, "unauthorized");
    let basic = Request::get("/api/v1/me")
        .header(header::AUTHORIZATION, "Basic dXNlcjpwYXNz")
        .body(Body::empty())
        .unwrap();
    assert_error(
        &api.send(basic).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_error(
        &api.get("/api/v1/me", "not.a.token").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );

    // The right session, signed with another key; and unsigned (`alg: none`).
    let session = {
        let parts: Vec<&str> = access.split('.').collect();
        use base64::Engine;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap();
        serde_json::from_slice::<Value>(&payload).unwrap()["sid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let other = TokenKeys::new(
        b"another secret of at least 32 bytes!",
        Duration::from_secs(900),
    );
    let foreign = other.issue(admin_id, &session, Role::Admin, unix_now());
    assert_error(
        &api.get("/api/v1/me", &foreign).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let unsigned = {
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims = json!({"sub": admin_id.to_string(), "sid": session, "role": "admin", "typ": "access",
            "iat": unix_now(), "exp": unix_now() + 600});
        format!(
            "{}.{}.",
            engine.encode(r#"{"alg":"none","typ":"JWT"}"#),
            engine.encode(claims.to_string())
        )
    };
    assert_error(
        &api.get("/api/v1/me", &unsigned).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );

    // Correctly signed but for another user than the session's: refused.
    let keys = TokenKeys::new(TOKEN_SECRET, Duration::from_secs(900));
    let swapped = keys.issue(admin_id, &session, Role::Admin, unix_now());
    assert_error(
        &api.get("/api/v1/users", &swapped).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );

    // Expired: signed right, session live, but past its expiry.
    let expired = keys.issue(id, &session, Role::Viewer, unix_now() - 901);
    let answer = api.get("/api/v1/me", &expired).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(answer.1["error"]["message"], "the token has expired");

    // Disabling the user ends their sessions at once and refuses new logins.
    let admin = api.access("admin@example.com").await;
    let disable = json!({"disabled": true});
    let path = format!("/api/v1/users/{id}");
    let (status, user) = api.call("PATCH", &path, Some(&admin), Some(disable)).await;
    assert_eq!((status, &user["disabled"]), (StatusCode::OK, &json!(true)));
    assert_eq!(
        api.get("/api/v1/me", &access).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.login("viewer@example.com", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
}

async fn roles_decide_what_a_user_may_do(db: TestDb) {
    let api = Api::new(db).await;
    api.user("viewer@example.com", Role::Viewer).await;
    api.user("operator@example.com", Role::Operator).await;
    api.user("admin@example.com", Role::Admin).await;
    let viewer = api.access("viewer@example.com").await;
    let operator = api.access("operator@example.com").await;
    let admin = api.access("admin@example.com").await;

    for token in [&viewer, &operator, &admin] {
        assert_eq!(api.get("/api/v1/hosts", token).await.0, StatusCode::OK);
        assert_eq!(api.get("/api/v1/containers", token).await.0, StatusCode::OK);
        assert_eq!(api.get("/api/v1/activity", token).await.0, StatusCode::OK);
    }
    let token_request = json!({"host": "docker-9"});
    for token in [&viewer, &operator] {
        let users = api.get("/api/v1/users", token).await;
        assert_error(&users, StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(users.1["error"]["message"], "this needs the admin role");
        let join = api
            .call(
                "POST",
                "/api/v1/join-tokens",
                Some(token),
                Some(token_request.clone()),
            )
            .await;
        assert_error(&join, StatusCode::FORBIDDEN, "forbidden");
    }
    assert_eq!(api.get("/api/v1/users", &admin).await.1["total"], 3);
    let (status, join) = api
        .call(
            "POST",
            "/api/v1/join-tokens",
            Some(&admin),
            Some(token_request),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{join}");
    assert!(
        join["token"].as_str().unwrap().starts_with("dmj1-"),
        "{join}"
    );
    assert_eq!(join["host"], "docker-9");

    // A viewer changes their own settings, and nobody else's account.
    let settings = json!({"settings": {"theme": "dark"}});
    let (status, me) = api
        .call("PATCH", "/api/v1/me", Some(&viewer), Some(settings))
        .await;
    assert_eq!(
        (status, &me["settings"]["theme"]),
        (StatusCode::OK, &json!("dark"))
    );
    let promote = json!({"role": "admin"});
    let (_, users) = api.get("/api/v1/users", &admin).await;
    let viewer_id = users["items"][0]["id"].as_i64().unwrap();
    let path = format!("/api/v1/users/{viewer_id}");
    let attempt = api.call("PATCH", &path, Some(&viewer), Some(promote)).await;
    assert_error(&attempt, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(api.get("/api/v1/me", &viewer).await.1["role"], "viewer");
}

async fn repeated_failed_logins_are_throttled(db: TestDb) {
    let api = Api::new(db).await;
    api.user("target@example.com", Role::Admin).await;
    api.user("auditor@example.com", Role::Admin).await;
    api.user("eyes@example.com", Role::Viewer).await;
    let auditor = api.access("auditor@example.com").await;
    let viewer = api.access("eyes@example.com").await;
    let attacker = "10.0.0.1";
    // An unknown account is answered like a wrong password, not "no such user".
    let unknown = api
        .login_from("10.0.0.3", "nobody@example.com", PASSWORD)
        .await;
    assert_eq!(
        unknown.1["error"]["message"],
        "wrong email or password, or the account is disabled"
    );
    for _ in 0..5 {
        let answer = api
            .login_from(attacker, "target@example.com", "guess guess guess")
            .await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // That address is locked for that account, even with the right password; the answer
    // says for how long.
    let locked = api
        .login_from(attacker, "target@example.com", PASSWORD)
        .await;
    assert_error(&locked, StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
    // The owner, from elsewhere, is not locked out: five guesses are no switch.
    let owner = api
        .login_from("10.0.0.2", "target@example.com", PASSWORD)
        .await;
    assert_eq!(owner.0, StatusCode::OK, "{}", owner.1);
    // An admin lifts the lock.
    let (status, cleared) = api
        .call(
            "DELETE",
            "/api/v1/auth/locks?email=target@example.com",
            Some(&auditor),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert!(cleared["cleared"].as_u64().unwrap() > 0, "{cleared}");
    let (status, _) = api
        .call("DELETE", "/api/v1/auth/locks", Some(&viewer), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let again = api
        .login_from(attacker, "target@example.com", PASSWORD)
        .await;
    assert_eq!(again.0, StatusCode::OK, "{}", again.1);

    // Admins see who tried, from where and why, and the lockout, once; viewers do not.
    let (status, log) = api
        .get("/api/v1/activity?kind=auth&limit=100", &auditor)
        .await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let entries: Vec<(String, String, String)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor_id"].as_str().unwrap().to_owned(),
                e["attributes"]["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    let count = |action: &str, email: &str| {
        entries
            .iter()
            .filter(|(a, e, _)| a == action && e == email)
            .count()
    };
    assert_eq!(
        count("login_failed", "target@example.com"),
        5,
        "{entries:?}"
    );
    assert_eq!(
        count("login_failed", "nobody@example.com"),
        1,
        "{entries:?}"
    );
    assert_eq!(
        count("login_locked", "target@example.com"),
        1,
        "{entries:?}"
    );
    assert_eq!(
        count("login_unlocked", "target@example.com"),
        1,
        "{entries:?}"
    );
    assert_eq!(count("login", "target@example.com"), 2, "{entries:?}");
    assert!(
        entries.iter().any(|(a, e, r)| a == "login_failed"
            && e == "nobody@example.com"
            && r == "unknown email"),
        "{entries:?}"
    );
    let failed = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "login_failed" && e["actor_id"] == "target@example.com")
        .unwrap();
    assert_eq!(failed["attributes"]["address"], attacker, "{failed}");
    let (_, hidden) = api.get("/api/v1/activity?kind=auth", &viewer).await;
    assert_eq!(hidden["total"], 0, "{hidden}");
}

async fn bad_input_gets_a_clear_error_in_one_shape(db: TestDb) {
    let api = Api::new(db).await;
    api.user("admin@example.com", Role::Admin).await;
    let admin = api.access("admin@example.com").await;

    let huge = json!({"email": "x@example.com", "password": "p".repeat(MAX_BODY)});
    let answer = api
        .call("POST", "/api/v1/users", Some(&admin), Some(huge))
        .await;
    assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    let broken = Request::post("/api/v1/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"email\": "))
        .unwrap();
    assert_error(
        &api.send(broken).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    let untyped = Request::post("/api/v1/auth/login")
        .body(Body::from("{}"))
        .unwrap();
    assert_error(
        &api.send(untyped).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    let unknown_field = json!({"email": "a@b.c", "password": PASSWORD, "role": "admin"});
    let answer = api
        .call("POST", "/api/v1/auth/login", None, Some(unknown_field))
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "bad_request");
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field"),
        "{}",
        answer.1
    );

    for path in [
        "/api/v1/containers?limit=0",
        "/api/v1/containers?limit=1000000",
        "/api/v1/containers?offset=99999999999",
        "/api/v1/containers?offset=-1",
        "/api/v1/containers?host=abc",
        "/api/v1/activity?from=yesterday",
        "/api/v1/containers/1/stats?max_points=0",
        "/api/v1/containers/1/stats?resolution=2m",
        "/api/v1/containers/x",
    ] {
        assert_error(
            &api.get(path, &admin).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
    }
    // SQL in a filter is a value that matches nothing.
    let (status, page) = api
        .get("/api/v1/containers?name=x%27%20OR%20%271%27%3D%271&state=%27%3B%20DROP%20TABLE%20users%3B%20--", &admin)
        .await;
    assert_eq!((status, &page["total"]), (StatusCode::OK, &json!(0)));
    assert_eq!(api.get("/api/v1/users", &admin).await.1["total"], 1);

    assert_error(
        &api.get("/api/v1/nothing-here", &admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &api.get("/api/v1/containers/12345", &admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

async fn reads_show_what_the_agents_reported(db: TestDb) {
    let api = Api::new(db).await;
    api.user("viewer@example.com", Role::Viewer).await;
    let viewer = api.access("viewer@example.com").await;
    let docker = host(&api.store, "docker-1").await;
    let now = dockermon_proto::now_ns();
    let recent = now - now % (30 * S) - 600 * S;
    let id = "a".repeat(64);
    let mut records = vec![
        Record::Host(host_info()),
        inventory(true, vec![container(&id, "web", NOW)]),
        Record::Event(event(recent, "start", &id)),
    ];
    for i in 0..10 {
        let time = recent + i * 30 * S;
        records.push(Record::Stats(sample(
            &id,
            "web",
            time,
            Some(i as f64),
            1000 + i as u64,
        )));
    }
    ingest(&api.store, docker, &records).await;

    // The newest disk usage, whatever order the records came in; null before any.
    let latest = format!("/api/v1/hosts/{}/usage/latest", docker.0);
    assert_eq!(
        api.get(&latest, &viewer).await,
        (StatusCode::OK, Value::Null)
    );
    let usage = |time_ns: i64, layers_bytes: u64| {
        Record::Usage(dockermon_proto::DiskUsage {
            time_ns,
            layers_bytes,
            ..Default::default()
        })
    };
    ingest(
        &api.store,
        docker,
        &[usage(recent + 60 * S, 2), usage(recent, 1)],
    )
    .await;
    let (status, newest) = api.get(&latest, &viewer).await;
    assert_eq!(status, StatusCode::OK, "{newest}");
    assert_eq!(
        (newest["time_ns"].as_i64(), newest["layers_bytes"].as_i64()),
        (Some(recent + 60 * S), Some(2))
    );

    let (status, hosts) = api.get("/api/v1/hosts", &viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hosts["total"], 1, "{hosts}");
    assert_eq!(hosts["items"][0]["name"], "docker-1");
    assert_eq!(hosts["items"][0]["connected"], false);
    assert_eq!(hosts["items"][0]["docker_version"], "20.10.24");
    assert_eq!(
        hosts["items"][0]["containers"],
        json!({"total": 1, "running": 1}),
        "counted from the inventory"
    );

    let path = format!("/api/v1/containers?host={}&label=tier%3Dfront", docker.0);
    let (_, containers) = api.get(&path, &viewer).await;
    assert_eq!(containers["total"], 1, "{containers}");
    assert_eq!(containers["items"][0]["name"], "web");
    assert!(
        containers["items"][0]["detail"].is_null(),
        "lists are summaries by default"
    );
    let key = containers["items"][0]["id"].as_i64().unwrap();
    let path = format!("/api/v1/containers?host={}&detail=true", docker.0);
    let (_, full) = api.get(&path, &viewer).await;
    assert_eq!(
        full["items"][0]["detail"]["labels"]["tier"], "front",
        "{full}"
    );
    let (_, none) = api
        .get("/api/v1/containers?label=tier%3Dback", &viewer)
        .await;
    assert_eq!(none["total"], 0);

    let path = format!("/api/v1/containers/{key}/stats?resolution=raw");
    let (status, series) = api.get(&path, &viewer).await;
    assert_eq!(status, StatusCode::OK, "{series}");
    assert_eq!(series["resolution"], "raw");
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len(), 10, "{series}");
    assert_eq!(points[9]["cpu_percent"]["avg"], 9.0);

    let (_, latest) = api
        .get(&format!("/api/v1/hosts/{}/stats/latest", docker.0), &viewer)
        .await;
    assert_eq!(latest[0]["cpu_percent"], 9.0, "{latest}");

    let path = format!("/api/v1/activity?host={}&action=start", docker.0);
    let (_, activity) = api.get(&path, &viewer).await;
    assert_eq!(activity["total"], 1, "{activity}");
    assert_eq!(activity["items"][0]["container_id"], key);
}

async fn admins_manage_users_and_hosts(db: TestDb) {
    let api = Api::new(db).await;
    let admin_id = api.user("admin@example.com", Role::Admin).await;
    let admin = api.access("admin@example.com").await;

    let new = json!({"email": "new@example.com", "password": PASSWORD, "role": "operator"});
    let (status, user) = api
        .call("POST", "/api/v1/users", Some(&admin), Some(new.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["role"], "operator");
    assert!(user.get("password_hash").is_none(), "{user}");
    let again = api
        .call("POST", "/api/v1/users", Some(&admin), Some(new))
        .await;
    assert_error(&again, StatusCode::CONFLICT, "conflict");
    for email in [
        "no-at-sign",
        "two@@example.com",
        "spa ce@example.com",
        "@example.com",
    ] {
        let body = json!({"email": email, "password": PASSWORD, "role": "viewer"});
        let answer = api
            .call("POST", "/api/v1/users", Some(&admin), Some(body))
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "bad_request");
    }
    let weak = json!({"email": "weak@example.com", "password": "short", "role": "viewer"});
    let answer = api
        .call("POST", "/api/v1/users", Some(&admin), Some(weak))
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "bad_request");
    let new_user = api.access("new@example.com").await;
    assert_eq!(api.get("/api/v1/me", &new_user).await.1["role"], "operator");

    // The collector always keeps an admin.
    let demote = json!({"role": "viewer"});
    let path = format!("/api/v1/users/{admin_id}");
    let answer = api.call("PATCH", &path, Some(&admin), Some(demote)).await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "bad_request");
    // One's own password changes only with the current one, not through the users API: a
    // stolen token must not become a permanent takeover.
    let own = json!({"password": "a new password of mine"});
    let answer = api.call("PATCH", &path, Some(&admin), Some(own)).await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(
        api.login("admin@example.com", PASSWORD).await.0,
        StatusCode::OK
    );
    // An admin setting someone else's password ends that user's sessions.
    let new_id = user["id"].as_i64().unwrap();
    let reset = json!({"password": "a password set by the admin"});
    let path = format!("/api/v1/users/{new_id}");
    let (status, _) = api.call("PATCH", &path, Some(&admin), Some(reset)).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &api.get("/api/v1/me", &new_user).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );

    // Deleting a host removes it and logs who did it.
    let docker = host(&api.store, "docker-2").await;
    let path = format!("/api/v1/hosts/{}", docker.0);
    assert_eq!(api.get(&path, &admin).await.0, StatusCode::OK);
    let (status, _) = api.call("DELETE", &path, Some(&admin), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(
        &api.get(&path, &admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let path = format!("/api/v1/activity?user={admin_id}&kind=host");
    let (_, log) = api.get(&path, &admin).await;
    assert_eq!(log["total"], 1, "{log}");
    assert_eq!(log["items"][0]["action"], "delete");
    assert_eq!(log["items"][0]["actor_name"], "docker-2");
    assert_eq!(log["items"][0]["attributes"]["user"], "admin@example.com");

    // The OpenAPI document describes every route the router has.
    let (status, doc) = api.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/auth/login",
        "/api/v1/users/{id}",
        "/api/v1/hosts/{id}/usage",
        "/api/v1/hosts/{id}/usage/latest",
        "/api/v1/containers/{id}/stats",
        "/api/v1/activity",
        "/api/v1/join-tokens",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
}

/// `POST /api/v1/resources` and friends, on both databases: created → unchanged →
/// configured (generation moves only with the spec), refusals with the field named (422),
/// roles per kind, an immutable profile session spec (409), lists and deletion.
async fn resources_apply_like_an_api_server(db: TestDb) {
    let api = Api::new(db).await;
    api.user("admin@example.com", Role::Admin).await;
    api.user("op@example.com", Role::Operator).await;
    api.user("viewer@example.com", Role::Viewer).await;
    let admin = api.access("admin@example.com").await;
    let operator = api.access("op@example.com").await;
    let viewer = api.access("viewer@example.com").await;
    let apply = |token: String, body: &str| {
        let request = Request::post("/api/v1/resources")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/yaml")
            .body(Body::from(body.to_owned()))
            .unwrap();
        api.send(request)
    };
    let host = "apiVersion: dockermon.io/v1alpha1\nkind: DockerHost\nmetadata: {name: web-1}\nspec: {statsInterval: 10s}\n";

    let (status, body) = apply(admin.clone(), host).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body[0]["result"], "created");
    assert_eq!(body[0]["object"]["metadata"]["generation"], 1);
    let uid = body[0]["object"]["metadata"]["uid"].clone();
    let (_, body) = apply(admin.clone(), host).await;
    assert_eq!(body[0]["result"], "unchanged");
    let relabelled = host.replace("{name: web-1}", "{name: web-1, labels: {site: a}}");
    let (_, body) = apply(admin.clone(), &relabelled).await;
    assert_eq!(
        (
            body[0]["result"].as_str(),
            &body[0]["object"]["metadata"]["generation"]
        ),
        (Some("configured"), &json!(1)),
        "labels are not spec"
    );
    let (_, body) = apply(
        admin.clone(),
        &relabelled.replace(
            "{statsInterval: 10s}",
            "{statsInterval: 20s, labels: {team: web}}",
        ),
    )
    .await;
    assert_eq!(
        body[0]["object"]["metadata"]["generation"], 2,
        "a spec change moves the generation"
    );
    assert_eq!(body[0]["object"]["metadata"]["uid"], uid);

    // Refusals: the field named, nothing stored; roles per kind.
    let (status, body) = apply(admin.clone(), &host.replace("10s", "2h")).await;
    assert_error(
        &(status, body.clone()),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_resource",
    );
    assert_eq!(
        body["error"]["message"],
        "document 1: spec.statsInterval: 2h is out of range (1s to 1h)"
    );
    let (status, _) = apply(operator.clone(), host).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "DockerHosts take an admin");
    let session = "apiVersion: dockermon.io/v1alpha1\nkind: ProfileSession\nmetadata: {name: p1, namespace: team-a}\nspec: {host: web-1, container: api, duration: 1m}\n";
    let (status, _) = apply(viewer.clone(), session).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = apply(operator.clone(), session).await;
    assert_eq!(
        (status, body[0]["namespace"].as_str()),
        (StatusCode::OK, Some("team-a")),
        "{body}"
    );
    let (status, body) = apply(operator.clone(), &session.replace("1m", "2m")).await;
    assert_error(&(status, body), StatusCode::CONFLICT, "conflict");

    // Reads: lists per namespace, one object, unknown kinds and names.
    let (_, list) = api.get("/api/v1/resources/profilesessions", &viewer).await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        0,
        "the default namespace is empty"
    );
    let (_, list) = api
        .get(
            "/api/v1/resources/profilesessions?all_namespaces=true",
            &viewer,
        )
        .await;
    assert_eq!(list["items"][0]["metadata"]["name"], "p1");
    let (status, one) = api
        .get("/api/v1/resources/dockerhosts/web-1", &viewer)
        .await;
    assert_eq!(
        (status, &one["spec"]["statsInterval"]),
        (StatusCode::OK, &json!("20s"))
    );
    assert_eq!(one["metadata"]["labels"]["site"], "a");
    // The spec's labels show with the host in the hosts API.
    crate::fixtures::host(&api.store, "web-1").await;
    let (_, hosts) = api.get("/api/v1/hosts", &viewer).await;
    assert_eq!(
        hosts["items"][0]["labels"],
        json!({"team": "web"}),
        "{hosts}"
    );
    let (status, _) = api.get("/api/v1/resources/pods", &viewer).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A session that has not finished is marked (the controller stops its profile, then
    // removes it); a DockerHost deletion revokes the host.
    let (status, body) = api
        .call(
            "DELETE",
            "/api/v1/resources/profilesessions/p1?namespace=team-a",
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(
        (status, body["result"].as_str()),
        (StatusCode::OK, Some("deleting")),
        "{body}"
    );
    let (status, _) = api
        .call(
            "DELETE",
            "/api/v1/resources/dockerhosts/web-1",
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api
        .call(
            "DELETE",
            "/api/v1/resources/dockerhosts/web-1",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .get("/api/v1/resources/dockerhosts/web-1", &viewer)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, log) = api.get("/api/v1/activity?kind=resource", &admin).await;
    let entries: Vec<(String, String)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["attributes"]["user"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        entries.contains(&("delete".into(), "admin@example.com".into())),
        "{log}"
    );
    assert!(
        entries.contains(&("apply".into(), "op@example.com".into())),
        "{log}"
    );
    let revoked = api
        .store
        .admission(&dockermon_proto::HostName::new("web-1").unwrap(), "any")
        .await
        .unwrap();
    assert_eq!(revoked, dockermon_collector::store::Admission::HostRevoked);
}

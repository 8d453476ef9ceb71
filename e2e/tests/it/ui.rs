//! The web UI in a real browser: headless Chromium over WebDriver, against the real
//! collector serving it, a real agent and real containers. Every test leaves a screenshot
//! in `target/screenshots` (see `dockermon_e2e::browser::screenshot_dir`).

use std::time::{Duration, Instant};

use dockermon_e2e::browser::{Browser, PAGE_WAIT};
use dockermon_e2e::docker::{Cleanup, TEST_IMAGE, docker, unique_name};
use dockermon_e2e::http_faults::HttpFaults;
use dockermon_e2e::raw_agent::RawAgent;
use dockermon_e2e::wait::eventually;
use dockermon_proto::transport::{AgentMessage, DataFrame, Dropped};
use dockermon_proto::{Container, ContainerState, InventoryUpdate, Record, now_ns};
use fantoccini::Locator;
use serde_json::{Value, json};

use crate::support::{ADMIN_PASSWORD, Setup, call, raw_identity, sign_in};

const ADMIN: &str = "admin@localhost";
const PASSWORD: &str = "a long enough password";

fn base(setup: &Setup) -> String {
    format!("http://{}", setup.collector.api_address)
}

/// Runs `docker run -d --name <name> [flags] TEST_IMAGE <command>`.
async fn run(cleanup: &mut Cleanup, prefix: &str, flags: &[&str], command: &[&str]) -> String {
    let name = cleanup.container(&unique_name(prefix));
    let mut args = vec!["run", "-d", "--name", name.as_str()];
    args.extend_from_slice(flags);
    args.push(TEST_IMAGE);
    args.extend_from_slice(command);
    docker(&args).await.unwrap();
    name
}

/// The collector's key of the running container `name`, once its inventory arrived.
async fn container_key(setup: &Setup, token: &str, name: &str) -> i64 {
    eventually(PAGE_WAIT, &format!("{name} in the inventory"), || async {
        let path = format!("/api/v1/containers?name={name}");
        let (status, page) = call(setup, "GET", &path, Some(token), None).await;
        (status == 200)
            .then(|| page["items"][0]["id"].as_i64())
            .flatten()
    })
    .await
    .unwrap()
}

/// A browser signed in as the first admin, on the fleet page.
async fn signed_in_admin(setup: &Setup) -> Browser {
    let browser = Browser::start().await.unwrap();
    browser
        .sign_in(&base(setup), ADMIN, ADMIN_PASSWORD)
        .await
        .unwrap();
    browser
}

async fn add_user(setup: &Setup, admin: &str, email: &str, role: &str) {
    let body = json!({"email": email, "password": PASSWORD, "role": role});
    let (status, user) = call(setup, "POST", "/api/v1/users", Some(admin), Some(body)).await;
    assert_eq!(status, 201, "{user}");
}

#[tokio::test]
async fn the_fleet_lists_a_running_container_with_its_cpu_and_its_page_charts_history() {
    let setup = Setup::new().await;
    let _agent = setup.agent("ui-fleet").await;
    let mut cleanup = Cleanup::default();
    let name = run(&mut cleanup, "ui-web", &[], &["sleep", "3600"]).await;
    let browser = Browser::start().await.unwrap();

    // Signed out, the fleet sends you to sign in.
    browser
        .goto(&format!("{}/#/fleet", base(&setup)))
        .await
        .unwrap();
    browser
        .until("the sign-in page", "return location.hash === '#/signin'")
        .await
        .unwrap();
    browser
        .sign_in(&base(&setup), ADMIN, ADMIN_PASSWORD)
        .await
        .unwrap();
    browser.type_into("#search", &name).await.unwrap();
    let cpu = browser
        .until(
            "the container's CPU figure",
            &format!(
                "const row = [...document.querySelectorAll('table.containers tr')]
                   .find(r => r.querySelector('.container-name')?.textContent === {name:?});
                 const cpu = row?.querySelector('.cpu')?.textContent;
                 return cpu && cpu.endsWith('%') ? cpu : null;"
            ),
        )
        .await
        .unwrap();
    let cpu: f64 = cpu
        .as_str()
        .unwrap()
        .trim_end_matches(" %")
        .parse()
        .unwrap();
    assert!(
        (0.0..=200.0).contains(&cpu),
        "a sleeping container's CPU: {cpu}"
    );
    browser.screenshot("fleet").await.unwrap();
    let who = browser.element(Locator::Css("#who-email")).await.unwrap();

    browser.click_link(&name).await.unwrap();
    assert_eq!(browser.text("#container-name").await.unwrap(), name);
    // Another page, the same session: the header is not drawn again (which would take
    // elements from under the user's pointer, and from a test between finding and reading).
    assert_eq!(
        who.text().await.unwrap(),
        ADMIN,
        "the header's element is still there"
    );
    let points = browser
        .until(
            "points in the CPU chart",
            "const n = Number(document.querySelector('.chart svg')?.dataset.points); return n >= 2 ? n : null;",
        )
        .await
        .unwrap();
    assert!(points.as_u64().unwrap() >= 2);
    assert!(
        browser.count(".chart svg polyline").await.unwrap() >= 1,
        "a line is drawn"
    );
    browser.screenshot("container").await.unwrap();
    browser.close().await;
}

/// A module lost on its way to the browser (here the proxy garbles its answer, as a
/// browser's requests in flight are lost when its machine's network changes: Docker's
/// networks and containers coming and going do that on a Docker host) fails the whole
/// module graph. The page says so instead of "Loading…" for good, and loads itself again
/// until it works. A read lost the same way is sent again.
#[tokio::test]
async fn a_page_whose_module_was_lost_on_the_way_says_so_and_loads_itself_again() {
    let setup = Setup::new().await;
    let faults = HttpFaults::start(setup.collector.api_address)
        .await
        .unwrap();
    let base = format!("http://{}", faults.address());
    faults.lose("/js/pages/admin.js", usize::MAX);
    let browser = Browser::start().await.unwrap();
    browser.goto(&format!("{base}/#/signin")).await.unwrap();
    let said = browser.text("#boot-failed").await.unwrap();
    assert!(
        said.contains("did not load") && said.contains("main.js"),
        "{said}"
    );
    assert!(faults.lost() >= 1);
    browser.screenshot("boot-failed").await.unwrap();

    // The next reload (1 s after the first failure, twice as long after each further one)
    // brings the whole app, which works through the same path.
    faults.lose("", 0);
    browser
        .until(
            "the sign-in form after a reload",
            "return document.querySelector('#email') !== null",
        )
        .await
        .unwrap();
    assert!(faults.page_loads() >= 2, "{} loads", faults.page_loads());
    browser.sign_in(&base, ADMIN, ADMIN_PASSWORD).await.unwrap();
    // Started, the app cleared the count: a later failure waits 1 s again.
    let failures = browser
        .eval(
            "return sessionStorage.getItem('dockermon.boot.failures')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(failures, Value::Null);

    // A read that gets no answer is sent again, twice at most.
    browser.goto(&format!("{base}/#/activity")).await.unwrap();
    browser.element(Locator::Css("#activity")).await.unwrap();
    faults.lose("/api/v1/hosts?limit=", 2);
    let lost = faults.lost();
    browser.click_link("Fleet").await.unwrap();
    browser.element(Locator::Css("#containers")).await.unwrap();
    assert_eq!(faults.lost(), lost + 2, "both losses taken");
    assert_eq!(
        browser.count(".error").await.unwrap(),
        0,
        "{}",
        browser.describe().await
    );
    browser.close().await;
}

#[tokio::test]
async fn a_live_profile_draws_a_point_a_second_and_is_saved_when_stopped() {
    let setup = Setup::new().await;
    let _agent = setup.agent("ui-profile").await;
    let mut cleanup = Cleanup::default();
    let name = run(
        &mut cleanup,
        "ui-spin",
        &[],
        &["sh", "-c", "while :; do :; done"],
    )
    .await;
    let admin = sign_in(&setup, ADMIN, ADMIN_PASSWORD).await;
    let key = container_key(&setup, &admin, &name).await;
    let browser = signed_in_admin(&setup).await;

    browser
        .goto(&format!("{}/#/profiler/live/{key}", base(&setup)))
        .await
        .unwrap();
    browser.click("#start-profile").await.unwrap();
    let started = Instant::now();
    let points_now =
        "return Number(document.querySelector('#live-charts .chart svg')?.dataset.points ?? 0);";
    eventually(Duration::from_secs(7), "5 live points", || async {
        let points = browser.eval(points_now, vec![]).await.ok()?.as_u64()?;
        (points >= 5).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e} within 7 s of starting ({:?})", started.elapsed()));
    let busy = browser
        .until("a busy CPU in the legend", "const t = document.querySelector('#live-charts .legend')?.textContent; const v = parseFloat((t || '').replace('CPU', '')); return v > 50 ? v : null;")
        .await
        .unwrap();
    assert!(
        busy.as_f64().unwrap() > 50.0,
        "a spinning container uses a core: {busy}"
    );
    browser.screenshot("profile-live").await.unwrap();

    browser
        .click("#stop-profile:not([disabled])")
        .await
        .unwrap();
    browser.click("#saved-session").await.unwrap();
    let summary = browser.text("#profile-summary").await.unwrap();
    assert!(summary.contains("stopped"), "{summary}");
    let saved = browser
        .until("the saved session's chart", "const n = Number(document.querySelector('.chart svg')?.dataset.points); return n >= 5 ? n : null;")
        .await
        .unwrap();
    assert!(saved.as_u64().unwrap() >= 5);
    browser.screenshot("profile-saved").await.unwrap();
    browser.close().await;
}

#[tokio::test]
async fn viewers_see_no_actions_and_no_admin_while_an_operators_stop_stops_the_container() {
    let setup = Setup::new().await;
    let _agent = setup.agent("ui-roles").await;
    let mut cleanup = Cleanup::default();
    // Stops at once: `sleep` as PID 1 would ignore SIGTERM, and the stop would wait out
    // Docker's grace period under a page wait that is not much longer.
    let name = run(
        &mut cleanup,
        "ui-target",
        &[],
        &["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
    )
    .await;
    let admin = sign_in(&setup, ADMIN, ADMIN_PASSWORD).await;
    add_user(&setup, &admin, "viewer@example.com", "viewer").await;
    add_user(&setup, &admin, "operator@example.com", "operator").await;
    let key = container_key(&setup, &admin, &name).await;
    let container_page = format!("{}/#/containers/{key}", base(&setup));

    let viewer = Browser::start().await.unwrap();
    viewer
        .sign_in(&base(&setup), "viewer@example.com", PASSWORD)
        .await
        .unwrap();
    viewer.goto(&container_page).await.unwrap();
    assert_eq!(viewer.text("#container-name").await.unwrap(), name);
    viewer.text("#recent-activity table").await.unwrap();
    assert_eq!(
        viewer.count("#actions button").await.unwrap(),
        0,
        "a viewer has no action buttons"
    );
    assert_eq!(
        viewer.count("#nav a[href='#/admin']").await.unwrap(),
        0,
        "no admin link"
    );
    viewer
        .goto(&format!("{}/#/admin", base(&setup)))
        .await
        .unwrap();
    viewer.text("#forbidden").await.unwrap();
    assert_eq!(
        viewer.count("#users, #join-tokens").await.unwrap(),
        0,
        "no admin content"
    );
    viewer.screenshot("viewer-admin").await.unwrap();
    viewer.close().await;

    let operator = Browser::start().await.unwrap();
    operator
        .sign_in(&base(&setup), "operator@example.com", PASSWORD)
        .await
        .unwrap();
    operator.goto(&container_page).await.unwrap();
    operator.click("button[data-action=stop]").await.unwrap();
    operator.click("button[data-confirm=yes]").await.unwrap();
    operator.text("#action-status .ok").await.unwrap();
    let state = docker(&["inspect", "-f", "{{.State.Running}}", &name])
        .await
        .unwrap();
    assert_eq!(
        state.trim(),
        "false",
        "the stop button stopped the container"
    );
    operator
        .goto(&format!("{}/#/activity", base(&setup)))
        .await
        .unwrap();
    operator
        .until(
            "the operator's stop in the activity log",
            "return [...document.querySelectorAll('table.activity tbody tr')].some(r =>
               r.textContent.includes('operator@example.com') && r.children[2].textContent === 'stop');",
        )
        .await
        .unwrap();
    operator.screenshot("activity").await.unwrap();
    operator.close().await;
}

/// What a container may carry that must stay text: a name no real Docker accepts (sent
/// by an agent speaking the protocol directly) and label values Docker takes as they are.
const EVIL_NAME: &str = "<img src=x onerror=alert(1)>";
const EVIL_LABEL: &str = "\"><script>window.injected = 1</script>";

#[tokio::test]
async fn docker_provided_strings_are_rendered_as_text() {
    let setup = Setup::new().await;
    let _agent = setup.agent("ui-xss").await;
    let mut cleanup = Cleanup::default();
    let label = format!("evil={EVIL_LABEL}");
    let image_label = format!("img={EVIL_NAME}");
    let name = run(
        &mut cleanup,
        "ui-xss",
        &["--label", &label, "--label", &image_label],
        &["sleep", "3600"],
    )
    .await;
    let admin = sign_in(&setup, ADMIN, ADMIN_PASSWORD).await;
    let key = container_key(&setup, &admin, &name).await;

    // An agent that reports a container named like markup.
    let identity = raw_identity(&setup, "ui-raw");
    let (mut raw, last) = RawAgent::join(
        setup.collector.agent_address,
        identity.tls_config().unwrap(),
    )
    .await
    .unwrap();
    let evil: Container = serde_json::from_value(json!({
        "id": "e".repeat(64), "name": EVIL_NAME, "image": EVIL_NAME, "image_id": "sha256:e",
        "created_ns": now_ns(), "state": ContainerState::Running, "restart_count": 0,
        "labels": {"evil": EVIL_LABEL},
    }))
    .unwrap();
    let update = InventoryUpdate {
        time_ns: now_ns(),
        full: true,
        containers: vec![evil],
        ..Default::default()
    };
    raw.send(&AgentMessage::Data(DataFrame {
        seq: last + 1,
        records: vec![Record::Inventory(update)],
        dropped: Dropped::default(),
    }))
    .await
    .unwrap();
    let evil_key = container_key(&setup, &admin, &urlencode(EVIL_NAME)).await;

    let browser = signed_in_admin(&setup).await;
    browser.type_into("#search", "onerror").await.unwrap();
    let shown = browser
        .until("the markup-named container in the list", "return document.querySelector('table.containers .container-name')?.textContent ?? null;")
        .await
        .unwrap();
    assert_eq!(
        shown,
        Value::String(EVIL_NAME.to_owned()),
        "the name is shown as it is"
    );
    browser.screenshot("xss-fleet").await.unwrap();
    for page in [key, evil_key] {
        browser
            .goto(&format!("{}/#/containers/{page}", base(&setup)))
            .await
            .unwrap();
        let labels = browser.text("#labels").await.unwrap();
        assert!(labels.contains(EVIL_LABEL), "{labels}");
    }
    assert_eq!(browser.text("#container-name").await.unwrap(), EVIL_NAME);
    assert_eq!(browser.dialog().await, None, "no dialog opened");
    let injected = browser
        .eval("return [document.querySelectorAll('main img, main script').length, window.injected ?? null];", vec![])
        .await
        .unwrap();
    assert_eq!(
        injected,
        json!([0, null]),
        "no element was injected and no script ran"
    );
    browser.screenshot("xss-container").await.unwrap();
    browser.close().await;
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn signing_out_closes_the_live_socket_and_protected_pages_ask_to_sign_in() {
    let setup = Setup::new().await;
    let _agent = setup.agent("ui-logout").await;
    let browser = signed_in_admin(&setup).await;
    browser
        .until(
            "the live socket",
            "return document.querySelector('#live-status').dataset.state === 'live';",
        )
        .await
        .unwrap();
    let clients = || async {
        crate::support::scrape(&setup)
            .await
            .lines()
            .find_map(|l| l.strip_prefix("dockermon_ws_clients "))
            .map(|v| v.trim().to_owned())
    };
    assert_eq!(clients().await.as_deref(), Some("1"));

    // A reload keeps the session (through the HttpOnly cookie, which no script can read).
    browser.client.refresh().await.unwrap();
    browser.text("#who-email").await.unwrap();
    let cookies = browser
        .eval("return document.cookie;", vec![])
        .await
        .unwrap();
    assert_eq!(cookies, json!(""), "the refresh cookie is HttpOnly");
    let stored = browser
        .eval(
            "return [localStorage.length, sessionStorage.getItem('dockermon.next')];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(stored[0], json!(0), "nothing in localStorage");

    browser.click("#sign-out").await.unwrap();
    browser
        .until(
            "the sign-in page",
            "return location.hash === '#/signin' && !!document.querySelector('#sign-in');",
        )
        .await
        .unwrap();
    eventually(PAGE_WAIT, "the socket closed at the server", || async {
        (clients().await.as_deref() == Some("0")).then_some(())
    })
    .await
    .unwrap();
    for page in ["#/fleet", "#/admin", "#/activity"] {
        browser
            .goto(&format!("{}/{page}", base(&setup)))
            .await
            .unwrap();
        browser.client.refresh().await.unwrap();
        browser
            .until(
                "the sign-in page",
                "return location.hash === '#/signin' && !!document.querySelector('#sign-in');",
            )
            .await
            .unwrap();
    }
    assert_eq!(browser.count("#who-email").await.unwrap(), 0);
    browser.screenshot("signed-out").await.unwrap();
    browser.close().await;
}

#[tokio::test]
async fn a_dropped_live_socket_says_so_and_reconnects_with_its_subscriptions() {
    let mut setup = Setup::new().await;
    let _agent = setup.agent("ui-reconnect").await;
    let mut cleanup = Cleanup::default();
    run(&mut cleanup, "ui-live", &[], &["sleep", "3600"]).await;
    let browser = signed_in_admin(&setup).await;
    let state = "return document.querySelector('#live-status').dataset.state";
    browser
        .until("the live socket", &format!("{state} === 'live'"))
        .await
        .unwrap();

    setup.collector.kill9().await;
    let said = browser
        .until(
            "the header saying the socket is lost",
            "const s = document.querySelector('#live-status');
             return s.dataset.state === 'reconnecting' ? s.textContent : null;",
        )
        .await
        .unwrap();
    assert!(said.as_str().unwrap().contains("reconnecting in"), "{said}");
    browser.screenshot("reconnecting").await.unwrap();

    setup.collector.restart().await.unwrap();
    browser
        .until("the socket back", &format!("{state} === 'live'"))
        .await
        .unwrap();
    // The fleet page's subscriptions were sent again: its host's stats (every second)
    // arrive over the new socket.
    let delivered = "return Number(document.querySelector('#live-status').dataset.delivered);";
    let before = browser
        .eval(delivered, vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap();
    browser
        .until(
            "updates over the new socket",
            &format!("{} > {before} + 2", delivered.trim_end_matches(';')),
        )
        .await
        .unwrap();
    browser.close().await;
}

#[tokio::test]
async fn a_host_page_shows_disk_usage_and_admins_manage_users_tokens_and_hosts() {
    let setup = Setup::with(&["--agent-usage-interval", "1s"]).await;
    let _agent = setup.agent("ui-admin").await;
    let mut cleanup = Cleanup::default();
    let name = run(&mut cleanup, "ui-host", &[], &["sleep", "3600"]).await;
    let admin = sign_in(&setup, ADMIN, ADMIN_PASSWORD).await;
    let host = setup.host_id("ui-admin").await;
    let browser = signed_in_admin(&setup).await;

    // The host page: its container, and disk usage by type once the agent reported it.
    browser
        .goto(&format!("{}/#/hosts/{}", base(&setup), host.0))
        .await
        .unwrap();
    browser.click_link(&name).await.unwrap();
    assert_eq!(browser.text("#container-name").await.unwrap(), name);
    browser.client.back().await.unwrap();
    let images = browser
        .until(
            "disk usage on the host page",
            "const row = [...document.querySelectorAll('table.usage tbody tr')]
               .find(r => r.children[0].textContent === 'Images');
             return row ? Number(row.children[1].textContent) : null;",
        )
        .await
        .unwrap();
    assert!(images.as_u64().unwrap() >= 1, "the test image is counted");
    browser.screenshot("host").await.unwrap();

    // Admin: a user created through the form can sign in with the role chosen.
    browser
        .goto(&format!("{}/#/admin", base(&setup)))
        .await
        .unwrap();
    browser
        .type_into("#new-user-email", "new@example.com")
        .await
        .unwrap();
    browser
        .type_into("#new-user-password", PASSWORD)
        .await
        .unwrap();
    browser
        .eval(
            "document.querySelector('#new-user-role').value = 'operator';",
            vec![],
        )
        .await
        .unwrap();
    browser
        .click("#users form button[type=submit]")
        .await
        .unwrap();
    browser
        .until(
            "the new user listed",
            "return [...document.querySelectorAll('table.users td')].some(td => td.textContent === 'new@example.com');",
        )
        .await
        .unwrap();
    let body = json!({"email": "new@example.com", "password": PASSWORD});
    let (status, tokens) = call(&setup, "POST", "/api/v1/auth/login", None, Some(body)).await;
    assert_eq!(
        (status, tokens["user"]["role"].as_str()),
        (200, Some("operator"))
    );

    // A join token is shown once, and works: the API lists it unused for its host.
    browser.type_into("#token-host", "ui-joiner").await.unwrap();
    browser
        .click("#join-tokens form button[type=submit]")
        .await
        .unwrap();
    let token = browser.text("#new-token code").await.unwrap();
    assert!(token.len() > 20, "{token}");
    let (_, listed) = call(&setup, "GET", "/api/v1/join-tokens", Some(&admin), None).await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["host"] == "ui-joiner" && t["state"] == "unused"),
        "{listed}"
    );

    // Deleting a host revokes it: the API no longer knows it.
    browser
        .until(
            "the host in the admin list",
            "return [...document.querySelectorAll('#admin-hosts a')].some(a => a.textContent === 'ui-admin');",
        )
        .await
        .unwrap();
    browser
        .click("#admin-hosts tr[data-id] button.danger")
        .await
        .unwrap();
    browser
        .click("#admin-hosts button[data-confirm=yes]")
        .await
        .unwrap();
    let path = format!("/api/v1/hosts/{}", host.0);
    eventually(PAGE_WAIT, "the host deleted", || async {
        (call(&setup, "GET", &path, Some(&admin), None).await.0 == 404).then_some(())
    })
    .await
    .unwrap();
    browser.screenshot("admin").await.unwrap();
    browser.close().await;
}

//! API benchmark: the REST API under 100 concurrent clients (wrk, on loopback) with a fleet's
//! history loaded, and WebSocket fan-out of stats sweeps to many subscribers.
//!
//!   cargo bench -p dockermon-collector --bench api -- \
//!       --mysql mysql://dockermon:dockermon@127.0.0.1:33306 [--sqlite-dir /tmp]
//!
//! The server runs in this process on a multi-threaded runtime; wrk runs beside it on the
//! same two cores, so the figures are what one small machine does with both. Every request
//! carries a real access token and goes through the full path: token check, session lookup
//! in the database, query, JSON. Prints a Markdown table.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use dockermon_collector::api::auth::TokenKeys;
use dockermon_collector::api::auth::tokens::unix_now;
use dockermon_collector::api::{ApiState, router};
use dockermon_collector::inventory::Inventory;
use dockermon_collector::live::LiveBatch;
use dockermon_collector::store::{
    ContainerFilter, DatabaseUrl, HostId, Page, Retention, Role, Store,
};
use dockermon_collector::transport::Registry;
use dockermon_collector::ws::{self, Feed, WsSettings, WsState};
use dockermon_e2e::live;
use dockermon_proto::{HostName, Record};
use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

mod support;
use support::{
    PER_HOST, S, ScratchDatabases, fleet, latency, load_history, on_scratch_databases, row, sample,
};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    databases: ScratchDatabases,
    #[arg(long, default_value_t = 1000)]
    containers: i64,
    #[arg(long, default_value_t = 30)]
    days: i64,
    /// wrk's connections.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// How long wrk runs per endpoint.
    #[arg(long, default_value = "20s")]
    duration: String,
    /// WebSocket subscribers of the fan-out phase.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Stats sweeps published in the fan-out phase, 500 ms apart.
    #[arg(long, default_value_t = 40)]
    sweeps: usize,
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let args = &args;
    runtime.block_on(async {
        println!("| backend | measurement | result |");
        println!("|---|---|---|");
        on_scratch_databases(&args.databases, "dmapibench", |backend, url| async move {
            rest(backend, &url, args).await
        })
        .await?;
        fan_out(args).await
    })
}

fn state(store: Store) -> ApiState {
    ApiState {
        inventory: Inventory::new(store.clone()),
        store: store.clone(),
        tokens: Arc::new(TokenKeys::new(
            b"benchmark secret of thirty-two bytes!",
            Duration::from_secs(3600),
        )),
        throttle: Arc::default(),
        sessions: Arc::default(),
        live: dockermon_collector::live::LiveBus::default(),
        registry: Registry::default(),
        profiler: dockermon_collector::profiles::Profiler::new(
            store.clone(),
            Registry::default(),
            dockermon_collector::live::LiveBus::default(),
            Default::default(),
        ),
        metrics: std::sync::Arc::default(),
        retention: Retention::default(),
        authority: None,
        refresh_ttl: Duration::from_secs(3600),
        action_timeout: Duration::from_secs(5),
        resources_wake: Default::default(),
        resources_in_kubernetes: false,
    }
}

/// A signed-in user's access token, with its session in the store.
async fn token(state: &ApiState) -> anyhow::Result<String> {
    let user = state
        .store
        .create_user("bench@example.com", "x", Role::Viewer, 0)
        .await?;
    let now = dockermon_proto::now_ns();
    state
        .store
        .create_session("bench-session", user.id, "x", now, now + 3600 * S)
        .await?;
    Ok(state
        .tokens
        .issue(user.id, "bench-session", Role::Viewer, unix_now()))
}

async fn rest(backend: &str, url: &str, args: &Args) -> anyhow::Result<()> {
    let store = Store::connect(&DatabaseUrl::parse(url)?).await?;
    store.migrate().await?;
    let hosts = fleet(&store, args.containers).await?;
    let now = dockermon_proto::now_ns();
    let started = Instant::now();
    let rows = load_history(url, args.days, now).await?;
    row(
        backend,
        &format!("loaded {} containers × {} days", args.containers, args.days),
        format!(
            "{rows} raw rows + rollups in {:.0} s (not measured)",
            started.elapsed().as_secs_f64()
        ),
    );
    let state = state(store.clone());
    let token = token(&state).await?;
    // A container in the middle of the fleet.
    let middle = Page::new(args.containers as u64 / 2, 1)?;
    let key = store
        .containers(&ContainerFilter::default(), middle)
        .await?
        .items[0]
        .id;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let stop = CancellationToken::new();
    let server = tokio::spawn({
        let stop = stop.clone();
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        }
    });
    let to = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now))?;
    let from = to - time::Duration::days(1);
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    let host = hosts[0].0;
    for (label, path) in [
        (
            "the signed-in user (token check, cached session, one user row by key)".to_owned(),
            "/api/v1/me".to_owned(),
        ),
        (
            format!(
                "container list, one host ({PER_HOST} of {})",
                args.containers
            ),
            format!("/api/v1/containers?host={}", host.0),
        ),
        (
            "baseline: the same list from the database (include_removed=true, none removed)"
                .to_owned(),
            format!("/api/v1/containers?host={}&include_removed=true", host.0),
        ),
        (
            format!(
                "container list, whole fleet, first 100 of {}",
                args.containers
            ),
            "/api/v1/containers?limit=100".to_owned(),
        ),
        (
            "24-hour stats of one container (5-minute points)".to_owned(),
            format!(
                "/api/v1/containers/{}/stats?from={}&to={}",
                key.0,
                from.format(rfc3339)?,
                to.format(rfc3339)?
            ),
        ),
    ] {
        let result = wrk(address, &path, &token, args).await?;
        row(
            backend,
            &format!("{label}, {} clients", args.connections),
            result,
        );
    }
    stop.cancel();
    server.await??;
    // What keeping the container lists in memory costs: one reload of the snapshot.
    let mut timings = Vec::with_capacity(50);
    for _ in 0..50 {
        let started = Instant::now();
        let current = store.current_containers().await?;
        timings.push(started.elapsed());
        assert_eq!(current.len() as i64, args.containers);
    }
    row(
        backend,
        &format!(
            "inventory reload ({} containers with descriptions)",
            args.containers
        ),
        latency(timings),
    );
    store.close().await;
    Ok(())
}

/// Runs wrk against `path`; requests/s and latency percentiles as wrk reports them.
async fn wrk(address: SocketAddr, path: &str, token: &str, args: &Args) -> anyhow::Result<String> {
    let output = tokio::process::Command::new("wrk")
        .args([
            "-t2",
            "-c",
            &args.connections.to_string(),
            "-d",
            &args.duration,
            "--latency",
        ])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("http://{address}{path}"))
        .output()
        .await
        .map_err(|error| anyhow::anyhow!("cannot run wrk (apt-get install wrk): {error}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| {
        text.lines()
            .find_map(|line| {
                line.trim()
                    .strip_prefix(prefix)
                    .map(|rest| rest.trim().to_owned())
            })
            .unwrap_or_else(|| "?".into())
    };
    let non_2xx = field("Non-2xx or 3xx responses:");
    if non_2xx != "?" {
        anyhow::bail!("{path}: {non_2xx} requests failed\n{text}");
    }
    Ok(format!(
        "{} req/s; latency p50 {}, p99 {}",
        field("Requests/sec:"),
        field("50%"),
        field("99%")
    ))
}

/// The first `"time_ns":` value of a message, without parsing the rest of it.
fn first_time_ns(text: &str) -> Option<i64> {
    let start = text.find("\"time_ns\":")? + "\"time_ns\":".len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// WebSocket fan-out: `subscribers` clients subscribed to fleet stats; a sweep of one host
/// (50 samples, one message) is published every 500 ms; each client measures from the
/// sweep's publication to its arrival.
async fn fan_out(args: &Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::connect(&DatabaseUrl::parse(&format!(
        "sqlite://{}/ws.db",
        dir.path().display()
    ))?)
    .await?;
    store.migrate().await?;
    let api = state(store.clone());
    let token = token(&api).await?;
    let feed = Feed::default();
    let shutdown = CancellationToken::new();
    let ws_state = WsState {
        api,
        feed: feed.clone(),
        settings: Arc::new(WsSettings::default()),
        shutdown: shutdown.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, ws::router(ws_state)).await });

    let (latencies, collected) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let (ready, mut all_ready) = tokio::sync::mpsc::channel::<()>(args.subscribers);
    for _ in 0..args.subscribers {
        let (latencies, ready, token) = (latencies.clone(), ready.clone(), token.clone());
        let mut socket =
            live::subscribe(address, &token, &[serde_json::json!({"topic": "stats"})]).await?;
        tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                if text.as_str().starts_with("{\"type\":\"subscribed\"") {
                    ready.send(()).await.ok()?;
                } else if let Some(sent) = first_time_ns(text.as_str()) {
                    let now = dockermon_proto::now_ns();
                    latencies
                        .send(Duration::from_nanos((now - sent).max(0) as u64))
                        .ok()?;
                }
            }
            Some(())
        });
    }
    for _ in 0..args.subscribers {
        all_ready.recv().await;
    }
    drop(latencies);
    let ids: Vec<String> = (0..PER_HOST).map(|c| format!("{c:064}")).collect();
    for _ in 0..args.sweeps {
        let now = dockermon_proto::now_ns();
        let records = ids
            .iter()
            .enumerate()
            .map(|(i, id)| Record::Stats(sample(id, &format!("c-{i}"), now, i as u64)))
            .collect();
        feed.publish(&LiveBatch {
            host: HostId(1),
            host_name: HostName::new("host-0001")?,
            records,
            dropped: Default::default(),
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    shutdown.cancel();
    let mut collected = collected;
    let mut timings = Vec::new();
    while let Ok(Some(timing)) =
        tokio::time::timeout(Duration::from_secs(5), collected.recv()).await
    {
        timings.push(timing);
    }
    let expected = args.subscribers * args.sweeps;
    row(
        "WebSocket",
        &format!(
            "fan-out of a {PER_HOST}-container stats sweep to {} subscribers, every 500 ms",
            args.subscribers
        ),
        format!(
            "{} of {expected} delivered; {}",
            timings.len(),
            latency(timings).replace("queries", "deliveries")
        ),
    );
    store.close().await;
    Ok(())
}

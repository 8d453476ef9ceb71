//! `dockermon-collector serve`: the service.
//!
//! Start-up order: certificates are loaded first (a bad file is reported before anything
//! starts), then the health listener (so `/readyz` can say why the collector is not ready),
//! then the database, retried with backoff while it is down, then migrations (a failure
//! stops start-up), then the agent listener, the first admin (if there are no users), the
//! API and WebSocket listeners, and the scheduled jobs. The token secret is loaded with the
//! certificates, so a bad one also stops start-up before anything listens. Everything stops
//! from one `CancellationToken`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use dockermon_agent::process::error_chain;
use dockermon_agent::say;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::admin::ensure_first_admin;
use crate::api::{
    self, ApiState,
    auth::{LoginThrottle, SessionCache, TokenKeys},
};
use crate::broker::Broker;
use crate::config::{ServeConfig, TlsSource};
use crate::health::{self, Dependency, Readiness};
use crate::inventory::Inventory;
use crate::live::LiveBus;
use crate::metrics::{self, CollectorMetrics, FleetMetrics, MetricsEndpoint};
use crate::operator;
use crate::pki::Authority;
use crate::profiles::Profiler;
use crate::resources;
use crate::scheduler;
use crate::store::{DatabaseUrl, Store, StoreError};
use crate::transport::token_review::TokenReviewer;
use crate::transport::{
    self, AgentService, COLLECTOR_BUDGET_BYTES, MemoryBudget, Pipeline, Registry, TlsFiles,
};
use crate::ws::{self, Feed, WsState};

/// How long an agent has to carry out a container action.
const ACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the database is checked once running.
const DATABASE_CHECK: Duration = Duration::from_secs(5);
/// How long a collector told to stop waits for its work to end: well within Kubernetes'
/// default 30 s between SIGTERM and SIGKILL.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

pub async fn serve(config: ServeConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    for path in dockermon_agent::process::shared_files(&config.database.data_dir) {
        warn!(%path, "other users can read or write this: it may hold password hashes, keys or secrets; run chmod go-rwx on it");
    }
    let readiness = Readiness::default();
    let tracker = TaskTracker::new();

    // The Kubernetes API, for what this collector keeps or checks there (the operator has
    // its own client).
    let kube_client = if config.pki_secret.is_some()
        || config.ca_config_map.is_some()
        || config.service_account_enrollment.is_some()
    {
        Some(kube::Client::try_default().await.context(
            "cannot reach Kubernetes, which pki_secret, ca_config_map and agent_service_account need (no in-cluster service account and no kubeconfig)",
        )?)
    } else {
        None
    };
    if let (Some(settings), TlsSource::BuiltIn(paths), Some(client)) =
        (&config.pki_secret, &config.tls, &kube_client)
    {
        let namespace = client.default_namespace().to_owned();
        operator::pki_secret::sync(client.clone(), &namespace, settings, paths)
            .await
            .context("cannot set up the built-in CA from Kubernetes")?;
    }
    let (tls_files, authority) = match &config.tls {
        TlsSource::BuiltIn(paths) => {
            let authority = Authority::load(paths).context("cannot load the built-in CA")?;
            let files = TlsFiles {
                certificate: paths.server_cert(),
                key: paths.server_key(),
                client_ca: paths.ca_cert(),
            };
            (files, Some(Arc::new(authority)))
        }
        TlsSource::Files(files) => (files.clone(), None),
    };
    if let (Some(name), Some(authority), Some(client)) =
        (&config.ca_config_map, &authority, &kube_client)
    {
        let namespace = client.default_namespace().to_owned();
        operator::pki_secret::publish_ca(client.clone(), &namespace, name, authority.ca_pem())
            .await?;
        info!(config_map = %name, "published the CA certificate for agents");
    }
    let tls = transport::tls::server_config(&tls_files).context("cannot set up TLS for agents")?;
    let jwt_secret = config
        .api
        .jwt_secret
        .load()
        .context("cannot load the token secret")?;

    // The other replicas, when there are: live updates and commands cross to them.
    let broker = match &config.nats {
        Some(nats) => Some(Broker::connect(nats, readiness.clone()).await?),
        None => None,
    };
    // What /metrics serves exists from the start; it fills once agents connect.
    let registry = match &broker {
        Some(broker) => Registry::linked(broker.clone(), &tracker, cancel.clone()),
        None => Registry::default(),
    };
    let own_metrics = Arc::new(CollectorMetrics::default());
    let fleet_metrics = Arc::new(FleetMetrics::new(config.metrics.clone()));
    let leader = Arc::new(AtomicBool::new(false));
    let metrics = MetricsEndpoint {
        fleet: fleet_metrics.clone(),
        registry: registry.clone(),
        own: own_metrics.clone(),
        token: config.metrics_token.clone(),
        leader: leader.clone(),
    };
    let listener = bind(config.health_listen, "health_listen").await?;
    info!(address = %listener.local_addr()?, "health endpoints listening");
    let router = health::router(readiness.clone()).merge(metrics::router(metrics));
    spawn_server(&tracker, listener, router, "health", &cancel);

    let store = match connect(
        &config.database.url,
        config.wait_for_database,
        &readiness,
        &cancel,
    )
    .await
    {
        Ok(Some(store)) => store,
        Ok(None) => {
            tracker.close();
            tracker.wait().await;
            return Ok(());
        }
        Err(error) => {
            cancel.cancel();
            tracker.close();
            tracker.wait().await;
            return Err(error);
        }
    };
    store.migrate().await.context("cannot start")?;
    info!(database = %config.database.url, "database ready");
    readiness.ready(Dependency::Database);

    let agent_listener = bind(config.agent_listen, "agent_listen").await?;
    info!(address = %agent_listener.local_addr()?, "agents listening");
    let live = match broker {
        Some(broker) => LiveBus::linked(broker, &tracker, cancel.clone()),
        None => LiveBus::default(),
    };
    let (pipeline, writer) = Pipeline::start(
        store.clone(),
        live.clone(),
        own_metrics.clone(),
        cancel.clone(),
    );
    tracker.spawn(
        fleet_metrics
            .clone()
            .run(live.clone(), store.clone(), cancel.clone()),
    );
    let profiler = Profiler::new(
        store.clone(),
        registry.clone(),
        live.clone(),
        config.profiles.clone(),
    );
    tracker.spawn(profiler.clone().run(cancel.clone()));
    // Wakes the resource controller when the API changed a resource.
    let resources_wake = Arc::new(tokio::sync::Notify::new());
    let token_reviewer = match (&config.service_account_enrollment, &kube_client) {
        (Some(enrollment), Some(client)) => {
            let client = client.clone();
            info!(account = %enrollment.account, audience = %enrollment.audience, "agents may enroll with their ServiceAccount token");
            Some(TokenReviewer::new(
                client,
                enrollment.audience.clone(),
                enrollment.account.clone(),
            ))
        }
        _ => None,
    };
    let service = Arc::new(AgentService {
        store: store.clone(),
        pipeline,
        registry: registry.clone(),
        profiler: profiler.clone(),
        metrics: fleet_metrics.clone(),
        authority: authority.clone(),
        token_reviewer,
        agent_config: config.agent_config.clone(),
        agent_cert_ttl: config.agent_cert_ttl,
        budget: MemoryBudget::new(COLLECTOR_BUDGET_BYTES),
        shutdown: cancel.clone(),
    });
    tracker.spawn(transport::serve(
        agent_listener,
        tls,
        service,
        cancel.clone(),
    ));
    tracker.spawn(async move {
        let _ = writer.await;
    });

    if let Some((admin, generated)) = ensure_first_admin(&store, &config.api.first_admin).await? {
        match generated {
            // Into a private file, and on the terminal when there is one: never into the
            // log stream, which log collectors keep.
            Some(password) => {
                let file = config
                    .database
                    .data_dir
                    .join("secrets")
                    .join("first-admin-password");
                write_first_password(&file, &password)
                    .with_context(|| format!("cannot write {}", file.display()))?;
                info!(email = %admin.email, file = %file.display(), "created the first admin; the password is in the file: sign in, change it, delete the file");
                if std::io::stderr().is_terminal() {
                    say!(
                        "\n  First admin created: {}\n  Password: {password}\n  (also in {}; change it after signing in)\n",
                        admin.email,
                        file.display()
                    );
                }
            }
            None => info!(email = %admin.email, "created the first admin"),
        }
    }
    let sessions = Arc::new(SessionCache::new(live.clone()));
    let throttle = Arc::new(LoginThrottle::default());
    tracker.spawn({
        let (throttle, live, cancel) = (throttle.clone(), live.clone(), cancel.clone());
        async move { throttle.follow(&live, cancel).await }
    });
    tracker.spawn({
        let (sessions, cancel) = (sessions.clone(), cancel.clone());
        async move { sessions.follow(cancel).await }
    });
    let api = ApiState {
        store: store.clone(),
        inventory: Inventory::new(store.clone()),
        tokens: Arc::new(TokenKeys::new(&jwt_secret, config.api.access_ttl)),
        throttle,
        sessions: sessions.clone(),
        live: live.clone(),
        registry: registry.clone(),
        profiler: profiler.clone(),
        metrics: own_metrics.clone(),
        retention: config.retention.clone(),
        authority,
        refresh_ttl: config.api.session_ttl,
        action_timeout: ACTION_TIMEOUT,
        resources_wake: resources_wake.clone(),
        resources_in_kubernetes: config.kubernetes,
    };
    let feed = Feed::default();
    tracker.spawn(ws::fanout::run(live, feed.clone(), cancel.clone()));
    let ws_state = WsState {
        api: api.clone(),
        feed,
        settings: Arc::default(),
        shutdown: cancel.clone(),
    };
    let listener = bind(config.api.listen, "api_listen").await?;
    info!(address = %listener.local_addr()?, "API listening");
    // The API listener also serves the web UI and the WebSocket API, so the UI talks to
    // one origin; :3811 keeps the WebSocket API for existing clients.
    let api_router = api::router(api)
        .merge(ws::router(ws_state.clone()))
        .merge(crate::ui::router());
    spawn_server(&tracker, listener, api_router, "API", &cancel);
    let listener = bind(config.api.ws_listen, "ws_listen").await?;
    info!(address = %listener.local_addr()?, "WebSocket API listening");
    spawn_server(
        &tracker,
        listener,
        ws::router(ws_state),
        "WebSocket",
        &cancel,
    );
    readiness.ready(Dependency::Startup);

    tracker.spawn(watch_database(
        store.clone(),
        readiness.clone(),
        cancel.clone(),
    ));
    let operator_failed: Arc<std::sync::Mutex<Option<anyhow::Error>>> = Arc::default();
    let reconcile = resources::reconcile::Context {
        store: store.clone(),
        registry: registry.clone(),
        profiler: profiler.clone(),
        defaults: config.agent_config.clone(),
    };
    if config.kubernetes {
        // Resources live in the cluster; the operator reconciles them while it holds the
        // Lease. A cluster that cannot be reached ends the collector, as a database that
        // refuses does.
        let cancel_all = cancel.clone();
        let operator_cancel = cancel.clone();
        let failed = operator_failed.clone();
        tracker.spawn(async move {
            if let Err(error) = operator::run(reconcile, holder_id(), operator_cancel).await {
                *failed.lock().expect("operator error lock") = Some(error);
                cancel_all.cancel();
            }
        });
    } else {
        tracker.spawn(resources::controller::run(
            reconcile,
            leader.clone(),
            resources_wake,
            cancel.clone(),
        ));
    }
    tracker.spawn(scheduler::run(
        store.clone(),
        config.retention.clone(),
        holder_id(),
        leader,
        cancel.clone(),
    ));

    cancel.cancelled().await;
    tracker.close();
    stop_within(&tracker, &store).await;
    match operator_failed.lock().expect("operator error lock").take() {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Waits up to [`SHUTDOWN_GRACE`] for the tasks to end and the database connections to
/// close. Whatever is left then waits on something that does not answer (a database or
/// broker gone): nothing of it needs keeping, since agents resend what was not
/// acknowledged, so the collector exits rather than outlast its orchestrator's patience.
async fn stop_within(tracker: &TaskTracker, store: &Store) {
    let stopped = async {
        tracker.wait().await;
        store.close().await;
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, stopped).await.is_err() {
        warn!(
            tasks = tracker.len(),
            "still waiting on the database or the broker after {SHUTDOWN_GRACE:?}; exiting anyway"
        );
    }
}

async fn bind(address: SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} ({key})"))
}

/// Serves `router` on `listener` until `cancel` fires, with the client's address available
/// to handlers (the API throttles failed logins by it).
fn spawn_server(
    tracker: &TaskTracker,
    listener: TcpListener,
    router: axum::Router,
    name: &'static str,
    cancel: &CancellationToken,
) {
    let stop = cancel.clone();
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    tracker.spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(error) = served {
            warn!(%error, listener = name, "listener failed");
        }
    });
}

/// Writes the generated first-admin password, readable by this user only.
fn write_first_password(file: &std::path::Path, password: &str) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    dockermon_agent::files::write_atomically(
        file,
        format!("{password}\n").as_bytes(),
        dockermon_agent::files::SECRET,
    )
}

/// Connects, retrying with backoff while the database is unavailable. A database that
/// refuses (wrong credentials, unknown database) is an error at once unless `wait`: no
/// retry fixes configuration. `None` if cancelled.
async fn connect(
    url: &DatabaseUrl,
    wait: bool,
    readiness: &Readiness,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<Store>> {
    let mut delay = Duration::from_millis(500);
    loop {
        match Store::connect(url).await {
            Ok(store) => return Ok(Some(store)),
            Err(error @ StoreError::Refused(_)) if !wait => {
                return Err(anyhow::Error::new(error).context(format!(
                    "cannot use the database {url} (pass --wait-for-database to keep retrying)"
                )));
            }
            Err(error) => {
                let reason = error_chain(&error);
                warn!(database = %url, error = %reason, retry_in_ms = delay.as_millis() as u64, "database unavailable; retrying");
                readiness.not_ready(Dependency::Database, reason);
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(None),
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// Keeps `/readyz` honest while running.
async fn watch_database(store: Store, readiness: Readiness, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(DATABASE_CHECK) => {}
        }
        let Some(answer) = cancel.run_until_cancelled(store.ping()).await else {
            return;
        };
        match answer {
            Ok(()) => {
                if !readiness.works(Dependency::Database) {
                    info!("database reachable again");
                }
                readiness.ready(Dependency::Database);
            }
            Err(error) => {
                let reason = error_chain(&error);
                if readiness.works(Dependency::Database) {
                    warn!(error = %reason, "database unavailable");
                }
                readiness.not_ready(Dependency::Database, reason);
            }
        }
    }
}

/// Names this replica in leases.
fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!(
        "{}-{}-{:08x}",
        host.trim(),
        std::process::id(),
        rand::random::<u32>()
    )
}

//! `dockermon-collector standalone`: the collector and an agent for the local Docker
//! engine in one process, on the embedded SQLite under `./data`: the one-command way to try
//! Dockermon.
//!
//! Nothing is special-cased: on first start the CA is created and the local agent enrolls
//! with a one-time join token over the real agent listener (bound to loopback), exactly as
//! a remote agent would, and keeps its certificate under `<data dir>/agent`; later starts
//! reuse everything. A missing Docker socket leaves the collector and its API up; the agent
//! keeps trying and says why.

use std::time::Duration;

use anyhow::Context;
use dockermon_agent::config::{CollectConfig, Config as AgentConfig, DockerConfig, Output};
use dockermon_agent::docker::Endpoint;
use dockermon_agent::uplink::{CollectorUrl, Collectors, Enrollment, Identity, UplinkConfig};
use dockermon_proto::HostName;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::ServeConfig;
use crate::pki::{Authority, PkiPaths};
use crate::serve::serve;
use crate::store::Store;
use crate::transport::join_tokens::{self, TokenRequest};

/// How long the local agent's join token is valid: it is used within seconds.
const TOKEN_TTL: Duration = Duration::from_secs(600);

pub async fn standalone(
    config: ServeConfig,
    docker_host: &str,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let endpoint = Endpoint::parse(docker_host)
        .map_err(|reason| anyhow::anyhow!("configuration error: docker_host: {reason}"))?;
    let data_dir = config.database.data_dir.clone();
    let paths = PkiPaths::in_data_dir(&data_dir);
    let authority = if paths.exists() {
        Authority::load(&paths).context("cannot load the built-in CA")?
    } else {
        info!(dir = %paths.dir.display(), "creating the certificate authority");
        Authority::init(
            &paths,
            &["localhost".to_owned(), "127.0.0.1".to_owned()],
            false,
        )
        .context("cannot create the built-in CA")?
    };

    let state_dir = data_dir.join("agent");
    let identity = Identity::Managed {
        state_dir: state_dir.clone(),
    };
    let join_token = if identity.enrolled() {
        None
    } else {
        let store = Store::connect(&config.database.url).await?;
        store.migrate().await.context("cannot start")?;
        // The local agent's state was lost (or this is the first start): whatever agent
        // held this host's name before is replaced.
        let request = TokenRequest {
            host: &local_host_name(),
            ttl: TOKEN_TTL,
            replace: true,
            created_by: None,
        };
        let (token, _) = join_tokens::create(&store, &authority, request).await?;
        store.close().await;
        Some(token)
    };
    let collector = CollectorUrl::parse(&format!("wss://localhost:{}", config.agent_listen.port()))
        .map_err(|reason| anyhow::anyhow!("agent_listen: {reason}"))?;

    if let Endpoint::Unix(path) = &endpoint
        && !path.exists()
    {
        warn!(
            socket = %path.display(),
            "no Docker socket here: the API is up, and the local agent connects once Docker is there (set --docker-host or DOCKER_HOST if it is elsewhere)"
        );
    }
    let agent = AgentConfig {
        docker: DockerConfig {
            endpoint,
            wait: true,
        },
        collect: CollectConfig::default(),
        output: Output::Collector(Box::new(UplinkConfig {
            collector: Collectors::one(collector),
            identity,
            enrollment: join_token.map(Enrollment::JoinToken),
            spool_dir: state_dir.join("spool"),
            spool_bytes: dockermon_agent::config::DEFAULT_SPOOL_BYTES,
        })),
        allowed_actions: dockermon_agent::actions::default_allowed(),
        max_profiles: dockermon_agent::profiler::DEFAULT_MAX_SESSIONS,
        counters: dockermon_agent::config::CounterConfig::default(),
        // The process's logging is the collector's.
        log: String::new(),
        log_format: dockermon_agent::process::LogFormat::Text,
    };
    let agent_cancel = cancel.child_token();
    let local_agent = tokio::spawn({
        let cancel = agent_cancel.clone();
        async move {
            if let Err(error) = dockermon_agent::agent::run(agent, cancel).await {
                warn!(error = %dockermon_agent::process::error_chain(&error), "the local agent stopped; the collector carries on");
            }
        }
    });
    let served = serve(config, cancel).await;
    agent_cancel.cancel();
    let _ = local_agent.await;
    served
}

/// This machine's name as a host name, or `local` if it has none that qualifies.
fn local_host_name() -> HostName {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(|name| HostName::new(name.trim()).ok())
        .unwrap_or_else(|| HostName::new("local").expect("a valid host name"))
}

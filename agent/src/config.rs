//! Agent configuration: flags, `DOCKERMON_*` environment variables and an optional YAML
//! file, resolved once at start into a validated [`Config`].
//!
//! Precedence, highest first: a flag, its environment variable, the YAML file, then the
//! built-in default. The Docker endpoint additionally falls back to the standard
//! `DOCKER_HOST` variable before the default socket. Everything is validated before
//! anything starts; a bad value is reported with its key and what would be accepted.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Deserialize;

use dockermon_proto::HostName;
use dockermon_proto::transport::{ContainerAction, JoinToken};

use crate::config_file;
use crate::docker::{DockerTls, Endpoint};
use crate::process::LogFormat;
use crate::uplink::{Collectors, Enrollment, Identity, IdentityFiles, UplinkConfig};

/// Watches one Docker engine and reports its events, inventory, container stats and
/// disk usage.
#[derive(Debug, Parser)]
#[command(name = "dockermon-agent", version)]
pub struct Cli {
    /// YAML configuration file: every flag is a key, with underscores (`--stats-interval
    /// 10s` is `stats_interval: 10s`). Flags and environment variables override it.
    #[arg(long, env = "DOCKERMON_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Docker endpoint: unix:///path/to/docker.sock or tcp://host:port.
    /// [default: $DOCKER_HOST, else unix:///var/run/docker.sock]
    #[arg(long, env = "DOCKERMON_DOCKER_HOST", value_name = "URL")]
    pub docker_host: Option<String>,

    /// Talk to a tcp:// Docker endpoint over TLS, verifying the engine's certificate and
    /// presenting this client's, as `docker --tlsverify` does. [default: $DOCKER_TLS_VERIFY]
    #[arg(long, env = "DOCKERMON_DOCKER_TLS_VERIFY", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true")]
    pub docker_tls_verify: Option<bool>,

    /// Where `ca.pem`, `cert.pem` and `key.pem` for Docker's TLS are, as for the docker
    /// CLI. [default: $DOCKER_CERT_PATH, else ~/.docker]
    #[arg(long, env = "DOCKERMON_DOCKER_CERT_PATH", value_name = "DIR")]
    pub docker_cert_path: Option<PathBuf>,

    /// Keep retrying when Docker cannot be reached at start, instead of exiting.
    #[arg(long, env = "DOCKERMON_WAIT_FOR_DOCKER", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true")]
    pub wait_for_docker: Option<bool>,

    /// Where records go: `collector` (the default when --collector is given) or `stdout`
    /// (one JSON object per line, for debugging).
    #[arg(long, env = "DOCKERMON_OUTPUT", value_enum)]
    pub output: Option<OutputKind>,

    /// The collector to report to: wss://HOST[:PORT] (port 3812 by default); its replicas'
    /// addresses, comma-separated, to move on to the next when one cannot be reached.
    #[arg(long, env = "DOCKERMON_COLLECTOR", value_name = "URL[,URL...]")]
    pub collector: Option<String>,

    /// One-time join token from `dockermon-collector token create`, used to enroll when the
    /// state directory holds no certificate yet, or to enroll again when the collector has
    /// revoked the one it holds (the host was deleted and re-admitted).
    #[arg(
        long,
        env = "DOCKERMON_JOIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub join_token: Option<String>,

    /// A file holding the join token (a mounted secret).
    #[arg(long, env = "DOCKERMON_JOIN_TOKEN_FILE", value_name = "FILE")]
    pub join_token_file: Option<PathBuf>,

    /// In a Kubernetes cluster, instead of a join token: a file holding this pod's projected
    /// ServiceAccount token (its audience the collector's --agent-token-audience), with
    /// which the agent enrolls as --host-name, trusting the collector through --ca.
    #[arg(
        long,
        env = "DOCKERMON_SERVICE_ACCOUNT_TOKEN_FILE",
        value_name = "FILE"
    )]
    pub service_account_token_file: Option<PathBuf>,

    /// The host name to enroll as with a ServiceAccount token: the node's name
    /// (`spec.nodeName`, through the downward API). The collector checks that the token's
    /// pod runs on that node.
    #[arg(long, env = "DOCKERMON_HOST_NAME", value_name = "NAME")]
    pub host_name: Option<String>,

    /// Where the agent keeps its key, certificate and spool.
    /// [default: /var/lib/dockermon-agent]
    #[arg(long, env = "DOCKERMON_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Client certificate from elsewhere (cert-manager), instead of enrolling. Needs --key
    /// and --ca.
    #[arg(long, env = "DOCKERMON_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// Private key of --cert.
    #[arg(long, env = "DOCKERMON_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// CA that signed the collector's certificate: with --cert and --key, or alone with
    /// --service-account-token-file.
    #[arg(long, env = "DOCKERMON_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// Most disk space for records waiting for the collector (e.g. 64MiB).
    /// [default: 64MiB]
    #[arg(long, env = "DOCKERMON_SPOOL_SIZE", value_name = "BYTES")]
    pub spool_size: Option<String>,

    /// How often container stats are swept (e.g. 30s, 1m). [default: 30s]
    #[arg(long, env = "DOCKERMON_STATS_INTERVAL", value_name = "DURATION")]
    pub stats_interval: Option<String>,

    /// How many stats requests may be in flight to Docker at once. Docker answers all
    /// concurrent requests from one tick of its 1-second stats collector, so this should
    /// cover a host's running containers. [default: 64]
    #[arg(long, env = "DOCKERMON_STATS_CONCURRENCY", value_name = "N")]
    pub stats_concurrency: Option<usize>,

    /// How often disk usage (`docker system df`) is measured, or `off`. [default: 2m]
    #[arg(long, env = "DOCKERMON_USAGE_INTERVAL", value_name = "DURATION|off")]
    pub usage_interval: Option<String>,

    /// How long one disk-usage measurement may take before it is abandoned. [default: 60s]
    #[arg(long, env = "DOCKERMON_USAGE_TIMEOUT", value_name = "DURATION")]
    pub usage_timeout: Option<String>,

    /// Container actions the collector may ask for, comma-separated, or `none`:
    /// start, stop, restart, pause, unpause, kill, remove.
    /// [default: all but remove]
    #[arg(long, env = "DOCKERMON_ALLOW_ACTIONS", value_name = "LIST")]
    pub allow_actions: Option<String>,

    /// Most profile sessions (1-second sampling of one container, started from the
    /// collector) this agent runs at once. [default: 8]
    #[arg(long, env = "DOCKERMON_MAX_PROFILES", value_name = "N")]
    pub max_profiles: Option<usize>,

    /// Where container counters are read: `auto` (the host's cgroup files when the agent
    /// can see them, which costs dockerd nothing; else Docker's stats API), `cgroup`
    /// (refuse to start without them) or `docker`. [default: auto]
    #[arg(long, env = "DOCKERMON_STATS_SOURCE", value_enum)]
    pub stats_source: Option<StatsSource>,

    /// Where the host's cgroup filesystem is mounted, for direct reads.
    /// [default: /sys/fs/cgroup]
    #[arg(long, env = "DOCKERMON_CGROUP_ROOT", value_name = "DIR")]
    pub cgroup_root: Option<PathBuf>,

    /// Log filter, written to stderr: a default level and `target=level` pairs,
    /// `,`-separated (`warn,dockermon_agent::stats=debug`). [default: info]
    #[arg(long, env = "DOCKERMON_LOG")]
    pub log: Option<String>,

    /// Log line format. [default: text]
    #[arg(long, env = "DOCKERMON_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// Where container counters come from ([`crate::stats::CounterSource`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatsSource {
    /// The cgroup files when readable, else Docker's stats API.
    Auto,
    /// The cgroup files; the agent refuses to start when it cannot read them.
    Cgroup,
    /// Docker's stats API only.
    Docker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    Stdout,
    Collector,
}

/// The YAML configuration file (`--config`). One rule: every flag `--some-name` is the key
/// `some_name`, with the value written as on the command line (lists may also be YAML
/// lists); the join token goes by `join_token_file`. Unknown keys are an error: a misspelt
/// key silently ignored is a setting silently not applied.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Log filter.
    pub log: Option<String>,
    /// Log line format.
    pub log_format: Option<LogFormat>,
    /// Docker endpoint, as `--docker-host`.
    pub docker_host: Option<String>,
    /// TLS to a tcp:// Docker endpoint.
    pub docker_tls_verify: Option<bool>,
    /// Where Docker's TLS files are.
    pub docker_cert_path: Option<PathBuf>,
    /// Keep retrying when Docker is unreachable at start.
    pub wait_for_docker: Option<bool>,
    /// Where records go.
    pub output: Option<OutputKind>,
    /// Stats sweep interval, e.g. `30s`.
    pub stats_interval: Option<String>,
    /// Concurrent stats requests.
    pub stats_concurrency: Option<usize>,
    /// Disk usage interval, e.g. `2m`, or `off`.
    pub usage_interval: Option<String>,
    /// Disk usage timeout, e.g. `60s`.
    pub usage_timeout: Option<String>,
    /// Collector URL, `wss://HOST[:PORT]`, or its replicas' (a list, or comma-separated).
    pub collector: Option<config_file::List>,
    /// File holding a join token.
    pub join_token_file: Option<PathBuf>,
    /// File holding the pod's projected ServiceAccount token (Kubernetes).
    pub service_account_token_file: Option<PathBuf>,
    /// Host name to enroll as with the ServiceAccount token: the node's name.
    pub host_name: Option<String>,
    /// State directory.
    pub state_dir: Option<PathBuf>,
    /// Client certificate (bring-your-own).
    pub cert: Option<PathBuf>,
    /// Its private key.
    pub key: Option<PathBuf>,
    /// CA of the collector.
    pub ca: Option<PathBuf>,
    /// Spool size, e.g. `64MiB`.
    pub spool_size: Option<String>,
    /// Container actions the collector may ask for, e.g. `start,stop` or `[start, stop]`.
    pub allow_actions: Option<config_file::List>,
    /// Most profile sessions at once.
    pub max_profiles: Option<usize>,
    /// `auto`, `cgroup` or `docker`.
    pub stats_source: Option<StatsSource>,
    /// Where the host's cgroup filesystem is mounted.
    pub cgroup_root: Option<PathBuf>,
}

/// What the docker CLI's own environment says: `DOCKER_HOST`, `DOCKER_TLS_VERIFY`,
/// `DOCKER_CERT_PATH` (default `~/.docker`). Read here, since clap reads only Dockermon's.
#[derive(Debug, Clone, Default)]
struct DockerEnv {
    host: Option<String>,
    tls_verify: bool,
    cert_path: Option<PathBuf>,
}

impl DockerEnv {
    #[allow(clippy::disallowed_methods)] // the standard variables clap does not read
    fn read() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|s| !s.is_empty());
        DockerEnv {
            host: var("DOCKER_HOST"),
            // The docker CLI treats any non-empty value as set.
            tls_verify: var("DOCKER_TLS_VERIFY").is_some(),
            cert_path: var("DOCKER_CERT_PATH")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".docker"))),
        }
    }
}

/// The resolved, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub docker: DockerConfig,
    pub collect: CollectConfig,
    pub output: Output,
    /// Container actions this agent carries out when the collector asks.
    pub allowed_actions: BTreeSet<ContainerAction>,
    /// Profile sessions this agent runs at once, at most.
    pub max_profiles: usize,
    pub counters: CounterConfig,
    /// Log filter and format.
    pub log: String,
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Stdout,
    Collector(Box<UplinkConfig>),
}

/// Where container counters are read.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterConfig {
    pub source: StatsSource,
    /// The host's cgroup filesystem (`/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// A `/proc` of the host's PID namespace (`/proc`; with `docker run --pid host`).
    pub proc_root: PathBuf,
}

impl Default for CounterConfig {
    fn default() -> Self {
        CounterConfig {
            source: StatsSource::Auto,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DockerConfig {
    pub endpoint: Endpoint,
    pub wait: bool,
}

/// What is collected and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectConfig {
    pub stats_interval: Duration,
    pub stats_concurrency: usize,
    /// `None`: disk usage is not measured.
    pub usage_interval: Option<Duration>,
    pub usage_timeout: Duration,
    /// Stats and disk usage are not collected (the collector's `DockerHost` spec says so).
    pub paused: bool,
}

impl Default for CollectConfig {
    fn default() -> Self {
        CollectConfig {
            stats_interval: Duration::from_secs(30),
            stats_concurrency: 64,
            usage_interval: Some(Duration::from_secs(120)),
            usage_timeout: Duration::from_secs(60),
            paused: false,
        }
    }
}

pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/dockermon-agent";
pub const DEFAULT_SPOOL_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] config_file::FileError),
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl Cli {
    fn allowed_actions(&self, file: &FileConfig) -> Result<BTreeSet<ContainerAction>, ConfigError> {
        let names: Vec<String> = match (&self.allow_actions, &file.allow_actions) {
            (Some(list), _) => config_file::List::Text(list.clone()).items(),
            (None, Some(list)) => list.items(),
            (None, None) => return Ok(crate::actions::default_allowed()),
        };
        if names.len() == 1 && names[0] == "none" {
            return Ok(BTreeSet::new());
        }
        names
            .iter()
            .filter(|name| !name.is_empty())
            .map(|name| {
                ContainerAction::parse(name).ok_or_else(|| {
                    invalid(
                        "allow_actions",
                        format!("{name:?} is not an action: use start, stop, restart, pause, unpause, kill, remove or none"),
                    )
                })
            })
            .collect()
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

impl Cli {
    /// Reads the config file (if any) and resolves everything into a [`Config`].
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => config_file::read_yaml(path)?,
            None => FileConfig::default(),
        };
        self.resolve_with(file, DockerEnv::read())
    }

    fn resolve_with(&self, file: FileConfig, env: DockerEnv) -> Result<Config, ConfigError> {
        let defaults = CollectConfig::default();
        let docker_host = self
            .docker_host
            .clone()
            .or(file.docker_host.clone())
            .or(env.host)
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_owned());
        let mut endpoint = Endpoint::parse(&docker_host).map_err(|e| invalid("docker_host", e))?;
        let tls_verify = self
            .docker_tls_verify
            .or(file.docker_tls_verify)
            .unwrap_or(env.tls_verify);
        if tls_verify {
            let Endpoint::Tcp { tls, .. } = &mut endpoint else {
                return Err(invalid(
                    "docker_tls_verify",
                    "TLS applies to tcp:// Docker endpoints only",
                ));
            };
            let dir = self
                .docker_cert_path
                .clone()
                .or_else(|| file.docker_cert_path.clone())
                .or(env.cert_path)
                .ok_or_else(|| {
                    invalid(
                        "docker_cert_path",
                        "no directory with ca.pem, cert.pem and key.pem: set --docker-cert-path",
                    )
                })?;
            *tls = Some(DockerTls::in_dir(&dir).map_err(|e| invalid("docker_cert_path", e))?);
        }

        let stats_interval = match self
            .stats_interval
            .as_ref()
            .or(file.stats_interval.as_ref())
        {
            Some(s) => duration("stats_interval", s)?,
            None => defaults.stats_interval,
        };
        in_range(
            "stats_interval",
            stats_interval,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )?;

        let stats_concurrency = self
            .stats_concurrency
            .or(file.stats_concurrency)
            .unwrap_or(defaults.stats_concurrency);
        if !(1..=1024).contains(&stats_concurrency) {
            return Err(invalid(
                "stats_concurrency",
                format!("{stats_concurrency} is out of range: use 1 to 1024"),
            ));
        }

        let usage_interval = match self
            .usage_interval
            .as_ref()
            .or(file.usage_interval.as_ref())
        {
            Some(s) if s.trim() == "off" => None,
            Some(s) => Some(duration("usage_interval", s)?),
            None => defaults.usage_interval,
        };
        if let Some(interval) = usage_interval {
            in_range(
                "usage_interval",
                interval,
                Duration::from_secs(1),
                Duration::from_secs(24 * 3600),
            )?;
        }

        let usage_timeout = match self.usage_timeout.as_ref().or(file.usage_timeout.as_ref()) {
            Some(s) => duration("usage_timeout", s)?,
            None => defaults.usage_timeout,
        };
        in_range(
            "usage_timeout",
            usage_timeout,
            Duration::from_secs(1),
            Duration::from_secs(600),
        )?;

        let max_profiles = self
            .max_profiles
            .or(file.max_profiles)
            .unwrap_or(crate::profiler::DEFAULT_MAX_SESSIONS);
        if !(1..=64).contains(&max_profiles) {
            return Err(invalid(
                "max_profiles",
                format!("{max_profiles} is out of range: use 1 to 64"),
            ));
        }

        let collector = match (&self.collector, &file.collector) {
            (Some(text), _) => Some(vec![text.clone()]),
            (None, Some(list)) => Some(list.items()),
            (None, None) => None,
        };
        let output = match (self.output.or(file.output), collector) {
            (Some(OutputKind::Stdout), _) | (None, None) => Output::Stdout,
            (Some(OutputKind::Collector), None) => {
                return Err(invalid(
                    "collector",
                    "output is collector but no collector is set: pass --collector wss://HOST:3812",
                ));
            }
            (_, Some(urls)) => Output::Collector(Box::new(self.uplink(&file, &urls)?)),
        };
        Ok(Config {
            docker: DockerConfig {
                endpoint,
                wait: self
                    .wait_for_docker
                    .or(file.wait_for_docker)
                    .unwrap_or(false),
            },
            collect: CollectConfig {
                stats_interval,
                stats_concurrency,
                usage_interval,
                usage_timeout,
                paused: false,
            },
            output,
            allowed_actions: self.allowed_actions(&file)?,
            max_profiles,
            counters: {
                let defaults = CounterConfig::default();
                CounterConfig {
                    source: self
                        .stats_source
                        .or(file.stats_source)
                        .unwrap_or(defaults.source),
                    cgroup_root: self
                        .cgroup_root
                        .clone()
                        .or_else(|| file.cgroup_root.clone())
                        .unwrap_or(defaults.cgroup_root),
                    proc_root: defaults.proc_root,
                }
            },
            log: self
                .log
                .clone()
                .or_else(|| file.log.clone())
                .unwrap_or_else(|| "info".to_owned()),
            log_format: self
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
        })
    }

    fn uplink(&self, file: &FileConfig, urls: &[String]) -> Result<UplinkConfig, ConfigError> {
        let collector = Collectors::parse(urls).map_err(|e| invalid("collector", e))?;
        let state_dir = self
            .state_dir
            .clone()
            .or_else(|| file.state_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let cert = self.cert.clone().or_else(|| file.cert.clone());
        let key = self.key.clone().or_else(|| file.key.clone());
        let ca = self.ca.clone().or_else(|| file.ca.clone());
        let service_account_token_file = self
            .service_account_token_file
            .clone()
            .or_else(|| file.service_account_token_file.clone());
        let host_name = self.host_name.clone().or_else(|| file.host_name.clone());
        let (identity, service_account) = match (cert, key, ca, service_account_token_file) {
            (None, None, None, None) => (
                Identity::Managed {
                    state_dir: state_dir.clone(),
                },
                None,
            ),
            (None, None, Some(ca), Some(token_file)) => {
                let host = host_name.clone().ok_or_else(|| {
                    invalid(
                        "host_name",
                        "enrolling with a ServiceAccount token needs the node's name (host_name, e.g. from spec.nodeName)",
                    )
                })?;
                let host = HostName::new(host).map_err(|e| invalid("host_name", e.to_string()))?;
                let enrollment = Enrollment::ServiceAccount {
                    token_file,
                    host,
                    ca,
                };
                let identity = Identity::Managed {
                    state_dir: state_dir.clone(),
                };
                (identity, Some(enrollment))
            }
            (None, None, None, Some(_)) => {
                return Err(invalid(
                    "ca",
                    "enrolling with a ServiceAccount token needs the CA bundle the collector's certificate chains to (ca)",
                ));
            }
            (Some(certificate), Some(key), Some(ca), None) => (
                Identity::Files(IdentityFiles {
                    certificate,
                    key,
                    ca,
                }),
                None,
            ),
            (Some(_), _, _, Some(_)) | (_, Some(_), _, Some(_)) => {
                return Err(invalid(
                    "service_account_token_file",
                    "either bring certificates (cert, key, ca) or enroll with a ServiceAccount token, not both",
                ));
            }
            _ => {
                return Err(invalid(
                    "cert",
                    "bring-your-own certificates need all of cert, key and ca",
                ));
            }
        };
        if host_name.is_some() && service_account.is_none() {
            return Err(invalid(
                "host_name",
                "only an agent enrolling with a ServiceAccount token names itself; a join token already names its host",
            ));
        }
        let token_file = self
            .join_token_file
            .as_ref()
            .or(file.join_token_file.as_ref());
        let token_text = match (&self.join_token, token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(path)) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                        path: path.clone(),
                        source,
                    })?,
                )
            }
            (None, None) => None,
        };
        let join_token = token_text
            .map(|text| text.trim().parse::<JoinToken>())
            .transpose()
            .map_err(|e| invalid("join_token", e.to_string()))?;
        let enrollment = match (join_token, service_account) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "join_token",
                    "enroll with a join token or with a ServiceAccount token, not both",
                ));
            }
            (Some(token), None) => Some(Enrollment::JoinToken(token)),
            (None, service_account) => service_account,
        };
        let spool_bytes = match self.spool_size.as_ref().or(file.spool_size.as_ref()) {
            Some(text) => parse_bytes(text).ok_or_else(|| {
                invalid(
                    "spool_size",
                    format!("{text:?} is not a size; write e.g. 64MiB or 1GiB"),
                )
            })?,
            None => DEFAULT_SPOOL_BYTES,
        };
        if !((1 << 20)..=(1 << 40)).contains(&spool_bytes) {
            return Err(invalid("spool_size", "use 1MiB to 1TiB"));
        }
        Ok(UplinkConfig {
            collector,
            identity,
            enrollment,
            spool_dir: state_dir.join("spool"),
            spool_bytes,
        })
    }
}

/// `64MiB`, `1GiB`, `500MB`, `1048576`.
fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

fn duration(key: &'static str, text: &str) -> Result<Duration, ConfigError> {
    config_file::duration(text).map_err(|reason| invalid(key, reason))
}

fn in_range(
    key: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    config_file::within(value, min, max)
        .map(drop)
        .map_err(|range| {
            invalid(
                key,
                format!(
                    "{} is out of range: {range}",
                    humantime::format_duration(value)
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_flag_is_a_key_of_the_file() {
        use clap::CommandFactory;
        // The join token is a secret: in a file it goes by `join_token_file`.
        const NOT_IN_FILE: &[&str] = &["help", "version", "config", "join-token"];
        let mut checked = 0;
        for arg in Cli::command().get_arguments() {
            let Some(flag) = arg.get_long() else { continue };
            if NOT_IN_FILE.contains(&flag) {
                continue;
            }
            let key = flag.replace('-', "_");
            let parsed: Result<FileConfig, _> = serde_yaml::from_str(&format!("{key}: null"));
            assert!(parsed.is_ok(), "--{flag} has no key {key}: {parsed:?}");
            checked += 1;
        }
        assert!(checked > 15, "{checked}");
    }

    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut argv = vec!["dockermon-agent"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap()
    }

    fn file(yaml: &str) -> FileConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = cli(&[])
            .resolve_with(FileConfig::default(), DockerEnv::default())
            .unwrap();
        assert_eq!(config.collect, CollectConfig::default());
        assert_eq!(
            config.docker.endpoint,
            Endpoint::parse(DEFAULT_DOCKER_HOST).unwrap()
        );
        assert!(!config.docker.wait);
        assert_eq!(config.output, Output::Stdout);
    }

    #[test]
    fn container_actions_are_allowed_explicitly() {
        let config = cli(&[])
            .resolve_with(FileConfig::default(), DockerEnv::default())
            .unwrap();
        assert!(!config.allowed_actions.contains(&ContainerAction::Remove));
        assert_eq!(config.allowed_actions.len(), 6);

        let from_file = file("allow_actions: [start, remove]\n");
        let config = cli(&[])
            .resolve_with(from_file, DockerEnv::default())
            .unwrap();
        let expected = BTreeSet::from([ContainerAction::Start, ContainerAction::Remove]);
        assert_eq!(config.allowed_actions, expected);

        let none = cli(&["--allow-actions", "none"])
            .resolve_with(FileConfig::default(), DockerEnv::default());
        assert!(none.unwrap().allowed_actions.is_empty());

        let error = cli(&["--allow-actions", "stop,destroy"])
            .resolve_with(FileConfig::default(), DockerEnv::default())
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("allow_actions: \"destroy\" is not an action"),
            "{error}"
        );
    }

    #[test]
    fn flags_override_the_file_and_the_file_overrides_defaults() {
        let from_file = file("stats_interval: 10s\nstats_concurrency: 3\nusage_interval: 'off'\n");
        let config = cli(&["--stats-interval", "5s"])
            .resolve_with(from_file, DockerEnv::default())
            .unwrap();
        assert_eq!(config.collect.stats_interval, Duration::from_secs(5));
        assert_eq!(config.collect.stats_concurrency, 3);
        assert_eq!(config.collect.usage_interval, None);
    }

    #[test]
    fn docker_host_precedence() {
        let env = DockerEnv {
            host: Some("unix:///env.sock".to_owned()),
            ..DockerEnv::default()
        };
        let resolved = |args: &[&str], yaml: &str| {
            cli(args)
                .resolve_with(file(yaml), env.clone())
                .unwrap()
                .docker
                .endpoint
        };
        assert_eq!(
            resolved(
                &["--docker-host", "unix:///flag.sock"],
                "docker_host: unix:///file.sock"
            ),
            Endpoint::parse("unix:///flag.sock").unwrap()
        );
        assert_eq!(
            resolved(&[], "docker_host: unix:///file.sock"),
            Endpoint::parse("unix:///file.sock").unwrap()
        );
        assert_eq!(
            resolved(&[], "{}"),
            Endpoint::parse("unix:///env.sock").unwrap()
        );
    }

    #[test]
    fn docker_tls_follows_the_docker_cli_conventions() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        // DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, as the docker CLI reads them.
        let env = DockerEnv {
            host: Some("tcp://docker.example:2376".into()),
            tls_verify: true,
            cert_path: Some(dir.path().to_owned()),
        };
        let config = cli(&[]).resolve_with(FileConfig::default(), env).unwrap();
        let Endpoint::Tcp { tls: Some(tls), .. } = &config.docker.endpoint else {
            panic!("{:?}", config.docker.endpoint)
        };
        assert_eq!(tls.ca, dir.path().join("ca.pem"));
        // Flags work too; a missing file is named.
        std::fs::remove_file(dir.path().join("key.pem")).unwrap();
        let dir_flag = dir.path().to_str().unwrap();
        let err = cli(&[
            "--docker-host",
            "tcp://docker.example:2376",
            "--docker-tls-verify",
            "--docker-cert-path",
            dir_flag,
        ])
        .resolve_with(FileConfig::default(), DockerEnv::default())
        .unwrap_err();
        assert!(err.to_string().contains("key.pem"), "{err}");
        // TLS to a unix socket is a mistake worth saying.
        let err = cli(&["--docker-tls-verify"])
            .resolve_with(FileConfig::default(), DockerEnv::default())
            .unwrap_err();
        assert!(err.to_string().contains("tcp://"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let err = serde_yaml::from_str::<FileConfig>("stats_intervall: 10s").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `stats_intervall`"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = cli(&["--stats-interval", "soon"])
            .resolve_with(FileConfig::default(), DockerEnv::default())
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("stats_interval: \"soon\" is not a duration"),
            "{err}"
        );

        let err = cli(&["--stats-interval", "100ms"])
            .resolve_with(FileConfig::default(), DockerEnv::default())
            .unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");

        let err = cli(&["--stats-concurrency", "0"])
            .resolve_with(FileConfig::default(), DockerEnv::default())
            .unwrap_err();
        assert!(err.to_string().starts_with("stats_concurrency:"), "{err}");

        let err = cli(&["--docker-host", "ftp://nope"])
            .resolve_with(FileConfig::default(), DockerEnv::default())
            .unwrap_err();
        assert!(err.to_string().starts_with("docker_host:"), "{err}");
    }

    #[test]
    fn a_collector_url_selects_the_collector_output() {
        let token = format!("dmj1-{}-{}", "ab".repeat(32), "01".repeat(32));
        let config = cli(&[
            "--collector",
            "wss://collector:3812",
            "--join-token",
            &token,
            "--state-dir",
            "/tmp/dm",
        ])
        .resolve_with(FileConfig::default(), DockerEnv::default())
        .unwrap();
        let Output::Collector(uplink) = config.output else {
            panic!("not collector output")
        };
        assert_eq!(
            uplink.identity,
            Identity::Managed {
                state_dir: "/tmp/dm".into()
            }
        );
        assert_eq!(uplink.spool_dir, PathBuf::from("/tmp/dm/spool"));
        assert_eq!(uplink.spool_bytes, 64 << 20);
        assert!(matches!(uplink.enrollment, Some(Enrollment::JoinToken(_))));
        assert_eq!(uplink.collector.to_string(), "wss://collector:3812");

        // A collector's replicas: on the command line comma-separated, in the file a list.
        let replicas = cli(&[
            "--collector",
            "wss://c1:3812,wss://c2:3812",
            "--join-token",
            &token,
        ])
        .resolve_with(FileConfig::default(), DockerEnv::default())
        .unwrap();
        let Output::Collector(uplink) = replicas.output else {
            panic!("not collector output")
        };
        assert_eq!(uplink.collector.to_string(), "wss://c1:3812,wss://c2:3812");
        let file: FileConfig =
            serde_yaml::from_str("collector: [wss://c1, wss://c2:4000]\n").unwrap();
        let from_file = cli(&["--join-token", &token])
            .resolve_with(file, DockerEnv::default())
            .unwrap();
        let Output::Collector(uplink) = from_file.output else {
            panic!("not collector output")
        };
        assert_eq!(uplink.collector.to_string(), "wss://c1:3812,wss://c2:4000");

        let stdout = cli(&["--collector", "wss://collector", "--output", "stdout"])
            .resolve_with(FileConfig::default(), DockerEnv::default())
            .unwrap();
        assert_eq!(
            stdout.output,
            Output::Stdout,
            "--output stdout wins for debugging"
        );

        let err = cli(&["--collector", "ws://plain"])
            .resolve_with(FileConfig::default(), DockerEnv::default())
            .unwrap_err();
        assert!(err.to_string().starts_with("collector:"), "{err}");
        let err = cli(&["--collector", "wss://c", "--join-token", "nope"])
            .resolve_with(FileConfig::default(), DockerEnv::default())
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("join_token: malformed join token"),
            "{err}"
        );
        let err = cli(&["--collector", "wss://c", "--cert", "/a.crt"])
            .resolve_with(FileConfig::default(), DockerEnv::default())
            .unwrap_err();
        assert!(err.to_string().starts_with("cert:"), "{err}");
        let err = cli(&["--collector", "wss://c", "--spool-size", "lots"])
            .resolve_with(FileConfig::default(), DockerEnv::default())
            .unwrap_err();
        assert!(err.to_string().starts_with("spool_size:"), "{err}");
        let err = cli(&["--output", "collector"])
            .resolve_with(FileConfig::default(), DockerEnv::default())
            .unwrap_err();
        assert!(err.to_string().starts_with("collector:"), "{err}");
    }

    #[test]
    fn in_a_cluster_the_agent_enrolls_with_its_service_account_token() {
        let resolve = |args: &[&str]| {
            let mut all = vec!["--collector", "wss://dockermon-agents.dockermon.svc:3812"];
            all.extend_from_slice(args);
            cli(&all).resolve_with(FileConfig::default(), DockerEnv::default())
        };
        let config = resolve(&[
            "--service-account-token-file",
            "/var/run/secrets/dockermon/token",
            "--host-name",
            "node-1",
            "--ca",
            "/etc/dockermon/ca.crt",
        ])
        .unwrap();
        let Output::Collector(uplink) = config.output else {
            panic!("not collector output")
        };
        assert_eq!(
            uplink.enrollment,
            Some(Enrollment::ServiceAccount {
                token_file: "/var/run/secrets/dockermon/token".into(),
                host: HostName::new("node-1").unwrap(),
                ca: "/etc/dockermon/ca.crt".into(),
            })
        );
        assert!(matches!(uplink.identity, Identity::Managed { .. }));

        let token = format!("dmj1-{}-{}", "ab".repeat(32), "01".repeat(32));
        let sa = ["--service-account-token-file", "/t"];
        let complete = [sa[0], sa[1], "--host-name", "n", "--ca", "/ca"];
        for (args, key) in [
            (vec![sa[0], sa[1], "--ca", "/ca"], "host_name: "),
            (vec![sa[0], sa[1], "--host-name", "n"], "ca: "),
            (
                [&complete[..], &["--cert", "/c", "--key", "/k"]].concat(),
                "service_account_token_file: ",
            ),
            (
                [&complete[..], &["--join-token", &token]].concat(),
                "join_token: ",
            ),
            (
                vec!["--host-name", "n", "--join-token", &token],
                "host_name: ",
            ),
            (
                vec![sa[0], sa[1], "--host-name", "a b", "--ca", "/ca"],
                "host_name: ",
            ),
        ] {
            let err = resolve(&args).unwrap_err().to_string();
            assert!(err.starts_with(key), "{args:?}: {err}");
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("64MiB"), Some(64 << 20));
        assert_eq!(parse_bytes("1GiB"), Some(1 << 30));
        assert_eq!(parse_bytes("500MB"), Some(500_000_000));
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("12 parsecs"), None);
    }

    #[test]
    fn wait_for_docker_is_a_flag_or_a_boolean() {
        let on =
            cli(&["--wait-for-docker"]).resolve_with(FileConfig::default(), DockerEnv::default());
        assert!(on.unwrap().docker.wait);
        let off = cli(&["--wait-for-docker=false"])
            .resolve_with(file("wait_for_docker: true"), DockerEnv::default());
        assert!(!off.unwrap().docker.wait);
    }
}

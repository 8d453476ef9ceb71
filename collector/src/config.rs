//! Collector configuration: flags, `DOCKERMON_*` environment variables and an optional
//! YAML file (`--config`), resolved and validated before anything starts.
//!
//! Precedence, highest first: a flag, its environment variable, the YAML file, the default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use dockermon_agent::config_file;
use dockermon_agent::process::LogFormat;
use serde::Deserialize;

use dockermon_proto::transport::AgentConfig;

use crate::api::auth::secret::SecretSource;
use crate::metrics::MetricsConfig;
use crate::pki::PkiPaths;
use crate::profiles::ProfileSettings;
use crate::store::{DatabaseUrl, Retention};
use crate::transport::TlsFiles;
use crate::transport::token_review::ServiceAccountRef;

/// Stores what Dockermon agents report and serves it.
#[derive(Debug, Parser)]
#[command(name = "dockermon-collector", version)]
pub struct Cli {
    /// YAML configuration file: every flag is a key, with underscores (`--retention-raw 7d`
    /// is `retention_raw: 7d`). Flags and environment variables override it.
    #[arg(long, env = "DOCKERMON_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Log filter, written to stderr: a default level and `target=level` pairs,
    /// `,`-separated (`warn,dockermon_agent::stats=debug`). [default: info]
    #[arg(long, env = "DOCKERMON_LOG", global = true)]
    pub log: Option<String>,

    /// Log line format. [default: text]
    #[arg(long, env = "DOCKERMON_LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start; its size does not matter
pub enum Command {
    /// Run the collector service.
    Serve(ServeArgs),
    /// Run the collector and an agent for the local Docker engine in one process, on the
    /// embedded SQLite under ./data: the one-command way to try Dockermon.
    Standalone(StandaloneArgs),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// Manage the built-in certificate authority.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Manage join tokens for new agents.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage monitored hosts.
    #[command(subcommand)]
    Host(HostCommand),
    /// Manage the people who use the API.
    #[command(subcommand)]
    User(UserCommand),
    /// Print the CustomResourceDefinitions of DockerHost and ProfileSession (YAML).
    Crds,
    /// Create or update DockerHost and ProfileSession resources from YAML documents, as
    /// `kubectl apply -f` does, in this deployment's database (no Kubernetes needed).
    Apply(ApplyArgs),
    /// Show resources: a table, or the objects as YAML or JSON.
    Get(GetArgs),
    /// Delete a resource: a DockerHost revokes its host; a running ProfileSession stops.
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// A YAML file of one or more `---`-separated documents; `-` reads standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// dockerhosts (dh) or profilesessions (ps).
    pub kind: String,
    /// One resource's name; all of the kind when absent.
    pub name: Option<String>,
    /// The namespace of profile sessions.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Profile sessions of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// `yaml` or `json`: the objects instead of a table.
    #[arg(short = 'o', long, value_name = "FORMAT")]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// dockerhost (dh) or profilesession (ps).
    pub kind: String,
    pub name: String,
    /// The namespace of a profile session.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user. Without a password source, one is generated and printed.
    Add(UserAddArgs),
    /// Set a user's password; their sessions end.
    Passwd(UserPasswdArgs),
    /// List the users.
    List(DatabaseArgs),
}

#[derive(Debug, Args)]
pub struct UserAddArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    pub email: String,
    /// viewer, operator or admin.
    #[arg(long, default_value = "viewer")]
    pub role: String,
    #[command(flatten)]
    pub password: PasswordArgs,
}

#[derive(Debug, Args)]
pub struct UserPasswdArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    pub email: String,
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// Where a new password comes from: never a flag value, which would end up in shell history.
#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// Read the password from the first line of standard input.
    #[arg(long, conflicts_with = "password_file")]
    pub password_stdin: bool,
    /// Read the password from a file.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create the CA and the collector's server certificate under <data dir>/pki.
    Init(PkiInitArgs),
}

#[derive(Debug, Args)]
pub struct PkiInitArgs {
    /// Where the collector keeps its files. [default: ./data]
    #[arg(long, env = "DOCKERMON_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A DNS name or IP address agents use to reach the collector (repeatable).
    /// [default: localhost, 127.0.0.1 and this machine's host name]
    #[arg(long = "san", value_name = "NAME")]
    pub sans: Vec<String>,
    /// Replace an existing CA (every agent must then enroll again).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a one-time join token for a host; it pins this collector's CA.
    Create(TokenCreateArgs),
    /// List the join tokens that can still be used (with --all, every one).
    List(TokenListArgs),
    /// Revoke a join token that was not used (by the id `token list` shows).
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The name the host will be known by (its certificate's name).
    #[arg(long, value_name = "NAME")]
    pub host: String,
    /// How long the token stays valid (1s to 7d).
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    pub ttl: String,
    /// The host is enrolled: admit a new agent in place of its current one, whose
    /// certificate is revoked when the new agent enrolls.
    #[arg(long)]
    pub replace: bool,
}

#[derive(Debug, Args)]
pub struct TokenListArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Include used, expired and revoked tokens.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The token's id, from `token list`.
    pub id: i64,
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// List the hosts: name, when last seen, whether enrolled.
    List(DatabaseArgs),
    /// Delete a host: revoke its certificates, close its agent's connection, remove its data.
    Delete(HostDeleteArgs),
}

#[derive(Debug, Args)]
pub struct HostDeleteArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The host's name.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// mysql://user:password@host:3306/dockermon or sqlite:///path/file.db. With a
    /// password, prefer the variable or --database-url-file: `ps` shows flags to everyone.
    /// [default: SQLite file dockermon.db in the data directory]
    #[arg(
        long,
        env = "DOCKERMON_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// A file holding the database URL (a mounted secret). Used when --database-url is not.
    #[arg(long, env = "DOCKERMON_DATABASE_URL_FILE", value_name = "FILE")]
    pub database_url_file: Option<PathBuf>,

    /// Where the collector keeps its files (the embedded database, its CA and secrets).
    /// [default: ./data]
    #[arg(long, env = "DOCKERMON_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Keep retrying when the database refuses the connection at start (wrong password,
    /// unknown database: it may be being set up), instead of exiting 1. A database that is
    /// down or unreachable is always waited for.
    #[arg(long, env = "DOCKERMON_WAIT_FOR_DATABASE", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true")]
    pub wait_for_database: Option<bool>,
    /// Run the Kubernetes operator: DockerHost and ProfileSession resources live in the
    /// cluster (in-cluster service account, or the kubeconfig), reconciled by the replica
    /// holding the `dockermon-operator` Lease in the client's namespace. [default: false:
    /// resources live in the database, for `apply -f`]
    #[arg(long, env = "DOCKERMON_KUBERNETES", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true")]
    pub kubernetes: Option<bool>,
    /// In a Kubernetes cluster, the ServiceAccount (NAMESPACE/NAME) agents run as: agents
    /// then enroll with their projected token of it, checked with the TokenReview API
    /// (in-cluster service account or kubeconfig), and get a certificate for their pod's
    /// node. Needs the built-in CA. [default: none: join tokens only]
    #[arg(
        long,
        env = "DOCKERMON_AGENT_SERVICE_ACCOUNT",
        value_name = "NAMESPACE/NAME"
    )]
    pub agent_service_account: Option<String>,
    /// The audience agents' ServiceAccount tokens must be issued for. [default: dockermon]
    #[arg(long, env = "DOCKERMON_AGENT_TOKEN_AUDIENCE", value_name = "AUDIENCE")]
    pub agent_token_audience: Option<String>,
    /// In a Kubernetes cluster, with the built-in CA: keep the CA and the server certificate
    /// in this Secret of the collector's namespace, created on the first start, so that every
    /// replica and every upgrade signs with one CA (a Secret made from `pki init` files is
    /// used as it is). [default: none: the files under <data dir>/pki]
    #[arg(long, env = "DOCKERMON_PKI_SECRET", value_name = "NAME")]
    pub pki_secret: Option<String>,
    /// With --pki-secret: the DNS names or IPs agents reach the collector by, for its server
    /// certificate, comma-separated (e.g. dockermon-agents.dockermon.svc).
    #[arg(long, env = "DOCKERMON_PKI_SANS", value_name = "NAMES")]
    pub pki_sans: Option<String>,
    /// In a Kubernetes cluster, with the built-in CA: a ConfigMap of the collector's
    /// namespace to publish the CA certificate in (key `ca.crt`), which agents mount to trust
    /// the collector. [default: none]
    #[arg(long, env = "DOCKERMON_CA_CONFIG_MAP", value_name = "NAME")]
    pub ca_config_map: Option<String>,

    /// The NATS server that links collector replicas: live updates reach WebSocket
    /// watchers on every replica, and commands reach an agent on whichever replica it is
    /// connected to (nats://HOST:PORT, or tls://HOST:PORT for TLS). [default: none: one
    /// replica, everything in this process]
    #[arg(long, env = "DOCKERMON_NATS_URL", value_name = "URL")]
    pub nats_url: Option<String>,
    /// With --nats-url: a NATS credentials file (.creds: a user JWT and its NKey seed).
    /// [default: none]
    #[arg(long, env = "DOCKERMON_NATS_CREDENTIALS_FILE", value_name = "FILE")]
    pub nats_credentials_file: Option<PathBuf>,
    /// With a tls:// --nats-url: the CA certificate (PEM) the NATS server's certificate is
    /// checked against. [default: the system's trusted CAs]
    #[arg(long, env = "DOCKERMON_NATS_CA", value_name = "FILE")]
    pub nats_ca: Option<PathBuf>,

    /// Address for /healthz, /readyz and /metrics. [default: 0.0.0.0:9810]
    #[arg(long, env = "DOCKERMON_HEALTH_LISTEN", value_name = "ADDR")]
    pub health_listen: Option<SocketAddr>,
    /// A file holding a token scrapers of /metrics must present (`Authorization: Bearer
    /// …`). [default: none, /metrics is open, as exporters' are]
    #[arg(long, env = "DOCKERMON_METRICS_TOKEN_FILE", value_name = "FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// Docker label keys exported on container series as `container_label_<key>`,
    /// comma-separated (compose project and service always are). [default: none]
    #[arg(long, env = "DOCKERMON_METRICS_LABELS", value_name = "KEYS")]
    pub metrics_labels: Option<String>,

    /// How long raw (30-second) stats are kept. [default: 7d]
    #[arg(long, env = "DOCKERMON_RETENTION_RAW", value_name = "DURATION")]
    pub retention_raw: Option<String>,
    /// How long 5-minute rollups are kept. [default: 90d]
    #[arg(long, env = "DOCKERMON_RETENTION_5M", value_name = "DURATION")]
    pub retention_5m: Option<String>,
    /// How long 1-hour rollups are kept. [default: 400d]
    #[arg(long, env = "DOCKERMON_RETENTION_1H", value_name = "DURATION")]
    pub retention_1h: Option<String>,
    /// How long the activity log is kept. [default: 90d]
    #[arg(long, env = "DOCKERMON_RETENTION_ACTIVITY", value_name = "DURATION")]
    pub retention_activity: Option<String>,
    /// How long profile sessions and their samples are kept. [default: 30d]
    #[arg(long, env = "DOCKERMON_RETENTION_PROFILES", value_name = "DURATION")]
    pub retention_profiles: Option<String>,

    /// Profile sessions running at once on one host. [default: 8]
    #[arg(long, env = "DOCKERMON_PROFILE_MAX_PER_HOST", value_name = "N")]
    pub profile_max_per_host: Option<u64>,
    /// Profile sessions one user may have running at once. [default: 4]
    #[arg(long, env = "DOCKERMON_PROFILE_MAX_PER_USER", value_name = "N")]
    pub profile_max_per_user: Option<u64>,
    /// The longest a profile session runs, and how long one runs when no duration is
    /// given. [default: 1h]
    #[arg(long, env = "DOCKERMON_PROFILE_MAX_DURATION", value_name = "DURATION")]
    pub profile_max_duration: Option<String>,
    /// How long a profile started over the WebSocket outlives its last watcher, and how
    /// long any profile outlives its agent's disconnection. [default: 10s]
    #[arg(long, env = "DOCKERMON_PROFILE_GRACE", value_name = "DURATION")]
    pub profile_grace: Option<String>,

    /// Address agents connect to (TLS). [default: 0.0.0.0:3812]
    #[arg(long, env = "DOCKERMON_AGENT_LISTEN", value_name = "ADDR")]
    pub agent_listen: Option<SocketAddr>,
    /// Server certificate (PEM, with its chain) for the agent listener, instead of the
    /// built-in CA's. Needs --tls-key and --client-ca.
    #[arg(long, env = "DOCKERMON_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert.
    #[arg(long, env = "DOCKERMON_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA that signs agent certificates, instead of the built-in CA.
    #[arg(long, env = "DOCKERMON_CLIENT_CA", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// How long certificates issued to agents are valid. [default: 30d]
    #[arg(long, env = "DOCKERMON_AGENT_CERT_TTL", value_name = "DURATION")]
    pub agent_cert_ttl: Option<String>,
    /// Stats interval agents are told to use. [default: 30s]
    #[arg(long, env = "DOCKERMON_AGENT_STATS_INTERVAL", value_name = "DURATION")]
    pub agent_stats_interval: Option<String>,
    /// Disk-usage interval agents are told to use, or `off`. [default: 2m]
    #[arg(
        long,
        env = "DOCKERMON_AGENT_USAGE_INTERVAL",
        value_name = "DURATION|off"
    )]
    pub agent_usage_interval: Option<String>,

    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct StandaloneArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// The local Docker engine: unix:///path/to/docker.sock or tcp://host:port.
    /// [default: $DOCKER_HOST, else unix:///var/run/docker.sock]
    #[arg(long, env = "DOCKERMON_DOCKER_HOST", value_name = "URL")]
    pub docker_host: Option<String>,
}

impl StandaloneArgs {
    /// The collector's configuration (its agent listener on loopback unless set) and the
    /// Docker endpoint of the local agent.
    pub fn resolve(&self, file: &FileConfig) -> Result<(ServeConfig, String), ConfigError> {
        let mut config = self.serve.resolve(file)?;
        if self.serve.agent_listen.is_none() && file.agent_listen.is_none() {
            config.agent_listen.set_ip([127, 0, 0, 1].into());
        }
        #[allow(clippy::disallowed_methods)] // the one standard variable clap does not read
        let docker_host = self
            .docker_host
            .clone()
            .or_else(|| file.docker_host.clone())
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| dockermon_agent::config::DEFAULT_DOCKER_HOST.to_owned());
        Ok((config, docker_host))
    }
}

/// The API for people: listener, tokens, the first admin.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Address of the web UI (/), the REST API (/api/v1) and the WebSocket API (/ws).
    /// [default: 0.0.0.0:3810]
    #[arg(long, env = "DOCKERMON_API_LISTEN", value_name = "ADDR")]
    pub api_listen: Option<SocketAddr>,
    /// Address of the WebSocket API (/ws). [default: 0.0.0.0:3811]
    #[arg(long, env = "DOCKERMON_WS_LISTEN", value_name = "ADDR")]
    pub ws_listen: Option<SocketAddr>,
    /// Secret that signs access tokens (at least 32 bytes; every replica needs the same).
    /// Prefer the variable or --jwt-secret-file: `ps` shows flags to everyone.
    /// [default: generated into <data dir>/secrets/jwt.secret]
    #[arg(
        long,
        env = "DOCKERMON_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
    /// A file holding the token secret (a mounted secret).
    #[arg(long, env = "DOCKERMON_JWT_SECRET_FILE", value_name = "FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// How long an access token is valid. [default: 15m]
    #[arg(long, env = "DOCKERMON_ACCESS_TOKEN_TTL", value_name = "DURATION")]
    pub access_token_ttl: Option<String>,
    /// How long a session lasts without being refreshed. [default: 7d]
    #[arg(long, env = "DOCKERMON_SESSION_TTL", value_name = "DURATION")]
    pub session_ttl: Option<String>,
    /// Email of the admin created when there are no users yet. [default: admin@localhost]
    #[arg(long, env = "DOCKERMON_ADMIN_EMAIL", value_name = "EMAIL")]
    pub admin_email: Option<String>,
    /// That admin's password; prefer the variable or --admin-password-file (`ps` shows
    /// flags to everyone). [default: generated into <data dir>/secrets/first-admin-password]
    #[arg(
        long,
        env = "DOCKERMON_ADMIN_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub admin_password: Option<String>,
    /// A file holding that admin's password.
    #[arg(long, env = "DOCKERMON_ADMIN_PASSWORD_FILE", value_name = "FILE")]
    pub admin_password_file: Option<PathBuf>,
}

/// The longest any data is kept: far beyond any need, well within what time arithmetic holds.
const MAX_RETENTION: Duration = Duration::from_secs(36_500 * 86_400);

/// The YAML file (`--config`). One rule: every flag `--some-name` is the key `some_name`,
/// with the value written as on the command line (lists may also be YAML lists). The
/// exceptions are the secrets given inline (`--jwt-secret`, `--admin-password`): in a file
/// they go by their `*_file` keys. Unknown keys are an error: a misspelt key silently
/// ignored is a setting silently not applied.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub log: Option<String>,
    pub log_format: Option<LogFormat>,
    pub database_url: Option<String>,
    pub database_url_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub wait_for_database: Option<bool>,
    pub kubernetes: Option<bool>,
    pub agent_service_account: Option<String>,
    pub agent_token_audience: Option<String>,
    pub pki_secret: Option<String>,
    pub pki_sans: Option<config_file::List>,
    pub ca_config_map: Option<String>,
    pub nats_url: Option<String>,
    pub nats_credentials_file: Option<PathBuf>,
    pub nats_ca: Option<PathBuf>,
    pub health_listen: Option<SocketAddr>,
    pub metrics_token_file: Option<PathBuf>,
    pub metrics_labels: Option<config_file::List>,
    pub retention_raw: Option<String>,
    pub retention_5m: Option<String>,
    pub retention_1h: Option<String>,
    pub retention_activity: Option<String>,
    pub retention_profiles: Option<String>,
    pub profile_max_per_host: Option<u64>,
    pub profile_max_per_user: Option<u64>,
    pub profile_max_duration: Option<String>,
    pub profile_grace: Option<String>,
    pub agent_listen: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    pub agent_cert_ttl: Option<String>,
    pub agent_stats_interval: Option<String>,
    pub agent_usage_interval: Option<String>,
    pub api_listen: Option<SocketAddr>,
    pub ws_listen: Option<SocketAddr>,
    pub jwt_secret_file: Option<PathBuf>,
    pub access_token_ttl: Option<String>,
    pub session_ttl: Option<String>,
    pub admin_email: Option<String>,
    pub admin_password_file: Option<PathBuf>,
    /// `standalone` only: the local Docker engine.
    pub docker_host: Option<String>,
}

/// The built-in CA in a Kubernetes Secret (`crate::operator::pki_secret`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiSecret {
    /// The Secret's name (keys `ca.crt`, `ca.key`, `server.crt`, `server.key`).
    pub secret: String,
    /// The names the server certificate is for.
    pub sans: Vec<String>,
}

/// Who may enroll by ServiceAccount token, and for which audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountEnrollment {
    pub account: ServiceAccountRef,
    pub audience: String,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub database: DatabaseConfig,
    /// Retry a database that refuses the connection, instead of exiting.
    pub wait_for_database: bool,
    /// Resources live in Kubernetes and this process runs the operator.
    pub kubernetes: bool,
    /// Agents may enroll with ServiceAccount tokens (only under `kubernetes`).
    pub service_account_enrollment: Option<ServiceAccountEnrollment>,
    /// The built-in CA kept in a Kubernetes Secret.
    pub pki_secret: Option<PkiSecret>,
    /// The ConfigMap the built-in CA's certificate is published in, for agents.
    pub ca_config_map: Option<String>,
    /// The NATS server linking the replicas; `None`: this process alone.
    pub nats: Option<NatsConfig>,
    pub health_listen: SocketAddr,
    pub retention: Retention,
    pub agent_listen: SocketAddr,
    pub tls: TlsSource,
    pub agent_cert_ttl: Duration,
    pub agent_config: AgentConfig,
    pub api: ApiConfig,
    pub profiles: ProfileSettings,
    pub metrics: MetricsConfig,
    /// The token `/metrics` asks for, if any.
    pub metrics_token: Option<Arc<str>>,
}

/// The NATS server linking collector replicas (`--nats-url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// `nats://HOST:PORT` or `tls://HOST:PORT` (TLS required); several, comma-separated,
    /// for a NATS cluster.
    pub url: String,
    pub credentials_file: Option<PathBuf>,
    /// The CA certificate (PEM) for a tls:// server.
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub ws_listen: SocketAddr,
    pub jwt_secret: SecretSource,
    pub access_ttl: Duration,
    pub session_ttl: Duration,
    pub first_admin: FirstAdmin,
}

/// The admin created when the collector has no users.
#[derive(Clone)]
pub struct FirstAdmin {
    pub email: String,
    /// `None`: generate one and print it once.
    pub password: Option<String>,
}

impl std::fmt::Debug for FirstAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirstAdmin")
            .field("email", &self.email)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Where the agent listener's certificates come from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// The built-in CA under the data directory.
    BuiltIn(PkiPaths),
    /// Files from elsewhere (cert-manager, an organisation's CA).
    Files(TlsFiles),
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] config_file::FileError),
    #[error("cannot read {what} {path}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// A list setting: the flag's comma-separated text, else the file's list (text or YAML
/// sequence), without empty items.
fn list_setting(flag: &Option<String>, file: &Option<config_file::List>) -> Vec<String> {
    let items = match (flag, file) {
        (Some(text), _) => config_file::List::Text(text.clone()).items(),
        (None, Some(list)) => list.items(),
        (None, None) => Vec::new(),
    };
    items.into_iter().filter(|item| !item.is_empty()).collect()
}

/// A setting as the user wrote it, or its default in days (retention defaults are whole
/// days).
fn as_given(flag: &Option<String>, from_file: &Option<String>, value: Duration) -> String {
    match flag.as_ref().or(from_file.as_ref()) {
        Some(text) => text.clone(),
        None => format!("{}d (the default)", value.as_secs() / 86_400),
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// Reads the YAML file named by `--config`, if any.
pub fn read_file(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
    match path {
        Some(path) => Ok(config_file::read_yaml(path)?),
        None => Ok(FileConfig::default()),
    }
}

impl Cli {
    /// The log filter and format: flag or variable, then the file, then `info` as text.
    pub fn logging(&self, file: &FileConfig) -> (String, LogFormat) {
        (
            self.log
                .clone()
                .or_else(|| file.log.clone())
                .unwrap_or_else(|| "info".to_owned()),
            self.log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
        )
    }
}

impl DatabaseArgs {
    pub fn resolve(&self, file: &FileConfig) -> Result<DatabaseConfig, ConfigError> {
        let data_dir = self
            .data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./data"));
        let url_file = self
            .database_url_file
            .as_ref()
            .or(file.database_url_file.as_ref());
        let url = value_or_file(
            "database URL file",
            self.database_url.as_ref().or(file.database_url.as_ref()),
            url_file,
        )?;
        let url = match url {
            Some(url) => {
                DatabaseUrl::parse(&url).map_err(|e| invalid("database_url", e.to_string()))?
            }
            None => DatabaseUrl::sqlite_in(&data_dir),
        };
        Ok(DatabaseConfig { url, data_dir })
    }
}

impl ServeArgs {
    pub fn resolve(&self, file: &FileConfig) -> Result<ServeConfig, ConfigError> {
        let defaults = Retention::default();
        let period = |key: &'static str,
                      flag: &Option<String>,
                      from_file: &Option<String>,
                      default: Duration| {
            match flag.as_ref().or(from_file.as_ref()) {
                Some(text) => {
                    let value = duration(key, text)?;
                    if value < Duration::from_secs(3600) {
                        return Err(invalid(
                            key,
                            format!("{text} is too short: keep data at least 1h"),
                        ));
                    }
                    if value > MAX_RETENTION {
                        return Err(invalid(
                            key,
                            format!("{text} is too long: keep data at most 100 years"),
                        ));
                    }
                    Ok(value)
                }
                None => Ok(default),
            }
        };
        let retention = Retention {
            raw: period(
                "retention_raw",
                &self.retention_raw,
                &file.retention_raw,
                defaults.raw,
            )?,
            five_minutes: period(
                "retention_5m",
                &self.retention_5m,
                &file.retention_5m,
                defaults.five_minutes,
            )?,
            one_hour: period(
                "retention_1h",
                &self.retention_1h,
                &file.retention_1h,
                defaults.one_hour,
            )?,
            activity: period(
                "retention_activity",
                &self.retention_activity,
                &file.retention_activity,
                defaults.activity,
            )?,
            profiles: period(
                "retention_profiles",
                &self.retention_profiles,
                &file.retention_profiles,
                defaults.profiles,
            )?,
            ..defaults
        };
        // Hourly buckets are recomputed from 5-minute buckets whenever a late sample lands
        // in their hour: 5-minute buckets deleted before the raw samples would leave such
        // an hour recomputed from part of its buckets.
        if retention.five_minutes < retention.raw {
            return Err(invalid(
                "retention_5m",
                format!(
                    "{} is shorter than retention_raw ({}): hourly rollups are computed from 5-minute buckets, which must be kept at least as long as raw samples",
                    as_given(
                        &self.retention_5m,
                        &file.retention_5m,
                        retention.five_minutes
                    ),
                    as_given(&self.retention_raw, &file.retention_raw, retention.raw),
                ),
            ));
        }
        let database = self.database.resolve(file)?;
        let database_dir = database.data_dir.clone();
        let tls_cert = self.tls_cert.clone().or_else(|| file.tls_cert.clone());
        let tls_key = self.tls_key.clone().or_else(|| file.tls_key.clone());
        let client_ca = self.client_ca.clone().or_else(|| file.client_ca.clone());
        let tls = match (tls_cert, tls_key, client_ca) {
            (None, None, None) => TlsSource::BuiltIn(PkiPaths::in_data_dir(&database.data_dir)),
            (Some(certificate), Some(key), Some(client_ca)) => TlsSource::Files(TlsFiles {
                certificate,
                key,
                client_ca,
            }),
            _ => {
                return Err(invalid(
                    "tls_cert",
                    "bring-your-own certificates need all of tls_cert, tls_key and client_ca (or none, for the built-in CA)",
                ));
            }
        };
        let kubernetes = self.kubernetes.or(file.kubernetes).unwrap_or(false);
        let service_account_enrollment = match self
            .agent_service_account
            .as_ref()
            .or(file.agent_service_account.as_ref())
        {
            None => None,
            Some(_) if !matches!(tls, TlsSource::BuiltIn(_)) => {
                return Err(invalid(
                    "agent_service_account",
                    "enrolling agents needs the built-in CA; with tls_cert/tls_key/client_ca agents bring their own certificates",
                ));
            }
            Some(text) => Some(ServiceAccountEnrollment {
                account: text
                    .parse()
                    .map_err(|reason: String| invalid("agent_service_account", reason))?,
                audience: match self
                    .agent_token_audience
                    .clone()
                    .or_else(|| file.agent_token_audience.clone())
                {
                    Some(audience) if audience.trim().is_empty() => {
                        return Err(invalid("agent_token_audience", "must not be empty"));
                    }
                    Some(audience) => audience,
                    None => "dockermon".to_owned(),
                },
            }),
        };
        let pki_secret = self.pki_secret(file, &tls)?;
        let ca_config_map = match self
            .ca_config_map
            .clone()
            .or_else(|| file.ca_config_map.clone())
        {
            Some(_) if !matches!(tls, TlsSource::BuiltIn(_)) => {
                return Err(invalid(
                    "ca_config_map",
                    "publishes the built-in CA; with tls_cert/tls_key/client_ca there is none",
                ));
            }
            name => name,
        };
        // At most what the server certificate gets (397 days, the browsers' rule): beyond
        // that a certificate's dates may not even be representable.
        let agent_cert_ttl = bounded_duration(
            "agent_cert_ttl",
            &self.agent_cert_ttl,
            &file.agent_cert_ttl,
            Duration::from_secs(30 * 86_400),
            Duration::from_secs(3600)..=Duration::from_secs(397 * 86_400),
        )?;
        let stats_interval = match self
            .agent_stats_interval
            .as_ref()
            .or(file.agent_stats_interval.as_ref())
        {
            Some(text) => duration("agent_stats_interval", text)?,
            None => Duration::from_secs(30),
        };
        config_file::within(
            stats_interval,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )
        .map_err(|range| invalid("agent_stats_interval", range))?;
        let usage_interval = match self
            .agent_usage_interval
            .as_ref()
            .or(file.agent_usage_interval.as_ref())
        {
            Some(text) if text.trim() == "off" => None,
            Some(text) => Some(
                config_file::within(
                    duration("agent_usage_interval", text)?,
                    Duration::from_secs(1),
                    Duration::from_secs(86_400),
                )
                .map_err(|range| invalid("agent_usage_interval", range))?,
            ),
            None => Some(Duration::from_secs(120)),
        };
        Ok(ServeConfig {
            database,
            wait_for_database: self
                .wait_for_database
                .or(file.wait_for_database)
                .unwrap_or(false),
            kubernetes,
            service_account_enrollment,
            pki_secret,
            ca_config_map,
            nats: self.nats(file)?,
            health_listen: self
                .health_listen
                .or(file.health_listen)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 9810))),
            retention,
            agent_listen: self.agent_listen.or(file.agent_listen).unwrap_or_else(|| {
                SocketAddr::from(([0, 0, 0, 0], dockermon_proto::transport::DEFAULT_AGENT_PORT))
            }),
            tls,
            agent_cert_ttl,
            agent_config: AgentConfig {
                stats_interval_ms: stats_interval.as_millis() as u64,
                stats_concurrency: 64,
                usage_interval_ms: usage_interval.map(|d| d.as_millis() as u64),
                usage_timeout_ms: 60_000,
                paused: false,
            },
            api: self.api.resolve(file, &database_dir)?,
            profiles: self.profile_settings(file)?,
            metrics: MetricsConfig {
                labels: self.metrics_labels(file)?,
                ..MetricsConfig::default()
            },
            metrics_token: self.metrics_token(file)?,
        })
    }

    /// The NATS settings: `nats_url` (each address nats:// or tls://), and the files that
    /// go with it, which are refused without it.
    fn nats(&self, file: &FileConfig) -> Result<Option<NatsConfig>, ConfigError> {
        let credentials_file = self
            .nats_credentials_file
            .clone()
            .or_else(|| file.nats_credentials_file.clone());
        let ca = self.nats_ca.clone().or_else(|| file.nats_ca.clone());
        let Some(url) = self.nats_url.clone().or_else(|| file.nats_url.clone()) else {
            if credentials_file.is_some() {
                return Err(invalid("nats_credentials_file", "needs nats_url"));
            }
            if ca.is_some() {
                return Err(invalid("nats_ca", "needs nats_url"));
            }
            return Ok(None);
        };
        let addresses: Vec<&str> = url.split(',').map(str::trim).collect();
        for address in &addresses {
            let valid = ["nats://", "tls://"].iter().any(|scheme| {
                address
                    .strip_prefix(scheme)
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
            });
            if !valid {
                return Err(invalid(
                    "nats_url",
                    format!("{address:?} is not nats://HOST:PORT or tls://HOST:PORT"),
                ));
            }
        }
        let tls = addresses.iter().filter(|a| a.starts_with("tls://")).count();
        if tls != 0 && tls != addresses.len() {
            // TLS is required of all servers or none: a plain one could never be reached.
            return Err(invalid(
                "nats_url",
                "mixes nats:// and tls:// addresses: give every address the same scheme",
            ));
        }
        if ca.is_some() && tls == 0 {
            return Err(invalid("nats_ca", "is for a tls:// nats_url"));
        }
        Ok(Some(NatsConfig {
            url: addresses.join(","),
            credentials_file,
            ca,
        }))
    }

    fn pki_secret(
        &self,
        file: &FileConfig,
        tls: &TlsSource,
    ) -> Result<Option<PkiSecret>, ConfigError> {
        let Some(secret) = self.pki_secret.clone().or_else(|| file.pki_secret.clone()) else {
            return Ok(None);
        };
        if !matches!(tls, TlsSource::BuiltIn(_)) {
            return Err(invalid(
                "pki_secret",
                "keeps the built-in CA; with tls_cert/tls_key/client_ca there is none",
            ));
        }
        let sans = list_setting(&self.pki_sans, &file.pki_sans);
        if sans.is_empty() {
            return Err(invalid(
                "pki_sans",
                "name at least one address agents dial (e.g. dockermon-agents.dockermon.svc) for the server certificate",
            ));
        }
        Ok(Some(PkiSecret { secret, sans }))
    }

    fn metrics_labels(&self, file: &FileConfig) -> Result<Vec<String>, ConfigError> {
        let keys = list_setting(&self.metrics_labels, &file.metrics_labels);
        if keys.len() > 32 {
            return Err(invalid(
                "metrics_labels",
                "at most 32 label keys: each one multiplies the series Prometheus keeps",
            ));
        }
        Ok(keys)
    }

    fn metrics_token(&self, file: &FileConfig) -> Result<Option<Arc<str>>, ConfigError> {
        let Some(path) = self
            .metrics_token_file
            .as_ref()
            .or(file.metrics_token_file.as_ref())
        else {
            return Ok(None);
        };
        let token = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            what: "metrics token file",
            path: path.clone(),
            source,
        })?;
        let token = token.trim();
        if token.len() < 16 {
            return Err(invalid(
                "metrics_token_file",
                format!(
                    "{} holds a token shorter than 16 characters",
                    path.display()
                ),
            ));
        }
        Ok(Some(Arc::from(token)))
    }

    fn profile_settings(&self, file: &FileConfig) -> Result<ProfileSettings, ConfigError> {
        let defaults = ProfileSettings::default();
        let count = |key: &'static str, flag: Option<u64>, from_file: Option<u64>, default: u64| {
            let value = flag.or(from_file).unwrap_or(default);
            if (1..=64).contains(&value) {
                Ok(value)
            } else {
                Err(invalid(
                    key,
                    format!("{value} is out of range: use 1 to 64"),
                ))
            }
        };
        Ok(ProfileSettings {
            max_per_host: count(
                "profile_max_per_host",
                self.profile_max_per_host,
                file.profile_max_per_host,
                defaults.max_per_host,
            )?,
            max_per_user: count(
                "profile_max_per_user",
                self.profile_max_per_user,
                file.profile_max_per_user,
                defaults.max_per_user,
            )?,
            max_duration: bounded_duration(
                "profile_max_duration",
                &self.profile_max_duration,
                &file.profile_max_duration,
                defaults.max_duration,
                Duration::from_secs(10)..=Duration::from_secs(86_400),
            )?,
            grace: bounded_duration(
                "profile_grace",
                &self.profile_grace,
                &file.profile_grace,
                defaults.grace,
                Duration::from_secs(1)..=Duration::from_secs(600),
            )?,
        })
    }
}

impl ApiArgs {
    pub fn resolve(&self, file: &FileConfig, data_dir: &Path) -> Result<ApiConfig, ConfigError> {
        let jwt_secret = match (
            &self.jwt_secret,
            self.jwt_secret_file
                .as_ref()
                .or(file.jwt_secret_file.as_ref()),
        ) {
            (Some(value), _) => SecretSource::Value(value.clone()),
            (None, Some(path)) => SecretSource::File(path.clone()),
            (None, None) => SecretSource::in_data_dir(data_dir),
        };
        let access_ttl = bounded_duration(
            "access_token_ttl",
            &self.access_token_ttl,
            &file.access_token_ttl,
            Duration::from_secs(15 * 60),
            Duration::from_secs(60)..=Duration::from_secs(86_400),
        )?;
        let session_ttl = bounded_duration(
            "session_ttl",
            &self.session_ttl,
            &file.session_ttl,
            Duration::from_secs(7 * 86_400),
            Duration::from_secs(300)..=Duration::from_secs(90 * 86_400),
        )?;
        if session_ttl < access_ttl {
            return Err(invalid("session_ttl", "must be at least access_token_ttl"));
        }
        let password = value_or_file(
            "admin password file",
            self.admin_password.as_ref(),
            self.admin_password_file
                .as_ref()
                .or(file.admin_password_file.as_ref()),
        )?;
        if let Some(password) = &password {
            crate::api::auth::password::check_new(password)
                .map_err(|reason| invalid("admin_password", reason))?;
        }
        let admin_email = self
            .admin_email
            .clone()
            .or_else(|| file.admin_email.clone())
            .unwrap_or_else(|| "admin@localhost".to_owned());
        if !crate::store::is_valid_email(&admin_email) {
            return Err(invalid("admin_email", "must look like name@domain"));
        }
        Ok(ApiConfig {
            listen: self
                .api_listen
                .or(file.api_listen)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 3810))),
            ws_listen: self
                .ws_listen
                .or(file.ws_listen)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 3811))),
            jwt_secret,
            access_ttl,
            session_ttl,
            first_admin: FirstAdmin {
                email: admin_email,
                password,
            },
        })
    }
}

/// A setting given directly or in a file (a mounted secret); the direct value wins.
/// Surrounding whitespace (a file's trailing newline) is not part of it.
fn value_or_file(
    what: &'static str,
    value: Option<&String>,
    path: Option<&PathBuf>,
) -> Result<Option<String>, ConfigError> {
    match (value, path) {
        (Some(value), _) => Ok(Some(value.trim().to_owned())),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|text| Some(text.trim().to_owned()))
            .map_err(|source| ConfigError::Read {
                what,
                path: path.clone(),
                source,
            }),
        (None, None) => Ok(None),
    }
}

/// A duration from its flag or, without one, the file; else `default`; within `range`.
fn bounded_duration(
    key: &'static str,
    flag: &Option<String>,
    from_file: &Option<String>,
    default: Duration,
    range: std::ops::RangeInclusive<Duration>,
) -> Result<Duration, ConfigError> {
    let value = match flag.as_ref().or(from_file.as_ref()) {
        Some(text) => duration(key, text)?,
        None => default,
    };
    config_file::within(value, *range.start(), *range.end()).map_err(|range| invalid(key, range))
}

pub fn duration(key: &'static str, text: &str) -> Result<Duration, ConfigError> {
    config_file::duration(text).map_err(|reason| invalid(key, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["dockermon-collector", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(serve) => serve,
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_setting_flag_is_a_key_of_the_file() {
        use clap::CommandFactory;
        // Secrets given inline go by their `*_file` keys in a file.
        const NOT_IN_FILE: &[&str] = &["help", "version", "config", "jwt-secret", "admin-password"];
        let cli = Cli::command();
        let mut checked = 0;
        for command in ["serve", "standalone"] {
            let command = cli.find_subcommand(command).unwrap();
            for arg in command.get_arguments().chain(cli.get_arguments()) {
                let Some(flag) = arg.get_long() else { continue };
                if NOT_IN_FILE.contains(&flag) {
                    continue;
                }
                let key = flag.replace('-', "_");
                let parsed: Result<FileConfig, _> = serde_yaml::from_str(&format!("{key}: null"));
                assert!(parsed.is_ok(), "--{flag} has no key {key}: {parsed:?}");
                checked += 1;
            }
        }
        assert!(checked > 30, "{checked}");
        let nested: Result<FileConfig, _> = serde_yaml::from_str("retention:\n  raw: 1d\n");
        assert!(nested.is_err(), "one rule: no nested keys");
    }

    #[test]
    fn the_file_sets_what_the_flags_set() {
        let file: FileConfig = serde_yaml::from_str(
            "agent_stats_interval: 5s\nmetrics_labels: [team, tier]\nlog_format: json\n\
             profile_max_per_host: 3\nretention_activity: 30d\n",
        )
        .unwrap();
        let config = serve(&[]).resolve(&file).unwrap();
        assert_eq!(config.agent_config.stats_interval_ms, 5000);
        assert_eq!(config.metrics.labels, ["team", "tier"]);
        assert_eq!(config.profiles.max_per_host, 3);
        assert_eq!(config.retention.activity, Duration::from_secs(30 * 86_400));
        let cli = Cli::try_parse_from(["dockermon-collector", "serve"]).unwrap();
        assert_eq!(cli.logging(&file), ("info".to_owned(), LogFormat::Json));
        let as_text: FileConfig = serde_yaml::from_str("metrics_labels: team, tier\n").unwrap();
        let config = serve(&[]).resolve(&as_text).unwrap();
        assert_eq!(config.metrics.labels, ["team", "tier"]);
    }

    #[test]
    fn nats_settings_name_a_server_and_go_with_it() {
        let resolve = |args: &[&str]| serve(args).resolve(&FileConfig::default());
        assert_eq!(resolve(&[]).unwrap().nats, None);
        let config = resolve(&["--nats-url", "nats://n1:4222, nats://n2:4222"]).unwrap();
        assert_eq!(
            config.nats,
            Some(NatsConfig {
                url: "nats://n1:4222,nats://n2:4222".into(),
                credentials_file: None,
                ca: None,
            })
        );
        let file: FileConfig =
            serde_yaml::from_str("nats_url: tls://n:4222\nnats_ca: /etc/nats/ca.pem\n").unwrap();
        let config = serve(&[]).resolve(&file).unwrap();
        assert_eq!(
            config.nats.unwrap().ca.as_deref(),
            Some(Path::new("/etc/nats/ca.pem"))
        );
        for (args, key, reason) in [
            (
                &["--nats-url", "http://n:4222"][..],
                "nats_url",
                "is not nats://HOST:PORT",
            ),
            (
                &["--nats-url", "nats://"][..],
                "nats_url",
                "is not nats://HOST:PORT",
            ),
            (&["--nats-url", "nats://n:4222/x"][..], "nats_url", "is not"),
            (
                &["--nats-url", "nats://n1:4222,tls://n2:4222"][..],
                "nats_url",
                "mixes nats:// and tls://",
            ),
            (
                &["--nats-credentials-file", "/c.creds"][..],
                "nats_credentials_file",
                "needs nats_url",
            ),
            (&["--nats-ca", "/ca.pem"][..], "nats_ca", "needs nats_url"),
            (
                &["--nats-url", "nats://n:4222", "--nats-ca", "/ca.pem"][..],
                "nats_ca",
                "is for a tls:// nats_url",
            ),
        ] {
            match resolve(args) {
                Err(ConfigError::Invalid { key: k, reason: r }) => {
                    assert_eq!(k, key, "{args:?}");
                    assert!(r.contains(reason), "{args:?}: {r}");
                }
                other => panic!("{args:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_embedded_database_is_the_default() {
        let config = serve(&[]).resolve(&FileConfig::default()).unwrap();
        assert_eq!(
            config.database.url,
            DatabaseUrl::sqlite_in(Path::new("./data"))
        );
        assert_eq!(config.health_listen.port(), 9810);
        assert_eq!(config.retention, Retention::default());
    }

    #[test]
    fn flags_beat_the_file() {
        let file: FileConfig = serde_yaml::from_str(
            "database_url: sqlite:///file.db\nretention_raw: 2d\nretention_1h: 30d\n",
        )
        .unwrap();
        let config = serve(&["--retention-raw", "3d"]).resolve(&file).unwrap();
        assert_eq!(config.retention.raw, Duration::from_secs(3 * 86_400));
        assert_eq!(config.retention.one_hour, Duration::from_secs(30 * 86_400));
        assert_eq!(
            config.database.url,
            DatabaseUrl::parse("sqlite:///file.db").unwrap()
        );
    }

    #[test]
    fn the_url_can_come_from_a_secret_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("url");
        std::fs::write(&secret, "mysql://dm:pw@db:3306/dockermon\n").unwrap();
        let config = serve(&["--database-url-file", secret.to_str().unwrap()])
            .resolve(&FileConfig::default())
            .unwrap();
        assert_eq!(config.database.url.backend(), crate::store::Backend::MySql);
    }

    #[test]
    fn api_secrets_come_from_flags_or_files_and_are_never_defaulted() {
        let config = serve(&["--data-dir", "/srv/dm"])
            .resolve(&FileConfig::default())
            .unwrap();
        assert!(matches!(
            &config.api.jwt_secret,
            SecretSource::Generated(path) if path == Path::new("/srv/dm/secrets/jwt.secret")
        ));
        assert_eq!(
            config.api.first_admin.password, None,
            "generated at first start"
        );
        assert_eq!(config.api.first_admin.email, "admin@localhost");
        assert_eq!(config.api.access_ttl, Duration::from_secs(900));

        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "from a mounted secret\n").unwrap();
        let from_file = FileConfig {
            admin_password_file: Some(password),
            jwt_secret_file: Some("/run/secrets/jwt".into()),
            session_ttl: Some("1d".into()),
            ..FileConfig::default()
        };
        let config = serve(&[]).resolve(&from_file).unwrap();
        assert_eq!(
            config.api.first_admin.password.as_deref(),
            Some("from a mounted secret")
        );
        assert!(
            matches!(&config.api.jwt_secret, SecretSource::File(path) if path == Path::new("/run/secrets/jwt"))
        );
        assert_eq!(config.api.session_ttl, Duration::from_secs(86_400));

        let bad_email = serve(&["--admin-email", "admin"]).resolve(&FileConfig::default());
        assert_eq!(
            bad_email.unwrap_err().to_string(),
            "admin_email: must look like name@domain"
        );
        let weak = serve(&["--admin-password", "admin"]).resolve(&FileConfig::default());
        assert!(
            weak.unwrap_err()
                .to_string()
                .starts_with("admin_password: the password must have at least 10")
        );
        let backwards = serve(&["--access-token-ttl", "1h", "--session-ttl", "10m"])
            .resolve(&FileConfig::default());
        assert_eq!(
            backwards.unwrap_err().to_string(),
            "session_ttl: must be at least access_token_ttl"
        );
    }

    #[test]
    fn service_account_enrollment_needs_the_built_in_ca() {
        let resolve = |args: &[&str]| serve(args).resolve(&FileConfig::default());
        let config = resolve(&[
            "--kubernetes",
            "--agent-service-account",
            "dockermon/dockermon-agent",
        ])
        .unwrap();
        let enrollment = config.service_account_enrollment.unwrap();
        assert_eq!(enrollment.account.to_string(), "dockermon/dockermon-agent");
        assert_eq!(enrollment.audience, "dockermon");
        assert!(
            resolve(&["--kubernetes"])
                .unwrap()
                .service_account_enrollment
                .is_none()
        );

        for (args, reason) in [
            (
                &["--kubernetes", "--agent-service-account", "agent"][..],
                "not NAMESPACE/NAME",
            ),
            (
                &[
                    "--kubernetes",
                    "--agent-service-account",
                    "dockermon/agent",
                    "--tls-cert",
                    "a",
                    "--tls-key",
                    "b",
                    "--client-ca",
                    "c",
                ][..],
                "needs the built-in CA",
            ),
        ] {
            let err = resolve(args).unwrap_err().to_string();
            assert!(
                err.starts_with("agent_service_account: ") && err.contains(reason),
                "{args:?}: {err}"
            );
        }
    }

    #[test]
    fn bad_settings_name_their_key() {
        let err = serve(&["--database-url", "postgres://x/y"])
            .resolve(&FileConfig::default())
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("database_url: invalid database URL"),
            "{err}"
        );
        let err = serve(&["--retention-raw", "30d", "--retention-5m", "14d"])
            .resolve(&FileConfig::default())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "retention_5m: 14d is shorter than retention_raw (30d): hourly rollups are computed from 5-minute buckets, which must be kept at least as long as raw samples",
        );
        let err = serve(&["--retention-raw", "100d"])
            .resolve(&FileConfig::default())
            .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "retention_5m: 90d (the default) is shorter than retention_raw (100d)"
            ),
            "{err}"
        );
        // Equal is fine: every raw sample's 5-minute bucket is still there.
        serve(&["--retention-raw", "30d", "--retention-5m", "30d"])
            .resolve(&FileConfig::default())
            .unwrap();
        let err = serve(&["--retention-raw", "10m"])
            .resolve(&FileConfig::default())
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("retention_raw: 10m is too short"),
            "{err}"
        );
        // Values that would overflow a certificate's dates or the retention arithmetic are
        // refused at start, not when an agent enrolls.
        for (flag, value, key) in [
            ("--agent-cert-ttl", "100000000d", "agent_cert_ttl"),
            ("--retention-raw", "100000000d", "retention_raw"),
            (
                "--agent-usage-interval",
                "100000000d",
                "agent_usage_interval",
            ),
        ] {
            let err = serve(&[flag, value])
                .resolve(&FileConfig::default())
                .unwrap_err();
            assert!(err.to_string().starts_with(key), "{err}");
        }
        let err = serde_yaml::from_str::<FileConfig>("retention_rwa: 1d\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `retention_rwa`"),
            "{err}"
        );
    }
}

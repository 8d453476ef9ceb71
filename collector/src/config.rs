//! Collector configuration: flags, `DOCKERMON_*` environment variables and an optional
//! YAML file (`--config`), resolved and validated before anything starts.
//!
//! Precedence, highest first: a flag, its environment variable, the YAML file, the default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use dockermon_agent::process::LogFormat;
use serde::Deserialize;

use crate::store::{DatabaseUrl, Retention};

/// Stores what Dockermon agents report and serves it.
#[derive(Debug, Parser)]
#[command(name = "dockermon-collector", version)]
pub struct Cli {
    /// YAML configuration file (keys as the flags, with underscores). Flags and
    /// environment variables override it.
    #[arg(long, env = "DOCKERMON_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Log filter (tracing's env-filter syntax), written to stderr.
    #[arg(long, env = "DOCKERMON_LOG", default_value = "info", global = true)]
    pub log: String,

    /// Log line format.
    #[arg(
        long,
        env = "DOCKERMON_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the collector service.
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// mysql://user:password@host:3306/dockermon or sqlite:///path/file.db.
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

    /// Address for /healthz, /readyz and /metrics. [default: 0.0.0.0:9810]
    #[arg(long, env = "DOCKERMON_HEALTH_LISTEN", value_name = "ADDR")]
    pub health_listen: Option<SocketAddr>,

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
}

/// The YAML file. Unknown keys are an error: a misspelt key silently ignored is a setting
/// silently not applied.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Database URL, as `--database-url`.
    pub database_url: Option<String>,
    /// File holding the database URL.
    pub database_url_file: Option<PathBuf>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Address for health and metrics.
    pub health_listen: Option<SocketAddr>,
    /// How long data is kept.
    #[serde(default)]
    pub retention: RetentionFile,
}

/// Retention periods in the YAML file, e.g. `raw: 7d`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionFile {
    /// Raw stats.
    pub raw: Option<String>,
    /// 5-minute rollups.
    #[serde(rename = "5m")]
    pub five_minutes: Option<String>,
    /// 1-hour rollups.
    #[serde(rename = "1h")]
    pub one_hour: Option<String>,
    /// Activity log.
    pub activity: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub database: DatabaseConfig,
    pub health_listen: SocketAddr,
    pub retention: Retention,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {what} {path}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// Reads the YAML file named by `--config`, if any.
pub fn read_file(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        what: "config file",
        path: path.to_owned(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_yaml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
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
        let url = match (
            self.database_url.as_ref().or(file.database_url.as_ref()),
            url_file,
        ) {
            (Some(url), _) => Some(url.trim().to_owned()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read {
                        what: "database URL file",
                        path: path.clone(),
                        source,
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
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
                    let value = humantime::parse_duration(text.trim()).map_err(|e| {
                        invalid(
                            key,
                            format!("{text:?} is not a duration ({e}); write e.g. 7d or 12h"),
                        )
                    })?;
                    if value < Duration::from_secs(3600) {
                        return Err(invalid(
                            key,
                            format!("{text} is too short: keep data at least 1h"),
                        ));
                    }
                    Ok(value)
                }
                None => Ok(default),
            }
        };
        let retention = Retention {
            raw: period(
                "retention.raw",
                &self.retention_raw,
                &file.retention.raw,
                defaults.raw,
            )?,
            five_minutes: period(
                "retention.5m",
                &self.retention_5m,
                &file.retention.five_minutes,
                defaults.five_minutes,
            )?,
            one_hour: period(
                "retention.1h",
                &self.retention_1h,
                &file.retention.one_hour,
                defaults.one_hour,
            )?,
            activity: period(
                "retention.activity",
                &self.retention_activity,
                &file.retention.activity,
                defaults.activity,
            )?,
            ..defaults
        };
        Ok(ServeConfig {
            database: self.database.resolve(file)?,
            health_listen: self
                .health_listen
                .or(file.health_listen)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 9810))),
            retention,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["dockermon-collector", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(serve) => serve,
            Command::Migrate(_) => unreachable!(),
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
            "database_url: sqlite:///file.db\nretention:\n  raw: 2d\n  1h: 30d\n",
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
    fn bad_settings_name_their_key() {
        let err = serve(&["--database-url", "postgres://x/y"])
            .resolve(&FileConfig::default())
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("database_url: invalid database URL"),
            "{err}"
        );
        let err = serve(&["--retention-raw", "10m"])
            .resolve(&FileConfig::default())
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("retention.raw: 10m is too short"),
            "{err}"
        );
        let err = serde_yaml::from_str::<FileConfig>("retention:\n  rwa: 1d\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `rwa`"), "{err}");
    }
}

//! Database URLs: `mysql://user:password@host:3306/dockermon` or `sqlite:///path/to/file.db`.
//! Checked before anything connects, so a typo is reported as such rather than as an
//! unreachable database.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{Backend, StoreError};

#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    url: String,
    backend: Backend,
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let bad = |why: String| Err(StoreError::BadUrl(why));
        let (scheme, rest) = match url.split_once("://") {
            Some(parts) => parts,
            None if url.starts_with("sqlite:") => ("sqlite", url.trim_start_matches("sqlite:")),
            None => return bad("expected mysql://… or sqlite://…".to_owned()),
        };
        let backend = match scheme {
            "mysql" | "mariadb" => Backend::MySql,
            "sqlite" => Backend::Sqlite,
            other => {
                return bad(format!(
                    "the scheme {other:?} is not supported; use mysql:// (MySQL or MariaDB) or sqlite://"
                ));
            }
        };
        match backend {
            Backend::MySql => {
                let host_part = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                let (host_port, database) = host_part.split_once('/').unwrap_or((host_part, ""));
                let database = database.split('?').next().unwrap_or_default();
                if host_port.is_empty() {
                    return bad(
                        "the MySQL host is missing (mysql://user:password@host:3306/dockermon)"
                            .into(),
                    );
                }
                if database.is_empty() {
                    return bad("the MySQL database name is missing (mysql://user:password@host:3306/dockermon)".into());
                }
                if let Some((_, port)) = host_port.rsplit_once(':')
                    && port.parse::<u16>().is_err()
                {
                    return bad(format!("{port:?} is not a port number"));
                }
                Ok(DatabaseUrl {
                    url: format!("mysql://{rest}"),
                    backend,
                })
            }
            Backend::Sqlite => {
                let path = rest.split('?').next().unwrap_or_default();
                if path.is_empty() {
                    return bad("the SQLite file path is missing (sqlite:///var/lib/dockermon/dockermon.db)".into());
                }
                // Create the file on first use.
                let url = if rest.contains("mode=") {
                    format!("sqlite://{rest}")
                } else if rest.contains('?') {
                    format!("sqlite://{rest}&mode=rwc")
                } else {
                    format!("sqlite://{rest}?mode=rwc")
                };
                Ok(DatabaseUrl { url, backend })
            }
        }
    }

    /// The embedded default: a SQLite file in `data_dir`.
    pub fn sqlite_in(data_dir: &Path) -> Self {
        DatabaseUrl {
            url: format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("dockermon.db").display()
            ),
            backend: Backend::Sqlite,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(super) fn as_str(&self) -> &str {
        &self.url
    }

    /// The SQLite file, for a file database.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        let path = self.url.trim_start_matches("sqlite://").split('?').next()?;
        (path != ":memory:").then(|| PathBuf::from(path))
    }

    /// The same database, but never created: opening a SQLite file that does not exist
    /// fails instead.
    pub fn existing_only(&self) -> DatabaseUrl {
        DatabaseUrl {
            url: self.url.replace("mode=rwc", "mode=rw"),
            backend: self.backend,
        }
    }

    /// The directory a SQLite file lives in, to create before connecting.
    pub(super) fn sqlite_dir(&self) -> Option<PathBuf> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        let path = self.url.trim_start_matches("sqlite://").split('?').next()?;
        if path == ":memory:" {
            return None;
        }
        Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
    }
}

/// Never prints a password.
impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.url.split_once("://").and_then(|(scheme, rest)| {
            let (credentials, host) = rest.rsplit_once('@')?;
            let user = credentials.split(':').next().unwrap_or_default();
            Some(format!("{scheme}://{user}:***@{host}"))
        }) {
            Some(redacted) => f.write_str(&redacted),
            None => f.write_str(&self.url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_urls() {
        let mysql = DatabaseUrl::parse("mysql://dm:secret@db:3306/dockermon").unwrap();
        assert_eq!(mysql.backend(), Backend::MySql);
        assert_eq!(mysql.to_string(), "mysql://dm:***@db:3306/dockermon");
        assert_eq!(
            DatabaseUrl::parse("mariadb://db/dockermon")
                .unwrap()
                .backend(),
            Backend::MySql
        );

        let sqlite = DatabaseUrl::parse("sqlite:///var/lib/dm/dm.db").unwrap();
        assert_eq!(sqlite.backend(), Backend::Sqlite);
        assert_eq!(sqlite.as_str(), "sqlite:///var/lib/dm/dm.db?mode=rwc");
        assert_eq!(sqlite.sqlite_dir(), Some(PathBuf::from("/var/lib/dm")));
        assert_eq!(
            DatabaseUrl::sqlite_in(Path::new("./data")).as_str(),
            "sqlite://./data/dockermon.db?mode=rwc"
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let message = |url: &str| DatabaseUrl::parse(url).unwrap_err().to_string();
        assert!(message("postgres://db/dm").contains("\"postgres\" is not supported"));
        assert!(message("db:3306").contains("expected mysql://"));
        assert!(message("mysql://user@db:3306").contains("database name is missing"));
        assert!(message("mysql://user@db:port/dm").contains("\"port\" is not a port number"));
        assert!(message("sqlite://").contains("file path is missing"));
    }
}

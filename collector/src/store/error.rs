//! Store errors, sorted by what a caller does about them.

use std::path::PathBuf;

use sqlx::migrate::{MigrateError, Migrator};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is not one the store can use; the message says what to change.
    #[error("invalid database URL: {0}")]
    BadUrl(String),
    #[error("cannot create the data directory {dir}")]
    DataDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The database cannot be reached (down, refused, timed out): retry later.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The database answered and refused (wrong credentials, no such database, no
    /// permission): retrying cannot fix it, the configuration must change.
    #[error("the database refused the connection")]
    Refused(#[source] sqlx::Error),
    #[error("migration {name} failed: {message}")]
    Migration { name: String, message: String },
    /// The database is not a deployment's: it does not exist, or its schema is missing or
    /// of another version. The message says what to do.
    #[error("{0}")]
    NotDeployed(String),
    /// The database rolled the transaction back to end a lock conflict (a deadlock, or a
    /// lock waited on too long): nothing of it was written, and running it again succeeds.
    /// Concurrent ingest writers can meet this in MySQL.
    #[error("the transaction met a lock conflict and was rolled back")]
    Contended(#[source] sqlx::Error),
    /// A row that must be unique already exists.
    #[error("already exists")]
    Conflict(#[source] sqlx::Error),
    #[error("not found")]
    NotFound,
    /// Anything else the database said: a bug or an unexpected schema.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// Stored data that no longer passes validation (e.g. a host name).
    #[error("invalid stored data: {0}")]
    Invalid(String),
    #[error("stored data is not valid JSON")]
    Json(#[from] serde_json::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error),
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(error),
            // SQLSTATE 40001: MySQL's deadlock (1213). A lock wait timeout (1205) has only
            // the generic HY000.
            sqlx::Error::Database(db)
                if db.code().as_deref() == Some("40001")
                    || db.message().starts_with("Lock wait timeout exceeded") =>
            {
                StoreError::Contended(error)
            }
            sqlx::Error::RowNotFound => StoreError::NotFound,
            _ => StoreError::Database(error),
        }
    }
}

/// SQLSTATE classes of connection errors that retrying cannot fix: invalid authorization
/// (28: access denied, MySQL 1045/1698) and access or naming (42: no access to the database
/// 1044, unknown database 1049). Connection exceptions (08, e.g. too many connections) pass.
const REFUSALS: &[&str] = &["28", "42"];

impl StoreError {
    /// An error from opening a connection: a refusal that retrying cannot fix, or the
    /// database being unavailable.
    pub fn from_connect(error: sqlx::Error) -> StoreError {
        let refused = match &error {
            sqlx::Error::Database(db) => {
                db.code().is_some_and(|code| REFUSALS.iter().any(|class| code.starts_with(class)))
                // SQLite: a file it may not open (permissions, a directory).
                || db.message().contains("unable to open database file")
            }
            _ => false,
        };
        if refused {
            StoreError::Refused(error)
        } else {
            StoreError::Unavailable(error)
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Contended(_))
    }

    pub(super) fn migration(migrator: &Migrator, error: MigrateError) -> StoreError {
        let name_of = |version: i64| {
            migrator
                .iter()
                .find(|m| m.version == version)
                .map(|m| format!("{:04}_{}", m.version, m.description.replace(' ', "_")))
                .unwrap_or_else(|| version.to_string())
        };
        match error {
            MigrateError::ExecuteMigration(source, version) => StoreError::Migration {
                name: name_of(version),
                message: database_message(&source),
            },
            MigrateError::Execute(source) => match StoreError::from(source) {
                StoreError::Unavailable(source) => StoreError::Unavailable(source),
                other => StoreError::Migration {
                    name: "(bookkeeping)".to_owned(),
                    message: other.to_string(),
                },
            },
            other => StoreError::Migration {
                name: "(bookkeeping)".to_owned(),
                message: other.to_string(),
            },
        }
    }
}

/// What the database itself said, without sqlx's wrapping.
fn database_message(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => db.message().to_owned(),
        other => other.to_string(),
    }
}

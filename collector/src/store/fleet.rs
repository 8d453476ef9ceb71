//! Who may report: join tokens, issued agent certificates, deleted (revoked) hosts, and
//! the per-host delivery bookkeeping of the agent protocol.
//!
//! Only a SHA-256 of a join token's secret is stored. A token is consumed by one atomic
//! `UPDATE … WHERE used_ns IS NULL AND expires_ns > now`, so two enrollments racing with
//! the same token cannot both succeed.

use dockermon_proto::HostName;
use dockermon_proto::transport::Dropped;
use serde::Serialize;
use sqlx::{AssertSqlSafe, Row};
use utoipa::ToSchema;

use super::dialect::ignore_duplicates;
use super::ingest::hex_sha256_bytes;
use super::{HostId, Result, Store, StoreError};

/// Why a join token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("unknown join token")]
    Unknown,
    #[error("join token expired")]
    Expired,
    #[error("join token already used")]
    Used,
    #[error("join token revoked")]
    Revoked,
}

/// A join token as `token list` shows it (never its secret, which is not stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct JoinTokenRow {
    pub id: i64,
    /// The host it admits.
    pub host: String,
    /// The user who created it (`None`: from the shell).
    pub created_by: Option<i64>,
    pub created_ns: i64,
    pub expires_ns: i64,
    pub used_ns: Option<i64>,
    pub revoked_ns: Option<i64>,
}

impl JoinTokenRow {
    /// `unused`, `used`, `expired` or `revoked`, as of `now_ns`.
    pub fn state(&self, now_ns: i64) -> &'static str {
        match (self.used_ns, self.revoked_ns) {
            (Some(_), _) => "used",
            (None, Some(_)) => "revoked",
            (None, None) if self.expires_ns <= now_ns => "expired",
            (None, None) => "unused",
        }
    }
}

/// A host's agent certificate that is valid now: it was issued, has not expired and was
/// not revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveCertificate {
    pub serial: String,
    pub not_after_ns: i64,
    /// Its agent enrolled with a Kubernetes ServiceAccount token (or renewed one that did),
    /// not with a join token.
    pub by_service_account: bool,
}

/// A certificate issued by the built-in CA, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    pub serial: String,
    pub host: HostName,
    pub fingerprint: String,
    pub not_before_ns: i64,
    pub not_after_ns: i64,
}

/// Whether an agent presenting a certificate may report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// The host was deleted; the message says so.
    HostRevoked,
    /// This certificate was revoked (its host was deleted and re-admitted since).
    CertificateRevoked,
}

fn join_token_row(row: &sqlx::any::AnyRow) -> Result<JoinTokenRow> {
    Ok(JoinTokenRow {
        id: row.try_get("id")?,
        host: row.try_get("host_name")?,
        created_by: row.try_get("created_by")?,
        created_ns: row.try_get("created_ns")?,
        expires_ns: row.try_get("expires_ns")?,
        used_ns: row.try_get("used_ns")?,
        revoked_ns: row.try_get("revoked_ns")?,
    })
}

impl Store {
    /// Records a join token for `host`, valid until `expires_ns`. Creating a token re-admits
    /// a deleted host name.
    pub async fn create_join_token(
        &self,
        secret: &[u8],
        host: &HostName,
        created_by: Option<i64>,
        now_ns: i64,
        expires_ns: i64,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO join_tokens (token_hash, host_name, created_by, created_ns, expires_ns) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(hex_sha256_bytes(secret))
        .bind(host.as_str())
        .bind(created_by)
        .bind(now_ns)
        .bind(expires_ns)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM revoked_hosts WHERE name = ?")
            .bind(host.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Uses up a join token; the host it was created for, or why it is refused.
    pub async fn consume_join_token(
        &self,
        secret: &[u8],
        now_ns: i64,
    ) -> Result<Result<HostName, TokenRefusal>> {
        let hash = hex_sha256_bytes(secret);
        let used = sqlx::query(
            "UPDATE join_tokens SET used_ns = ? WHERE token_hash = ? AND used_ns IS NULL \
             AND revoked_ns IS NULL AND expires_ns > ?",
        )
        .bind(now_ns)
        .bind(&hash)
        .bind(now_ns)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query(
            "SELECT host_name, expires_ns, used_ns, revoked_ns FROM join_tokens WHERE token_hash = ?",
        )
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(Err(TokenRefusal::Unknown));
        };
        if used.rows_affected() == 1 {
            let name: String = row.try_get("host_name")?;
            return Ok(Ok(
                HostName::new(name).map_err(|e| StoreError::Invalid(e.to_string()))?
            ));
        }
        let used_ns: Option<i64> = row.try_get("used_ns")?;
        let revoked_ns: Option<i64> = row.try_get("revoked_ns")?;
        Ok(Err(match (used_ns, revoked_ns) {
            (Some(_), _) => TokenRefusal::Used,
            (None, Some(_)) => TokenRefusal::Revoked,
            (None, None) => TokenRefusal::Expired,
        }))
    }

    /// Makes a token consumed by an enrollment that then failed usable again.
    pub async fn release_join_token(&self, secret: &[u8]) -> Result<()> {
        sqlx::query("UPDATE join_tokens SET used_ns = NULL WHERE token_hash = ?")
            .bind(hex_sha256_bytes(secret))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Join tokens, newest first; with `all`, used, expired and revoked ones too.
    pub async fn join_tokens(&self, all: bool, now_ns: i64) -> Result<Vec<JoinTokenRow>> {
        let rows = sqlx::query(
            "SELECT id, host_name, created_by, created_ns, expires_ns, used_ns, revoked_ns \
             FROM join_tokens WHERE ? = 1 OR (used_ns IS NULL AND revoked_ns IS NULL AND expires_ns > ?) \
             ORDER BY created_ns DESC, id DESC LIMIT 1000",
        )
        .bind(i64::from(all))
        .bind(now_ns)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(join_token_row).collect()
    }

    /// Revokes an unused join token. `NotFound` when there is no such token; a used one
    /// cannot be revoked (delete its host instead) and is a `Conflict`.
    pub async fn revoke_join_token(&self, id: i64, now_ns: i64) -> Result<JoinTokenRow> {
        sqlx::query("UPDATE join_tokens SET revoked_ns = ? WHERE id = ? AND used_ns IS NULL AND revoked_ns IS NULL")
            .bind(now_ns)
            .bind(id)
            .execute(&self.pool)
            .await?;
        let row = sqlx::query(
            "SELECT id, host_name, created_by, created_ns, expires_ns, used_ns, revoked_ns \
             FROM join_tokens WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let token = join_token_row(&row)?;
        if token.used_ns.is_some() {
            return Err(StoreError::Invalid(format!(
                "join token {id} was already used (by {}); delete the host to revoke its agent",
                token.host
            )));
        }
        Ok(token)
    }

    /// The certificates of `host` that are valid now (issued by the built-in CA).
    pub async fn live_certificates(
        &self,
        host: &HostName,
        now_ns: i64,
    ) -> Result<Vec<LiveCertificate>> {
        let rows = sqlx::query(
            "SELECT serial, not_after_ns, by_service_account FROM agent_certificates \
             WHERE host_name = ? AND revoked_ns IS NULL AND not_after_ns > ? ORDER BY not_after_ns DESC",
        )
        .bind(host.as_str())
        .bind(now_ns)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(LiveCertificate {
                    serial: row.try_get("serial")?,
                    not_after_ns: row.try_get("not_after_ns")?,
                    by_service_account: row.try_get::<i64, _>("by_service_account")? != 0,
                })
            })
            .collect()
    }

    /// Whether an agent admitted with a join token still holds `host`: one of its
    /// certificates is not revoked, expired or not (an agent offline for longer than its
    /// certificate's life still owns its name until a person deletes the host).
    pub async fn held_by_join_token(&self, host: &HostName) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM agent_certificates \
             WHERE host_name = ? AND revoked_ns IS NULL AND by_service_account = 0 LIMIT 1",
        )
        .bind(host.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Revokes every certificate of `host` issued before `keep` (no later than it, `keep`
    /// aside): a new enrollment replaces the agent that held the name, which is then
    /// refused. Of two enrollments racing for one name, the later one keeps its certificate
    /// whichever finishes first; none is revoked when `keep` is unknown. Returns how many
    /// were revoked.
    pub async fn revoke_other_certificates(
        &self,
        host: &HostName,
        keep: &str,
        now_ns: i64,
    ) -> Result<u64> {
        let issued: Option<i64> =
            sqlx::query_scalar("SELECT issued_ns FROM agent_certificates WHERE serial = ?")
                .bind(keep)
                .fetch_optional(&self.pool)
                .await?;
        let Some(issued) = issued else {
            return Ok(0);
        };
        let done = sqlx::query(
            "UPDATE agent_certificates SET revoked_ns = ? \
             WHERE host_name = ? AND serial <> ? AND issued_ns <= ? AND revoked_ns IS NULL",
        )
        .bind(now_ns)
        .bind(host.as_str())
        .bind(keep)
        .bind(issued)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn record_certificate(
        &self,
        cert: &IssuedCertificate,
        by_service_account: bool,
        now_ns: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO agent_certificates (serial, host_name, fingerprint, not_before_ns, not_after_ns, issued_ns, by_service_account) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&cert.serial)
        .bind(cert.host.as_str())
        .bind(&cert.fingerprint)
        .bind(cert.not_before_ns)
        .bind(cert.not_after_ns)
        .bind(now_ns)
        .bind(i64::from(by_service_account))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether `host`, presenting the certificate with `serial`, may report now.
    pub async fn admission(&self, host: &HostName, serial: &str) -> Result<Admission> {
        if self.host_revoked(host).await? {
            return Ok(Admission::HostRevoked);
        }
        let certificate = sqlx::query("SELECT revoked_ns FROM agent_certificates WHERE serial = ?")
            .bind(serial)
            .fetch_optional(&self.pool)
            .await?;
        // Certificates from another issuer the collector trusts (cert-manager) are not in
        // the table; only their host's revocation applies to them.
        match certificate
            .map(|row| row.try_get::<Option<i64>, _>(0))
            .transpose()?
        {
            Some(Some(_)) => Ok(Admission::CertificateRevoked),
            _ => Ok(Admission::Allowed),
        }
    }

    /// Whether `host` was deleted and not re-admitted since (by a new join token).
    pub async fn host_revoked(&self, host: &HostName) -> Result<bool> {
        let revoked = sqlx::query("SELECT 1 FROM revoked_hosts WHERE name = ?")
            .bind(host.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(revoked.is_some())
    }

    /// Host names revoked at or after `since_ns`, and certificate serials revoked then.
    pub async fn revocations_since(&self, since_ns: i64) -> Result<(Vec<String>, Vec<String>)> {
        let names = |sql: &'static str| async move {
            sqlx::query(sql)
                .bind(since_ns)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|row| row.try_get(0).map_err(StoreError::from))
                .collect::<Result<Vec<String>>>()
        };
        let hosts = names("SELECT name FROM revoked_hosts WHERE revoked_ns >= ?").await?;
        let serials = names("SELECT serial FROM agent_certificates WHERE revoked_ns >= ?").await?;
        Ok((hosts, serials))
    }

    /// Deletes a host: revokes its certificates, refuses its name until a new join token
    /// is created for it, and removes everything stored about it. Returns whether it existed.
    pub async fn delete_host(&self, host: &HostName, now_ns: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE agent_certificates SET revoked_ns = ? WHERE host_name = ? AND revoked_ns IS NULL")
            .bind(now_ns)
            .bind(host.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO revoked_hosts (name, revoked_ns) VALUES (?, ?){}",
            ignore_duplicates(self.backend, "name")
        )))
        .bind(host.as_str())
        .bind(now_ns)
        .execute(&mut *tx)
        .await?;
        let id: Option<i64> = sqlx::query("SELECT id FROM hosts WHERE name = ?")
            .bind(host.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
        if let Some(id) = id {
            // Tables without a foreign key to the host (the hot ingest tables) first.
            for table in [
                "container_stats",
                "container_stats_5m",
                "container_stats_1h",
            ] {
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE container_id IN (SELECT id FROM containers WHERE host_id = ?)"
                )))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("DELETE FROM activity WHERE host_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM hosts WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        if let Some(id) = id {
            self.forget_host(HostId(id));
        }
        Ok(id.is_some())
    }

    /// The newest committed frame of a host's agent (0 before the first).
    pub async fn last_seq(&self, host: HostId) -> Result<u64> {
        let row = sqlx::query("SELECT last_seq FROM agent_streams WHERE host_id = ?")
            .bind(host.0)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .unwrap_or(0)
            .max(0) as u64)
    }

    /// What an agent's spool reported dropping, as last reported.
    pub async fn dropped(&self, host: HostId) -> Result<Dropped> {
        let row = sqlx::query(
            "SELECT dropped_stats, dropped_usage, dropped_events, dropped_other FROM agent_streams WHERE host_id = ?",
        )
        .bind(host.0)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(Dropped::default());
        };
        let get = |i: usize| -> Result<u64> { Ok(row.try_get::<i64, _>(i)?.max(0) as u64) };
        Ok(Dropped {
            stats: get(0)?,
            usage: get(1)?,
            events: get(2)?,
            other: get(3)?,
        })
    }
}

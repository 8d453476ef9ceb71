//! People and their login sessions, and the activity entries their actions leave.
//!
//! Emails are stored lower-case and compared that way. Only Argon2id password hashes and
//! SHA-256 hashes of refresh tokens are stored, never the secrets themselves. A session is
//! live while it is neither revoked nor expired and its user is not disabled; the API
//! checks that on every request, so logging out or disabling a user takes effect at once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, QueryBuilder, Row};
use utoipa::ToSchema;

use super::queries::{Page, Paged, push_page};
use super::{ContainerKey, HostId, Result, Store, StoreError};

/// Whether `email` can be a user's: one `@` with something on both sides, no whitespace
/// or control characters, and within the column's 254 bytes. The API, the shell commands
/// and the first admin's configuration all check with this.
pub fn is_valid_email(email: &str) -> bool {
    email.len() <= 254
        && email.matches('@').count() == 1
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// What a user may do. Each role can do everything the one before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also runs container actions and profiles.
    Operator,
    /// Also manages users, hosts and join tokens.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub role: Role,
    pub disabled: bool,
    /// The user's own preferences (free-form JSON object).
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    pub created_ns: i64,
    pub updated_ns: i64,
}

/// A user with the password hash, for checking a login.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: UserRow,
    pub password_hash: String,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password_hash: Option<String>,
    pub settings: Option<serde_json::Value>,
}

/// A user action for the activity log.
#[derive(Debug, Clone)]
pub struct UserAction<'a> {
    /// `None` when a resource acted (a `ProfileSession`), not a user.
    pub user_id: Option<i64>,
    pub user_email: &'a str,
    pub host: Option<HostId>,
    pub container: Option<ContainerKey>,
    /// What the action was about (a container's Docker id, a host's name).
    pub target_id: &'a str,
    pub target_name: Option<&'a str>,
    pub kind: &'a str,
    pub action: &'a str,
    pub attributes: BTreeMap<String, String>,
}

/// The columns of a [`UserRow`], as a macro so statements stay `&'static str`.
macro_rules! user_columns {
    () => {
        "id, email, role, disabled, settings, created_ns, updated_ns"
    };
}

fn user_row(row: &AnyRow) -> Result<UserRow> {
    let role: String = row.try_get("role")?;
    Ok(UserRow {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Invalid(format!("role {role:?}")))?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        settings: serde_json::from_str(&row.try_get::<String, _>("settings")?)?,
        created_ns: row.try_get("created_ns")?,
        updated_ns: row.try_get("updated_ns")?,
    })
}

impl Store {
    /// Creates a user; `Conflict` if the email is taken.
    pub async fn create_user(
        &self,
        email: &str,
        password_hash: &str,
        role: Role,
        now_ns: i64,
    ) -> Result<UserRow> {
        let email = email.to_lowercase();
        sqlx::query(
            "INSERT INTO users (email, password_hash, role, disabled, settings, created_ns, updated_ns) \
             VALUES (?, ?, ?, 0, '{}', ?, ?)",
        )
        .bind(&email)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(now_ns)
        .bind(now_ns)
        .execute(&self.pool)
        .await?;
        Ok(self
            .credentials(&email)
            .await?
            .ok_or(StoreError::NotFound)?
            .user)
    }

    /// The user with this email (any case), with the password hash.
    pub async fn credentials(&self, email: &str) -> Result<Option<Credentials>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            ", password_hash FROM users WHERE email = ?"
        ))
        .bind(email.to_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Credentials {
                user: user_row(&row)?,
                password_hash: row.try_get("password_hash")?,
            })
        })
        .transpose()
    }

    pub async fn user(&self, id: i64) -> Result<UserRow> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        user_row(&row)
    }

    pub async fn password_hash(&self, id: i64) -> Result<String> {
        let row = sqlx::query("SELECT password_hash FROM users WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(row.try_get(0)?)
    }

    pub async fn users(&self, page: Page) -> Result<Paged<UserRow>> {
        let mut select: QueryBuilder<Any> =
            QueryBuilder::new(concat!("SELECT ", user_columns!(), " FROM users"));
        push_page(&mut select, " ORDER BY id", page);
        let rows = select.build().fetch_all(&self.pool).await?;
        let items = rows.iter().map(user_row).collect::<Result<_>>()?;
        self.with_total(page, items, QueryBuilder::new("SELECT COUNT(*) FROM users"))
            .await
    }

    /// Applies `update`. A new password or disabling the user also ends every session of
    /// theirs, so a stolen token stops working when the owner reacts.
    pub async fn update_user(&self, id: i64, update: &UserUpdate, now_ns: i64) -> Result<UserRow> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let mut user = user_row(&row)?;
        user.role = update.role.unwrap_or(user.role);
        user.disabled = update.disabled.unwrap_or(user.disabled);
        if let Some(settings) = &update.settings {
            user.settings = settings.clone();
        }
        user.updated_ns = now_ns;
        sqlx::query(
            "UPDATE users SET role = ?, disabled = ?, settings = ?, updated_ns = ? WHERE id = ?",
        )
        .bind(user.role.as_str())
        .bind(i64::from(user.disabled))
        .bind(serde_json::to_string(&user.settings)?)
        .bind(now_ns)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if let Some(hash) = &update.password_hash {
            sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
                .bind(hash)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if update.password_hash.is_some() || update.disabled == Some(true) {
            sqlx::query(
                "UPDATE sessions SET revoked_ns = ? WHERE user_id = ? AND revoked_ns IS NULL",
            )
            .bind(now_ns)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(user)
    }

    pub async fn count_users(&self) -> Result<u64> {
        let total: i64 = sqlx::query("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(total as u64)
    }

    pub async fn create_session(
        &self,
        id: &str,
        user_id: i64,
        refresh_hash: &str,
        now_ns: i64,
        expires_ns: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, refresh_hash, created_ns, expires_ns) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(user_id)
        .bind(refresh_hash)
        .bind(now_ns)
        .bind(expires_ns)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The user of a live session (not revoked, not expired, user not disabled).
    pub async fn session_user(&self, session: &str, now_ns: i64) -> Result<Option<UserRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE disabled = 0 AND id = \
             (SELECT user_id FROM sessions WHERE id = ? AND revoked_ns IS NULL AND expires_ns > ?)"
        ))
        .bind(session)
        .bind(now_ns)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_row).transpose()
    }

    /// Replaces a live session's refresh token, only if `old_hash` is its current one: a
    /// refresh token works once. Returns whether it was replaced.
    pub async fn rotate_refresh(
        &self,
        session: &str,
        old_hash: &str,
        new_hash: &str,
        now_ns: i64,
        expires_ns: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE sessions SET refresh_hash = ?, expires_ns = ? \
             WHERE id = ? AND refresh_hash = ? AND revoked_ns IS NULL AND expires_ns > ?",
        )
        .bind(new_hash)
        .bind(expires_ns)
        .bind(session)
        .bind(old_hash)
        .bind(now_ns)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a session (logout, or a refresh token presented twice).
    pub async fn revoke_session(&self, session: &str, now_ns: i64) -> Result<()> {
        sqlx::query("UPDATE sessions SET revoked_ns = ? WHERE id = ? AND revoked_ns IS NULL")
            .bind(now_ns)
            .bind(session)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets sessions that ended before `before_ns` (run with retention).
    pub async fn purge_sessions(&self, before_ns: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_ns < ? OR revoked_ns < ?")
            .bind(before_ns)
            .bind(before_ns)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Writes a person's action to the activity log.
    /// Records a sign-in event in the activity log (kind `auth`): `login`, `login_failed`,
    /// `login_locked`. `email` is the one tried (cut to 256 bytes), `user_id` its user if
    /// there is one; the attributes say from where and why.
    pub async fn record_sign_in(
        &self,
        email: &str,
        user_id: Option<i64>,
        action: &str,
        attributes: BTreeMap<String, String>,
        now_ns: i64,
    ) -> Result<()> {
        let key = format!("auth:{:032x}", rand::random::<u128>());
        sqlx::query(
            "INSERT INTO activity (entry_key, host_id, time_ns, kind, action, action_name, \
             actor_id, actor_name, container_id, user_id, attributes) VALUES (?, NULL, ?, 'auth', ?, ?, ?, NULL, NULL, ?, ?)",
        )
        .bind(&key)
        .bind(now_ns)
        .bind(action)
        .bind(action)
        .bind(dockermon_proto::limits::truncate(email.to_owned(), 256))
        .bind(user_id)
        .bind(serde_json::to_string(&attributes)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn record_user_action(&self, action: &UserAction<'_>, now_ns: i64) -> Result<i64> {
        let key = format!(
            "user:{}:{:032x}",
            action.user_id.map_or("-".to_owned(), |id| id.to_string()),
            rand::random::<u128>()
        );
        let mut attributes = action.attributes.clone();
        attributes.insert("user".into(), action.user_email.to_owned());
        sqlx::query(
            "INSERT INTO activity (entry_key, host_id, time_ns, kind, action, action_name, \
             actor_id, actor_name, container_id, user_id, attributes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key)
        .bind(action.host.map(|h| h.0))
        .bind(now_ns)
        .bind(action.kind)
        .bind(action.action)
        .bind(action.action)
        .bind(action.target_id)
        .bind(action.target_name)
        .bind(action.container.map(|c| c.0))
        .bind(action.user_id)
        .bind(serde_json::to_string(&attributes)?)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT id FROM activity WHERE entry_key = ?")
            .bind(&key)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }
}

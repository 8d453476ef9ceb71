//! People, from the shell and at first start: `dockermon-collector user add|passwd|list`,
//! and the first admin, created when the collector has no users at all.

use std::io::BufRead;

use dockermon_proto::now_ns;

use crate::api::auth::password;
use crate::config::{FirstAdmin, PasswordArgs};
use crate::store::{Page, Role, Store, StoreError, UserRow, UserUpdate, is_valid_email};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read the password")]
    Read(#[source] std::io::Error),
}

/// Creates the first admin if there are no users. Returns the generated password when
/// one was generated, for the caller to show once.
pub async fn ensure_first_admin(
    store: &Store,
    first: &FirstAdmin,
) -> Result<Option<(UserRow, Option<String>)>, AdminError> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let (secret, generated) = match &first.password {
        Some(password) => (password.clone(), false),
        None => (password::generate(), true),
    };
    let hash = password::hash(secret.clone()).await;
    match store
        .create_user(&first.email, &hash, Role::Admin, now_ns())
        .await
    {
        Ok(user) => Ok(Some((user, generated.then_some(secret)))),
        // Another replica created it first.
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// The password given by `--password-stdin` or `--password-file`, else a generated one
/// (and whether it was generated).
pub fn read_password(args: &PasswordArgs) -> Result<(String, bool), AdminError> {
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(AdminError::Read)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else if let Some(path) = &args.password_file {
        std::fs::read_to_string(path)
            .map_err(AdminError::Read)?
            .trim_end_matches(['\r', '\n'])
            .to_owned()
    } else {
        return Ok((password::generate(), true));
    };
    password::check_new(&password).map_err(AdminError::Invalid)?;
    Ok((password, false))
}

pub async fn add_user(
    store: &Store,
    email: &str,
    role: &str,
    secret: String,
) -> Result<UserRow, AdminError> {
    let role = Role::parse(role).ok_or_else(|| {
        AdminError::Invalid(format!(
            "role must be viewer, operator or admin, not {role:?}"
        ))
    })?;
    if !is_valid_email(email) {
        return Err(AdminError::Invalid(
            "email must look like name@domain".into(),
        ));
    }
    let hash = password::hash(secret).await;
    match store.create_user(email, &hash, role, now_ns()).await {
        Err(StoreError::Conflict(_)) => Err(AdminError::Invalid(format!("{email} already exists"))),
        other => Ok(other?),
    }
}

pub async fn set_password(store: &Store, email: &str, secret: String) -> Result<(), AdminError> {
    let user = store
        .credentials(email)
        .await?
        .ok_or_else(|| AdminError::Invalid(format!("no user {email}")))?
        .user;
    let update = UserUpdate {
        password_hash: Some(password::hash(secret).await),
        ..UserUpdate::default()
    };
    store.update_user(user.id, &update, now_ns()).await?;
    Ok(())
}

/// Every user, for `user list`: id, email, role, and whether disabled.
pub async fn list_users(store: &Store) -> Result<Vec<UserRow>, AdminError> {
    let mut users = Vec::new();
    let mut offset = 0;
    loop {
        let page = store
            .users(Page::new(offset, Page::MAX_LIMIT).expect("valid page"))
            .await?;
        let count = page.items.len() as u64;
        users.extend(page.items);
        offset += count;
        if count == 0 || offset >= page.total {
            return Ok(users);
        }
    }
}

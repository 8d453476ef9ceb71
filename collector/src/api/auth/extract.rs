//! Auth is an extractor: a handler that takes [`AuthUser`] needs a live session; one that
//! takes [`Operator`] or [`Admin`] also needs that role. Missing, malformed, expired or
//! forged tokens and ended sessions answer 401; a role too low answers 403.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use dockermon_proto::now_ns;

use std::time::Instant;

use super::sessions::SessionOwner;
use super::tokens::TokenError;
use crate::api::ApiState;
use crate::api::error::ApiError;
use crate::store::Role;

/// The person behind a request, as the store knows them now.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: i64,
    pub email: String,
    pub role: Role,
    pub session: String,
    /// When the access token expires (Unix seconds).
    pub expires_at: u64,
}

impl AuthUser {
    /// Checks a bearer token: signature, expiry, and a live session of an enabled user (as
    /// the store said at most [`super::sessions::TTL`] ago).
    pub async fn from_token(state: &ApiState, token: &str) -> Result<AuthUser, ApiError> {
        let claims = state.tokens.verify(token).map_err(|error| match error {
            TokenError::Expired => ApiError::unauthorized("the token has expired"),
            TokenError::Invalid => ApiError::unauthorized("the token is not valid"),
        })?;
        let now = Instant::now();
        let owner = match state.sessions.get(&claims.sid, now) {
            Some(owner) => Some(owner),
            None => {
                let owner = state
                    .store
                    .session_user(&claims.sid, now_ns())
                    .await?
                    .map(|user| SessionOwner {
                        user_id: user.id,
                        email: user.email,
                        role: user.role,
                    });
                if let Some(owner) = &owner {
                    state.sessions.insert(&claims.sid, owner.clone(), now);
                }
                owner
            }
        };
        let owner = owner
            .filter(|owner| claims.sub == owner.user_id.to_string())
            .ok_or_else(|| ApiError::unauthorized("the session has ended"))?;
        Ok(AuthUser {
            id: owner.user_id,
            email: owner.email,
            role: owner.role,
            session: claims.sid,
            expires_at: claims.exp,
        })
    }

    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {} role",
                role.as_str()
            )))
        }
    }
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("an Authorization: Bearer token is required"))?;
    header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be Bearer <token>"))
}

impl FromRequestParts<ApiState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        AuthUser::from_token(state, token).await
    }
}

/// A user with at least the operator role.
#[derive(Debug, Clone)]
pub struct Operator(pub AuthUser);

impl FromRequestParts<ApiState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        user.require(Role::Operator)?;
        Ok(Operator(user))
    }
}

/// A user with the admin role.
#[derive(Debug, Clone)]
pub struct Admin(pub AuthUser);

impl FromRequestParts<ApiState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        user.require(Role::Admin)?;
        Ok(Admin(user))
    }
}

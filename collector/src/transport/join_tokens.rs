//! Join tokens as admins manage them, the same from the shell (`token create|list|revoke`)
//! and the API (`/api/v1/join-tokens`): one range for their lifetime, and one agent per
//! host name.
//!
//! A host name is one agent's identity: its certificate names it, and its spool's sequence
//! numbers are the collector's record of what that agent delivered. Two agents under one
//! name would take turns replacing each other's session and corrupt that record. So a token
//! for a host that is enrolled (it holds a certificate that is valid now) is refused unless
//! the caller asks to replace that agent; and every enrollment revokes the host's other
//! certificates, so a replaced agent is disconnected and refused from then on.

use std::time::Duration;

use dockermon_proto::transport::JoinToken;
use dockermon_proto::{HostName, now_ns};

use crate::pki::Authority;
use crate::store::{Store, StoreError};

/// The shortest and longest a join token may be valid.
pub const MIN_TTL: Duration = Duration::from_secs(1);
pub const MAX_TTL: Duration = Duration::from_secs(7 * 86_400);

#[derive(Debug, thiserror::Error)]
pub enum JoinTokenError {
    #[error("a join token is valid for 1s to 7d")]
    Ttl,
    #[error(
        "{host} is enrolled (its agent's certificate is valid until {until}): a second agent under the same name would replace it back and forth; replace that agent on purpose (--replace, or \"replace\": true in the API: its certificate is revoked when the new agent enrolls) or delete the host first"
    )]
    Enrolled { host: HostName, until: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a new join token is for.
#[derive(Debug, Clone)]
pub struct TokenRequest<'a> {
    pub host: &'a HostName,
    pub ttl: Duration,
    /// Admit a new agent for a host that is enrolled now, replacing its agent.
    pub replace: bool,
    /// The user asking (`None`: the shell or the collector itself).
    pub created_by: Option<i64>,
}

/// Creates a one-time join token pinning `authority`'s CA. Returns the token and when it
/// expires (Unix ns). Creating a token re-admits a deleted host name.
pub async fn create(
    store: &Store,
    authority: &Authority,
    request: TokenRequest<'_>,
) -> Result<(JoinToken, i64), JoinTokenError> {
    if !(MIN_TTL..=MAX_TTL).contains(&request.ttl) {
        return Err(JoinTokenError::Ttl);
    }
    let now = now_ns();
    if !request.replace
        && let Some(live) = store
            .live_certificates(request.host, now)
            .await?
            .into_iter()
            .next()
    {
        let until = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(live.not_after_ns))
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| live.not_after_ns.to_string());
        return Err(JoinTokenError::Enrolled {
            host: request.host.clone(),
            until,
        });
    }
    let token = JoinToken {
        ca_fingerprint: authority.fingerprint(),
        secret: rand::random(),
    };
    let expires = now.saturating_add(request.ttl.as_nanos().min(i64::MAX as u128) as i64);
    store
        .create_join_token(
            &token.secret,
            request.host,
            request.created_by,
            now,
            expires,
        )
        .await?;
    Ok((token, expires))
}

//! Access tokens: HS256 JWTs naming the user and the session.
//!
//! Only HS256 is accepted (so `alg: none` and algorithm swaps are refused), the expiry is
//! required and enforced with no leeway, and the token's type must be `access`. A valid
//! signature is not enough: the session the token names must still be live, which the
//! extractor checks against the store on every request.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::store::Role;

/// The token kind in `typ`, so no other HS256 token signed with the key passes as access.
const ACCESS: &str = "access";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id (a string, as the JWT spec has it).
    pub sub: String,
    /// The session's id.
    pub sid: String,
    /// The role when the token was issued (the store's current role is what counts).
    pub role: Role,
    pub typ: String,
    pub iat: u64,
    pub exp: u64,
}

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_ttl: Duration,
}

impl TokenKeys {
    pub fn new(secret: &[u8], access_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl,
        }
    }

    /// An access token for `user` in `session`, valid from `now` (Unix seconds).
    pub fn issue(&self, user: i64, session: &str, role: Role, now: u64) -> String {
        let claims = Claims {
            sub: user.to_string(),
            sid: session.to_owned(),
            role,
            typ: ACCESS.to_owned(),
            iat: now,
            exp: now + self.access_ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// The claims of a well-formed, correctly signed, unexpired access token.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        if data.claims.typ != ACCESS {
            return Err(TokenError::Invalid);
        }
        Ok(data.claims)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid")]
    Invalid,
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    fn keys() -> TokenKeys {
        TokenKeys::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(60))
    }

    #[test]
    fn a_fresh_token_verifies_and_says_who() {
        let token = keys().issue(7, "s1", Role::Operator, unix_now());
        let claims = keys().verify(&token).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.sid.as_str(), claims.role),
            ("7", "s1", Role::Operator)
        );
    }

    #[test]
    fn expired_tampered_foreign_and_unsigned_tokens_are_refused() {
        let expired = keys().issue(7, "s1", Role::Admin, unix_now() - 61);
        assert_eq!(keys().verify(&expired), Err(TokenError::Expired));

        let other = TokenKeys::new(b"another secret of thirty-two b!!", Duration::from_secs(60));
        let foreign = other.issue(7, "s1", Role::Admin, unix_now());
        assert_eq!(keys().verify(&foreign), Err(TokenError::Invalid));

        // The same claims, unsigned, with `alg: none`.
        let payload = foreign.split('.').nth(1).unwrap();
        let unsigned = format!("{}.{payload}.", b64(r#"{"alg":"none","typ":"JWT"}"#));
        assert_eq!(keys().verify(&unsigned), Err(TokenError::Invalid));

        // A valid token with its payload swapped for one claiming another user.
        let good = keys().issue(7, "s1", Role::Viewer, unix_now());
        let parts: Vec<&str> = good.split('.').collect();
        let claims = serde_json::json!({"sub": "1", "sid": "s1", "role": "admin", "typ": "access",
            "iat": unix_now(), "exp": unix_now() + 60});
        let forged = format!("{}.{}.{}", parts[0], b64(&claims.to_string()), parts[2]);
        assert_eq!(keys().verify(&forged), Err(TokenError::Invalid));

        assert_eq!(keys().verify("not a token"), Err(TokenError::Invalid));
    }
}

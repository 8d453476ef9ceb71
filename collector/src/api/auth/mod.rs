//! People's authentication: passwords, tokens, sessions, throttling, and the extractors
//! that protect handlers.
//!
//! A login creates a session (in the store) and answers an access token (a short-lived
//! JWT naming the session) and a refresh token (random, one use, only its hash stored).
//! Every request checks the token's signature and expiry, then that its session is still
//! live, so logout, a password change or disabling a user ends access at once.
//! Browsers may keep the refresh token in a cookie instead ([`cookie`]).

pub mod cookie;
pub mod extract;
pub mod password;
pub mod secret;
pub mod sessions;
pub mod throttle;
pub mod tokens;

pub use extract::{Admin, AuthUser, Operator};
pub use sessions::SessionCache;
pub use throttle::LoginThrottle;
pub use tokens::TokenKeys;

use sha2::{Digest, Sha256};

/// A new random secret: 32 bytes, hex.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    dockermon_proto::transport::to_hex(&bytes)
}

/// What is stored of a refresh token.
pub fn refresh_hash(token: &str) -> String {
    dockermon_proto::transport::to_hex(&Sha256::digest(token.as_bytes()))
}

//! Password hashing with Argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes).
//!
//! Hashing is deliberately slow, so it runs on the blocking pool, never on the async
//! workers. A login for an unknown email still verifies against a fixed dummy hash, so
//! the answer takes as long as for a known one and does not reveal which emails exist.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// The shortest password accepted.
pub const MIN_LENGTH: usize = 10;
/// Longer inputs are refused before hashing, so nobody can make the server hash megabytes.
pub const MAX_LENGTH: usize = 1024;

static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| hash_now("not a real password"));

fn hash_now(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 with default parameters hashes any input")
        .to_string()
}

/// Why a new password is not accepted.
pub fn check_new(password: &str) -> Result<(), String> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(format!(
            "the password must have at least {MIN_LENGTH} characters"
        ));
    }
    if password.len() > MAX_LENGTH {
        return Err(format!("the password must be at most {MAX_LENGTH} bytes"));
    }
    Ok(())
}

pub async fn hash(password: String) -> String {
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .expect("hashing does not panic")
}

/// Whether `password` matches `stored` (an Argon2 PHC string); `None` checks against the
/// dummy hash and is always false.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    if password.len() > MAX_LENGTH {
        return false;
    }
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.clone());
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            && known
    })
    .await
    .unwrap_or(false)
}

/// A random password for a generated first admin: 20 characters from 62.
pub fn generate() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_right_password_verifies_and_others_do_not() {
        let stored = hash("correct horse battery".into()).await;
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(verify("correct horse battery".into(), Some(stored.clone())).await);
        assert!(!verify("correct horse batterY".into(), Some(stored.clone())).await);
        assert!(!verify("correct horse battery".into(), None).await);
        assert!(!verify("x".repeat(MAX_LENGTH + 1), Some(stored)).await);
    }

    #[test]
    fn weak_and_huge_passwords_are_refused() {
        assert!(check_new("short").is_err());
        assert!(check_new(&"x".repeat(MAX_LENGTH + 1)).is_err());
        assert!(check_new("long enough password").is_ok());
        let generated = generate();
        assert_eq!(generated.len(), 20);
        assert!(check_new(&generated).is_ok());
    }
}

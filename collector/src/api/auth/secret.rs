//! The JWT signing secret and the first admin.
//!
//! The secret comes from `DOCKERMON_JWT_SECRET`, from a file (a mounted Kubernetes
//! secret), or is generated on first start into `<data dir>/secrets/jwt.secret` (0600)
//! and reused after. There is no default: a secret known to anyone else would let them
//! mint tokens. With several replicas, all must share the secret (env or file).

use std::path::{Path, PathBuf};

use dockermon_agent::files::{SECRET, write_atomically};

/// Secrets shorter than this are refused: HS256 wants at least its output size.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone)]
pub enum SecretSource {
    Value(String),
    File(PathBuf),
    /// Generated under the data directory if not there yet.
    Generated(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the JWT secret file {0}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("cannot write the JWT secret file {0}")]
    Write(PathBuf, #[source] std::io::Error),
    #[error("the JWT secret must be at least {MIN_SECRET_BYTES} bytes (it is {0})")]
    TooShort(usize),
}

impl SecretSource {
    pub fn in_data_dir(data_dir: &Path) -> Self {
        SecretSource::Generated(data_dir.join("secrets").join("jwt.secret"))
    }

    pub fn load(&self) -> Result<Vec<u8>, SecretError> {
        let secret = match self {
            SecretSource::Value(value) => value.trim().as_bytes().to_vec(),
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map_err(|error| SecretError::Read(path.clone(), error))?
                .trim()
                .as_bytes()
                .to_vec(),
            SecretSource::Generated(path) => match std::fs::read_to_string(path) {
                Ok(text) => text.trim().as_bytes().to_vec(),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    let secret = super::random_token() + &super::random_token();
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)
                            .map_err(|error| SecretError::Write(path.clone(), error))?;
                    }
                    write_atomically(path, secret.as_bytes(), SECRET)
                        .map_err(|error| SecretError::Write(path.clone(), error))?;
                    secret.into_bytes()
                }
                Err(error) => return Err(SecretError::Read(path.clone(), error)),
            },
        };
        if secret.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort(secret.len()));
        }
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_generated_secret_is_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let source = SecretSource::in_data_dir(dir.path());
        let first = source.load().unwrap();
        assert_eq!(first.len(), 128);
        assert_eq!(source.load().unwrap(), first, "reused after a restart");
        let path = dir.path().join("secrets/jwt.secret");
        assert_eq!(
            std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let other = SecretSource::in_data_dir(tempfile::tempdir().unwrap().path()).load();
        assert_ne!(other.unwrap(), first, "never the same secret twice");
    }

    #[test]
    fn short_or_missing_secrets_are_refused() {
        let short = SecretSource::Value("secret".into()).load().unwrap_err();
        assert_eq!(
            short.to_string(),
            "the JWT secret must be at least 32 bytes (it is 6)"
        );
        let missing = SecretSource::File("/nonexistent/jwt".into())
            .load()
            .unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/jwt"));
    }
}

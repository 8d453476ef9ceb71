//! Newtype identifiers, so a container id is never passed where a host name belongs.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A Docker container id (the full 64-hex-digit id as Docker reports it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContainerId(pub String);

impl ContainerId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 12-character form Docker's CLI shows.
    pub fn short(&self) -> &str {
        self.0.get(..12).unwrap_or(&self.0)
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ContainerId {
    fn from(id: &str) -> Self {
        ContainerId(id.to_owned())
    }
}

/// The name a monitored host is known by across the fleet. It ends up in certificates,
/// URLs, metric labels and file names, so it is restricted to DNS-label characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostName(String);

/// Why a string is not a valid [`HostName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid host name {name:?}: {reason}")]
pub struct InvalidHostName {
    pub name: String,
    pub reason: &'static str,
}

impl HostName {
    pub const MAX_LEN: usize = 253;

    pub fn new(name: impl Into<String>) -> Result<Self, InvalidHostName> {
        let name = name.into();
        let invalid = |reason| {
            Err(InvalidHostName {
                name: name.chars().take(64).collect(),
                reason,
            })
        };
        if name.is_empty() {
            return invalid("it is empty");
        }
        if name.len() > Self::MAX_LEN {
            return invalid("it is longer than 253 characters");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return invalid("only letters, digits, '-', '_' and '.' are allowed");
        }
        if !name.as_bytes()[0].is_ascii_alphanumeric() {
            return invalid("it must start with a letter or digit");
        }
        Ok(HostName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HostName {
    type Error = InvalidHostName;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        HostName::new(name)
    }
}

impl From<HostName> for String {
    fn from(name: HostName) -> Self {
        name.0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_validated() {
        assert!(HostName::new("web-01.example.com").is_ok());
        assert!(HostName::new("node_7").is_ok());
        for bad in [
            "",
            "-lead",
            ".lead",
            "has space",
            "semi;colon",
            "ünï",
            "a/b",
        ] {
            assert!(HostName::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(HostName::new("a".repeat(254)).is_err());
    }

    #[test]
    fn host_name_deserialisation_validates() {
        let ok: HostName = serde_json::from_str("\"db-1\"").unwrap();
        assert_eq!(ok.as_str(), "db-1");
        let err = serde_json::from_str::<HostName>("\"../etc\"").unwrap_err();
        assert!(err.to_string().contains("invalid host name"), "{err}");
    }

    #[test]
    fn short_container_id() {
        let id = ContainerId::from("0123456789abcdef0123");
        assert_eq!(id.short(), "0123456789ab");
        assert_eq!(ContainerId::from("abc").short(), "abc");
    }
}

//! The YAML configuration file and the durations written in it, read the same way by both
//! binaries. An empty file is an empty configuration; anything serde rejects (an unknown
//! key, a wrong type) is reported with the file's path and serde's line and column.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
}

pub fn read_yaml<T: DeserializeOwned + Default>(path: &Path) -> Result<T, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    // serde_yaml reads an empty document as null, which no struct accepts.
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    serde_yaml::from_str(&text).map_err(|source| FileError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// A list in the YAML file: written as on the command line (`start,stop`) or as a YAML
/// list (`[start, stop]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum List {
    Text(String),
    Items(Vec<String>),
}

impl List {
    /// The entries, trimmed, without empty ones.
    pub fn items(&self) -> Vec<String> {
        let items: Vec<&str> = match self {
            List::Text(text) => text.split(',').collect(),
            List::Items(items) => items.iter().map(String::as_str).collect(),
        };
        items
            .into_iter()
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// A duration as people write it (`30s`, `2m`, `7d`), or a message saying what to write.
pub fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration ({e}); write e.g. 30s, 2m or 7d"))
}

/// `value` if it lies within `min..=max`; otherwise what to write instead (`use 1m to 1d`).
pub fn within(value: Duration, min: Duration, max: Duration) -> Result<Duration, String> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(format!("use {} to {}", humanize(min), humanize(max)))
    }
}

/// `90d`, `1h`, `60s`: a whole number of seconds as people write it, in the largest unit
/// that divides it.
fn humanize(duration: Duration) -> String {
    match duration.as_secs() {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s >= 3_600 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_said_as_people_write_durations() {
        let minute = Duration::from_secs(60);
        let day = Duration::from_secs(86_400);
        assert_eq!(within(minute, minute, day), Ok(minute));
        assert_eq!(within(day, minute, day), Ok(day));
        assert_eq!(within(day * 2, minute, day), Err("use 1m to 1d".into()));
        assert_eq!(
            within(
                Duration::ZERO,
                Duration::from_secs(90),
                Duration::from_secs(600)
            ),
            Err("use 90s to 10m".into())
        );
    }

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        name: Option<String>,
    }

    #[test]
    fn empty_files_are_empty_configurations_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "\n").unwrap();
        assert_eq!(read_yaml::<Sample>(&path).unwrap(), Sample::default());
        std::fs::write(&path, "nmae: x\n").unwrap();
        let err = crate::process::error_chain(&read_yaml::<Sample>(&path).unwrap_err());
        assert!(
            err.contains("c.yaml") && err.contains("unknown field `nmae`"),
            "{err}"
        );
        assert_eq!(err.matches("unknown field").count(), 1, "said once: {err}");
        assert!(
            read_yaml::<Sample>(&dir.path().join("missing.yaml"))
                .unwrap_err()
                .to_string()
                .starts_with("cannot read config file")
        );
        assert_eq!(duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(
            duration("soon")
                .unwrap_err()
                .starts_with("\"soon\" is not a duration")
        );
    }
}

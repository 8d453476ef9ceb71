//! Docker events as the engine reports them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One Docker event. Docker gives events no id; [`DockerEvent::key`] is the stable key that
/// makes re-delivered events recognisable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerEvent {
    /// Docker's `timeNano`.
    pub time_ns: i64,
    pub kind: EventKind,
    /// `create`, `start`, `die`, `exec_start: sh -c …`, …
    pub action: String,
    /// The object the event is about: a container id, image id, volume name, network id.
    pub actor_id: String,
    /// The actor's `name` attribute, where Docker gives one.
    pub actor_name: Option<String>,
    /// The actor's attributes (labels, exit codes, images), bounded.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// `local` or `swarm`.
    pub scope: Option<String>,
}

impl DockerEvent {
    /// A key that is equal for two deliveries of the same event and different for two
    /// events: Docker stamps every event with nanoseconds, and two events with the same
    /// time, kind, action and actor are the same event.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.time_ns, self.kind, self.action, self.actor_id
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Container,
    Image,
    Volume,
    Network,
    Daemon,
    Plugin,
    Service,
    Node,
    Secret,
    Config,
    Builder,
    /// Dockermon's own record that events may be missing between two times (its attributes
    /// `from_ns`, `to_ns` and `reason`): the agent could not prove it resumed without loss.
    Gap,
    #[serde(other)]
    Unknown,
}

impl EventKind {
    pub fn parse(s: &str) -> Self {
        match s {
            "container" => Self::Container,
            "image" => Self::Image,
            "volume" => Self::Volume,
            "network" => Self::Network,
            "daemon" => Self::Daemon,
            "plugin" => Self::Plugin,
            "service" => Self::Service,
            "node" => Self::Node,
            "secret" => Self::Secret,
            "config" => Self::Config,
            "builder" => Self::Builder,
            "gap" => Self::Gap,
            _ => Self::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Container => "container",
            Self::Image => "image",
            Self::Volume => "volume",
            Self::Network => "network",
            Self::Daemon => "daemon",
            Self::Plugin => "plugin",
            Self::Service => "service",
            Self::Node => "node",
            Self::Secret => "secret",
            Self::Config => "config",
            Self::Builder => "builder",
            Self::Gap => "gap",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

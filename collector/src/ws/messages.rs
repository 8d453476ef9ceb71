//! The JSON messages of the WebSocket API, each with a `type`.

use axum::extract::ws::Utf8Bytes;
use dockermon_proto::{DockerEvent, InventoryUpdate, StatsSample};
use serde::{Deserialize, Serialize};

use super::fanout::Topic;
use crate::store::{ContainerKey, HostId, ProfileSampleRow, Role};

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Answered with `pong`; works before `identify`.
    Ping,
    /// Authenticates the connection with an access token (again, to extend it).
    Identify { token: String },
    /// Starts updates of `topic`, for one host or (without `host`) the whole fleet. The
    /// `profile` topic is per container (`container`): subscribing starts the container's
    /// profile session, or joins the running one, sampled every `interval` seconds (1 to
    /// 10, default 1) for at most `duration` seconds.
    Subscribe {
        topic: Topic,
        host: Option<HostId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        container: Option<ContainerKey>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interval: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration: Option<u64>,
    },
    Unsubscribe {
        topic: Topic,
        host: Option<HostId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        container: Option<ContainerKey>,
    },
    /// Ends a profile session for every watcher (operators).
    ProfileStop { profile: i64 },
}

/// What the server sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    Pong,
    Identified {
        user_id: i64,
        email: &'a str,
        role: Role,
        /// When the token expires (Unix seconds); identify again before then to stay.
        expires_at: u64,
    },
    Subscribed {
        topic: Topic,
        host: Option<HostId>,
        #[serde(skip_serializing_if = "Option::is_none")]
        container: Option<ContainerKey>,
        /// The profile session a `profile` subscription watches.
        #[serde(skip_serializing_if = "Option::is_none")]
        profile: Option<i64>,
    },
    Unsubscribed {
        topic: Topic,
        host: Option<HostId>,
        #[serde(skip_serializing_if = "Option::is_none")]
        container: Option<ContainerKey>,
    },
    Error {
        code: &'a str,
        message: &'a str,
    },
    Events {
        host: HostId,
        host_name: &'a str,
        items: &'a [&'a DockerEvent],
    },
    Stats {
        host: HostId,
        host_name: &'a str,
        items: &'a [&'a StatsSample],
    },
    Inventory {
        host: HostId,
        host_name: &'a str,
        items: &'a [&'a InventoryUpdate],
    },
    /// Samples of a profile session, as they are read (and as they are stored).
    Profile {
        profile: i64,
        host: HostId,
        container: ContainerKey,
        /// When the agent read the newest of `items` (Unix nanoseconds).
        read_ns: i64,
        items: &'a [ProfileSampleRow],
    },
    /// A profile session started (for the subscriber that started or joined it) or ended
    /// (for every watcher).
    ProfileState {
        profile: i64,
        host: HostId,
        container: ContainerKey,
        /// `started` or `ended`.
        state: &'a str,
        /// For `started`: whether the session was already running.
        #[serde(skip_serializing_if = "Option::is_none")]
        joined: Option<bool>,
        /// For `ended`: why.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
        /// For `ended`: how many samples the agent read, when it said.
        #[serde(skip_serializing_if = "Option::is_none")]
        samples: Option<u64>,
    },
}

impl ServerMessage<'_> {
    pub fn to_text(&self) -> Utf8Bytes {
        serde_json::to_string(self)
            .expect("server messages always serialise")
            .into()
    }
}

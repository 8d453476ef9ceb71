//! The JSON messages of the WebSocket API, each with a `type`.

use axum::extract::ws::Utf8Bytes;
use dockermon_proto::{DockerEvent, InventoryUpdate, StatsSample};
use serde::{Deserialize, Serialize};

use super::fanout::Topic;
use crate::store::{HostId, Role};

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Answered with `pong`; works before `identify`.
    Ping,
    /// Authenticates the connection with an access token (again, to extend it).
    Identify {
        token: String,
    },
    /// Starts updates of `topic`, for one host or (without `host`) the whole fleet.
    Subscribe {
        topic: Topic,
        host: Option<HostId>,
    },
    Unsubscribe {
        topic: Topic,
        host: Option<HostId>,
    },
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
    },
    Unsubscribed {
        topic: Topic,
        host: Option<HostId>,
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
}

impl ServerMessage<'_> {
    pub fn to_text(&self) -> Utf8Bytes {
        serde_json::to_string(self)
            .expect("server messages always serialise")
            .into()
    }
}

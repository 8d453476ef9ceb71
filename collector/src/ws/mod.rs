//! The WebSocket API for people, on :3811 at `/ws`: live fleet events, container stats
//! (each sweep) and inventory changes, as JSON messages with a `type`.
//!
//! A connection starts unauthenticated: only `ping` and `identify` (which carries an access
//! token) are accepted; anything else gets an error and no data, and a connection that has
//! not identified within [`WsSettings::identify_within`] is closed. Once identified it may
//! `subscribe`/`unsubscribe` to topics. The connection ends when the token expires (unless
//! the client identifies again with a fresh one) or its session ends.
//!
//! Every connection has a bounded send queue. A client that cannot keep up is disconnected:
//! the server and the other clients never wait for it. Updates are serialised once, in
//! [`fanout`], not once per subscriber.

pub mod fanout;
mod messages;
mod session;

use std::time::Duration;

use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::api::ApiState;
pub use fanout::{Feed, Topic};
pub use messages::{ClientMessage, ServerMessage};

/// Limits and timings of WebSocket connections.
#[derive(Debug, Clone)]
pub struct WsSettings {
    /// How often the server pings.
    pub ping_every: Duration,
    /// A client silent this long (no pong, no message) is closed.
    pub dead_after: Duration,
    /// How long a new connection has to identify.
    pub identify_within: Duration,
    /// How often a connection checks that its session is still live.
    pub session_check: Duration,
    /// Messages queued for one client before it counts as too slow.
    pub send_queue: usize,
    /// The largest message a client may send.
    pub max_message: usize,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
}

impl Default for WsSettings {
    fn default() -> Self {
        WsSettings {
            ping_every: Duration::from_secs(20),
            dead_after: Duration::from_secs(50),
            identify_within: Duration::from_secs(30),
            session_check: Duration::from_secs(10),
            send_queue: 256,
            max_message: 16 * 1024,
            max_subscriptions: 64,
        }
    }
}

#[derive(Clone)]
pub struct WsState {
    /// Token checks and session lookups.
    pub api: ApiState,
    pub feed: Feed,
    pub settings: std::sync::Arc<WsSettings>,
    /// Closes every connection on shutdown.
    pub shutdown: CancellationToken,
}

pub fn router(state: WsState) -> Router {
    Router::new().route("/ws", get(upgrade)).with_state(state)
}

async fn upgrade(State(state): State<WsState>, upgrade: WebSocketUpgrade) -> Response {
    let max = state.settings.max_message;
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        // Clients send only small subscription messages; tungstenite's default 128 KiB
        // read buffer per connection would be most of a subscriber's memory.
        .read_buffer_size(4 * 1024)
        .on_upgrade(move |socket| session::run(socket, state))
}

//! A client of the collector's WebSocket API (`/ws`), as a person's browser or a tool uses
//! it: connect, identify with an access token, subscribe to topics. Shared by the replica
//! tests, the fleet generator's watchers and the fan-out benchmark.

use std::net::SocketAddr;

use futures::SinkExt;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A WebSocket to the collector's live API.
pub type LiveSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects to `ws://{address}/ws`, identifies with `token` (an API access token) and sends
/// one `subscribe` per entry of `subscriptions`, each the message's fields besides its type
/// (`{"topic": "stats"}`, `{"topic": "events", "host": 3}`). Returns without reading: the
/// `identified` and `subscribed` answers are the first messages on the socket.
///
/// Errors: the connection or the WebSocket handshake failed, or a message could not be sent.
pub async fn subscribe(
    address: SocketAddr,
    token: &str,
    subscriptions: &[Value],
) -> anyhow::Result<LiveSocket> {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{address}/ws")).await?;
    send(&mut socket, json!({"type": "identify", "token": token})).await?;
    for subscription in subscriptions {
        let mut request = json!({"type": "subscribe"});
        if let (Some(request), Some(fields)) = (request.as_object_mut(), subscription.as_object()) {
            request.extend(fields.clone());
        }
        send(&mut socket, request).await?;
    }
    Ok(socket)
}

async fn send(socket: &mut LiveSocket, message: Value) -> anyhow::Result<()> {
    socket
        .send(Message::Text(message.to_string().into()))
        .await?;
    Ok(())
}

//! One connection to the collector: TCP, TLS 1.3 with the agent's certificate, the
//! WebSocket upgrade on `/v1/agent`, hello and welcome. Sending goes through a writer task,
//! so the uplink never blocks on a slow network while Docker's events keep coming.

use std::sync::Arc;
use std::time::Duration;

use dockermon_proto::transport::{
    AgentMessage, CollectorMessage, ErrorBody, Hello, MAX_FRAME_BYTES, Welcome,
};
use futures::SinkExt;
use futures::stream::{SplitStream, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use super::url::CollectorUrl;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages queued for the writer task.
const OUTGOING: usize = 256;

#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{0}")]
    Tls(String),
    #[error("the collector refused this agent: {message}")]
    Refused {
        /// The collector's machine-readable reason (`certificate_revoked`, …), when it gave one.
        code: Option<String>,
        message: String,
    },
    #[error("protocol error: {0}")]
    Protocol(String),
}

type Stream = WebSocketStream<TlsStream<TcpStream>>;

pub(super) struct Session {
    incoming: SplitStream<Stream>,
    outgoing: mpsc::Sender<Message>,
    writer: tokio::task::JoinHandle<()>,
    pub(super) welcome: Welcome,
}

/// Connects, says `hello` and waits for the welcome.
pub(super) async fn open(
    url: &CollectorUrl,
    tls: Arc<rustls::ClientConfig>,
    hello: Hello,
) -> Result<Session, ConnectError> {
    let unreachable = |reason: String| ConnectError::Unreachable {
        url: url.to_string(),
        reason: format!("{reason}{}", url.loopback_hint()),
    };
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(url.address()))
        .await
        .map_err(|_| unreachable("timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let server_name = url
        .server_name()
        .map_err(|e| ConnectError::Protocol(e.to_string()))?;
    let tls_stream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TlsConnector::from(tls).connect(server_name, tcp),
    )
    .await
    .map_err(|_| ConnectError::Tls(format!("the TLS handshake with {url} timed out")))?
    .map_err(|e| ConnectError::Tls(super::tls_failure::describe(&e, url)))?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let (mut stream, _) =
        tokio_tungstenite::client_async_with_config(url.agent_endpoint(), tls_stream, Some(config))
            .await
            .map_err(|error| match error {
                tungstenite::Error::Http(response) => {
                    let body = response.body().as_deref().unwrap_or_default();
                    match serde_json::from_slice::<ErrorBody>(body) {
                        Ok(error) => ConnectError::Refused {
                            code: Some(error.code),
                            message: error.message,
                        },
                        Err(_) => ConnectError::Refused {
                            code: None,
                            message: format!("HTTP {}", response.status()),
                        },
                    }
                }
                // A refused client certificate surfaces as a TLS alert on first use.
                tungstenite::Error::Io(io) => {
                    ConnectError::Tls(super::tls_failure::describe(&io, url))
                }
                other => ConnectError::Protocol(other.to_string()),
            })?;
    let hello = AgentMessage::Hello(hello);
    stream
        .send(Message::text(
            serde_json::to_string(&hello).expect("hello serialises"),
        ))
        .await
        .map_err(|e| ConnectError::Protocol(e.to_string()))?;
    let welcome = tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Text(text))) => {
                    return match serde_json::from_str::<CollectorMessage>(text.as_str()) {
                        Ok(CollectorMessage::Welcome(welcome)) => Ok(welcome),
                        Ok(CollectorMessage::Refused { reason }) => Err(ConnectError::Refused {
                            code: None,
                            message: reason,
                        }),
                        Ok(other) => Err(ConnectError::Protocol(format!(
                            "expected a welcome, got {other:?}"
                        ))),
                        Err(e) => Err(ConnectError::Protocol(format!("malformed welcome: {e}"))),
                    };
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(ConnectError::Refused {
                        code: None,
                        message: frame
                            .map(|f| f.reason.to_string())
                            .unwrap_or_else(|| "closed".into()),
                    });
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ConnectError::Protocol(e.to_string())),
                None => return Err(ConnectError::Protocol("closed before the welcome".into())),
            }
        }
    })
    .await
    .map_err(|_| ConnectError::Protocol("no welcome within 10 s".into()))??;

    let (mut sink, incoming) = stream.split();
    let (outgoing, mut queue) = mpsc::channel::<Message>(OUTGOING);
    let writer = tokio::spawn(async move {
        while let Some(message) = queue.recv().await {
            let closing = matches!(message, Message::Close(_));
            if super::fragments::send(&mut sink, message).await.is_err() || closing {
                break;
            }
        }
        let _ = sink.close().await;
    });
    Ok(Session {
        incoming,
        outgoing,
        writer,
        welcome,
    })
}

/// Why a session ended.
#[derive(Debug)]
pub(super) enum SessionEnd {
    Closed(String),
    Broken(String),
}

impl Session {
    /// The next message from the collector. Pings and pongs count as signs of life only.
    pub(super) async fn next(&mut self) -> Result<Option<CollectorMessage>, SessionEnd> {
        match self.incoming.next().await {
            Some(Ok(Message::Text(text))) => {
                serde_json::from_str(text.as_str()).map(Some).map_err(|e| {
                    SessionEnd::Broken(format!("malformed message from the collector: {e}"))
                })
            }
            Some(Ok(Message::Close(frame))) => Err(SessionEnd::Closed(
                frame
                    .map(|f| format!("{} {}", f.code, f.reason))
                    .unwrap_or_else(|| "closed".into()),
            )),
            Some(Ok(_)) => Ok(None),
            Some(Err(e)) => Err(SessionEnd::Broken(e.to_string())),
            None => Err(SessionEnd::Broken("connection closed".into())),
        }
    }

    /// Queues a message; false when the writer is backed up (try again later).
    pub(super) fn try_send(&self, text: String) -> bool {
        self.outgoing.try_send(Message::text(text)).is_ok()
    }

    pub(super) fn send_message(&self, message: &AgentMessage) -> bool {
        self.try_send(serde_json::to_string(message).expect("messages serialise"))
    }

    pub(super) fn ping(&self) {
        let _ = self.outgoing.try_send(Message::Ping(Default::default()));
    }

    /// Says goodbye and waits (briefly) for it to be sent, TLS close included.
    pub(super) async fn close(self) {
        let _ = self.outgoing.send(Message::Close(None)).await;
        drop(self.outgoing);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.writer).await;
    }
}

//! A hand-driven agent connection: real TLS with a real client certificate, then whatever
//! messages a test (or the fleet load generator) wants to send, well-formed or not.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use dockermon_proto::transport::{AGENT_PATH, AgentMessage, CollectorMessage, Hello};
use futures::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// PEM texts of a client identity.
#[derive(Clone)]
pub struct ClientIdentity {
    pub certificate_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl ClientIdentity {
    pub fn tls_config(&self) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(ca?)?;
        }
        let chain = CertificateDer::pem_slice_iter(self.certificate_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())?;
        Ok(Arc::new(
            rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
                .with_root_certificates(roots)
                .with_client_auth_cert(chain, key)?,
        ))
    }
}

pub struct RawAgent {
    pub stream: WebSocketStream<TlsStream<TcpStream>>,
}

impl RawAgent {
    /// TLS to `address` (verifying the server as `localhost`), then the WebSocket upgrade.
    pub async fn connect(
        address: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<RawAgent> {
        let tcp = TcpStream::connect(address).await?;
        tcp.set_nodelay(true)?;
        let tls = TlsConnector::from(tls)
            .connect(ServerName::try_from("localhost")?, tcp)
            .await
            .context("TLS handshake")?;
        let config = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let url = format!("wss://localhost:{}{AGENT_PATH}", address.port());
        let (stream, _) = tokio_tungstenite::client_async_with_config(url, tls, Some(config))
            .await
            .context("WebSocket upgrade")?;
        Ok(RawAgent { stream })
    }

    /// Connects and completes hello/welcome; returns the collector's newest committed seq.
    pub async fn join(
        address: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<(RawAgent, u64)> {
        let mut agent = RawAgent::connect(address, tls).await?;
        agent
            .send(&AgentMessage::Hello(Hello {
                agent_version: "raw".into(),
                protocol_version: dockermon_proto::PROTOCOL_VERSION,
                capabilities: Vec::new(),
                profiles: Vec::new(),
                instance: None,
            }))
            .await?;
        match agent.next(Duration::from_secs(30)).await? {
            CollectorMessage::Welcome(welcome) => Ok((agent, welcome.last_seq)),
            other => bail!("expected a welcome, got {other:?}"),
        }
    }

    pub async fn send(&mut self, message: &AgentMessage) -> anyhow::Result<()> {
        self.send_text(serde_json::to_string(message)?).await
    }

    /// Sends `text` as the real agent does, in WebSocket fragments.
    pub async fn send_text(&mut self, text: String) -> anyhow::Result<()> {
        dockermon_agent::uplink::fragments::send(&mut self.stream, Message::text(text)).await?;
        Ok(())
    }

    /// Sends `text` in one WebSocket frame, as agents before fragments did.
    pub async fn send_text_whole(&mut self, text: String) -> anyhow::Result<()> {
        self.stream.send(Message::text(text)).await?;
        Ok(())
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.stream.send(Message::binary(bytes)).await?;
        Ok(())
    }

    /// The next protocol message (skipping pings).
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<CollectorMessage> {
        tokio::time::timeout(timeout, async {
            loop {
                match self.stream.next().await {
                    Some(Ok(Message::Text(text))) => {
                        return Ok(serde_json::from_str(text.as_str())?);
                    }
                    Some(Ok(Message::Close(frame))) => bail!("closed: {frame:?}"),
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => bail!("connection failed: {error}"),
                    None => bail!("connection ended"),
                }
            }
        })
        .await
        .context("no message in time")?
    }

    /// Waits for the collector to close the connection; returns the close code and reason.
    pub async fn closed(&mut self, timeout: Duration) -> anyhow::Result<(u16, String)> {
        tokio::time::timeout(timeout, async {
            loop {
                match self.stream.next().await {
                    Some(Ok(Message::Close(Some(frame)))) => {
                        return Ok((u16::from(frame.code), frame.reason.to_string()));
                    }
                    Some(Ok(Message::Close(None))) => return Ok((1005, String::new())),
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => return Ok((1006, error.to_string())),
                    None => return Ok((1006, "ended".into())),
                }
            }
        })
        .await
        .context("not closed in time")?
    }
}

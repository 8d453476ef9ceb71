//! A minimal HTTP/1.1 GET to the Engine API, for the few endpoints whose answers bollard's
//! models cannot read on every engine version (`/system/df` changed shape in API 1.52).
//! One connection per request: these calls are rare (minutes apart).

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use super::Endpoint;

/// Largest answer accepted: `system df` on a host with tens of thousands of objects stays
/// well below this; anything larger is not a Docker engine we should trust.
const MAX_BODY_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error("cannot connect to Docker")]
    Connect(#[source] std::io::Error),
    #[error("http exchange with Docker failed")]
    Http(#[source] hyper::Error),
    #[error("docker answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("docker's answer could not be read")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("docker's answer is not the expected JSON")]
    Json(#[source] serde_json::Error),
}

/// `GET /v{api_version}{path}` and decode the JSON answer.
pub async fn get_json<T: DeserializeOwned>(
    endpoint: &Endpoint,
    api_version: &str,
    path: &str,
) -> Result<T, RawError> {
    let uri = format!("/v{api_version}{path}");
    let body = match endpoint {
        Endpoint::Unix(socket) => {
            let stream = UnixStream::connect(socket)
                .await
                .map_err(RawError::Connect)?;
            get(stream, &uri).await?
        }
        Endpoint::Tcp {
            host,
            port,
            tls: None,
        } => {
            let stream = TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(RawError::Connect)?;
            get(stream, &uri).await?
        }
        Endpoint::Tcp {
            host,
            port,
            tls: Some(tls),
        } => {
            let config = tls
                .client_config()
                .map_err(|e| RawError::Connect(std::io::Error::other(e)))?;
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| RawError::Connect(std::io::Error::other(e)))?;
            let tcp = TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(RawError::Connect)?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(RawError::Connect)?;
            get(stream, &uri).await?
        }
    };
    serde_json::from_slice(&body).map_err(RawError::Json)
}

async fn get<S>(stream: S, uri: &str) -> Result<Bytes, RawError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(RawError::Http)?;
    // The connection future drives the socket; it ends when the response is read.
    tokio::spawn(connection);
    let request = hyper::Request::get(uri)
        .header(hyper::header::HOST, "docker")
        .body(Empty::<Bytes>::new())
        .expect("a GET with a path and a host header is a valid request");
    let response = sender.send_request(request).await.map_err(RawError::Http)?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(RawError::Body)?
        .to_bytes();
    if !status.is_success() {
        return Err(RawError::Status {
            status: status.as_u16(),
            message: String::from_utf8_lossy(&body).chars().take(512).collect(),
        });
    }
    Ok(body)
}

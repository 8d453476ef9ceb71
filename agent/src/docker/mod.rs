//! The agent's connection to Docker: endpoint parsing, version negotiation, and sorting
//! Docker's errors into the kinds the watchers act on.
//!
//! bollard is built against a newer Engine API than many engines in the field speak, so
//! every connection negotiates the API version down to what the engine supports.

mod convert;
mod raw;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use convert::{
    container_from_inspect, event_from_message, image_from_inspect, image_from_summary,
    network_from_inspect, network_from_summary, parse_time_ns, volume_from,
};
pub use raw::{RawError, get_json};

/// Requests to Docker time out after this long (one-shot stats and `system df` have their
/// own, shorter bounds).
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// Where Docker listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    /// TCP, with TLS when `tls` is set. The Engine API has no authentication of its own:
    /// plain TCP is only sane on loopback (the agent warns otherwise).
    Tcp {
        host: String,
        port: u16,
        tls: Option<DockerTls>,
    },
}

/// Docker's TLS files, as the docker CLI keeps them in `DOCKER_CERT_PATH`: the CA that
/// signed the engine's certificate, and this client's certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl DockerTls {
    /// `ca.pem`, `cert.pem` and `key.pem` in `dir`, which must all exist.
    pub fn in_dir(dir: &std::path::Path) -> Result<Self, String> {
        let tls = DockerTls {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        for file in [&tls.ca, &tls.cert, &tls.key] {
            if !file.exists() {
                return Err(format!("{} does not exist", file.display()));
            }
        }
        Ok(tls)
    }

    /// The TLS client configuration these files make, for `host`.
    pub fn client_config(&self) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&read(&self.ca)?) {
            let ca = ca.map_err(|e| format!("{}: {e}", self.ca.display()))?;
            roots
                .add(ca)
                .map_err(|e| format!("{}: {e}", self.ca.display()))?;
        }
        let chain = CertificateDer::pem_slice_iter(&read(&self.cert)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", self.cert.display()))?;
        let key = PrivateKeyDer::from_pem_slice(&read(&self.key)?)
            .map_err(|e| format!("{}: {e}", self.key.display()))?;
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("Docker TLS: {e}"))?;
        Ok(std::sync::Arc::new(config))
    }
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!("{url:?}: a unix socket path must be absolute"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        let rest = url
            .strip_prefix("tcp://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| {
                format!("{url:?}: use unix:///path/to/docker.sock or tcp://host:port")
            })?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{url:?}: a tcp endpoint needs a port (tcp://host:2375)"))?;
        let port = port
            .parse()
            .map_err(|_| format!("{url:?}: {port:?} is not a port number"))?;
        if host.is_empty() {
            return Err(format!("{url:?}: the host is missing"));
        }
        Ok(Endpoint::Tcp {
            host: host.to_owned(),
            port,
            tls: None,
        })
    }

    /// Plain TCP to a host other than loopback: anyone on the path can read and drive
    /// the engine (the Engine API has no authentication of its own).
    pub fn is_exposed(&self) -> bool {
        match self {
            Endpoint::Tcp {
                host, tls: None, ..
            } => {
                host != "localhost"
                    && !host
                        .trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            _ => false,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix://{}", path.display()),
            Endpoint::Tcp {
                host,
                port,
                tls: None,
            } => write!(f, "tcp://{host}:{port}"),
            Endpoint::Tcp { host, port, .. } => write!(f, "tcp://{host}:{port} (TLS)"),
        }
    }
}

/// A connected Docker client.
#[derive(Clone)]
pub struct Docker {
    pub api: bollard::Docker,
    pub endpoint: Endpoint,
    /// The Engine API version agreed with the engine (`1.41`).
    pub api_version: String,
}

/// Docker could not be reached (or did not answer like Docker).
#[derive(Debug, thiserror::Error)]
#[error("cannot reach Docker at {endpoint}: {reason}")]
pub struct ConnectError {
    pub endpoint: Endpoint,
    pub reason: String,
}

/// Connects to `endpoint` and negotiates the API version.
pub async fn connect(endpoint: &Endpoint) -> Result<Docker, ConnectError> {
    let unreachable = |error: &bollard::errors::Error| ConnectError {
        endpoint: endpoint.clone(),
        reason: root_cause(error),
    };
    let client = match endpoint {
        Endpoint::Unix(path) if !path.exists() => {
            return Err(ConnectError {
                endpoint: endpoint.clone(),
                reason: "the socket file does not exist".to_owned(),
            });
        }
        Endpoint::Unix(path) => bollard::Docker::connect_with_unix(
            &path.to_string_lossy(),
            REQUEST_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        ),
        Endpoint::Tcp {
            host,
            port,
            tls: None,
        } => bollard::Docker::connect_with_http(
            &format!("tcp://{host}:{port}"),
            REQUEST_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        ),
        Endpoint::Tcp {
            host,
            port,
            tls: Some(tls),
        } => bollard::Docker::connect_with_ssl(
            &format!("tcp://{host}:{port}"),
            &tls.key,
            &tls.cert,
            &tls.ca,
            REQUEST_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        ),
    }
    .map_err(|e| unreachable(&e))?;
    let api = client
        .negotiate_version()
        .await
        .map_err(|e| unreachable(&e))?;
    let version = api.client_version();
    Ok(Docker {
        api,
        endpoint: endpoint.clone(),
        api_version: format!("{}.{}", version.major_version, version.minor_version),
    })
}

/// The innermost cause of an error: for a missing socket that is the OS's "No such file or
/// directory", which says more than bollard's wrapping.
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// Docker answered 404: the object is gone.
pub fn is_not_found(error: &bollard::errors::Error) -> bool {
    status(error) == Some(404)
}

/// Docker answered 409 or 404 for a container that stopped or vanished between being
/// listed and being asked about: not an error, just a race with the container's life.
pub fn is_gone_or_stopped(error: &bollard::errors::Error) -> bool {
    matches!(status(error), Some(404 | 409))
}

fn status(error: &bollard::errors::Error) -> Option<u16> {
    match error {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Waits `timeout` for a request, mapping the elapsed case to a bollard timeout error.
pub async fn with_timeout<T>(
    timeout: Duration,
    request: impl Future<Output = Result<T, bollard::errors::Error>>,
) -> Result<T, bollard::errors::Error> {
    tokio::time::timeout(timeout, request)
        .await
        .unwrap_or(Err(bollard::errors::Error::RequestTimeoutError))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("unix:///var/run/docker.sock").unwrap(),
            Endpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1:2375").unwrap(),
            Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 2375,
                tls: None,
            }
        );
        // Plain TCP to another machine is exposed; to loopback it is not.
        assert!(
            !Endpoint::parse("tcp://127.0.0.1:2375")
                .unwrap()
                .is_exposed()
        );
        assert!(
            !Endpoint::parse("tcp://localhost:2375")
                .unwrap()
                .is_exposed()
        );
        assert!(Endpoint::parse("tcp://10.0.0.5:2375").unwrap().is_exposed());
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1:2375").unwrap().to_string(),
            "tcp://127.0.0.1:2375"
        );
        for bad in [
            "/var/run/docker.sock",
            "unix://relative.sock",
            "tcp://host",
            "tcp://:1",
            "ssh://h",
            "tcp://h:99999",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad} accepted");
        }
    }
}

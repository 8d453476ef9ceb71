//! The agent's identity towards the collector: a private key generated here (it never
//! leaves the host; written 0600), a certificate naming the host, and the CA it trusts.
//!
//! Two sources. *Managed*: files in the state directory, obtained by enrolling ([`Enrollment`]:
//! with a one-time join token, or in a Kubernetes cluster with the pod's ServiceAccount
//! token) and renewed before they expire. *Files*: certificate, key and CA
//! provided from elsewhere (cert-manager), used as they are.
//!
//! Enrollment trusts the collector before the agent has any certificate: the join token
//! pins the SHA-256 of the CA's certificate, and the collector's server certificate must
//! chain to exactly that CA (and name the address the agent dialled). With a ServiceAccount
//! token the agent was given the CA bundle itself (`--ca`), and the server must chain to it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dockermon_proto::HostName;
use dockermon_proto::transport::{
    CertificateIssued, ENROLL_PATH, EnrollRequest, ErrorBody, JoinToken, RENEW_PATH, RenewRequest,
    SERVICE_ACCOUNT_ENROLL_PATH, ServiceAccountEnrollRequest,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rcgen::{CertificateParams, DnType, KeyPair};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::info;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::url::CollectorUrl;
use crate::files::{PUBLIC, SECRET, write_atomically};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "no certificate in {0} and no join token: create one with `dockermon-collector token create --host NAME` and pass it as --join-token (in a Kubernetes cluster: --service-account-token-file)"
    )]
    NotEnrolled(PathBuf),
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid PEM file")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the TLS configuration is invalid")]
    TlsConfig(#[from] rustls::Error),
    #[error("{0}")]
    Tls(String),
    #[error("cannot make a key or certificate request")]
    Key(#[from] rcgen::Error),
    #[error("cannot reach the collector at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the collector refused: {0}")]
    Refused(String),
    /// The collector answered but cannot issue now (5xx: its database or the Kubernetes API
    /// is unavailable): worth trying again.
    #[error("the collector cannot issue certificates now: {0}")]
    Unavailable(String),
    #[error("the collector's answer is not understood: {0}")]
    Protocol(String),
    #[error("the certificate {0} cannot be parsed")]
    BadCertificate(PathBuf),
}

impl IdentityError {
    /// Whether trying again later may succeed (the collector was unreachable, or could not
    /// issue for the moment).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            IdentityError::Unreachable { .. } | IdentityError::Unavailable(_)
        )
    }
}

/// Where the agent's key, certificate and trusted CA are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// How an agent without a certificate gets one.
#[derive(Debug, Clone, PartialEq)]
pub enum Enrollment {
    /// A one-time join token from `dockermon-collector token create`.
    JoinToken(JoinToken),
    /// In a Kubernetes cluster: the pod's projected ServiceAccount token, read afresh at
    /// every enrollment (the kubelet rotates it), the node's name to enroll as, and the CA
    /// bundle the collector's server certificate must chain to.
    ServiceAccount {
        token_file: PathBuf,
        host: HostName,
        ca: PathBuf,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Enrolled and renewed by the agent, kept in the state directory.
    Managed { state_dir: PathBuf },
    /// Provided from elsewhere; never renewed by the agent.
    Files(IdentityFiles),
}

fn read(path: &Path) -> Result<Vec<u8>, IdentityError> {
    std::fs::read(path).map_err(|source| IdentityError::Read {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, contents: &[u8], mode: u32) -> Result<(), IdentityError> {
    write_atomically(path, contents, mode).map_err(|source| IdentityError::Write {
        path: path.to_owned(),
        source,
    })
}

impl Identity {
    pub fn files(&self) -> IdentityFiles {
        match self {
            Identity::Managed { state_dir } => IdentityFiles {
                certificate: state_dir.join("agent.crt"),
                key: state_dir.join("agent.key"),
                ca: state_dir.join("ca.crt"),
            },
            Identity::Files(files) => files.clone(),
        }
    }

    /// Whether the certificate, its key and the CA are all in place.
    pub fn enrolled(&self) -> bool {
        let files = self.files();
        files.certificate.exists() && files.key.exists() && files.ca.exists()
    }

    /// Makes sure there is a certificate: enrolls with `enrollment` when a managed identity
    /// has none yet.
    pub async fn ensure(
        &self,
        collector: &CollectorUrl,
        enrollment: Option<&Enrollment>,
    ) -> Result<(), IdentityError> {
        let Identity::Managed { state_dir } = self else {
            return Ok(());
        };
        if self.enrolled() {
            return Ok(());
        }
        let enrollment = enrollment.ok_or_else(|| IdentityError::NotEnrolled(state_dir.clone()))?;
        self.enroll(collector, enrollment).await
    }

    /// Enrolls, replacing the key and certificate there are: how an agent whose
    /// certificate was revoked (its host deleted, then re-admitted with a new token) comes
    /// back. Only a managed identity enrolls.
    pub async fn enroll(
        &self,
        collector: &CollectorUrl,
        enrollment: &Enrollment,
    ) -> Result<(), IdentityError> {
        let Identity::Managed { state_dir } = self else {
            return Ok(());
        };
        std::fs::create_dir_all(state_dir).map_err(|source| IdentityError::Write {
            path: state_dir.clone(),
            source,
        })?;
        let key = KeyPair::generate()?;
        let csr_pem = csr(&key)?;
        let issued: CertificateIssued = match enrollment {
            Enrollment::JoinToken(token) => {
                let request = EnrollRequest {
                    token: token.to_string(),
                    csr_pem,
                };
                let tls = enrollment_config(token.ca_fingerprint);
                post(collector, tls, ENROLL_PATH, &request).await?
            }
            Enrollment::ServiceAccount {
                token_file,
                host,
                ca,
            } => {
                let token = String::from_utf8_lossy(&read(token_file)?)
                    .trim()
                    .to_owned();
                let request = ServiceAccountEnrollRequest {
                    service_account_token: token,
                    host: host.clone(),
                    csr_pem,
                };
                let tls = trusted_ca_config(ca)?;
                post(collector, tls, SERVICE_ACCOUNT_ENROLL_PATH, &request).await?
            }
        };
        self.store(&key, &issued)?;
        info!(host = %issued.host, "enrolled with the collector");
        Ok(())
    }

    fn store(&self, key: &KeyPair, issued: &CertificateIssued) -> Result<(), IdentityError> {
        let files = self.files();
        write(&files.key, key.serialize_pem().as_bytes(), SECRET)?;
        write(&files.ca, issued.ca_pem.as_bytes(), PUBLIC)?;
        write(
            &files.certificate,
            issued.certificate_pem.as_bytes(),
            PUBLIC,
        )
    }

    /// The TLS configuration for connecting with this identity (read afresh each time, so a
    /// renewed certificate is used from the next connection on).
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, IdentityError> {
        let files = self.files();
        let pem = |path: &Path, source| IdentityError::Pem {
            path: path.to_owned(),
            source,
        };
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&read(&files.ca)?) {
            roots.add(ca.map_err(|e| pem(&files.ca, e))?)?;
        }
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&read(&files.certificate)?)
                .collect::<Result<_, _>>()
                .map_err(|e| pem(&files.certificate, e))?;
        let key =
            PrivateKeyDer::from_pem_slice(&read(&files.key)?).map_err(|e| pem(&files.key, e))?;
        let config =
            rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
                .with_root_certificates(roots)
                .with_client_auth_cert(chain, key)?;
        Ok(Arc::new(config))
    }

    /// The validity period of the current certificate.
    fn validity(&self) -> Result<(SystemTime, SystemTime), IdentityError> {
        let path = self.files().certificate;
        let der =
            CertificateDer::from_pem_slice(&read(&path)?).map_err(|source| IdentityError::Pem {
                path: path.clone(),
                source,
            })?;
        let (_, certificate) = X509Certificate::from_der(&der)
            .map_err(|_| IdentityError::BadCertificate(path.clone()))?;
        let at = |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
        Ok((
            at(certificate.validity().not_before.timestamp()),
            at(certificate.validity().not_after.timestamp()),
        ))
    }

    /// When the certificate should be renewed: a third of its lifetime before it ends.
    pub fn renew_at(&self) -> Result<Option<SystemTime>, IdentityError> {
        if matches!(self, Identity::Files(_)) {
            return Ok(None);
        }
        let (not_before, not_after) = self.validity()?;
        let lifetime = not_after.duration_since(not_before).unwrap_or_default();
        Ok(Some(not_after - lifetime / 3))
    }

    /// Gets a new certificate (with a new key) for the same host, authenticated by the
    /// current one.
    pub async fn renew(&self, collector: &CollectorUrl) -> Result<(), IdentityError> {
        let key = KeyPair::generate()?;
        let issued: CertificateIssued = post(
            collector,
            self.client_config()?,
            RENEW_PATH,
            &RenewRequest {
                csr_pem: csr(&key)?,
            },
        )
        .await?;
        self.store(&key, &issued)?;
        info!(host = %issued.host, "certificate renewed");
        Ok(())
    }
}

fn csr(key: &KeyPair) -> Result<String, IdentityError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    // The collector decides the name; this one is only informative.
    params
        .distinguished_name
        .push(DnType::CommonName, "dockermon-agent");
    Ok(params.serialize_request(key)?.pem()?)
}

/// TLS for enrollment with a CA bundle the agent was given: the server must chain to it.
fn trusted_ca_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, IdentityError> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&read(ca)?) {
        roots.add(certificate.map_err(|source| IdentityError::Pem {
            path: ca.to_owned(),
            source,
        })?)?;
    }
    let config = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// TLS for enrollment: the server must chain to the CA whose fingerprint the token pins.
fn enrollment_config(fingerprint: [u8; 32]) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedCa {
        fingerprint,
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported by ring")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Arc::new(config)
}

/// Verifies the server against the one CA certificate in its chain whose SHA-256 matches.
#[derive(Debug)]
struct PinnedCa {
    fingerprint: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|cert| <[u8; 32]>::from(Sha256::digest(cert.as_ref())) == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the collector's CA does not match the join token's fingerprint".into(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `POST` JSON to the collector and read the JSON answer (or its error body).
async fn post<Q: serde::Serialize, A: serde::de::DeserializeOwned>(
    collector: &CollectorUrl,
    tls: Arc<rustls::ClientConfig>,
    path: &str,
    request: &Q,
) -> Result<A, IdentityError> {
    let unreachable = |source: std::io::Error| IdentityError::Unreachable {
        url: format!("{collector}{}", collector.loopback_hint()),
        source,
    };
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(collector.address()))
        .await
        .map_err(|_| unreachable(std::io::ErrorKind::TimedOut.into()))?
        .map_err(unreachable)?;
    let stream = TlsConnector::from(tls)
        .connect(collector.server_name()?, tcp)
        .await
        .map_err(|e| match e.get_ref() {
            Some(inner) if inner.is::<rustls::Error>() => {
                IdentityError::Tls(super::tls_failure::describe(&e, collector))
            }
            _ => unreachable(e),
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| IdentityError::Protocol(e.to_string()))?;
    tokio::spawn(connection);
    let body = serde_json::to_vec(request).map_err(|e| IdentityError::Protocol(e.to_string()))?;
    let request = hyper::Request::post(path)
        .header(hyper::header::HOST, collector.host())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| IdentityError::Protocol(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| IdentityError::Protocol(e.to_string()))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), 1 << 20)
        .collect()
        .await
        .map_err(|e| IdentityError::Protocol(e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|e| e.message)
            .unwrap_or_else(|_| format!("HTTP {status}"));
        if status.is_server_error() {
            return Err(IdentityError::Unavailable(message));
        }
        return Err(IdentityError::Refused(message));
    }
    serde_json::from_slice(&body).map_err(|e| IdentityError::Protocol(e.to_string()))
}

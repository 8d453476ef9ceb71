//! The agent listener's TLS: TLS 1.3 only; the server presents its certificate chain; client
//! certificates are verified against the agent CA when presented. They are optional at the
//! TLS layer only because enrollment happens before an agent has one: every endpoint but
//! enrollment refuses a connection without a verified client certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dockermon_proto::HostName;
use dockermon_proto::transport::to_hex;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{0} holds no certificate")]
    Empty(PathBuf),
    #[error("the TLS configuration is invalid")]
    Rustls(#[from] rustls::Error),
    #[error("the client CA cannot verify certificates")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Where the listener's certificate, key and agent CA come from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server certificate, followed by its chain.
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// The CA that signs agent certificates.
    pub client_ca: PathBuf,
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |source| TlsError::Read {
        path: path.to_owned(),
        source,
    };
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<_, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsError::Empty(path.to_owned()));
    }
    Ok(certs)
}

pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certificates(&files.certificate)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Read {
        path: files.key.clone(),
        source,
    })?;
    let mut roots = RootCertStore::empty();
    for ca in certificates(&files.client_ca)? {
        roots.add(ca)?;
    }
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()?;
    let config = rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// Who is on the other end of a connection, from its verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub host: HostName,
    /// The certificate's serial number, lower-case hex.
    pub serial: String,
    /// When the certificate expires (Unix seconds).
    pub not_after_s: i64,
}

/// Why a verified client certificate still does not identify a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("the client certificate cannot be parsed")]
    Unparsable,
    #[error("the client certificate has no common name")]
    NoCommonName,
    #[error("the client certificate's common name is not a valid host name: {0}")]
    BadName(String),
}

/// The host a verified certificate names (its subject common name).
pub fn peer_of(certificate: &CertificateDer<'_>) -> Result<Peer, PeerError> {
    let (_, parsed) = X509Certificate::from_der(certificate).map_err(|_| PeerError::Unparsable)?;
    let name = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or(PeerError::NoCommonName)?;
    let host = HostName::new(name).map_err(|e| PeerError::BadName(e.to_string()))?;
    Ok(Peer {
        host,
        serial: to_hex(parsed.raw_serial()),
        not_after_s: parsed.validity().not_after.timestamp(),
    })
}

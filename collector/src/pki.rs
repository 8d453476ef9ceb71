//! The built-in certificate authority: one ECDSA P-256 CA that signs the collector's
//! server certificate and every agent's client certificate.
//!
//! Files, under `<data dir>/pki/`: `ca.crt`, `ca.key`, `server.crt` (the server certificate
//! followed by the CA, the chain the collector presents), `server.key`. Keys are written
//! 0600 and never leave this directory; agents generate their own keys and send CSRs.
//!
//! An agent certificate names its host in the subject common name; the collector takes the
//! host identity from there and from nowhere else. What a CSR asks for is ignored except its
//! public key: the collector decides the name, usages and validity.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dockermon_agent::files::{PUBLIC, SECRET, write_atomically};
use dockermon_proto::HostName;
use dockermon_proto::transport::to_hex;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::store::IssuedCertificate;

const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
const SERVER_VALIDITY: Duration = Duration::from_secs(397 * 86_400);
/// Clocks of new hosts are often a little off; certificates start slightly in the past.
const BACKDATE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("no CA in {0}; run `dockermon-collector pki init` first")]
    Missing(PathBuf),
    #[error(
        "a CA already exists in {0}; pass --force to replace it (every agent must then enroll again)"
    )]
    Exists(PathBuf),
    #[error("cannot read or write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid PEM file")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("certificate generation failed")]
    Rcgen(#[from] rcgen::Error),
    #[error("the certificate signing request is invalid")]
    BadCsr(#[source] rcgen::Error),
}

/// The files of the built-in PKI.
#[derive(Debug, Clone)]
pub struct PkiPaths {
    pub dir: PathBuf,
}

impl PkiPaths {
    pub fn in_data_dir(data_dir: &Path) -> Self {
        PkiPaths {
            dir: data_dir.join("pki"),
        }
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    pub fn exists(&self) -> bool {
        self.ca_cert().exists() && self.ca_key().exists()
    }
}

/// The CA, loaded, able to sign.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    fingerprint: [u8; 32],
}

impl Authority {
    /// Creates a CA and a server certificate for `server_names` (DNS names or IPs).
    pub fn init(
        paths: &PkiPaths,
        server_names: &[String],
        force: bool,
    ) -> Result<Authority, PkiError> {
        if paths.exists() && !force {
            return Err(PkiError::Exists(paths.dir.clone()));
        }
        std::fs::create_dir_all(&paths.dir).map_err(|source| PkiError::Io {
            path: paths.dir.clone(),
            source,
        })?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        // A name of its own: two CAs with one name would make a stranger's certificate look
        // like ours until its signature failed to check.
        let tag: [u8; 4] = rand::random();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Dockermon CA {}", to_hex(&tag)));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(random_serial());
        let key = KeyPair::generate()?;
        let certificate = params.self_signed(&key)?;
        write_secret(&paths.ca_key(), key.serialize_pem().as_bytes())?;
        write_public(&paths.ca_cert(), certificate.pem().as_bytes())?;
        let authority = Authority::load(paths)?;
        authority.issue_server_certificate(paths, server_names)?;
        Ok(authority)
    }

    /// Loads the CA from `paths`.
    pub fn load(paths: &PkiPaths) -> Result<Authority, PkiError> {
        if !paths.exists() {
            return Err(PkiError::Missing(paths.dir.clone()));
        }
        let ca_pem = read(&paths.ca_cert())?;
        let key_pem = read(&paths.ca_key())?;
        let key = KeyPair::from_pem(&key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, key)?;
        let der =
            CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|source| PkiError::Pem {
                path: paths.ca_cert(),
                source,
            })?;
        Ok(Authority {
            issuer,
            fingerprint: Sha256::digest(&der).into(),
            ca_pem,
        })
    }

    /// SHA-256 of the CA certificate: what join tokens pin.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Writes a server certificate for `server_names`, signed by this CA.
    pub fn issue_server_certificate(
        &self,
        paths: &PkiPaths,
        server_names: &[String],
    ) -> Result<(), PkiError> {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::new(server_names.to_vec())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Dockermon collector");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = now - BACKDATE;
        params.not_after = now + SERVER_VALIDITY;
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &self.issuer)?;
        write_secret(&paths.server_key(), key.serialize_pem().as_bytes())?;
        write_public(
            &paths.server_cert(),
            format!("{}{}", certificate.pem(), self.ca_pem).as_bytes(),
        )?;
        Ok(())
    }

    /// Signs an agent certificate for `host` with the public key of `csr_pem`.
    pub fn sign_agent(
        &self,
        csr_pem: &str,
        host: &HostName,
        validity: Duration,
    ) -> Result<(String, IssuedCertificate), PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(PkiError::BadCsr)?;
        self.sign_agent_key(&csr.public_key, host, validity, OffsetDateTime::now_utc())
    }

    /// Signs an agent certificate for a public key, valid from `now`. Public so tests and
    /// the load generator can make certificates (including expired ones) directly.
    pub fn sign_agent_key(
        &self,
        public_key: &impl rcgen::PublicKeyData,
        host: &HostName,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<(String, IssuedCertificate), PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, host.as_str());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = now - BACKDATE;
        params.not_after = now + validity;
        let serial = random_serial();
        params.serial_number = Some(serial.clone());
        params.use_authority_key_identifier_extension = true;
        let certificate = params.signed_by(public_key, &self.issuer)?;
        let record = IssuedCertificate {
            serial: to_hex(&serial.to_bytes()),
            host: host.clone(),
            fingerprint: to_hex(&Sha256::digest(certificate.der())),
            not_before_ns: (params.not_before.unix_timestamp_nanos()) as i64,
            not_after_ns: (params.not_after.unix_timestamp_nanos()) as i64,
        };
        Ok((certificate.pem(), record))
    }
}

/// 16 random bytes, positive (DER integers are signed).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write_public(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    write_atomically(path, contents, PUBLIC).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Written 0600 from the start (never world-readable, not even for an instant).
fn write_secret(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    write_atomically(path, contents, SECRET).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use x509_parser::prelude::{FromDer, X509Certificate};

    use super::*;

    #[test]
    fn init_writes_a_ca_and_a_server_certificate_with_private_keys_0600() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PkiPaths::in_data_dir(dir.path());
        let authority =
            Authority::init(&paths, &["localhost".into(), "127.0.0.1".into()], false).unwrap();
        for key in [paths.ca_key(), paths.server_key()] {
            let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let chain: Vec<CertificateDer> = CertificateDer::pem_file_iter(paths.server_cert())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(chain.len(), 2, "server certificate followed by the CA");
        assert_eq!(
            <[u8; 32]>::from(Sha256::digest(&chain[1])),
            authority.fingerprint()
        );

        assert!(matches!(
            Authority::init(&paths, &[], false),
            Err(PkiError::Exists(_))
        ));
        let reloaded = Authority::load(&paths).unwrap();
        assert_eq!(reloaded.fingerprint(), authority.fingerprint());
    }

    #[test]
    fn agent_certificates_name_the_host_the_collector_chose() {
        let dir = tempfile::tempdir().unwrap();
        let authority = Authority::init(
            &PkiPaths::in_data_dir(dir.path()),
            &["localhost".into()],
            false,
        )
        .unwrap();
        // The agent asks for another name; the CSR's subject is ignored.
        let key = KeyPair::generate().unwrap();
        let mut request = CertificateParams::new(Vec::<String>::new()).unwrap();
        request
            .distinguished_name
            .push(DnType::CommonName, "someone-else");
        let csr = request.serialize_request(&key).unwrap().pem().unwrap();
        let host = HostName::new("web-01").unwrap();
        let (pem, record) = authority
            .sign_agent(&csr, &host, Duration::from_secs(86_400))
            .unwrap();

        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (_, parsed) = X509Certificate::from_der(&der).unwrap();
        let cn = parsed
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(cn, "web-01");
        assert_eq!(to_hex(parsed.raw_serial()), record.serial);
        assert!(record.not_after_ns - record.not_before_ns >= 86_400 * 1_000_000_000);

        assert!(matches!(
            authority.sign_agent("not a csr", &host, Duration::from_secs(60)),
            Err(PkiError::BadCsr(_))
        ));
    }
}

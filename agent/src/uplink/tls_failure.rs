//! What a failed TLS handshake with the collector means, in words that say who decided:
//! this agent not trusting the server's certificate, the server not accepting this agent's,
//! or something other than the collector's agent port answering.

use rustls::{AlertDescription, CertificateError, InvalidMessage};

use super::url::CollectorUrl;

/// A sentence for a handshake with `url` that failed with `error` (the I/O error
/// tokio-rustls returns, which carries rustls's error when there is one).
pub(super) fn describe(error: &std::io::Error, url: &CollectorUrl) -> String {
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return format!("the connection to {url} failed during the TLS handshake: {error}");
    };
    match tls {
        rustls::Error::InvalidCertificate(reason) => match reason {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                "this agent does not trust the server at {url}: its certificate was not issued by the collector CA this agent knows (the CA changed, or this is another server); enroll again with a new join token"
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the server at {url} has a certificate for other names: {host:?} is not among them; connect by one of the names the collector's certificate carries (those given to `dockermon-collector pki init --san`)",
                    host = url.host()
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("the certificate of the server at {url} has expired")
            }
            other => format!(
                "this agent does not accept the certificate of the server at {url}: {other:?}"
            ),
        },
        rustls::Error::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateRequired
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied,
        ) => format!(
            "the collector at {url} did not accept this agent's certificate ({tls}): it was issued by another CA or has expired; enroll again with a new join token"
        ),
        rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType)
        | rustls::Error::InvalidMessage(_) => format!(
            "the server at {url} does not speak TLS: is {port} the collector's agent port (3812 by default)? The REST and WebSocket APIs (3810, 3811) are not",
            port = url.address().1
        ),
        rustls::Error::General(message) => message.clone(),
        other => format!("the TLS handshake with {url} failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(error: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, error)
    }

    #[test]
    fn each_failure_says_who_decided() {
        let url = CollectorUrl::parse("wss://collector.example:3810").unwrap();
        let said = describe(
            &io(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
            &url,
        );
        assert!(said.starts_with("this agent does not trust"), "{said}");
        let said = describe(
            &io(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            )),
            &url,
        );
        assert!(
            said.contains("\"collector.example\" is not among them"),
            "{said}"
        );
        let said = describe(
            &io(rustls::Error::AlertReceived(AlertDescription::UnknownCA)),
            &url,
        );
        assert!(said.starts_with("the collector at"), "{said}");
        let said = describe(
            &io(rustls::Error::InvalidMessage(
                InvalidMessage::InvalidContentType,
            )),
            &url,
        );
        assert!(
            said.contains("is 3810 the collector's agent port"),
            "{said}"
        );
    }
}

//! An enrollment request as a stranger can send it: the join token, the request's JSON, and
//! the certificate signing request the built-in CA signs.
#![no_main]

use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use dockermon_collector::pki::{Authority, PkiPaths};
use dockermon_proto::HostName;
use dockermon_proto::transport::{EnrollRequest, JoinToken};
use libfuzzer_sys::fuzz_target;

fn authority() -> &'static Authority {
    static AUTHORITY: OnceLock<(Authority, tempfile::TempDir)> = OnceLock::new();
    let _ = rustls::crypto::ring::default_provider().install_default();
    &AUTHORITY
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let paths = PkiPaths {
                dir: dir.path().to_owned(),
            };
            let authority = Authority::init(&paths, &["localhost".to_owned()], false).unwrap();
            (authority, dir)
        })
        .0
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = JoinToken::from_str(text);
    let csr = match serde_json::from_str::<EnrollRequest>(text) {
        Ok(request) => {
            let _ = JoinToken::from_str(&request.token);
            request.csr_pem
        }
        Err(_) => text.to_owned(),
    };
    let host = HostName::new("fuzz").unwrap();
    let _ = authority().sign_agent(&csr, &host, Duration::from_secs(3600));
});

//! The built-in CA kept in a Kubernetes Secret (`serve --kubernetes --pki-secret NAME`).
//!
//! Replicas and upgrades must sign with one CA: a new CA would refuse every agent enrolled
//! under the old one. So at start each replica reads the Secret and writes its files where
//! the collector reads its CA (`<data dir>/pki`, an emptyDir in a pod); the first replica
//! ever to start finds none, creates the CA and the server certificate and creates the
//! Secret. Two replicas racing both create, the API server keeps one (409 for the other),
//! and the loser reads the winner's. Nothing else writes the Secret, so a Secret made from
//! `dockermon-collector pki init` files beforehand is used as it is; and since Helm does not
//! own it, neither `helm upgrade` nor `helm uninstall` touches it.
//!
//! The server certificate of a Secret the collector made is issued again (by the same CA)
//! when the names it must carry change (`--pki-sans`, e.g. a renamed Service); the names it
//! was issued for are kept in the annotation [`SANS_ANNOTATION`]. A hand-made Secret's
//! certificate is left as it is. With `--ca-config-map`, the CA certificate alone is
//! published in a ConfigMap (`ca.crt`) for agents to mount: nodes never see the CA key.

use std::collections::BTreeMap;

use anyhow::Context as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tracing::info;

use crate::config::PkiSecret;
use crate::pki::{Authority, PkiPaths};

/// The server certificate's names, comma-separated, as it was issued.
pub const SANS_ANNOTATION: &str = "dockermon.io/server-names";
/// The field manager of the ConfigMap's server-side apply.
const FIELD_MANAGER: &str = "dockermon-collector";
/// Attempts at create-or-read before giving up (each one a conflict with another replica).
const ATTEMPTS: usize = 5;
/// A server certificate of a Secret the collector made is re-issued at a start this close
/// to its end (it is valid 397 days).
const RENEW_BEFORE: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// The Secret's keys: the files of [`PkiPaths`].
const FILES: [&str; 4] = ["ca.crt", "ca.key", "server.crt", "server.key"];

/// Makes `paths` hold the CA of the Secret `settings.secret` in `namespace`, creating both
/// on the first start. Errors name what the API server refused (e.g. RBAC) or what is
/// missing from an existing Secret.
pub async fn sync(
    client: Client,
    namespace: &str,
    settings: &PkiSecret,
    paths: &PkiPaths,
) -> anyhow::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let name = &settings.secret;
    let mut attempts = 0;
    let secret = loop {
        attempts += 1;
        if let Some(secret) = secrets
            .get_opt(name)
            .await
            .with_context(|| format!("cannot read the Secret {namespace}/{name}"))?
        {
            break secret;
        }
        let created = create(&secrets, settings, paths).await;
        match created {
            Ok(secret) => {
                info!(secret = %name, "created the built-in CA and kept it in a Secret");
                break secret;
            }
            Err(kube::Error::Api(status)) if status.code == 409 && attempts < ATTEMPTS => {
                // Another replica created it first: read theirs.
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("cannot create the Secret {namespace}/{name} (attempt {attempts} of {ATTEMPTS})")
                });
            }
        }
    };
    write_files(&secret, paths).with_context(|| format!("the Secret {namespace}/{name}"))?;
    let expiring = expires_within(&paths.server_cert(), RENEW_BEFORE)?;
    let managed = issued_for(&secret);
    if managed.is_none() && expiring {
        tracing::warn!(secret = %name, "the server certificate in this hand-made Secret expires within 30 days: replace it (the collector re-issues only certificates of Secrets it made)");
    }
    if managed.is_some_and(|issued| issued != settings.sans || expiring) {
        let authority = Authority::load(paths)?;
        authority.issue_server_certificate(paths, &settings.sans)?;
        let patch = serde_json::json!({
            "metadata": { "annotations": { SANS_ANNOTATION: settings.sans.join(",") } },
            "data": {
                "server.crt": ByteString(read(&paths.server_cert())?),
                "server.key": ByteString(read(&paths.server_key())?),
            },
        });
        secrets
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("cannot update the Secret {namespace}/{name}"))?;
        info!(secret = %name, names = %settings.sans.join(","), "issued a new server certificate (new names, or the old one expiring)");
    }
    Ok(())
}

/// A new CA and server certificate, written to `paths`, in a new Secret.
async fn create(
    secrets: &Api<Secret>,
    settings: &PkiSecret,
    paths: &PkiPaths,
) -> Result<Secret, kube::Error> {
    // A CA already here (a collector that ran before, without the Secret) is kept: a new
    // one would refuse every agent it enrolled. Only the server certificate is made anew,
    // for the configured names.
    let made = if paths.exists() {
        Authority::load(paths).and_then(|ca| ca.issue_server_certificate(paths, &settings.sans))
    } else {
        Authority::init(paths, &settings.sans, true).map(|_| ())
    };
    made.map_err(|error| {
        kube::Error::Service(format!("cannot create the built-in CA: {error}").into())
    })?;
    let mut data = BTreeMap::new();
    for (key, path) in FILES.iter().zip(files(paths)) {
        let bytes = std::fs::read(&path)
            .map_err(|error| kube::Error::Service(format!("{}: {error}", path.display()).into()))?;
        data.insert((*key).to_owned(), ByteString(bytes));
    }
    let mut secret = Secret {
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    secret.metadata.name = Some(settings.secret.clone());
    secret.metadata.annotations = Some(BTreeMap::from([(
        SANS_ANNOTATION.to_owned(),
        settings.sans.join(","),
    )]));
    secret.metadata.labels = Some(BTreeMap::from([(
        "app.kubernetes.io/managed-by".to_owned(),
        "dockermon-collector".to_owned(),
    )]));
    secrets.create(&PostParams::default(), &secret).await
}

fn read(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn files(paths: &PkiPaths) -> [std::path::PathBuf; 4] {
    [
        paths.ca_cert(),
        paths.ca_key(),
        paths.server_cert(),
        paths.server_key(),
    ]
}

/// Writes the Secret's four files to `paths` (keys 0600). A Secret without the CA is an
/// error that names the missing key.
fn write_files(secret: &Secret, paths: &PkiPaths) -> anyhow::Result<()> {
    use dockermon_agent::files::{PUBLIC, SECRET, write_atomically};
    std::fs::create_dir_all(&paths.dir)
        .with_context(|| format!("cannot create {}", paths.dir.display()))?;
    let data = secret.data.clone().unwrap_or_default();
    for (key, path) in FILES.iter().zip(files(paths)) {
        let Some(bytes) = data.get(*key) else {
            anyhow::bail!(
                "it has no {key:?}: it must hold ca.crt, ca.key, server.crt and server.key (the files of `dockermon-collector pki init`)"
            );
        };
        let mode = if key.ends_with(".key") {
            SECRET
        } else {
            PUBLIC
        };
        write_atomically(&path, &bytes.0, mode)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Whether the certificate in `path` (PEM, the leaf first) ends within `window`.
fn expires_within(path: &std::path::Path, window: std::time::Duration) -> anyhow::Result<bool> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = CertificateDer::from_pem_file(path)
        .with_context(|| format!("{} holds no certificate", path.display()))?;
    let (_, certificate) = X509Certificate::from_der(&der)
        .map_err(|_| anyhow::anyhow!("{} cannot be parsed", path.display()))?;
    let ends = certificate.validity().not_after.timestamp();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(ends - now < window.as_secs() as i64)
}

/// The names the Secret's server certificate was issued for, from its annotation; `None` for
/// a Secret made by hand, whose certificate is used as it is.
fn issued_for(secret: &Secret) -> Option<Vec<String>> {
    secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(SANS_ANNOTATION))
        .map(|names| names.split(',').map(str::to_owned).collect())
}

/// Server-side applies the ConfigMap `name` holding the CA certificate `ca_pem` as `ca.crt`
/// (`--ca-config-map`), for agents to trust the collector: whichever way the built-in CA
/// came (this Secret, cert-manager, files), nodes see its certificate only.
pub async fn publish_ca(
    client: Client,
    namespace: &str,
    name: &str,
    ca_pem: &str,
) -> anyhow::Result<()> {
    let config_map = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "labels": { "app.kubernetes.io/managed-by": "dockermon-collector" },
        },
        "data": { "ca.crt": ca_pem },
    });
    Api::<ConfigMap>::namespaced(client, namespace)
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&config_map),
        )
        .await
        .with_context(|| format!("cannot publish the CA in the ConfigMap {namespace}/{name}"))?;
    Ok(())
}

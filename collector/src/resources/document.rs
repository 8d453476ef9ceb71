//! Resource documents as people write them: YAML (or JSON), one or more per file,
//! `---`-separated, checked as strictly as an API server with strict field validation
//! checks them — an unknown field, a wrong type or a value out of bounds is refused with the
//! document and the field named.
//!
//! What a server sets (`metadata.uid`, `resourceVersion`, `generation`,
//! `creationTimestamp`, `managedFields`…) and `status` are accepted and ignored, as
//! `kubectl apply` ignores them, so that the output of `get -o yaml` applies again
//! unchanged.

use std::collections::BTreeMap;

use kube::api::ObjectMeta;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{API_VERSION, DockerHost, DockerHostSpec, ProfileSession, ProfileSessionSpec};

/// The most documents one `apply` takes.
pub const MAX_DOCUMENTS: usize = 1000;

/// The kinds of resource Dockermon has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    DockerHost,
    ProfileSession,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::DockerHost, Kind::ProfileSession];

    /// The kind's name, as `kind:` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::DockerHost => "DockerHost",
            Kind::ProfileSession => "ProfileSession",
        }
    }

    /// The plural, lowercase name commands and URLs use (`dockerhosts`).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::DockerHost => "dockerhosts",
            Kind::ProfileSession => "profilesessions",
        }
    }

    /// Accepts the kind's name, its plural, singular or short name, in any case
    /// (`dockerhost`, `DockerHosts`, `dh`), as kubectl does.
    pub fn parse(text: &str) -> Option<Kind> {
        let text = text.to_ascii_lowercase();
        match text.as_str() {
            "dockerhost" | "dockerhosts" | "dh" => Some(Kind::DockerHost),
            "profilesession" | "profilesessions" | "ps" => Some(Kind::ProfileSession),
            _ => None,
        }
    }

    /// Whether resources of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        self == Kind::ProfileSession
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One valid document.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    DockerHost(DockerHost),
    ProfileSession(ProfileSession),
}

impl Document {
    pub fn kind(&self) -> Kind {
        match self {
            Document::DockerHost(_) => Kind::DockerHost,
            Document::ProfileSession(_) => Kind::ProfileSession,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Document::DockerHost(host) => &host.metadata,
            Document::ProfileSession(session) => &session.metadata,
        }
    }

    /// `namespace/name` for namespaced kinds, `name` otherwise.
    pub fn key(&self) -> String {
        let meta = self.metadata();
        match &meta.namespace {
            Some(namespace) => format!("{namespace}/{}", meta.name.as_deref().unwrap_or("")),
            None => meta.name.clone().unwrap_or_default(),
        }
    }
}

/// Why a document was refused: which one (1-based, in file order), and what is wrong,
/// starting with the field's path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document {index}: {message}")]
pub struct DocumentError {
    pub index: usize,
    pub message: String,
}

/// Parses every document of `text` (YAML or JSON; `---` separates documents; empty
/// documents are skipped). All or nothing: the first invalid document is the error.
pub fn parse_documents(text: &str) -> Result<Vec<Document>, DocumentError> {
    let mut documents = Vec::new();
    for (i, deserializer) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let fail = |message: String| DocumentError { index, message };
        let value = serde_yaml::Value::deserialize(deserializer)
            .map_err(|error| fail(format!("not valid YAML: {error}")))?;
        if value.is_null() {
            continue;
        }
        if documents.len() == MAX_DOCUMENTS {
            return Err(fail(format!("more than {MAX_DOCUMENTS} documents")));
        }
        documents.push(parse_document(value).map_err(fail)?);
    }
    Ok(documents)
}

/// Parses one document already read as YAML.
pub fn parse_document(value: serde_yaml::Value) -> Result<Document, String> {
    let header = Header::deserialize(&value)
        .map_err(|_| "apiVersion and kind are required and must be strings".to_string())?;
    if header.api_version != API_VERSION {
        return Err(format!(
            "apiVersion: {:?} is not {API_VERSION:?}",
            header.api_version
        ));
    }
    let kind = match header.kind.as_str() {
        "DockerHost" => Kind::DockerHost,
        "ProfileSession" => Kind::ProfileSession,
        other => {
            return Err(format!(
                "kind: {other:?} is not DockerHost or ProfileSession"
            ));
        }
    };
    match kind {
        Kind::DockerHost => {
            let envelope: Envelope<DockerHostSpec> = strict(value)?;
            let metadata = envelope.metadata.validate(kind)?;
            envelope.spec.validate()?;
            Ok(Document::DockerHost(DockerHost {
                metadata,
                spec: envelope.spec,
                status: None,
            }))
        }
        Kind::ProfileSession => {
            let envelope: Envelope<ProfileSessionSpec> = strict(value)?;
            let metadata = envelope.metadata.validate(kind)?;
            envelope.spec.validate()?;
            Ok(Document::ProfileSession(ProfileSession {
                metadata,
                spec: envelope.spec,
                status: None,
            }))
        }
    }
}

/// Deserialises with unknown fields refused and the failing field's path named.
fn strict<T: serde::de::DeserializeOwned>(value: serde_yaml::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner().to_string();
        if path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    api_version: String,
    kind: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Envelope<S> {
    #[serde(rename = "apiVersion")]
    _api_version: IgnoredAny,
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    metadata: Metadata,
    spec: S,
    #[serde(default, rename = "status")]
    _status: IgnoredAny,
}

/// The metadata people may write, and what servers set (accepted, ignored: the `_`
/// fields).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Metadata {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default, rename = "uid")]
    _uid: IgnoredAny,
    #[serde(default, rename = "resourceVersion")]
    _resource_version: IgnoredAny,
    #[serde(default, rename = "generation")]
    _generation: IgnoredAny,
    #[serde(default, rename = "creationTimestamp")]
    _creation_timestamp: IgnoredAny,
    #[serde(default, rename = "deletionTimestamp")]
    _deletion_timestamp: IgnoredAny,
    #[serde(default, rename = "finalizers")]
    _finalizers: IgnoredAny,
    #[serde(default, rename = "managedFields")]
    _managed_fields: IgnoredAny,
}

impl Metadata {
    fn validate(self, kind: Kind) -> Result<ObjectMeta, String> {
        is_dns_subdomain(&self.name).map_err(|why| format!("metadata.name: {why}"))?;
        let namespace = match (kind.namespaced(), self.namespace) {
            (true, None) => Some("default".to_string()),
            (true, Some(namespace)) => {
                is_dns_label(&namespace).map_err(|why| format!("metadata.namespace: {why}"))?;
                Some(namespace)
            }
            (false, None) => None,
            (false, Some(_)) => {
                return Err(format!(
                    "metadata.namespace: {kind} is cluster-scoped and takes no namespace"
                ));
            }
        };
        Ok(ObjectMeta {
            name: Some(self.name),
            namespace,
            labels: (!self.labels.is_empty()).then_some(self.labels),
            annotations: (!self.annotations.is_empty()).then_some(self.annotations),
            ..ObjectMeta::default()
        })
    }
}

/// Kubernetes' rule for object names: a DNS subdomain (RFC 1123), lowercase.
pub fn is_dns_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{name:?} must be 1 to 253 characters"));
    }
    for label in name.split('.') {
        is_label_chars(label).map_err(|why| format!("{name:?} {why}"))?;
    }
    Ok(())
}

/// Kubernetes' rule for namespaces: a DNS label (RFC 1123), lowercase, at most 63.
pub fn is_dns_label(name: &str) -> Result<(), String> {
    if name.len() > 63 {
        return Err(format!("{name:?} is longer than 63 characters"));
    }
    is_label_chars(name).map_err(|why| format!("{name:?} {why}"))
}

fn is_label_chars(label: &str) -> Result<(), &'static str> {
    let bytes = label.as_bytes();
    let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || bytes.len() > 63 {
        return Err("has an empty or longer than 63-character part");
    }
    if !bytes.iter().all(inner) {
        return Err("may hold only lowercase letters, digits, '-' and '.'");
    }
    if !edge(&bytes[0]) || !edge(&bytes[bytes.len() - 1]) {
        return Err("must start and end with a letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        parse_documents(text).unwrap_err().to_string()
    }

    #[test]
    fn several_documents_of_both_kinds() {
        let text = "\
apiVersion: dockermon.io/v1alpha1
kind: DockerHost
metadata: {name: web-1, labels: {site: a}}
spec: {statsInterval: 10s, diskUsageInterval: 'off', allowedActions: [start, stop], paused: true}
---
---
apiVersion: dockermon.io/v1alpha1
kind: ProfileSession
metadata: {name: api-cpu}
spec: {host: web-1, container: api, duration: 5m}
";
        let documents = parse_documents(text).unwrap();
        assert_eq!(documents.len(), 2);
        let Document::DockerHost(host) = &documents[0] else {
            panic!("first is a DockerHost")
        };
        assert_eq!(host.spec.stats_interval.as_deref(), Some("10s"));
        assert!(host.spec.paused);
        assert_eq!(documents[1].key(), "default/api-cpu", "namespace defaults");
    }

    #[test]
    fn refusals_name_the_document_and_the_field() {
        let host = "apiVersion: dockermon.io/v1alpha1\nkind: DockerHost\nmetadata: {name: h}\n";
        for (spec, expected) in [
            (
                "spec: {statsInterval: 0s}",
                "document 1: spec.statsInterval: 0s is out of range (1s to 1h)",
            ),
            (
                "spec: {statsInterval: '30'}",
                "document 1: spec.statsInterval: \"30\" is not a duration like 500ms, 30s, 5m or 1h",
            ),
            (
                "spec: {statsInterval: 30}",
                "document 1: spec.statsInterval: invalid type: integer `30`, expected a string",
            ),
            (
                "spec: {diskUsageInterval: 10s}",
                "document 1: spec.diskUsageInterval: 10s is out of range (1m to 168h)",
            ),
            (
                "spec: {stats_interval: 10s}",
                "document 1: spec.stats_interval: unknown field `stats_interval`, expected one of `statsInterval`",
            ),
            (
                "spec: {allowedActions: [stop, stop]}",
                "document 1: spec.allowedActions[1]: stop is repeated",
            ),
            (
                "spec: {allowedActions: [reboot]}",
                "document 1: spec.allowedActions[0]: unknown variant `reboot`",
            ),
            (
                "spec: {paused: 1}",
                "document 1: spec.paused: invalid type: integer `1`, expected a boolean",
            ),
        ] {
            let error = error_of(&format!("{host}{spec}\n"));
            assert!(error.starts_with(expected), "{spec}: {error}");
        }
        let error = error_of(&format!("{host}spec: {{}}\nextra: 1\n"));
        assert!(
            error.starts_with("document 1: extra: unknown field `extra`"),
            "{error}"
        );
        let error = error_of(&format!(
            "{host}spec: {{}}\n---\napiVersion: v1\nkind: Pod\n"
        ));
        assert_eq!(
            error,
            "document 2: apiVersion: \"v1\" is not \"dockermon.io/v1alpha1\""
        );
        let error = error_of(
            "apiVersion: dockermon.io/v1alpha1\nkind: DockerHost\nmetadata: {name: Web_1}\nspec: {}\n",
        );
        assert!(
            error.starts_with("document 1: metadata.name: \"Web_1\" may hold only"),
            "{error}"
        );
        let error = error_of(
            "apiVersion: dockermon.io/v1alpha1\nkind: DockerHost\nmetadata: {name: h, namespace: x}\nspec: {}\n",
        );
        assert!(error.contains("cluster-scoped"), "{error}");
        let session =
            "apiVersion: dockermon.io/v1alpha1\nkind: ProfileSession\nmetadata: {name: p}\n";
        let error = error_of(&format!(
            "{session}spec: {{host: h, container: c, duration: 2h}}\n"
        ));
        assert_eq!(
            error,
            "document 1: spec.duration: 2h is out of range (1s to 1h)"
        );
        let error = error_of(&format!("{session}spec: {{host: h, duration: 1m}}\n"));
        assert!(
            error.starts_with("document 1: spec: missing field `container`"),
            "{error}"
        );
    }

    #[test]
    fn what_servers_set_is_ignored() {
        let text = "\
apiVersion: dockermon.io/v1alpha1
kind: DockerHost
metadata:
  name: web-1
  uid: 1f1e
  resourceVersion: '7'
  generation: 3
  creationTimestamp: '2026-11-30T00:00:00Z'
spec: {}
status: {conditions: []}
";
        let documents = parse_documents(text).unwrap();
        assert_eq!(documents[0].metadata().generation, None);
    }
}

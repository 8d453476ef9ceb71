//! Resources between their stored rows and their API form (the objects `get -o yaml`
//! prints and `/api/v1/resources` answers), and the apply/get/delete operations that both
//! the shell and the REST API run on the store.

use std::collections::{BTreeMap, HashMap};

use kube::api::ObjectMeta;
use serde_json::{Value, json};

use super::controller::to_json;
use super::document::{Document, Kind};
use super::profile_session::ProfileSessionStatus;
use super::{API_VERSION, DockerHostSpec};
use crate::store::{Applied, ApplyRefusal, DesiredResource, ResourceRow, Store, StoreError};

/// Stores a valid document: created, configured (spec, labels or annotations changed) or
/// unchanged. A profile session's spec cannot change.
pub async fn apply(
    store: &Store,
    document: &Document,
    now_ns: i64,
) -> Result<(Applied, ResourceRow), ApplyRefusal> {
    let meta = document.metadata();
    let (spec, immutable) = match document {
        Document::DockerHost(host) => (to_json(&host.spec), false),
        Document::ProfileSession(session) => (to_json(&session.spec), true),
    };
    let labels = to_json(&meta.labels.clone().unwrap_or_default());
    let annotations = to_json(&meta.annotations.clone().unwrap_or_default());
    let desired = DesiredResource {
        kind: document.kind().as_str(),
        namespace: meta.namespace.as_deref().unwrap_or(""),
        name: meta.name.as_deref().unwrap_or(""),
        labels: &labels,
        annotations: &annotations,
        spec: &spec,
    };
    store.apply_resource(&desired, immutable, now_ns).await
}

/// What a deletion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// Gone now.
    Deleted,
    /// Marked; the controller of a running collector finishes it (stops the profile).
    Deleting,
    NotFound,
}

/// Deletes a resource. A `DockerHost` revokes its host at once (the store can do it
/// alone: running collectors see the revocation and close the agent's connection); a
/// `ProfileSession` that has not finished is marked, and the collector's controller stops
/// its profile (unless it joined someone else's) and removes it.
pub async fn delete(
    store: &Store,
    kind: Kind,
    namespace: &str,
    name: &str,
    now_ns: i64,
) -> Result<Deleted, StoreError> {
    let Some(row) = store
        .mark_resource_deleting(kind.as_str(), namespace, name, now_ns)
        .await?
    else {
        return Ok(Deleted::NotFound);
    };
    let finished_now = match kind {
        Kind::DockerHost => {
            if let Ok(host) = dockermon_proto::HostName::new(name) {
                store.delete_host(&host, now_ns).await?;
            }
            true
        }
        Kind::ProfileSession => {
            let status: Option<ProfileSessionStatus> = row
                .status
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok());
            // Only a finished one goes at once: one without a status may be starting its
            // profile in the controller right now, which then stops it and removes it.
            status.is_some_and(|status| status.phase.is_finished())
        }
    };
    if finished_now {
        store
            .remove_resource(kind.as_str(), namespace, name, &row.uid)
            .await?;
        Ok(Deleted::Deleted)
    } else {
        Ok(Deleted::Deleting)
    }
}

/// DockerHosts' `spec.labels`, by host name: of one host, or of every host (`None`).
pub async fn docker_host_labels(
    store: &Store,
    host: Option<&str>,
) -> Result<HashMap<String, BTreeMap<String, String>>, StoreError> {
    let rows = match host {
        Some(name) => store
            .resource(Kind::DockerHost.as_str(), "", name)
            .await?
            .into_iter()
            .collect(),
        None => store.resources(Kind::DockerHost.as_str(), Some("")).await?,
    };
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let spec: DockerHostSpec = serde_json::from_str(&row.spec).ok()?;
            (!spec.labels.is_empty()).then_some((row.name, spec.labels))
        })
        .collect())
}

/// A stored resource as the API shows it: `apiVersion`, `kind`, `metadata` (with what the
/// store sets: `uid`, `resourceVersion`, `generation`, `creationTimestamp`,
/// `deletionTimestamp`), `spec` and `status`.
pub fn to_object(row: &ResourceRow) -> Value {
    let labels: BTreeMap<String, String> = serde_json::from_str(&row.labels).unwrap_or_default();
    let annotations: BTreeMap<String, String> =
        serde_json::from_str(&row.annotations).unwrap_or_default();
    let meta = ObjectMeta {
        name: Some(row.name.clone()),
        namespace: (!row.namespace.is_empty()).then(|| row.namespace.clone()),
        uid: Some(row.uid.clone()),
        resource_version: Some(row.resource_version.to_string()),
        generation: Some(row.generation),
        creation_timestamp: Some(super::host_status::time(row.created_ns)),
        deletion_timestamp: row.deleting_ns.map(super::host_status::time),
        labels: (!labels.is_empty()).then_some(labels),
        annotations: (!annotations.is_empty()).then_some(annotations),
        ..ObjectMeta::default()
    };
    let spec: Value = serde_json::from_str(&row.spec).unwrap_or(Value::Null);
    let mut object = json!({
        "apiVersion": API_VERSION,
        "kind": row.kind,
        "metadata": meta,
        "spec": spec,
    });
    if let Some(status) = row
        .status
        .as_deref()
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
    {
        object["status"] = status;
    }
    object
}

/// One line of `get`'s table: the columns `kubectl get` shows for the kind's printer
/// columns.
pub fn table(kind: Kind, rows: &[ResourceRow], now_ns: i64) -> String {
    let mut lines: Vec<Vec<String>> = Vec::new();
    match kind {
        Kind::DockerHost => {
            lines.push(
                ["NAME", "CONNECTED", "RUNNING", "DOCKER", "LAST SEEN", "AGE"]
                    .map(String::from)
                    .to_vec(),
            );
            for row in rows {
                let object = to_object(row);
                let status = &object["status"];
                let connected = status["conditions"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["type"] == "Connected"))
                    .and_then(|c| c["status"].as_str())
                    .unwrap_or("");
                lines.push(vec![
                    row.name.clone(),
                    connected.to_string(),
                    status["containers"]["running"]
                        .as_i64()
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                    status["dockerVersion"].as_str().unwrap_or("").to_string(),
                    status["lastReportTime"]
                        .as_str()
                        .and_then(super::host_status::parse_time)
                        .map(|t| age(now_ns - t))
                        .unwrap_or_default(),
                    age(now_ns - row.created_ns),
                ]);
            }
        }
        Kind::ProfileSession => {
            lines.push(
                [
                    "NAMESPACE",
                    "NAME",
                    "HOST",
                    "CONTAINER",
                    "PHASE",
                    "SAMPLES",
                    "CPU MAX %",
                    "AGE",
                ]
                .map(String::from)
                .to_vec(),
            );
            for row in rows {
                let object = to_object(row);
                let (spec, status) = (&object["spec"], &object["status"]);
                lines.push(vec![
                    row.namespace.clone(),
                    row.name.clone(),
                    spec["host"].as_str().unwrap_or("").to_string(),
                    spec["container"].as_str().unwrap_or("").to_string(),
                    status["phase"].as_str().unwrap_or("Pending").to_string(),
                    status["samples"]
                        .as_i64()
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                    status["summary"]["cpuPercentMax"]
                        .as_f64()
                        .map(|n| format!("{n:.1}"))
                        .unwrap_or_default(),
                    age(now_ns - row.created_ns),
                ]);
            }
        }
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|i| lines.iter().map(|line| line[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for line in lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// kubectl's short ages: `45s`, `12m`, `5h`, `3d`.
fn age(ns: i64) -> String {
    let s = (ns / 1_000_000_000).max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

//! The resources' controller when no Kubernetes API server holds them: resources live in
//! the store, and this loop reconciles them with [`Context`]'s functions, the same ones the
//! Kubernetes operator runs.
//!
//! It runs on the replica holding the scheduler's lease (one writer of statuses), every
//! few seconds and at once when the API changed a resource. A pass:
//! - gives every enrolled host a `DockerHost` (empty spec: the collector's defaults), so
//!   `get dockerhosts` lists the fleet;
//! - brings each connected agent to its `DockerHost`'s spec and writes the status when it
//!   changed;
//! - finishes deletions: a deleted `DockerHost` revokes its host, a deleted running
//!   `ProfileSession` stops its profile; then the row goes;
//! - moves `ProfileSession`s on and deletes finished ones after their TTL.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dockermon_proto::now_ns;
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::document::is_dns_subdomain;
use super::reconcile::{Context, ReconcileError, session_expired};
use super::{DockerHostSpec, DockerHostStatus, Kind, ProfileSessionSpec, ProfileSessionStatus};
use crate::store::{DesiredResource, HostRow, ResourceRow};

/// How often a pass runs without being woken.
pub const RESYNC: Duration = Duration::from_secs(5);

/// Runs passes until `cancel` fires, while `leader` holds.
pub async fn run(
    context: Context,
    leader: Arc<AtomicBool>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(RESYNC);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = tick.tick() => {}
            () = wake.notified() => {}
        }
        if !leader.load(Ordering::Relaxed) {
            continue;
        }
        // Every pass starts over from the resources, so one cut short by shutdown loses
        // nothing.
        let Some(passed) = cancel.run_until_cancelled(pass(&context)).await else {
            break;
        };
        if let Err(error) = passed {
            warn!(error = %dockermon_agent::process::error_chain(&error), "resource controller pass failed; retrying");
        }
    }
}

/// DockerHosts reconciled at once in a pass.
const HOSTS_AT_ONCE: usize = 64;

/// One pass over every resource.
pub async fn pass(context: &Context) -> Result<(), ReconcileError> {
    let store = &context.store;
    let hosts = store.hosts().await?;
    // By name: a fleet has thousands of hosts, looked up once per resource per pass.
    let hosts_by_name: HashMap<&str, &HostRow> = hosts
        .iter()
        .map(|host| (host.name.as_str(), host))
        .collect();
    let mut rows = store.resources(Kind::DockerHost.as_str(), Some("")).await?;
    let mut created = false;
    let named: HashSet<&str> = rows.iter().map(|row| row.name.as_str()).collect();
    for host in &hosts {
        if named.contains(host.name.as_str()) || is_dns_subdomain(&host.name).is_err() {
            continue;
        }
        let desired = DesiredResource {
            kind: Kind::DockerHost.as_str(),
            namespace: "",
            name: &host.name,
            labels: "{}",
            annotations: "{}",
            spec: &to_json(&DockerHostSpec::default()),
        };
        match store.apply_resource(&desired, false, now_ns()).await {
            Ok(_) => created = true,
            Err(error) => {
                debug!(%error, host = %host.name, "no DockerHost for an enrolled host yet")
            }
        }
    }
    if created {
        rows = store.resources(Kind::DockerHost.as_str(), Some("")).await?;
    }
    // One resource's failure is logged and retried next pass; it does not hold up the rest.
    // Hosts are reconciled side by side: pushing settings waits for the agent (up to its
    // timeout), and one by one a fleet's first pass would take hours.
    let hosts_by_name = &hosts_by_name;
    futures::stream::iter(&rows)
        .for_each_concurrent(HOSTS_AT_ONCE, |row| async move {
            let result = async {
                if row.deleting_ns.is_some() {
                    context.revoke_host(&row.name).await?;
                    store
                        .remove_resource(&row.kind, "", &row.name, &row.uid)
                        .await?;
                    return Ok(());
                }
                let Some(spec) = parse::<DockerHostSpec>(row, &row.spec) else {
                    return Ok(());
                };
                let previous = row
                    .status
                    .as_deref()
                    .and_then(|text| parse::<DockerHostStatus>(row, text));
                let host = hosts_by_name.get(row.name.as_str()).copied();
                let status = context
                    .reconcile_host(&row.name, &spec, row.generation, host, previous.as_ref())
                    .await?;
                write_status(context, row, &status).await
            }
            .await;
            report(row, result);
        })
        .await;
    for row in store.resources(Kind::ProfileSession.as_str(), None).await? {
        let result = async {
            let key = format!("{}/{}", row.namespace, row.name);
            let previous = row
                .status
                .as_deref()
                .and_then(|text| parse::<ProfileSessionStatus>(&row, text));
            if row.deleting_ns.is_some() {
                context.stop_session(&key, previous.as_ref()).await?;
                store
                    .remove_resource(&row.kind, &row.namespace, &row.name, &row.uid)
                    .await?;
                return Ok(());
            }
            let Some(spec) = parse::<ProfileSessionSpec>(&row, &row.spec) else {
                return Ok(());
            };
            if session_expired(&spec, previous.as_ref(), now_ns()) {
                store
                    .remove_resource(&row.kind, &row.namespace, &row.name, &row.uid)
                    .await?;
                return Ok(());
            }
            let status = context
                .reconcile_session(&key, &spec, previous.as_ref())
                .await?;
            write_status(context, &row, &status).await
        }
        .await;
        report(&row, result);
    }
    Ok(())
}

fn report(row: &ResourceRow, result: Result<(), ReconcileError>) {
    if let Err(error) = result {
        warn!(kind = %row.kind, namespace = %row.namespace, name = %row.name,
            error = %dockermon_agent::process::error_chain(&error), "cannot reconcile a resource; retrying next pass");
    }
}

/// Writes a status if it changed (the store compares).
async fn write_status(
    context: &Context,
    row: &ResourceRow,
    status: &impl Serialize,
) -> Result<(), ReconcileError> {
    context
        .store
        .set_resource_status(
            &row.kind,
            &row.namespace,
            &row.name,
            row.generation,
            &to_json(status),
        )
        .await?;
    Ok(())
}

fn parse<T: DeserializeOwned>(row: &ResourceRow, text: &str) -> Option<T> {
    match serde_json::from_str(text) {
        Ok(value) => Some(value),
        Err(error) => {
            warn!(%error, kind = %row.kind, name = %row.name, "a stored resource does not parse; skipped");
            None
        }
    }
}

pub(crate) fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("a resource serialises")
}

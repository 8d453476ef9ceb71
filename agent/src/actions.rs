//! Container actions the collector asks for (start, stop, restart, pause, unpause, kill,
//! remove), carried out against Docker and answered with their outcome.
//!
//! The agent is the last line of defence: it refuses any action outside its own allowlist
//! (`--allow-actions`; `remove` is off by default), whatever the collector says. Each action
//! runs in its own task, at most [`CONCURRENCY`] at a time, within the command's timeout, so
//! a slow `stop` never holds up the uplink's heartbeats or acknowledgements.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::{
    KillContainerOptions, RemoveContainerOptions, RestartContainerOptions, StartContainerOptions,
    StopContainerOptions,
};
use dockermon_proto::transport::{
    Command, CommandAction, CommandOutcome, CommandResult, ContainerAction,
};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::docker::Docker;

/// Actions running at once, at most; more wait their turn (within their timeout).
pub const CONCURRENCY: usize = 8;
/// Commands waiting for the actions task before new ones are refused as busy.
pub const QUEUE: usize = 64;
/// Seconds Docker gives a container to stop before killing it.
const STOP_GRACE_SECS: i32 = 10;

/// Actions allowed when none are configured: everything but `remove`.
pub fn default_allowed() -> BTreeSet<ContainerAction> {
    ContainerAction::ALL
        .into_iter()
        .filter(|action| *action != ContainerAction::Remove)
        .collect()
}

/// Carries out container commands from `commands`, answering on `results`, until
/// cancelled.
pub async fn run(
    docker: Docker,
    allowed: BTreeSet<ContainerAction>,
    mut commands: mpsc::Receiver<Command>,
    results: mpsc::Sender<CommandResult>,
    cancel: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let allowed = Arc::new(allowed);
    loop {
        let command = tokio::select! {
            () = cancel.cancelled() => return,
            command = commands.recv() => match command {
                Some(command) => command,
                None => return,
            },
        };
        let (docker, allowed, permits, results) = (
            docker.clone(),
            allowed.clone(),
            permits.clone(),
            results.clone(),
        );
        tokio::spawn(async move {
            let timeout = Duration::from_millis(command.timeout_ms);
            let outcome = tokio::time::timeout(timeout, async {
                let _permit = permits
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                carry_out(&docker, &allowed, &command.action).await
            })
            .await
            .unwrap_or_else(|_| CommandOutcome::Failed {
                message: format!("not done within {timeout:?}"),
            });
            let _ = results
                .send(CommandResult {
                    id: command.id,
                    outcome,
                })
                .await;
        });
    }
}

async fn carry_out(
    docker: &Docker,
    allowed: &BTreeSet<ContainerAction>,
    action: &CommandAction,
) -> CommandOutcome {
    let CommandAction::Container {
        container_id,
        action,
    } = action
    else {
        return CommandOutcome::Failed {
            message: "not a container action".into(),
        };
    };
    let action = *action;
    if !allowed.contains(&action) {
        return CommandOutcome::Failed {
            message: format!(
                "{} is not allowed on this host (its agent's --allow-actions)",
                action.as_str()
            ),
        };
    }
    let api = &docker.api;
    let id = container_id.as_str();
    let done = match action {
        ContainerAction::Start => api.start_container(id, None::<StartContainerOptions>).await,
        ContainerAction::Stop => {
            let options = StopContainerOptions {
                t: Some(STOP_GRACE_SECS),
                ..Default::default()
            };
            api.stop_container(id, Some(options)).await
        }
        ContainerAction::Restart => {
            let options = RestartContainerOptions {
                t: Some(STOP_GRACE_SECS),
                ..Default::default()
            };
            api.restart_container(id, Some(options)).await
        }
        ContainerAction::Pause => api.pause_container(id).await,
        ContainerAction::Unpause => api.unpause_container(id).await,
        ContainerAction::Kill => api.kill_container(id, None::<KillContainerOptions>).await,
        ContainerAction::Remove => {
            let options = RemoveContainerOptions {
                force: true,
                ..Default::default()
            };
            api.remove_container(id, Some(options)).await
        }
    };
    match done {
        Ok(()) => {
            info!(container = %id, action = action.as_str(), "container action done");
            CommandOutcome::Done { detail: None }
        }
        // Already in the state asked for (start a running container, stop a stopped one).
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => CommandOutcome::Done {
            detail: Some("already so".into()),
        },
        Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
            CommandOutcome::Failed { message }
        }
        Err(error) => CommandOutcome::Failed {
            message: format!("docker: {error}"),
        },
    }
}

//! Profile sessions the collector asks for: start and stop commands in, one task per
//! session, and the profiler's status (sessions running, Docker streams open) out.
//!
//! Invariants:
//! - One Docker stream per profiled container: a second session for a container that is
//!   already profiled is refused (the collector joins watchers to the running session
//!   instead), and a session's stream lives exactly as long as its task.
//! - At most `max_sessions` sessions at once, whatever the collector asks.
//! - Every session ends with one reason (see [`ProfileEndReason`]); its task always
//!   returns, so nothing outlives it: the stop command is answered only once the session's
//!   last batch is in the record queue.

mod session;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bollard::query_parameters::InspectContainerOptions;
use dockermon_proto::transport::{
    Command, CommandAction, CommandOutcome, CommandResult, LiveProfileSample, ProfileStart,
};
use dockermon_proto::{ContainerId, ProfileEndReason, Record};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::docker::{Docker, is_not_found, root_cause, with_timeout};
use crate::inventory::RunningSet;

pub use session::FLUSH_EVERY;

/// Profile sessions one agent runs at once, unless configured otherwise.
pub const DEFAULT_MAX_SESSIONS: usize = 8;
/// Commands waiting for the profiler.
pub const QUEUE: usize = 64;
/// Live samples waiting for the uplink; beyond this they are dropped (they also travel in
/// batches).
pub const LIVE_QUEUE: usize = 256;
/// Shortest and longest time between samples.
pub const INTERVAL_RANGE_MS: std::ops::RangeInclusive<u64> = 1_000..=10_000;

/// What the profiler is doing: sent to the collector as part of the agent's status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProfilerStatus {
    /// Sessions running, by id.
    pub sessions: Vec<u64>,
    /// Docker stats streams open.
    pub docker_streams: u32,
}

/// The profiler's ends of its channels.
pub struct ProfilerWiring {
    pub counters: crate::stats::CounterSource,
    pub max_sessions: usize,
    pub commands: mpsc::Receiver<Command>,
    pub results: mpsc::Sender<CommandResult>,
    pub records: mpsc::Sender<Record>,
    pub live: mpsc::Sender<LiveProfileSample>,
    pub running: watch::Receiver<RunningSet>,
    pub connected: watch::Receiver<bool>,
    pub status: watch::Sender<ProfilerStatus>,
}

struct Running {
    container: ContainerId,
    stop: watch::Sender<Option<ProfileEndReason>>,
    /// Stop commands waiting for this session to finish.
    waiting: Vec<u64>,
}

/// Runs profile sessions until `cancel` fires; then ends them all (`interrupted`) and
/// waits for their tasks.
pub async fn run(mut wiring: ProfilerWiring, cancel: CancellationToken) {
    let streams = Arc::new(AtomicU32::new(0));
    let mut running: HashMap<u64, Running> = HashMap::new();
    let mut tasks: JoinSet<u64> = JoinSet::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            command = wiring.commands.recv() => {
                let Some(command) = command else { break };
                let id = command.id;
                match command.action {
                    CommandAction::ProfileStart(start) => {
                        let outcome = start_session(&wiring, &mut running, &mut tasks, &streams, start, &cancel).await;
                        answer(&wiring, id, outcome).await;
                    }
                    CommandAction::ProfileStop { profile_id, reason } => match running.get_mut(&profile_id) {
                        Some(session) => {
                            session.stop.send_replace(Some(reason));
                            session.waiting.push(id);
                        }
                        None => answer(&wiring, id, CommandOutcome::Done { detail: Some("not running".into()) }).await,
                    },
                    _ => answer(&wiring, id, CommandOutcome::Failed { message: "not a profile command".into() }).await,
                }
            }
            Some(done) = tasks.join_next() => {
                if let Ok(profile_id) = done
                    && let Some(session) = running.remove(&profile_id)
                {
                    for id in session.waiting {
                        answer(&wiring, id, CommandOutcome::Done { detail: None }).await;
                    }
                }
            }
        }
        publish_status(&wiring.status, &running, &streams);
    }
    for session in running.values() {
        session
            .stop
            .send_replace(Some(ProfileEndReason::Interrupted));
    }
    while tasks.join_next().await.is_some() {}
    publish_status(&wiring.status, &HashMap::new(), &streams);
}

fn publish_status(
    status: &watch::Sender<ProfilerStatus>,
    running: &HashMap<u64, Running>,
    streams: &AtomicU32,
) {
    let mut sessions: Vec<u64> = running.keys().copied().collect();
    sessions.sort_unstable();
    let now = ProfilerStatus {
        sessions,
        docker_streams: streams.load(Ordering::SeqCst),
    };
    status.send_if_modified(|current| {
        let changed = *current != now;
        *current = now;
        changed
    });
}

async fn answer(wiring: &ProfilerWiring, id: u64, outcome: CommandOutcome) {
    let _ = wiring.results.send(CommandResult { id, outcome }).await;
}

async fn start_session(
    wiring: &ProfilerWiring,
    running: &mut HashMap<u64, Running>,
    tasks: &mut JoinSet<u64>,
    streams: &Arc<AtomicU32>,
    start: ProfileStart,
    cancel: &CancellationToken,
) -> CommandOutcome {
    let failed = |message: String| CommandOutcome::Failed { message };
    if running.contains_key(&start.profile_id) {
        // The collector retried a start that got through.
        return CommandOutcome::Done {
            detail: Some("already running".into()),
        };
    }
    if let Some((other, _)) = running
        .iter()
        .find(|(_, session)| session.container == start.container_id)
    {
        return failed(format!(
            "the container is already profiled by session {other}"
        ));
    }
    if running.len() >= wiring.max_sessions {
        return failed(format!(
            "this agent already runs {} profile sessions, its limit (--max-profiles)",
            wiring.max_sessions
        ));
    }
    if !INTERVAL_RANGE_MS.contains(&start.interval_ms) {
        return failed("the interval must be between 1 and 10 seconds".into());
    }
    match is_running(&wiring.counters.docker, start.container_id.as_str()).await {
        Ok(true) => {}
        Ok(false) => return failed("the container is not running".into()),
        Err(message) => return failed(message),
    }
    let (stop, stop_rx) = watch::channel(None);
    running.insert(
        start.profile_id,
        Running {
            container: start.container_id.clone(),
            stop,
            waiting: Vec::new(),
        },
    );
    let session_wiring = session::Wiring {
        counters: wiring.counters.clone(),
        streams: streams.clone(),
        records: wiring.records.clone(),
        live: wiring.live.clone(),
        running: wiring.running.clone(),
        connected: wiring.connected.clone(),
    };
    tasks.spawn(session::run(start, session_wiring, stop_rx, cancel.clone()));
    CommandOutcome::Done { detail: None }
}

/// Whether Docker says the container is running (or paused: still sampled).
async fn is_running(docker: &Docker, id: &str) -> Result<bool, String> {
    let inspect = with_timeout(
        Duration::from_secs(10),
        docker
            .api
            .inspect_container(id, None::<InspectContainerOptions>),
    )
    .await;
    match inspect {
        Ok(inspect) => Ok(inspect
            .state
            .and_then(|state| state.running)
            .unwrap_or(false)),
        Err(error) if is_not_found(&error) => Err("no such container on this host".into()),
        Err(error) => Err(format!("docker: {}", root_cause(&error))),
    }
}

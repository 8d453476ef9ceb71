//! The agents connected to this collector, and the commands sent to them.
//!
//! Like [`crate::live`], this is the internal interface that commands to agents go
//! through; linked to the other replicas through NATS ([`Registry::linked`]), a command for
//! an agent connected elsewhere is carried to the replica that holds its connection, and
//! which agents are connected where is announced ([`super::presence`]). Each command has an
//! id, a timeout and exactly one outcome: the agent's result, a timeout, or "not connected"
//! (anywhere).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dockermon_proto::HostName;
use dockermon_proto::transport::{
    AgentConfig, AgentStatus, Command, CommandAction, CommandOutcome,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::presence::Presence;
use super::tls::Peer;
use crate::broker::{self, Broker, RequestError};
use crate::store::HostId;

/// Commands queued for one agent before `command` reports it busy.
const COMMAND_QUEUE: usize = 64;
/// An agent heard from this recently is alive (agents ping every 15 s).
const ALIVE_WITHIN: Duration = Duration::from_secs(20);
/// What a command for an agent on another replica may take beyond its own timeout: the
/// replica holding the agent answers `Timeout` itself, and the answer must get back.
const REMOTE_MARGIN: Duration = Duration::from_secs(2);

/// Another agent process holds the host's session and is alive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{host} is connected from another agent process right now: two agents cannot share one host name (a copied state directory?); give this agent its own state directory and join token, or stop the other"
)]
pub struct AlreadyConnected {
    pub host: HostName,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CommandError {
    #[error("the host's agent is not connected")]
    NotConnected,
    /// The agent may be on another replica, which cannot be asked (NATS is down).
    #[error("the host's agent may be on another replica, which cannot be reached: {0}")]
    Unreachable(String),
    #[error("the agent did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the agent disconnected before answering")]
    Disconnected,
    #[error("the agent has too many commands pending")]
    Busy,
}

/// A replica where `host`'s agent is connecting asks the replica holding its session for
/// it, as NATS carries it.
#[derive(Debug, Serialize, Deserialize)]
struct Claim {
    /// The connecting agent process's `instance`.
    instance: Option<String>,
}

/// The holder's answer to a [`Claim`].
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
enum ClaimAnswer {
    /// The old session is closed: the newcomer may have the host.
    Released,
    /// Another agent process holds the host and is alive.
    Refused,
}

/// How long a replica waits for the holder's answer to a claim before letting the agent in
/// anyway (the holder is dying, or NATS is slow).
const CLAIM_TIMEOUT: Duration = Duration::from_secs(2);

/// What a session needs from the registry.
pub struct Connection {
    pub id: u64,
    pub commands: mpsc::Receiver<Command>,
    /// Fired when the registry wants this session closed (revoked, replaced).
    pub close: CancellationToken,
    /// Why `close` fired.
    pub reason: Arc<Mutex<String>>,
    /// When the session last heard from its agent; the session updates it.
    pub heard: Arc<Mutex<Instant>>,
    /// Linked: fires once this session takes its host's commands and claims from the
    /// other replicas.
    subscribed: Option<oneshot::Receiver<()>>,
}

impl Connection {
    /// Linked: waits (at most [`CLAIM_TIMEOUT`]) until this session answers for its host on
    /// NATS, so that a replica claiming the host from now on finds it. At once otherwise.
    pub async fn subscribed(&mut self) {
        if let Some(subscribed) = self.subscribed.take() {
            let _ = tokio::time::timeout(CLAIM_TIMEOUT, subscribed).await;
        }
    }
}

struct Entry {
    connection_id: u64,
    /// The agent process's `instance` from its hello.
    instance: Option<String>,
    heard: Arc<Mutex<Instant>>,
    name: HostName,
    serial: String,
    certificate_expires_s: i64,
    commands: mpsc::Sender<Command>,
    close: CancellationToken,
    reason: Arc<Mutex<String>>,
    pending: HashMap<u64, oneshot::Sender<CommandOutcome>>,
    /// What the agent announced it can do in its hello.
    capabilities: Vec<String>,
    /// What the agent last said it is doing.
    status: AgentStatus,
    /// Which `DockerHost` spec the agent runs.
    spec: AppliedSpec,
    /// Ends this session's answering of other replicas' commands.
    serving: CancellationToken,
}

impl Entry {
    /// Whether this session stays and a newcomer of agent process `instance` is refused:
    /// when both processes said who they are, they differ, and this one was heard from
    /// within [`ALIVE_WITHIN`]. A reconnection of the same process, an agent that said
    /// nothing about its process, or one gone without a goodbye gives way.
    fn keeps_against(&self, instance: &Option<String>) -> bool {
        self.instance.is_some()
            && instance.is_some()
            && self.instance != *instance
            && self.heard.lock().expect("heard lock").elapsed() < ALIVE_WITHIN
    }
}

/// Which `DockerHost` spec generation a connected agent runs, as far as this collector
/// knows: the one sent with its welcome or acknowledged after a change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedSpec {
    /// `None`: the collector's defaults, no resource's spec.
    pub generation: Option<i64>,
    /// The agent's refusal of `generation`'s settings, if it refused them.
    pub error: Option<String>,
}

impl AppliedSpec {
    /// What the agent runs after answering `outcome` to generation `generation`'s
    /// settings: that generation, with its refusal if it refused (observed and refused, it
    /// is not sent again until the spec changes).
    pub fn of(generation: i64, outcome: CommandOutcome) -> AppliedSpec {
        AppliedSpec {
            generation: Some(generation),
            error: match outcome {
                CommandOutcome::Done { .. } => None,
                CommandOutcome::Failed { message } => Some(message),
            },
        }
    }
}

/// An agent that is connected now, as its session describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectedAgent {
    pub capabilities: Vec<String>,
    pub status: AgentStatus,
    /// When the certificate it connected with expires (Unix seconds).
    pub certificate_expires_s: i64,
    pub spec: AppliedSpec,
}

#[derive(Clone, Default)]
pub struct Registry {
    entries: Arc<Mutex<HashMap<HostId, Entry>>>,
    next_id: Arc<AtomicU64>,
    /// The other replicas, when linked.
    link: Option<Link>,
}

#[derive(Clone)]
struct Link {
    broker: Broker,
    presence: Arc<Presence>,
}

/// A command for an agent connected to another replica, as NATS carries it.
#[derive(Debug, Serialize, Deserialize)]
struct RemoteCommand {
    action: CommandAction,
    timeout_ms: u64,
    /// When the asker stops waiting (Unix nanoseconds): a command that arrives later is
    /// dropped, never run after its asker was told it timed out.
    #[serde(default)]
    deadline_ns: Option<i64>,
    /// For settings: the `DockerHost` spec generation they are, which the replica holding
    /// the session records as applied once the agent answers ([`Registry::apply_spec`]).
    #[serde(default)]
    generation: Option<i64>,
}

impl Registry {
    /// A registry linked to the other replicas' through `broker`: commands reach agents
    /// connected to any of them, and [`Registry::agent`] and [`Registry::is_connected`] see
    /// those agents. The announcing of this replica's agents runs on `tracker` until
    /// `cancel`.
    pub fn linked(broker: Broker, tracker: &TaskTracker, cancel: CancellationToken) -> Registry {
        let mut registry = Registry::default();
        let presence = Presence::start(broker.clone(), tracker, cancel, {
            let entries = registry.entries.clone();
            move || Registry::agents_of(&entries)
        });
        registry.link = Some(Link { broker, presence });
        registry
    }

    /// The agents connected here, as [`Presence`] announces them.
    fn agents_of(entries: &Mutex<HashMap<HostId, Entry>>) -> Vec<(HostId, ConnectedAgent)> {
        entries
            .lock()
            .expect("registry lock")
            .iter()
            .map(|(host, entry)| (*host, Registry::describe(entry)))
            .collect()
    }

    fn describe(entry: &Entry) -> ConnectedAgent {
        ConnectedAgent {
            capabilities: entry.capabilities.clone(),
            status: entry.status.clone(),
            certificate_expires_s: entry.certificate_expires_s,
            spec: entry.spec.clone(),
        }
    }

    /// Registers a session for `host`: one host, one agent, one connection. An older
    /// session of the same agent process (a reconnection), of an agent that said nothing
    /// about its process, or of one not heard from for [`ALIVE_WITHIN`] (gone without a
    /// goodbye) is closed; the session of another agent process that is alive is kept, and
    /// this one refused.
    pub fn connect(
        &self,
        host: HostId,
        peer: &Peer,
        instance: Option<String>,
        capabilities: Vec<String>,
    ) -> Result<Connection, AlreadyConnected> {
        let mut entries = self.entries.lock().expect("registry lock");
        if entries
            .get(&host)
            .is_some_and(|old| old.keeps_against(&instance))
        {
            return Err(AlreadyConnected {
                host: peer.host.clone(),
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let close = CancellationToken::new();
        let reason = Arc::new(Mutex::new(String::new()));
        let heard = Arc::new(Mutex::new(Instant::now()));
        let serving = CancellationToken::new();
        let entry = Entry {
            connection_id: id,
            instance,
            heard: heard.clone(),
            name: peer.host.clone(),
            serial: peer.serial.clone(),
            certificate_expires_s: peer.not_after_s,
            commands,
            close: close.clone(),
            reason: reason.clone(),
            pending: HashMap::new(),
            capabilities,
            status: AgentStatus::default(),
            spec: AppliedSpec::default(),
            serving: serving.clone(),
        };
        if let Some(old) = entries.insert(host, entry) {
            *old.reason.lock().expect("reason lock") =
                "replaced by a newer connection of the same agent".into();
            old.close.cancel();
            old.serving.cancel();
        }
        drop(entries);
        let mut subscribed = None;
        if let Some(link) = &self.link {
            let (done, waiting) = oneshot::channel();
            subscribed = Some(waiting);
            tokio::spawn(self.clone().answer_commands(
                link.broker.clone(),
                host,
                id,
                serving,
                done,
            ));
            link.presence.changed();
        }
        Ok(Connection {
            id,
            subscribed,
            commands: receiver,
            close,
            reason,
            heard,
        })
    }

    /// Linked: after [`Registry::connect`] (and [`Connection::subscribed`]), asks the replica
    /// holding `host`'s session, if another does, to give it up, with the rule `connect`
    /// applies here: a session of
    /// another agent process that is alive is kept there, and this one refused; any other
    /// is closed there. An answer that does not come within [`CLAIM_TIMEOUT`], or NATS
    /// down, lets the agent in: its old replica is the one that cannot be asked.
    pub async fn claim(
        &self,
        host: HostId,
        peer: &Peer,
        instance: Option<String>,
    ) -> Result<(), AlreadyConnected> {
        let Some(link) = &self.link else {
            return Ok(());
        };
        let answer = link
            .broker
            .request::<ClaimAnswer>(
                &broker::claim_subject(host),
                &Claim { instance },
                CLAIM_TIMEOUT,
            )
            .await;
        match answer {
            Ok(ClaimAnswer::Refused) => Err(AlreadyConnected {
                host: peer.host.clone(),
            }),
            Ok(ClaimAnswer::Released) | Err(RequestError::NoResponders) => Ok(()),
            Err(error) => {
                warn!(host = %peer.host, %error, "cannot ask the other replicas about this agent's session; letting it in");
                Ok(())
            }
        }
    }

    /// Answers another replica's [`Claim`] on `host`'s session `connection_id`, held here:
    /// `None` when that session is no longer this host's here (a newer one answers). A
    /// session given up leaves the registry at once: commands for the host go to the new
    /// one, and this replica no longer announces it.
    fn answer_claim(&self, host: HostId, connection_id: u64, claim: &Claim) -> Option<ClaimAnswer> {
        let mut entries = self.entries.lock().expect("registry lock");
        let entry = entries
            .get(&host)
            .filter(|entry| entry.connection_id == connection_id)?;
        if entry.keeps_against(&claim.instance) {
            return Some(ClaimAnswer::Refused);
        }
        let entry = entries.remove(&host).expect("just found");
        drop(entries);
        *entry.reason.lock().expect("reason lock") =
            "replaced by a newer connection of the same agent to another replica".into();
        entry.close.cancel();
        entry.serving.cancel();
        self.announce();
        Some(ClaimAnswer::Released)
    }

    /// Forgets a session (when it ends); pending commands see `Disconnected`.
    pub fn disconnect(&self, host: HostId, connection_id: u64) {
        let mut entries = self.entries.lock().expect("registry lock");
        if entries
            .get(&host)
            .is_some_and(|e| e.connection_id == connection_id)
            && let Some(entry) = entries.remove(&host)
        {
            entry.serving.cancel();
            drop(entries);
            self.announce();
        }
    }

    /// Whether `host`'s agent is connected here or, linked, to another replica.
    pub fn is_connected(&self, host: HostId) -> bool {
        self.agent(host).is_some()
    }

    /// The connected agent of `host`, here or, linked, on another replica (as that replica
    /// last announced it).
    pub fn agent(&self, host: HostId) -> Option<ConnectedAgent> {
        let here = self
            .entries
            .lock()
            .expect("registry lock")
            .get(&host)
            .map(Registry::describe);
        here.or_else(|| self.link.as_ref()?.presence.agent(host))
    }

    /// Records which spec a session's agent runs (see [`AppliedSpec`]).
    pub fn set_applied_spec(&self, host: HostId, connection_id: u64, spec: AppliedSpec) {
        self.update_session(host, connection_id, |entry| entry.spec = spec);
        self.announce();
    }

    /// Linked: tells the other replicas soon what changed about this replica's agents.
    fn announce(&self) {
        if let Some(link) = &self.link {
            link.presence.changed();
        }
    }

    /// The id of `host`'s session here, to tie later updates to it.
    pub fn connection_id(&self, host: HostId) -> Option<u64> {
        self.entries
            .lock()
            .expect("registry lock")
            .get(&host)
            .map(|entry| entry.connection_id)
    }

    /// Keeps what a session's agent last reported about itself.
    pub fn set_status(&self, host: HostId, connection_id: u64, status: AgentStatus) {
        self.update_session(host, connection_id, |entry| entry.status = status);
    }

    /// Changes `host`'s entry if it still belongs to session `connection_id` (a newer
    /// session of the host is left alone).
    fn update_session(&self, host: HostId, connection_id: u64, update: impl FnOnce(&mut Entry)) {
        if let Some(entry) = self
            .entries
            .lock()
            .expect("registry lock")
            .get_mut(&host)
            .filter(|entry| entry.connection_id == connection_id)
        {
            update(entry);
        }
    }

    /// How many agents are connected to this replica.
    pub fn connected(&self) -> usize {
        self.entries.lock().expect("registry lock").len()
    }

    /// Closes the sessions of these host names or certificate serials.
    pub fn close_matching(&self, names: &[String], serials: &[String], reason: &str) -> usize {
        let entries = self.entries.lock().expect("registry lock");
        let mut closed = 0;
        for entry in entries.values() {
            if names.iter().any(|n| n == entry.name.as_str()) || serials.contains(&entry.serial) {
                *entry.reason.lock().expect("reason lock") = reason.to_owned();
                entry.close.cancel();
                closed += 1;
            }
        }
        closed
    }

    /// Sends a command to a host's agent, here or, linked, on whichever replica holds it,
    /// and waits up to `timeout` for its outcome (for an agent elsewhere, the answer may
    /// take [`REMOTE_MARGIN`] longer to come back). `NotConnected` when it is connected
    /// nowhere, at once.
    pub async fn command(
        &self,
        host: HostId,
        action: CommandAction,
        timeout: Duration,
    ) -> Result<CommandOutcome, CommandError> {
        self.command_anywhere(host, action, timeout, None).await
    }

    /// Sends `config`, generation `generation` of the host's `DockerHost` spec, to its agent
    /// wherever it is connected; the replica holding the session records what the agent
    /// runs afterwards ([`AppliedSpec`]), which is returned: the generation, with the
    /// agent's refusal if it refused. Errors as [`Registry::command`]'s (not acknowledged:
    /// nothing recorded).
    pub async fn apply_spec(
        &self,
        host: HostId,
        config: AgentConfig,
        generation: i64,
        timeout: Duration,
    ) -> Result<AppliedSpec, CommandError> {
        let action = CommandAction::SetConfig(config);
        let outcome = self
            .command_anywhere(host, action, timeout, Some(generation))
            .await?;
        Ok(AppliedSpec::of(generation, outcome))
    }

    async fn command_anywhere(
        &self,
        host: HostId,
        action: CommandAction,
        timeout: Duration,
        generation: Option<i64>,
    ) -> Result<CommandOutcome, CommandError> {
        let here = self
            .entries
            .lock()
            .expect("registry lock")
            .contains_key(&host);
        match &self.link {
            Some(link) if !here => {
                let request = RemoteCommand {
                    action,
                    timeout_ms: timeout.as_millis() as u64,
                    deadline_ns: Some(
                        dockermon_proto::now_ns() + (timeout + REMOTE_MARGIN).as_nanos() as i64,
                    ),
                    generation,
                };
                let subject = broker::command_subject(host);
                match link
                    .broker
                    .request(&subject, &request, timeout + REMOTE_MARGIN)
                    .await
                {
                    Ok(answer) => answer,
                    Err(RequestError::NoResponders) => Err(CommandError::NotConnected),
                    Err(RequestError::TimedOut) => Err(CommandError::Timeout(timeout)),
                    Err(RequestError::Failed(reason)) => Err(CommandError::Unreachable(reason)),
                }
            }
            _ => self.command_here(host, action, timeout, generation).await,
        }
    }

    /// Answers other replicas' commands for `host`'s agent, connected here, until `stop`.
    async fn answer_commands(
        self,
        broker: Broker,
        host: HostId,
        connection_id: u64,
        stop: CancellationToken,
        ready: oneshot::Sender<()>,
    ) {
        use futures::StreamExt;
        let (commands, claims) = (broker::command_subject(host), broker::claim_subject(host));
        let subscribed = tokio::try_join!(
            broker.subscribe::<RemoteCommand>(&commands),
            broker.subscribe::<Claim>(&claims),
        );
        let (requests, claims) = match subscribed {
            Ok(subscriptions) => subscriptions,
            Err(error) => {
                warn!(host = host.0, %error, "cannot take commands from other replicas for this agent");
                return;
            }
        };
        // The server has the subscriptions once it answered a flush.
        broker.flush().await;
        let _ = ready.send(());
        let (mut requests, mut claims) = (std::pin::pin!(requests), std::pin::pin!(claims));
        loop {
            let (request, reply) = tokio::select! {
                // A replaced session's subscription must not take a command that the new
                // one takes too: the agent would run it twice.
                biased;
                () = stop.cancelled() => return,
                claim = claims.next() => {
                    match claim {
                        Some((claim, Some(reply))) => {
                            if let Some(answer) = self.answer_claim(host, connection_id, &claim) {
                                broker.reply(reply, &answer).await;
                            }
                        }
                        Some((_, None)) => {}
                        None => return,
                    }
                    continue;
                }
                request = requests.next() => match request {
                    Some(request) => request,
                    None => return,
                },
            };
            let Some(reply) = reply else { continue };
            if stop.is_cancelled() {
                return;
            }
            let now = dockermon_proto::now_ns();
            let left = request.deadline_ns.map(|deadline| deadline - now);
            if left.is_some_and(|left| left <= 0) {
                warn!(
                    host = host.0,
                    "a command from another replica arrived after its asker gave up; not run"
                );
                continue;
            }
            let (registry, broker) = (self.clone(), broker.clone());
            tokio::spawn(async move {
                let mut timeout = Duration::from_millis(request.timeout_ms);
                if let Some(left) = left {
                    // The asker's wait includes the way here and back.
                    let left = Duration::from_nanos(left as u64);
                    timeout = timeout.min(left.saturating_sub(REMOTE_MARGIN / 2));
                }
                let outcome = registry
                    .command_here(host, request.action, timeout, request.generation)
                    .await;
                broker.reply(reply, &outcome).await;
            });
        }
    }

    /// Sends a command to a host's agent connected here and waits for its outcome; with a
    /// `generation`, records the settings' outcome as the session's [`AppliedSpec`].
    async fn command_here(
        &self,
        host: HostId,
        action: CommandAction,
        timeout: Duration,
        generation: Option<i64>,
    ) -> Result<CommandOutcome, CommandError> {
        let outcome = self.send_here(host, action, timeout).await?;
        if let Some(generation) = generation
            && let Some(entry) = self.entries.lock().expect("registry lock").get_mut(&host)
        {
            entry.spec = AppliedSpec::of(generation, outcome.clone());
        }
        if generation.is_some() {
            self.announce();
        }
        Ok(outcome)
    }

    async fn send_here(
        &self,
        host: HostId,
        action: CommandAction,
        timeout: Duration,
    ) -> Result<CommandOutcome, CommandError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (done, outcome) = oneshot::channel();
        let sender = {
            let mut entries = self.entries.lock().expect("registry lock");
            let entry = entries.get_mut(&host).ok_or(CommandError::NotConnected)?;
            entry.pending.insert(id, done);
            entry.commands.clone()
        };
        let command = Command {
            id,
            timeout_ms: timeout.as_millis() as u64,
            action,
        };
        if sender.try_send(command).is_err() {
            self.forget_command(host, id);
            return Err(CommandError::Busy);
        }
        match tokio::time::timeout(timeout, outcome).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => Err(CommandError::Disconnected),
            Err(_) => {
                self.forget_command(host, id);
                Err(CommandError::Timeout(timeout))
            }
        }
    }

    /// Delivers an agent's answer to whoever is waiting for it.
    pub fn complete(&self, host: HostId, id: u64, outcome: CommandOutcome) {
        let waiter = self
            .entries
            .lock()
            .expect("registry lock")
            .get_mut(&host)
            .and_then(|entry| entry.pending.remove(&id));
        if let Some(waiter) = waiter {
            let _ = waiter.send(outcome);
        }
    }

    fn forget_command(&self, host: HostId, id: u64) {
        if let Some(entry) = self.entries.lock().expect("registry lock").get_mut(&host) {
            entry.pending.remove(&id);
        }
    }
}

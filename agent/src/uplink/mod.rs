//! The uplink: delivers records to the collector without losing them.
//!
//! Records from the agent's tasks are grouped into frames (up to 1,000 records, or what
//! arrived within 200 ms; periodic and essential records never share a frame, so the spool
//! can drop the former first), written to the on-disk [`spool`] and only then sent. Frames
//! leave the spool when the collector acknowledges them, which it does only after storing
//! them. So a frame survives a collector crash, a network cut and an agent restart, and the
//! collector recognises re-deliveries by sequence number.
//!
//! Connection: reconnect with exponential backoff and jitter; at most [`WINDOW`] frames in
//! flight; a ping every 15 s, and a connection silent for 45 s is dead. The collector's
//! welcome carries the collection settings, applied at once; `set_config` commands change
//! them later; container commands go to the [`crate::actions`] task and profile commands
//! to the [`crate::profiler`], and their results come back through the uplink. Live
//! profile samples are forwarded as they come while connected, and dropped otherwise (they
//! also travel in spooled frames). The agent's status (profiles, Docker streams, spool
//! backlog) goes out when the profiler's changes and with every heartbeat. Renewal of the
//! agent's certificate is checked hourly.

mod connection;
pub mod fragments;
pub mod identity;
pub mod spool;
mod tls_failure;
pub mod url;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use dockermon_proto::transport::{
    AgentConfig, AgentMessage, AgentStatus, CAPABILITY_PAUSE, CAPABILITY_PROFILE, CollectorMessage,
    Command, CommandAction, CommandOutcome, CommandResult, Hello, LiveProfileSample,
};
use dockermon_proto::{PROTOCOL_VERSION, Record};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::backoff::{Backoff, sleep_unless_cancelled};
use crate::config::CollectConfig;
use crate::profiler::ProfilerStatus;
use connection::{Session, SessionEnd};
pub use identity::{Enrollment, Identity, IdentityError, IdentityFiles};
use spool::{FrameClass, Spool};
pub use url::{CollectorUrl, Collectors};

/// Records per frame at most.
const MAX_RECORDS_PER_FRAME: usize = 1000;
/// How long the first record of a frame waits for company.
const FLUSH_AFTER: Duration = Duration::from_millis(200);
/// Frames sent but not yet acknowledged, at most.
pub const WINDOW: u64 = 64;
const PING_EVERY: Duration = Duration::from_secs(15);
const DEAD_AFTER: Duration = Duration::from_secs(45);
const RENEWAL_CHECK: Duration = Duration::from_secs(3600);
/// A session that lasts this long resets the reconnection backoff.
const HEALTHY_SESSION: Duration = Duration::from_secs(10);
/// The collector's refusals that enrolling again can cure (the host re-admitted).
const REVOKED: &[&str] = &["certificate_revoked", "host_revoked"];

#[derive(Debug, Clone, PartialEq)]
pub struct UplinkConfig {
    /// The collector's addresses (replicas): the agent reports to one and moves on to the
    /// next when it cannot connect.
    pub collector: Collectors,
    pub identity: Identity,
    /// How to get a certificate when there is none, or it was revoked.
    pub enrollment: Option<Enrollment>,
    pub spool_dir: PathBuf,
    pub spool_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("cannot get a certificate")]
    Identity(#[from] IdentityError),
    #[error("cannot open the spool")]
    Spool(#[from] spool::SpoolError),
}

/// The collection settings an agent config from the collector stands for, if sane.
pub fn collect_config(config: &AgentConfig) -> Result<CollectConfig, String> {
    let stats_interval = Duration::from_millis(config.stats_interval_ms);
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&stats_interval) {
        return Err(format!(
            "stats interval {stats_interval:?} is out of range (1s to 1h)"
        ));
    }
    if !(1..=1024).contains(&config.stats_concurrency) {
        return Err(format!(
            "stats concurrency {} is out of range (1 to 1024)",
            config.stats_concurrency
        ));
    }
    Ok(CollectConfig {
        stats_interval,
        stats_concurrency: config.stats_concurrency as usize,
        usage_interval: config
            .usage_interval_ms
            .map(Duration::from_millis)
            .map(|d| d.max(Duration::from_secs(1))),
        usage_timeout: Duration::from_millis(config.usage_timeout_ms)
            .clamp(Duration::from_secs(1), Duration::from_secs(600)),
        paused: config.paused,
    })
}

/// Frames records as they come, spools and delivers them until `cancel` fires or the
/// record channel closes.
pub async fn run(
    config: UplinkConfig,
    mut records: mpsc::Receiver<Record>,
    collect: watch::Sender<CollectConfig>,
    tasks: TaskChannels,
    cancel: CancellationToken,
) -> Result<(), UplinkError> {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    // A random first address spreads a fleet over the replicas.
    let mut addresses = Rotation::new(config.collector.urls().len());
    loop {
        let collector = &config.collector.urls()[addresses.current()];
        match config
            .identity
            .ensure(collector, config.enrollment.as_ref())
            .await
        {
            Ok(()) => {
                addresses.succeeded();
                break;
            }
            Err(error) if error.is_transient() => {
                let next_now = addresses.failed();
                warn!(%collector, error = %crate::process::error_chain(&error), "cannot enroll yet; retrying");
                if !next_now && !sleep_unless_cancelled(backoff.next_delay(), &cancel).await {
                    return Ok(());
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
    backoff.reset();
    let mut spool = Spool::open(&config.spool_dir, config.spool_bytes)?;
    let uplink = Uplink {
        config,
        instance: format!("{:016x}", rand::random::<u64>()),
        token_refused: false,
        spool,
        pending: Vec::new(),
        pending_since: None,
        session: None,
        sent_up_to: 0,
        last_heard: Instant::now(),
        connected_at: Instant::now(),
        reconnect_at: Instant::now(),
        backoff,
        addresses,
        collect,
        tasks,
    };
    spool = uplink.run(&mut records, &cancel).await;
    drop(spool);
    Ok(())
}

struct Uplink {
    config: UplinkConfig,
    /// This process among agents presenting the same certificate (see `Hello::instance`).
    instance: String,
    /// The collector refused the join token when enrolling again.
    token_refused: bool,
    spool: Spool,
    pending: Vec<Record>,
    pending_since: Option<Instant>,
    session: Option<Session>,
    sent_up_to: u64,
    last_heard: Instant,
    connected_at: Instant,
    reconnect_at: Instant,
    backoff: Backoff,
    /// Which of the collector's addresses is in use.
    addresses: Rotation,
    collect: watch::Sender<CollectConfig>,
    tasks: TaskChannels,
}

/// Which of several addresses to use: the same one while it works; after a failure each
/// other one, at once, in a random order (so that the agents of a replica that died spread
/// over the others instead of all moving to the same one), and only after every one failed
/// in a row, a pause (the backoff).
#[derive(Debug)]
struct Rotation {
    count: usize,
    current: usize,
    /// The addresses this round has yet to try, next last.
    untried: Vec<usize>,
    /// Whether a round of failures is under way.
    in_round: bool,
}

impl Rotation {
    /// Starts at a random address of `count` (at least one).
    fn new(count: usize) -> Rotation {
        Rotation {
            count,
            current: rand::random_range(0..count),
            untried: Vec::new(),
            in_round: false,
        }
    }

    fn current(&self) -> usize {
        self.current
    }

    /// The current address works.
    fn succeeded(&mut self) {
        self.in_round = false;
        self.untried.clear();
    }

    /// The current address failed: moves to another. Whether to try it at once (true), or
    /// to pause first because every address failed in this round.
    fn failed(&mut self) -> bool {
        if !self.in_round {
            self.in_round = true;
            self.untried = (0..self.count).filter(|&i| i != self.current).collect();
            // Fisher-Yates.
            for i in (1..self.untried.len()).rev() {
                let j = rand::random_range(0..=i);
                self.untried.swap(i, j);
            }
        }
        match self.untried.pop() {
            Some(next) => {
                self.current = next;
                true
            }
            None => {
                // Every address failed: pause; the next round starts from the last one.
                self.in_round = false;
                false
            }
        }
    }
}

/// The uplink's ends of the channels to the tasks that serve the collector's commands.
pub struct TaskChannels {
    /// Container commands go to the actions task.
    pub actions: mpsc::Sender<Command>,
    /// Profile commands go to the profiler.
    pub profiles: mpsc::Sender<Command>,
    /// Both answer here.
    pub results: mpsc::Receiver<CommandResult>,
    /// Live profile samples, forwarded while connected.
    pub live: mpsc::Receiver<LiveProfileSample>,
    /// The profiler's sessions and streams, for hellos and status messages.
    pub profiler: watch::Receiver<ProfilerStatus>,
    /// Whether a collector session is up: profiles end when it has been down too long.
    pub connected: watch::Sender<bool>,
}

impl Uplink {
    async fn run(
        mut self,
        records: &mut mpsc::Receiver<Record>,
        cancel: &CancellationToken,
    ) -> Spool {
        let mut ping = tokio::time::interval(PING_EVERY);
        let mut renewal = tokio::time::interval(RENEWAL_CHECK);
        loop {
            if self.session.is_none() && Instant::now() >= self.reconnect_at {
                tokio::select! {
                    () = cancel.cancelled() => return self.finish().await,
                    () = self.connect() => {}
                }
            }
            self.send_window();
            let flush_at = self.pending_since.map(|since| since + FLUSH_AFTER);
            tokio::select! {
                () = cancel.cancelled() => return self.finish().await,
                record = records.recv() => match record {
                    Some(record) => self.take(record),
                    None => return self.finish().await,
                },
                () = sleep_until(flush_at), if flush_at.is_some() => self.seal(),
                message = next_message(&mut self.session), if self.session.is_some() => self.handle(message).await,
                () = tokio::time::sleep_until(self.reconnect_at.into()), if self.session.is_none() => {}
                _ = ping.tick(), if self.session.is_some() => self.heartbeat(),
                _ = renewal.tick() => self.renew_if_due().await,
                Some(result) = self.tasks.results.recv() => self.answer(result),
                Some(sample) = self.tasks.live.recv() => self.forward_live(sample),
                Ok(()) = self.tasks.profiler.changed() => self.send_status(),
            }
        }
    }

    /// Adds a record to the frame being built; seals it when full or when the record is of
    /// another class.
    fn take(&mut self, record: Record) {
        if let Some(first) = self.pending.first()
            && FrameClass::of(first) != FrameClass::of(&record)
        {
            self.seal();
        }
        self.pending.push(record);
        self.pending_since.get_or_insert_with(Instant::now);
        if self.pending.len() >= MAX_RECORDS_PER_FRAME {
            self.seal();
        }
    }

    /// Writes the frame being built to the spool.
    fn seal(&mut self) {
        self.pending_since = None;
        if self.pending.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.pending);
        let count = records.len();
        if let Err(error) = self.spool.append(records) {
            // A full or broken disk: the records are lost, loudly.
            error!(error = %crate::process::error_chain(&error), records = count, "cannot spool records; they are lost");
        }
    }

    /// Sends spooled frames while the window allows.
    fn send_window(&mut self) {
        let Some(session) = &self.session else { return };
        while self.sent_up_to < self.spool.acked() + WINDOW {
            match self.spool.next_after(self.sent_up_to) {
                Ok(Some((seq, text))) => {
                    if !session.try_send(text) {
                        break;
                    }
                    self.sent_up_to = seq;
                }
                Ok(None) => break,
                Err(error) => {
                    warn!(error = %crate::process::error_chain(&error), "cannot read the spool");
                    break;
                }
            }
        }
    }

    async fn connect(&mut self) {
        let tls = match self.config.identity.client_config() {
            Ok(tls) => tls,
            Err(error) => {
                error!(error = %crate::process::error_chain(&error), "cannot load this agent's certificate");
                self.reconnect_at = Instant::now() + self.backoff.next_delay();
                return;
            }
        };
        let hello = Hello {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol_version: PROTOCOL_VERSION,
            capabilities: vec![CAPABILITY_PROFILE.to_owned(), CAPABILITY_PAUSE.to_owned()],
            profiles: self.tasks.profiler.borrow().sessions.clone(),
            instance: Some(self.instance.clone()),
        };
        let collector = self.collector().clone();
        match connection::open(&collector, tls, hello).await {
            Ok(session) => {
                self.addresses.succeeded();
                let welcome = session.welcome.clone();
                if let Err(error) = self.spool.welcome(welcome.last_seq) {
                    warn!(error = %crate::process::error_chain(&error), "cannot update the spool");
                }
                self.apply(&welcome.config);
                self.sent_up_to = self.spool.acked();
                self.last_heard = Instant::now();
                self.connected_at = Instant::now();
                info!(%collector, host = %welcome.host, last_seq = welcome.last_seq, spooled = self.spool.len(), "connected to the collector");
                self.session = Some(session);
                self.tasks.connected.send_replace(true);
                self.send_status();
            }
            Err(connection::ConnectError::Refused {
                code: Some(code),
                message,
            }) if REVOKED.contains(&code.as_str())
                && self.config.enrollment.is_some()
                && !self.token_refused =>
            {
                self.enroll_again(&message).await;
            }
            Err(error) => {
                if self.addresses.failed() {
                    warn!(%collector, %error, next = %self.collector(), "cannot connect to the collector; trying its next address");
                    self.reconnect_at = Instant::now();
                } else {
                    let delay = self.backoff.next_delay();
                    warn!(%collector, %error, retry_in_ms = delay.as_millis() as u64, spooled = self.spool.len(), "cannot connect to the collector");
                    self.reconnect_at = Instant::now() + delay;
                }
            }
        }
    }

    /// The collector address in use.
    fn collector(&self) -> &CollectorUrl {
        &self.config.collector.urls()[self.addresses.current()]
    }

    /// This agent's certificate was revoked (its host deleted) and it can enroll: the host
    /// may have been re-admitted, so enroll again and connect. The spool is kept: what it
    /// holds is delivered under the new certificate.
    async fn enroll_again(&mut self, refusal: &str) {
        let enrollment = self
            .config
            .enrollment
            .as_ref()
            .expect("checked by the caller");
        match enrollment {
            Enrollment::JoinToken(_) => {
                info!(reason = %refusal, "this agent's certificate was revoked; trying the join token to enroll again");
            }
            Enrollment::ServiceAccount { .. } => {
                info!(reason = %refusal, "this agent's certificate was revoked; trying the ServiceAccount token to enroll again");
            }
        }
        match self
            .config
            .identity
            .enroll(self.collector(), enrollment)
            .await
        {
            Ok(()) => self.reconnect_at = Instant::now(),
            Err(error) => {
                // A refused token stays refused: not tried again by this process.
                self.token_refused = !error.is_transient();
                let delay = self.backoff.next_delay();
                if error.is_transient() {
                    warn!(error = %crate::process::error_chain(&error), retry_in_ms = delay.as_millis() as u64, "cannot enroll again yet; retrying");
                } else {
                    let advice = match enrollment {
                        Enrollment::JoinToken(_) => {
                            "cannot enroll again: create a new join token (`dockermon-collector token create --host NAME`) and restart the agent with it"
                        }
                        Enrollment::ServiceAccount { .. } => {
                            "cannot enroll again: if the host was deleted, creating a join token for it (`dockermon-collector token create --host NAME`) lifts the refusal; if the name belongs to an agent admitted with a join token, `dockermon-collector host delete NAME` frees it; then restart this agent's pod"
                        }
                    };
                    error!(error = %crate::process::error_chain(&error), "{advice}");
                }
                self.reconnect_at = Instant::now() + delay;
            }
        }
    }

    fn disconnect(&mut self, reason: &str) {
        self.session = None;
        self.tasks.connected.send_replace(false);
        // A session that lasted was a success: start the backoff over. One closed right
        // away (a refusal, a protocol error) keeps growing it.
        if self.connected_at.elapsed() >= HEALTHY_SESSION {
            self.backoff.reset();
        }
        let delay = self.backoff.next_delay();
        warn!(%reason, retry_in_ms = delay.as_millis() as u64, "disconnected from the collector");
        self.reconnect_at = Instant::now() + delay;
    }

    async fn handle(&mut self, message: Result<Option<CollectorMessage>, SessionEnd>) {
        self.last_heard = Instant::now();
        match message {
            Ok(None) => {}
            Ok(Some(CollectorMessage::Ack { seq })) => {
                if let Err(error) = self.spool.acknowledge(seq) {
                    warn!(error = %crate::process::error_chain(&error), "cannot update the spool");
                }
                debug!(seq, spooled = self.spool.len(), "acknowledged");
            }
            Ok(Some(CollectorMessage::Command(command))) => {
                let id = command.id;
                let outcome = match command.action {
                    CommandAction::Container { .. } => match self.tasks.actions.try_send(command) {
                        // Answered later, from the actions task.
                        Ok(()) => return,
                        Err(_) => CommandOutcome::Failed {
                            message: "too many container actions pending on this agent".into(),
                        },
                    },
                    CommandAction::ProfileStart(_) | CommandAction::ProfileStop { .. } => {
                        match self.tasks.profiles.try_send(command) {
                            // Answered later, from the profiler.
                            Ok(()) => return,
                            Err(_) => CommandOutcome::Failed {
                                message: "too many profile commands pending on this agent".into(),
                            },
                        }
                    }
                    CommandAction::SetConfig(config) => match collect_config(&config) {
                        Ok(collect) => {
                            info!(?collect, "collection settings changed by the collector");
                            self.collect.send_replace(collect);
                            CommandOutcome::Done { detail: None }
                        }
                        Err(message) => CommandOutcome::Failed { message },
                    },
                };
                self.answer(CommandResult { id, outcome });
            }
            Ok(Some(CollectorMessage::Refused { reason })) => {
                self.disconnect(&format!("refused: {reason}"))
            }
            Ok(Some(CollectorMessage::Welcome(_))) => self.disconnect("unexpected second welcome"),
            Err(SessionEnd::Closed(reason)) => {
                self.disconnect(&format!("closed by the collector: {reason}"))
            }
            Err(SessionEnd::Broken(reason)) => self.disconnect(&reason),
        }
    }

    /// Sends a command's result; lost if the session is gone, and the collector then
    /// reports the command as interrupted.
    fn answer(&self, result: CommandResult) {
        if let Some(session) = &self.session {
            session.send_message(&AgentMessage::CommandResult(result));
        }
    }

    fn apply(&mut self, config: &AgentConfig) {
        match collect_config(config) {
            Ok(collect) => {
                self.collect.send_if_modified(|current| {
                    let changed = *current != collect;
                    *current = collect;
                    changed
                });
            }
            Err(message) => warn!(%message, "ignoring the collector's collection settings"),
        }
    }

    fn heartbeat(&mut self) {
        if self.last_heard.elapsed() > DEAD_AFTER {
            self.disconnect("the collector stopped answering");
        } else if let Some(session) = &self.session {
            session.ping();
            self.send_status();
        }
    }

    /// A live profile sample goes out now, or not at all: the spool has it anyway.
    fn forward_live(&self, sample: LiveProfileSample) {
        if let Some(session) = &self.session {
            session.send_message(&AgentMessage::ProfileSample(sample));
        }
    }

    fn send_status(&self) {
        let Some(session) = &self.session else { return };
        let profiler = self.tasks.profiler.borrow().clone();
        session.send_message(&AgentMessage::Status(AgentStatus {
            profiles: profiler.sessions,
            docker_streams: profiler.docker_streams,
            spool_frames: self.spool.len() as u64,
            spool_bytes: self.spool.bytes(),
        }));
    }

    async fn renew_if_due(&mut self) {
        match self.config.identity.renew_at() {
            Ok(Some(at)) if SystemTime::now() >= at => {
                if let Err(error) = self.config.identity.renew(self.collector()).await {
                    warn!(error = %crate::process::error_chain(&error), "certificate renewal failed; retrying in an hour");
                }
            }
            Ok(_) => {}
            Err(error) => {
                warn!(error = %crate::process::error_chain(&error), "cannot read this agent's certificate")
            }
        }
    }

    /// On shutdown: what is being built goes to the spool (delivered after the restart).
    async fn finish(mut self) -> Spool {
        self.seal();
        if let Some(session) = self.session.take() {
            session.close().await;
        }
        self.spool
    }
}

async fn next_message(
    session: &mut Option<Session>,
) -> Result<Option<CollectorMessage>, SessionEnd> {
    match session {
        Some(session) => session.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::Rotation;

    #[test]
    fn a_failed_address_gives_way_to_the_others_and_a_failed_round_to_a_pause() {
        let mut rotation = Rotation::new(3);
        let first = rotation.current();
        let mut tried = vec![first];
        assert!(rotation.failed(), "another address is tried at once");
        tried.push(rotation.current());
        assert!(rotation.failed(), "and the last one too");
        tried.push(rotation.current());
        tried.sort();
        assert_eq!(tried, [0, 1, 2], "every address once");
        assert!(!rotation.failed(), "all three failed: pause");
        // A success keeps the address and starts the round over.
        assert!(rotation.failed());
        rotation.succeeded();
        let working = rotation.current();
        assert!(rotation.failed());
        assert!(rotation.failed());
        assert!(!rotation.failed());
        assert_ne!(rotation.current(), working, "it moved on, and pauses there");

        // One address: every failure pauses.
        let mut alone = Rotation::new(1);
        assert!(!alone.failed());
        assert_eq!(alone.current(), 0);
    }

    #[test]
    fn the_agents_of_a_dead_address_spread_over_the_others() {
        // 300 agents on address 0 of 4, which dies: where each goes first.
        let mut first_choice = [0usize; 4];
        for _ in 0..300 {
            let mut rotation = Rotation::new(4);
            rotation.current = 0;
            assert!(rotation.failed());
            first_choice[rotation.current()] += 1;
        }
        assert_eq!(first_choice[0], 0);
        for survivor in &first_choice[1..] {
            assert!(*survivor > 50, "{first_choice:?}");
        }
    }
}

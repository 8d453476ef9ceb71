//! The profiler, collector side: starts, joins and stops profile sessions, routes their
//! live samples to watchers, and ends sessions nobody watches or whose agent is gone.
//!
//! Who owns what:
//! - The store owns a session's state. A session is created `running` before its agent is
//!   asked to start it (the agent needs its id) and ends exactly once (see
//!   [`crate::store::ProfileEnding`]); a container has at most one running session, across
//!   replicas, so a second start joins the first.
//! - The agent owns the Docker stream and the samples. It ends a session on its own when
//!   the duration is over, the container stops, or it has been cut off from every collector
//!   for the grace period; a stop from here makes it send its last samples with the reason
//!   given, and the session's row is ended when that last batch is committed.
//! - This service ends a session directly only when the agent cannot: it is not connected
//!   (stopped, or `interrupted` after the grace period), or it restarted and no longer has
//!   the session (its hello lists what it still runs).
//!
//! Every replica tracks every running session (starts and ends travel on the
//! [`LiveBus`]) and publishes how many of its WebSocket clients watch each one, so the
//! "nobody watches" rule counts watchers on all replicas.

mod tracker;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dockermon_proto::transport::{CAPABILITY_PROFILE, CommandAction, CommandOutcome, ProfileStart};
use dockermon_proto::{ContainerId, ProfileEndReason, now_ns};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::live::{LiveBus, LiveProfileSample, LiveUpdate, ProfileChange, ProfileChangeKind};
use crate::store::{
    ContainerKey, HostId, NewProfile, ProfileEnding, ProfileOrigin, ProfileRow, ProfileState,
    Store, StoreError, UserAction,
};
use crate::transport::{CommandError, Registry};
use tracker::{Due, Tracker};

/// How often sessions are checked for watchers and agents.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How often this replica repeats its watcher counts for the others.
const WATCHERS_EVERY: Duration = Duration::from_secs(5);
/// How long an agent has to answer a start or stop.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stop waits for the session's last samples to be committed.
const LAST_BATCH_WAIT: Duration = Duration::from_secs(10);

/// The profiler's bounds and timings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSettings {
    /// Running sessions per host (its agent enforces its own limit too).
    pub max_per_host: u64,
    /// Running sessions one user has started.
    pub max_per_user: u64,
    /// The longest a session runs; also the duration of sessions started without one.
    pub max_duration: Duration,
    /// How long a WebSocket-started session outlives its last watcher, and how long a
    /// session outlives its agent's disconnection.
    pub grace: Duration,
}

impl Default for ProfileSettings {
    fn default() -> Self {
        ProfileSettings {
            max_per_host: 8,
            max_per_user: 4,
            max_duration: Duration::from_secs(3600),
            grace: Duration::from_secs(10),
        }
    }
}

/// Shortest and longest interval between samples.
pub const INTERVAL_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(10);

/// Who acts, for the activity log.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The user's id; `None` for a resource (a `ProfileSession`), which no user limit
    /// counts.
    pub id: Option<i64>,
    /// The user's email, or the resource (`ProfileSession default/api-cpu`).
    pub name: String,
}

/// A request to profile a container.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub container: ContainerKey,
    pub actor: Actor,
    pub origin: ProfileOrigin,
    /// Default (and at most): [`ProfileSettings::max_duration`].
    pub duration: Option<Duration>,
    /// Default 1 s; 1 to 10 s.
    pub interval: Option<Duration>,
}

/// A session that was started, or joined because the container already had one.
#[derive(Debug, Clone)]
pub struct Started {
    pub profile: ProfileRow,
    pub joined: bool,
}

/// Why a profile cannot be started or stopped. Each maps to one API answer.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{0}")]
    BadRequest(String),
    #[error("no such container or profile")]
    NotFound,
    #[error("the container was removed")]
    ContainerRemoved,
    #[error("the container is not running")]
    ContainerNotRunning,
    #[error("the host's agent is not connected")]
    AgentNotConnected,
    #[error("the host's agent is too old to profile; upgrade it")]
    AgentTooOld,
    #[error("the host already runs {0} profile sessions, the limit")]
    HostBusy(u64),
    #[error("you already run {0} profile sessions, the limit; stop one first")]
    UserBusy(u64),
    #[error("the agent refused: {0}")]
    Refused(String),
    #[error("the agent did not answer: {0}")]
    Agent(CommandError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct Profiler {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    registry: Registry,
    live: LiveBus,
    settings: ProfileSettings,
    /// Names this replica in watcher counts.
    replica: u64,
    tracker: Mutex<Tracker>,
    /// Sessions whose start command is in flight: not to be reconciled away.
    starting: Mutex<HashSet<i64>>,
}

impl Profiler {
    pub fn new(
        store: Store,
        registry: Registry,
        live: LiveBus,
        settings: ProfileSettings,
    ) -> Profiler {
        Profiler {
            inner: Arc::new(Inner {
                store,
                registry,
                live,
                settings,
                replica: rand::random(),
                tracker: Mutex::default(),
                starting: Mutex::default(),
            }),
        }
    }

    pub fn settings(&self) -> &ProfileSettings {
        &self.inner.settings
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.inner.tracker.lock().expect("profile tracker lock")
    }

    /// Picks up the running sessions from the store, then follows starts, ends and
    /// watchers, and ends sessions that are due, until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let mut updates = self.inner.live.subscribe();
        loop {
            match self.inner.store.running_profiles().await {
                Ok(running) => {
                    let now = Instant::now();
                    let mut tracker = self.tracker();
                    for profile in running {
                        tracker.started(
                            profile.id,
                            profile.host_id,
                            profile.container_id,
                            profile.origin == ProfileOrigin::Websocket,
                            now,
                        );
                    }
                    break;
                }
                Err(error) => {
                    warn!(%error, "cannot load running profile sessions; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                }
            }
        }
        let mut check = tokio::time::interval(CHECK_EVERY);
        let mut announce = tokio::time::interval(WATCHERS_EVERY);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                update = updates.recv() => match update {
                    Ok(update) => self.follow(&update),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        debug!(missed, "profiler missed live updates");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = check.tick() => self.act_on_due(),
                _ = announce.tick() => self.announce_watchers(),
            }
        }
    }

    fn follow(&self, update: &LiveUpdate) {
        match update {
            LiveUpdate::Profile(change) => match &change.change {
                ProfileChangeKind::Started {
                    ends_without_watchers,
                } => self.tracker().started(
                    change.profile_id,
                    change.host,
                    change.container,
                    *ends_without_watchers,
                    Instant::now(),
                ),
                ProfileChangeKind::Ended { .. } => self.tracker().ended(change.profile_id),
            },
            LiveUpdate::ProfileWatchers { replica, counts } if *replica != self.inner.replica => {
                self.tracker()
                    .remote_watchers(*replica, counts, Instant::now());
            }
            _ => {}
        }
    }

    fn act_on_due(&self) {
        let registry = &self.inner.registry;
        let due = self
            .tracker()
            .due(Instant::now(), self.inner.settings.grace, |host| {
                registry.is_connected(host)
            });
        for due in due {
            let profiler = self.clone();
            match due {
                Due::NoWatchers(id) => {
                    // Once: the session leaves the tracker when its end is committed.
                    self.tracker().ended(id);
                    tokio::spawn(async move {
                        if let Err(error) =
                            profiler.stop(id, None, ProfileEndReason::NoWatchers).await
                        {
                            warn!(profile = id, %error, "cannot stop an unwatched profile session");
                        }
                    });
                }
                Due::Interrupted(id) => {
                    self.tracker().ended(id);
                    tokio::spawn(async move {
                        profiler
                            .end_here(id, ProfileEndReason::Interrupted, None)
                            .await;
                    });
                }
            }
        }
    }

    fn announce_watchers(&self) {
        let counts = self.tracker().local_counts();
        self.inner.live.publish(LiveUpdate::ProfileWatchers {
            replica: self.inner.replica,
            counts,
        });
    }

    /// Counts a watcher of session `id` for as long as the guard lives.
    pub fn watch(&self, id: i64) -> WatchGuard {
        self.change_watchers(id, 1);
        WatchGuard {
            profiler: self.clone(),
            id,
        }
    }

    fn change_watchers(&self, id: i64, delta: i32) {
        let counts = self.tracker().watch(id, delta);
        self.inner.live.publish(LiveUpdate::ProfileWatchers {
            replica: self.inner.replica,
            counts,
        });
    }

    /// Passes an agent's live sample to watchers, if the session is that host's.
    pub fn live_sample(
        &self,
        host: HostId,
        profile_id: u64,
        sample: dockermon_proto::ProfileSample,
        read_ns: i64,
    ) {
        let Ok(id) = i64::try_from(profile_id) else {
            return;
        };
        let Some(container) = self
            .tracker()
            .get(id)
            .filter(|session| session.host == host)
            .map(|session| session.container)
        else {
            return;
        };
        self.inner
            .live
            .publish(LiveUpdate::ProfileSample(LiveProfileSample {
                profile_id: id,
                host,
                container,
                sample,
                read_ns,
            }));
    }

    /// Starts a profile of a container, or joins the one it already has.
    pub async fn start(&self, request: StartRequest) -> Result<Started, ProfileError> {
        let settings = &self.inner.settings;
        let store = &self.inner.store;
        let interval = request.interval.unwrap_or(Duration::from_secs(1));
        if !INTERVAL_RANGE.contains(&interval) {
            return Err(ProfileError::BadRequest(
                "interval must be between 1 and 10 seconds".into(),
            ));
        }
        let duration = request.duration.unwrap_or(settings.max_duration);
        if duration < Duration::from_secs(1) || duration > settings.max_duration {
            return Err(ProfileError::BadRequest(format!(
                "duration must be between 1 and {} seconds",
                settings.max_duration.as_secs()
            )));
        }
        let container = match store.container(request.container).await {
            Ok(container) => container,
            Err(StoreError::NotFound) => return Err(ProfileError::NotFound),
            Err(error) => return Err(error.into()),
        };
        if container.removed_ns.is_some() {
            return Err(ProfileError::ContainerRemoved);
        }
        if let Some(profile) = store.running_profile_of(container.id).await? {
            return Ok(Started {
                profile,
                joined: true,
            });
        }
        if !matches!(container.state.as_str(), "running" | "paused") {
            return Err(ProfileError::ContainerNotRunning);
        }
        let agent = self
            .inner
            .registry
            .agent(container.host_id)
            .ok_or(ProfileError::AgentNotConnected)?;
        if !agent.capabilities.iter().any(|c| c == CAPABILITY_PROFILE) {
            return Err(ProfileError::AgentTooOld);
        }
        let (on_host, by_user) = store
            .running_profile_counts(container.host_id, request.actor.id)
            .await?;
        if on_host >= settings.max_per_host {
            return Err(ProfileError::HostBusy(settings.max_per_host));
        }
        if by_user >= settings.max_per_user {
            return Err(ProfileError::UserBusy(settings.max_per_user));
        }
        let new = NewProfile {
            host: container.host_id,
            container: container.id,
            docker_id: container.docker_id.clone(),
            started_by: request.actor.id,
            origin: request.origin,
            interval_ms: interval.as_millis() as u64,
            duration_s: duration.as_secs(),
            started_ns: now_ns(),
        };
        let id = match store.create_profile(&new).await {
            Ok(id) => id,
            // Another request (here or on another replica) started one first: join it.
            Err(StoreError::Conflict(_)) => {
                return match store.running_profile_of(container.id).await? {
                    Some(profile) => Ok(Started {
                        profile,
                        joined: true,
                    }),
                    None => Err(ProfileError::Refused(
                        "another profile of this container just ended; try again".into(),
                    )),
                };
            }
            Err(error) => return Err(error.into()),
        };
        let ends_without_watchers = request.origin == ProfileOrigin::Websocket;
        self.tracker().started(
            id,
            container.host_id,
            container.id,
            ends_without_watchers,
            Instant::now(),
        );
        self.inner
            .starting
            .lock()
            .expect("starting lock")
            .insert(id);
        let command = CommandAction::ProfileStart(ProfileStart {
            profile_id: id as u64,
            container_id: ContainerId(container.docker_id.clone()),
            interval_ms: new.interval_ms,
            duration_ms: duration.as_millis() as u64,
            disconnected_grace_ms: settings.grace.as_millis() as u64,
        });
        let answer = self
            .inner
            .registry
            .command(container.host_id, command, COMMAND_TIMEOUT)
            .await;
        self.inner
            .starting
            .lock()
            .expect("starting lock")
            .remove(&id);
        let refusal = match answer {
            Ok(CommandOutcome::Done { .. }) => None,
            Ok(CommandOutcome::Failed { message }) => Some(ProfileError::Refused(message)),
            Err(error) => {
                // It may have started after all: make sure it stops.
                let registry = self.inner.registry.clone();
                let host = container.host_id;
                tokio::spawn(async move {
                    let stop = CommandAction::ProfileStop {
                        profile_id: id as u64,
                        reason: ProfileEndReason::Failed,
                    };
                    let _ = registry.command(host, stop, COMMAND_TIMEOUT).await;
                });
                Some(ProfileError::Agent(error))
            }
        };
        if let Some(refusal) = refusal {
            self.tracker().ended(id);
            store.forget_profile(id).await?;
            // Anyone who joined meanwhile learns that it never ran.
            self.publish_ended(
                id,
                container.host_id,
                container.id,
                ProfileEndReason::Failed,
                None,
            );
            return Err(refusal);
        }
        self.inner.live.publish(LiveUpdate::Profile(ProfileChange {
            profile_id: id,
            host: container.host_id,
            container: container.id,
            change: ProfileChangeKind::Started {
                ends_without_watchers,
            },
        }));
        info!(profile = id, container = %container.name, origin = request.origin.as_str(), "profile session started");
        self.log(
            &request.actor,
            &container_target(&container),
            "start",
            id,
            None,
        )
        .await;
        Ok(Started {
            profile: store.profile(id).await?,
            joined: false,
        })
    }

    /// Ends a session with `reason` and answers it as ended (with its last samples stored,
    /// when its agent could send them). Stopping an ended session answers it as it is.
    pub async fn stop(
        &self,
        id: i64,
        actor: Option<&Actor>,
        reason: ProfileEndReason,
    ) -> Result<ProfileRow, ProfileError> {
        let store = &self.inner.store;
        let profile = match store.profile(id).await {
            Ok(profile) => profile,
            Err(StoreError::NotFound) => return Err(ProfileError::NotFound),
            Err(error) => return Err(error.into()),
        };
        if profile.state == ProfileState::Ended {
            return Ok(profile);
        }
        if let Some(user) = actor.and_then(|actor| actor.id) {
            store.set_profile_stopper(id, user).await?;
        }
        let mut stopped_by_agent = false;
        if self.inner.registry.is_connected(profile.host_id) {
            let mut updates = self.inner.live.subscribe();
            let command = CommandAction::ProfileStop {
                profile_id: id as u64,
                reason,
            };
            let answer = self
                .inner
                .registry
                .command(profile.host_id, command, COMMAND_TIMEOUT)
                .await;
            if let Ok(CommandOutcome::Done { detail: None }) = answer {
                stopped_by_agent = wait_for_end(&mut updates, id).await;
            }
        }
        if !stopped_by_agent {
            self.end_here(id, reason, actor.and_then(|a| a.id)).await;
        }
        info!(profile = id, %reason, "profile session stopped");
        if let Some(actor) = actor {
            let target = Target {
                host: profile.host_id,
                container: profile.container_id,
                docker_id: profile.docker_id.clone(),
                name: profile.container_name.clone(),
            };
            self.log(actor, &target, "stop", id, Some(reason)).await;
        }
        Ok(store.profile(id).await?)
    }

    /// Ends a session in the store when its agent cannot, and tells everyone.
    async fn end_here(&self, id: i64, reason: ProfileEndReason, stopped_by: Option<i64>) {
        let ending = ProfileEnding {
            reason,
            message: None,
            stopped_by,
            samples_read: None,
            ended_ns: now_ns(),
        };
        match self.inner.store.end_profile(id, &ending).await {
            Ok(true) => {
                if let Ok(profile) = self.inner.store.profile(id).await {
                    info!(profile = id, %reason, "profile session ended by the collector");
                    self.publish_ended(id, profile.host_id, profile.container_id, reason, None);
                }
            }
            Ok(false) => {}
            Err(error) => warn!(profile = id, %error, "cannot end a profile session"),
        }
    }

    fn publish_ended(
        &self,
        id: i64,
        host: HostId,
        container: ContainerKey,
        reason: ProfileEndReason,
        samples_read: Option<u64>,
    ) {
        self.inner.live.publish(LiveUpdate::Profile(ProfileChange {
            profile_id: id,
            host,
            container,
            change: ProfileChangeKind::Ended {
                reason,
                samples_read,
            },
        }));
    }

    /// After an agent (re)connects: sessions it no longer runs end as interrupted, and
    /// sessions it still runs that ended meanwhile are stopped on it.
    pub fn agent_connected(&self, host: HostId, on_agent: Vec<u64>) {
        let profiler = self.clone();
        tokio::spawn(async move {
            if let Err(error) = profiler.reconcile(host, &on_agent).await {
                warn!(host = host.0, %error, "cannot reconcile the agent's profile sessions");
            }
        });
    }

    async fn reconcile(&self, host: HostId, on_agent: &[u64]) -> Result<(), StoreError> {
        let running = self.inner.store.running_profiles().await?;
        let starting = self.inner.starting.lock().expect("starting lock").clone();
        for profile in running.iter().filter(|p| p.host_id == host) {
            let on = on_agent.iter().any(|id| *id as i64 == profile.id);
            if !on && !starting.contains(&profile.id) {
                self.tracker().ended(profile.id);
                self.end_here(profile.id, ProfileEndReason::Interrupted, None)
                    .await;
            }
        }
        for id in on_agent {
            if !running.iter().any(|p| p.id == *id as i64) {
                let stop = CommandAction::ProfileStop {
                    profile_id: *id,
                    reason: ProfileEndReason::Stopped,
                };
                let _ = self
                    .inner
                    .registry
                    .command(host, stop, COMMAND_TIMEOUT)
                    .await;
            }
        }
        Ok(())
    }

    async fn log(
        &self,
        actor: &Actor,
        target: &Target,
        action: &str,
        id: i64,
        reason: Option<ProfileEndReason>,
    ) {
        let mut attributes = BTreeMap::from([("profile".to_owned(), id.to_string())]);
        if let Some(reason) = reason {
            attributes.insert("reason".into(), reason.as_str().into());
        }
        let entry = UserAction {
            user_id: actor.id,
            user_email: &actor.name,
            host: Some(target.host),
            container: Some(target.container),
            target_id: &target.docker_id,
            target_name: Some(&target.name),
            kind: "profile",
            action,
            attributes,
        };
        if let Err(error) = self.inner.store.record_user_action(&entry, now_ns()).await {
            warn!(%error, "cannot write a profile start or stop to the activity log");
        }
    }
}

/// What a profile is about, for the activity log.
struct Target {
    host: HostId,
    container: ContainerKey,
    docker_id: String,
    name: String,
}

fn container_target(container: &crate::store::ContainerRow) -> Target {
    Target {
        host: container.host_id,
        container: container.id,
        docker_id: container.docker_id.clone(),
        name: container.name.clone(),
    }
}

/// Waits until session `id`'s end is committed. False if that takes too long.
async fn wait_for_end(updates: &mut broadcast::Receiver<Arc<LiveUpdate>>, id: i64) -> bool {
    let deadline = tokio::time::Instant::now() + LAST_BATCH_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, updates.recv()).await {
            Err(_) => return false,
            Ok(Err(broadcast::error::RecvError::Closed)) => return false,
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Ok(update)) => {
                if let LiveUpdate::Profile(ProfileChange {
                    profile_id,
                    change: ProfileChangeKind::Ended { .. },
                    ..
                }) = update.as_ref()
                    && *profile_id == id
                {
                    return true;
                }
            }
        }
    }
}

/// A watcher of a profile session, counted until dropped.
pub struct WatchGuard {
    profiler: Profiler,
    id: i64,
}

impl WatchGuard {
    pub fn profile_id(&self) -> i64 {
        self.id
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.profiler.change_watchers(self.id, -1);
    }
}

//! One WebSocket connection: authentication, subscriptions, heartbeats, and the bounded
//! queue towards the client.
//!
//! Reading and writing are split: a writer task drains the connection's queue into the
//! socket, and this loop never waits on the socket, so a client that stops reading fills
//! its own queue (or falls behind the feed) and is disconnected, without holding anyone up.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use dockermon_proto::ProfileEndReason;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc};
use tracing::debug;

use super::WsState;
use super::fanout::{Outgoing, Topic};
use super::messages::{ClientMessage, ServerMessage};
use crate::api::auth::AuthUser;
use crate::api::auth::tokens::unix_now;
use crate::api::error::ApiError;
use crate::live::AccessChange;
use crate::profiles::{Actor, ProfileError, StartRequest, Started, WatchGuard};
use crate::store::{ContainerKey, HostId, ProfileOrigin};

type Subscription = (Topic, Option<HostId>);

/// Why the loop ends, and what the client is told: an error message (when `error` is not
/// empty) and the close frame's code and reason.
struct Ending {
    code: u16,
    error: &'static str,
    reason: &'static str,
}

impl Ending {
    fn new(code: u16, error: &'static str, reason: &'static str) -> Self {
        Ending {
            code,
            error,
            reason,
        }
    }

    /// The client went away or broke the protocol: nothing to tell it.
    fn silent(code: u16) -> Self {
        Ending::new(code, "", "")
    }
}

/// A profile start this connection asked for, answered from its own task.
type StartAnswer = (ContainerKey, Result<Started, ProfileError>);

struct Connection {
    state: WsState,
    queue: mpsc::Sender<Message>,
    user: Option<AuthUser>,
    subscriptions: HashSet<Subscription>,
    /// Profile sessions watched, by container; dropping a guard stops counting this watcher.
    profiles: HashMap<ContainerKey, WatchGuard>,
    /// Profile subscriptions waiting for their session to start.
    starting: HashSet<ContainerKey>,
    /// Where profile starts answer; starting one can take as long as an agent's answer,
    /// which this loop must not wait for.
    started: mpsc::Sender<StartAnswer>,
    last_heard: Instant,
}

pub(super) async fn run(socket: WebSocket, state: WsState) {
    let settings = state.settings.clone();
    let (sink, mut stream) = socket.split();
    let (queue, outgoing) = mpsc::channel(settings.send_queue);
    let writer = tokio::spawn(write(sink, outgoing));
    let (started, mut start_answers) = mpsc::channel(8);
    let mut connection = Connection {
        state: state.clone(),
        queue,
        user: None,
        subscriptions: HashSet::new(),
        profiles: HashMap::new(),
        starting: HashSet::new(),
        started,
        last_heard: Instant::now(),
    };
    // Taken only while something is subscribed, so an idle connection never lags.
    let mut feed: Option<broadcast::Receiver<Arc<Outgoing>>> = None;
    let mut ping = tokio::time::interval(settings.ping_every);
    let mut session_check = tokio::time::interval(settings.session_check);
    // Access that ends or shrinks is announced; the periodic check catches what is not
    // (a shell command on the database).
    let mut access = state.api.sessions.subscribe();
    let identify_by = Instant::now() + settings.identify_within;
    let metrics = state.api.metrics.clone();
    metrics.ws_clients.inc();

    let ending = loop {
        let deadline = match &connection.user {
            None => identify_by,
            Some(user) => expiry(user.expires_at),
        };
        let ended = tokio::select! {
            () = state.shutdown.cancelled() => Err(Ending::new(close_code::AWAY, "shutting_down", "the server is shutting down")),
            message = stream.next() => match message {
                Some(Ok(message)) => connection.received(message).await,
                // Gone, or a protocol violation such as an oversized message.
                Some(Err(_)) | None => Err(Ending::silent(close_code::POLICY)),
            },
            update = next_update(&mut feed) => connection.forward(update),
            Some((container, answer)) = start_answers.recv() => {
                connection.profile_started(container, answer);
                Ok(())
            }
            _ = ping.tick() => connection.heartbeat(),
            _ = session_check.tick(), if connection.user.is_some() => connection.check_session().await,
            change = access.recv(), if connection.user.is_some() => {
                if connection.concerned_by(change) {
                    connection.check_session().await
                } else {
                    Ok(())
                }
            }
            () = tokio::time::sleep_until(deadline.into()) => match connection.user {
                None => Err(Ending::new(close_code::POLICY, "unauthorized", "identify first")),
                Some(_) => Err(Ending::new(close_code::POLICY, "token_expired", "the token has expired")),
            },
        };
        if let Err(ending) = ended {
            break ending;
        }
        let listening = !connection.subscriptions.is_empty() || !connection.profiles.is_empty();
        match (!listening, feed.is_some()) {
            (true, true) => feed = None,
            (false, false) => feed = Some(state.feed.subscribe()),
            _ => {}
        }
    };
    debug!(
        code = ending.code,
        reason = ending.reason,
        "websocket closed"
    );
    metrics.ws_clients.dec();
    if ending.error == "too_slow" {
        metrics.ws_dropped.with_label_values(&["too_slow"]).inc();
    }
    if !ending.error.is_empty() {
        connection.error(ending.error, ending.reason);
    }
    let close = Message::Close(Some(CloseFrame {
        code: ending.code,
        reason: ending.reason.into(),
    }));
    // A client too slow to take its messages does not get a close frame either.
    let _ = connection.queue.try_send(close);
    drop(connection);
    let _ = writer.await;
    // The closing handshake: read until the client's own close (or a short deadline).
    // Closing the socket with the client's messages unread would reset the connection,
    // and a reset can destroy the error and close frame before the client reads them.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// How long a closed connection waits for the client's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

impl Connection {
    /// Handles one message from the client.
    async fn received(&mut self, message: Message) -> Result<(), Ending> {
        self.last_heard = Instant::now();
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                self.error("bad_message", "messages are JSON text");
                return Ok(());
            }
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
            Message::Close(_) => return Err(Ending::silent(close_code::NORMAL)),
        };
        let message: ClientMessage = match serde_json::from_str(text.as_str()) {
            Ok(message) => message,
            Err(error) => {
                let message = format!("not a message: {error}");
                self.error("bad_message", &message);
                return Ok(());
            }
        };
        match message {
            ClientMessage::Ping => self.send(&ServerMessage::Pong),
            ClientMessage::Identify { token } => self.identify(&token).await?,
            ClientMessage::Subscribe {
                topic,
                host,
                container,
                interval,
                duration,
            } => {
                let Some(user) = &self.user else {
                    self.error("unauthorized", "identify first");
                    return Ok(());
                };
                if user.require(topic.required_role()).is_err() {
                    self.error("forbidden", "your role cannot see this topic");
                } else if self.subscriptions.len() + self.profiles.len() + self.starting.len()
                    >= self.state.settings.max_subscriptions
                    && !self.subscriptions.contains(&(topic, host))
                {
                    self.error("too_many_subscriptions", "unsubscribe from something first");
                } else if topic == Topic::Profile {
                    match container {
                        Some(container) => self.start_profile(container, interval, duration),
                        None => {
                            self.error("bad_message", "a profile subscription names its container")
                        }
                    }
                } else if let Some(error) = self.unknown_host(host).await {
                    self.error(error.code, &error.message);
                } else {
                    self.subscriptions.insert((topic, host));
                    self.send(&ServerMessage::Subscribed {
                        topic,
                        host,
                        container: None,
                        profile: None,
                    });
                }
            }
            ClientMessage::Unsubscribe {
                topic,
                host,
                container,
            } => {
                if self.user.is_none() {
                    self.error("unauthorized", "identify first");
                    return Ok(());
                }
                match (topic, container) {
                    (Topic::Profile, Some(container)) => {
                        // The guard goes: this watcher no longer counts.
                        self.profiles.remove(&container);
                        self.starting.remove(&container);
                    }
                    _ => {
                        self.subscriptions.remove(&(topic, host));
                    }
                }
                self.send(&ServerMessage::Unsubscribed {
                    topic,
                    host,
                    container,
                });
            }
            ClientMessage::ProfileStop { profile } => self.stop_profile(profile),
        }
        Ok(())
    }

    /// Starts (or joins) a container's profile session in a task of its own; the answer
    /// comes back through `started`.
    fn start_profile(
        &mut self,
        container: ContainerKey,
        interval: Option<u64>,
        duration: Option<u64>,
    ) {
        let Some(user) = &self.user else { return };
        if let Some(watching) = self.profiles.get(&container) {
            let profile = Some(watching.profile_id());
            self.send(&ServerMessage::Subscribed {
                topic: Topic::Profile,
                host: None,
                container: Some(container),
                profile,
            });
            return;
        }
        if !self.starting.insert(container) {
            return;
        }
        let request = StartRequest {
            container,
            actor: Actor {
                id: Some(user.id),
                name: user.email.clone(),
            },
            origin: ProfileOrigin::Websocket,
            duration: duration.map(Duration::from_secs),
            interval: interval.map(Duration::from_secs),
        };
        let profiler = self.state.api.profiler.clone();
        let answers = self.started.clone();
        tokio::spawn(async move {
            let answer = profiler.start(request).await;
            let _ = answers.send((container, answer)).await;
        });
    }

    fn profile_started(&mut self, container: ContainerKey, answer: Result<Started, ProfileError>) {
        if !self.starting.remove(&container) {
            // Unsubscribed meanwhile: not watched, so the session's grace applies.
            return;
        }
        match answer {
            Ok(started) => {
                let profile = &started.profile;
                let guard = self.state.api.profiler.watch(profile.id);
                self.profiles.insert(container, guard);
                self.send(&ServerMessage::Subscribed {
                    topic: Topic::Profile,
                    host: Some(profile.host_id),
                    container: Some(container),
                    profile: Some(profile.id),
                });
                self.send(&ServerMessage::ProfileState {
                    profile: profile.id,
                    host: profile.host_id,
                    container,
                    state: "started",
                    joined: Some(started.joined),
                    reason: None,
                    samples: None,
                });
            }
            Err(error) => {
                let error = ApiError::from(error);
                self.error(error.code, &error.message);
            }
        }
    }

    /// Stops a profile session for everyone, in a task of its own (it waits for the
    /// agent's last samples); every watcher then gets its `ended` state.
    fn stop_profile(&self, profile: i64) {
        let Some(user) = &self.user else {
            self.error("unauthorized", "identify first");
            return;
        };
        if let Err(error) = user.require(crate::store::Role::Operator) {
            self.error(error.code, &error.message);
            return;
        }
        let actor = Actor {
            id: Some(user.id),
            name: user.email.clone(),
        };
        let profiler = self.state.api.profiler.clone();
        let queue = self.queue.clone();
        tokio::spawn(async move {
            if let Err(error) = profiler
                .stop(profile, Some(&actor), ProfileEndReason::Stopped)
                .await
            {
                let error = ApiError::from(error);
                let message = ServerMessage::Error {
                    code: error.code,
                    message: &error.message,
                };
                let _ = queue.try_send(Message::Text(message.to_text()));
            }
        });
    }

    /// Authenticates (or re-authenticates) the connection. A bad token ends it.
    async fn identify(&mut self, token: &str) -> Result<(), Ending> {
        match AuthUser::from_token(&self.state.api, token).await {
            Ok(user) => {
                if self
                    .user
                    .as_ref()
                    .is_some_and(|current| current.id != user.id)
                {
                    return Err(Ending::new(
                        close_code::POLICY,
                        "unauthorized",
                        "a connection belongs to one user",
                    ));
                }
                self.send(&ServerMessage::Identified {
                    user_id: user.id,
                    email: &user.email,
                    role: user.role,
                    expires_at: user.expires_at,
                });
                self.user = Some(user);
                Ok(())
            }
            Err(error) if error.status.is_server_error() => {
                self.error("unavailable", "cannot check the token now; try again");
                Ok(())
            }
            Err(error) => {
                self.error("unauthorized", &error.message);
                Err(Ending::new(close_code::POLICY, "", "unauthorized"))
            }
        }
    }

    /// Passes an update on if it is subscribed to; ends the connection if the client has
    /// fallen too far behind.
    fn forward(
        &mut self,
        update: Result<Arc<Outgoing>, broadcast::error::RecvError>,
    ) -> Result<(), Ending> {
        let update = match update {
            Ok(update) => update,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                return Err(Ending::new(
                    close_code::AGAIN,
                    "too_slow",
                    "too slow: updates were missed",
                ));
            }
            Err(broadcast::error::RecvError::Closed) => {
                return Err(Ending::new(
                    close_code::AWAY,
                    "shutting_down",
                    "the server is shutting down",
                ));
            }
        };
        let wanted = match update.profile {
            Some(profile) => self.profiles.values().any(|g| g.profile_id() == profile),
            None => {
                self.subscriptions.contains(&(update.topic, None))
                    || self
                        .subscriptions
                        .contains(&(update.topic, Some(update.host)))
            }
        };
        if wanted {
            self.enqueue(Message::Text(update.text.clone()))?;
            if update.profile_ended {
                // Nothing more will come of that session; a new subscription starts anew.
                self.profiles
                    .retain(|_, guard| Some(guard.profile_id()) != update.profile);
            }
        }
        Ok(())
    }

    /// Queues a message for the client; a full queue means the client is too slow.
    fn enqueue(&self, message: Message) -> Result<(), Ending> {
        self.queue.try_send(message).map_err(|_| {
            Ending::new(
                close_code::AGAIN,
                "too_slow",
                "too slow: the send queue is full",
            )
        })
    }

    fn heartbeat(&mut self) -> Result<(), Ending> {
        if self.last_heard.elapsed() > self.state.settings.dead_after {
            return Err(Ending::silent(close_code::AWAY));
        }
        self.enqueue(Message::Ping(Default::default()))
    }

    /// Ends the connection if its session ended (logout, password change, user disabled).
    /// Why a subscription to `host` cannot be had: it does not exist (a subscription that
    /// can never deliver anything is a mistake to report, not to acknowledge), or the
    /// database cannot say.
    async fn unknown_host(&self, host: Option<HostId>) -> Option<ApiError> {
        let host = host?;
        match self.state.api.store.host(host).await {
            Ok(_) => None,
            Err(crate::store::StoreError::NotFound) => {
                Some(ApiError::not_found(format!("there is no host {}", host.0)))
            }
            Err(error) => Some(error.into()),
        }
    }

    /// Whether an access change may concern this connection's user (a missed change may).
    fn concerned_by(&self, change: Result<AccessChange, broadcast::error::RecvError>) -> bool {
        let Some(user) = &self.user else {
            return false;
        };
        match change {
            Ok(AccessChange::Session(session)) => session == user.session,
            Ok(AccessChange::User(id)) => id == user.id,
            Ok(AccessChange::Everyone) | Err(broadcast::error::RecvError::Lagged(_)) => true,
            Err(broadcast::error::RecvError::Closed) => false,
        }
    }

    /// Ends the connection if its session ended or its user was disabled, or if the user's
    /// role shrank (what was subscribed may no longer be theirs to see: they identify again).
    async fn check_session(&mut self) -> Result<(), Ending> {
        let Some(user) = &mut self.user else {
            return Ok(());
        };
        match self
            .state
            .api
            .store
            .session_user(&user.session, dockermon_proto::now_ns())
            .await
        {
            Ok(Some(now)) if now.role < user.role => Err(Ending::new(
                close_code::POLICY,
                "access_changed",
                "your role changed; identify again",
            )),
            Ok(Some(now)) => {
                user.role = now.role;
                Ok(())
            }
            Ok(None) => Err(Ending::new(
                close_code::POLICY,
                "session_ended",
                "the session has ended",
            )),
            // The database is down: keep the connection; the next check decides.
            Err(_) => Ok(()),
        }
    }

    fn send(&self, message: &ServerMessage<'_>) {
        // A full queue is caught by the next update or heartbeat.
        let _ = self.queue.try_send(Message::Text(message.to_text()));
    }

    fn error(&self, code: &str, message: &str) {
        self.send(&ServerMessage::Error { code, message });
    }
}

/// The instant a token expiring at `expires_at` (Unix seconds) stops being valid.
fn expiry(expires_at: u64) -> Instant {
    Instant::now() + Duration::from_secs(expires_at.saturating_sub(unix_now()))
}

async fn next_update(
    feed: &mut Option<broadcast::Receiver<Arc<Outgoing>>>,
) -> Result<Arc<Outgoing>, broadcast::error::RecvError> {
    match feed {
        Some(feed) => feed.recv().await,
        None => std::future::pending().await,
    }
}

/// Writes queued messages to the socket until the queue closes or the socket fails.
async fn write(mut sink: SplitSink<WebSocket, Message>, mut outgoing: mpsc::Receiver<Message>) {
    while let Some(message) = outgoing.recv().await {
        let closing = matches!(message, Message::Close(_));
        if sink.send(message).await.is_err() || closing {
            break;
        }
    }
    let _ = sink.close().await;
}

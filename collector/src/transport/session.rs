//! One agent's session on `/v1/agent`: hello/welcome, data frames into the pipeline,
//! acknowledgements, commands and heartbeats.
//!
//! Protocol violations (malformed or binary messages, oversized frames, sequence numbers
//! going backwards, a second hello) close this session with a logged reason and a close
//! frame saying why; no other session is affected. Frames with a sequence number the
//! store already holds (replays after a reconnect) are acknowledged and skipped.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::registry::AppliedSpec;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use dockermon_proto::PROTOCOL_VERSION;
use dockermon_proto::limits;
use dockermon_proto::transport::{AgentMessage, CollectorMessage, MIN_PROTOCOL_VERSION, Welcome};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::AgentService;
use super::pipeline::{AGENT_BUDGET_BYTES, MemoryBudget, Submission};
use super::tls::Peer;
use crate::store::HostId;

/// How long an agent has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the collector pings; a peer silent for three pings is dead.
const HEARTBEAT: Duration = Duration::from_secs(15);
const DEAD_AFTER: Duration = Duration::from_secs(45);

/// Close codes (RFC 6455): policy violation, invalid payload, going away.
const POLICY: u16 = 1008;
const INVALID: u16 = 1007;
const AWAY: u16 = 1001;

enum End {
    /// Close with this code and reason (logged as a warning).
    Violation(u16, String),
    /// Close politely (logged at info).
    Closed(u16, String),
    /// The agent went away.
    Gone(String),
}

pub(super) async fn run(
    mut socket: WebSocket,
    peer: Peer,
    service: Arc<AgentService>,
    shutdown: CancellationToken,
) {
    let end = match converse(&mut socket, &peer, &service, &shutdown).await {
        Ok(end) | Err(end) => end,
    };
    match end {
        End::Violation(code, reason) => {
            warn!(host = %peer.host, %reason, "closing agent session");
            close(&mut socket, code, &reason).await;
        }
        End::Closed(code, reason) => {
            info!(host = %peer.host, %reason, "closing agent session");
            close(&mut socket, code, &reason).await;
        }
        End::Gone(reason) => info!(host = %peer.host, %reason, "agent session ended"),
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let reason: String = reason.chars().take(120).collect();
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        socket.send(Message::Close(Some(frame))),
    )
    .await;
}

/// Resolves when the collector shuts down or this connection is to be closed (a revoked
/// certificate, a newer session of the host): how the session ends then.
/// Takes the connection's `close` and `reason` apart from it, so the session can receive
/// its commands in the same `select!`.
async fn ended(
    shutdown: &CancellationToken,
    close: &CancellationToken,
    reason: &Mutex<String>,
) -> End {
    tokio::select! {
        () = shutdown.cancelled() => End::Closed(AWAY, "collector shutting down".into()),
        () = close.cancelled() => End::Closed(POLICY, reason.lock().expect("reason lock").clone()),
    }
}

/// A sign of life for the agent: sent every [`HEARTBEAT`], also while its frames wait for
/// room in a budget or in the writers' queue (nothing is read from it then, so its own pings
/// go unanswered; this keeps it from taking the stall for a dead collector).
async fn ping(socket: &mut WebSocket) -> Result<(), End> {
    socket
        .send(Message::Ping(Default::default()))
        .await
        .map_err(|e| End::Gone(format!("ping failed: {e}")))
}

async fn send(socket: &mut WebSocket, message: &CollectorMessage) -> Result<(), End> {
    let text = serde_json::to_string(message).map_err(|e| End::Gone(e.to_string()))?;
    socket
        .send(Message::Text(Utf8Bytes::from(text)))
        .await
        .map_err(|e| End::Gone(format!("send failed: {e}")))
}

/// The next protocol message, or why there is none.
fn decode(message: Result<Message, axum::Error>) -> Result<Option<AgentMessage>, End> {
    match message {
        Ok(Message::Text(text)) => serde_json::from_str(text.as_str())
            .map(Some)
            .map_err(|e| End::Violation(INVALID, format!("malformed message: {e}"))),
        Ok(Message::Binary(_)) => Err(End::Violation(
            INVALID,
            "binary messages are not part of the protocol".into(),
        )),
        Ok(Message::Ping(_) | Message::Pong(_)) => Ok(None),
        Ok(Message::Close(frame)) => Err(End::Gone(match frame {
            Some(frame) => format!("agent closed: {} {}", frame.code, frame.reason),
            None => "agent closed".into(),
        })),
        Err(error) => {
            let text = error.to_string();
            if text.contains("Space limit exceeded")
                || text.contains("too long")
                || text.contains("too big")
            {
                Err(End::Violation(
                    POLICY,
                    format!("message larger than the limit: {text}"),
                ))
            } else {
                Err(End::Gone(text))
            }
        }
    }
}

/// Tells the agent why it is refused, then ends the session.
async fn refuse(socket: &mut WebSocket, reason: String) -> Result<End, End> {
    send(
        socket,
        &CollectorMessage::Refused {
            reason: reason.clone(),
        },
    )
    .await?;
    Ok(End::Closed(POLICY, reason))
}

async fn converse(
    socket: &mut WebSocket,
    peer: &Peer,
    service: &AgentService,
    shutdown: &CancellationToken,
) -> Result<End, End> {
    // Hello first.
    let hello = loop {
        let next = tokio::time::timeout(HELLO_TIMEOUT, socket.recv())
            .await
            .map_err(|_| End::Violation(POLICY, "no hello within 10 s".into()))?
            .ok_or_else(|| End::Gone("closed before hello".into()))?;
        match decode(next)? {
            Some(AgentMessage::Hello(hello)) => break hello,
            Some(_) => {
                return Err(End::Violation(
                    POLICY,
                    "the first message must be a hello".into(),
                ));
            }
            None => continue,
        }
    };
    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&hello.protocol_version) {
        let reason = format!(
            "agent protocol {} is not supported: this collector speaks {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}; \
             upgrade the {}",
            hello.protocol_version,
            if hello.protocol_version > PROTOCOL_VERSION {
                "collector"
            } else {
                "agent"
            }
        );
        return refuse(socket, reason).await;
    }

    let host = service
        .store
        .register_host(&peer.host)
        .await
        .map_err(|e| End::Closed(AWAY, format!("store unavailable: {e}")))?;
    // What the agent says about itself is bounded like everything else it sends.
    let instance = hello
        .instance
        .as_ref()
        .map(|instance| limits::truncate(instance.clone(), 64));
    let capabilities: Vec<String> = hello
        .capabilities
        .iter()
        .take(32)
        .map(|c| limits::truncate(c.clone(), 64))
        .collect();
    // One host, one agent: first here, then (linked) on the other replicas. This session
    // takes the host's commands before it asks them, so two sessions connecting at once on
    // two replicas refuse each other rather than both stay; the agents try again later.
    let mut connection = match service
        .registry
        .connect(host, peer, instance.clone(), capabilities)
    {
        Ok(connection) => connection,
        Err(refusal) => {
            warn!(host = %peer.host, "refused a second agent process under one host name");
            return refuse(socket, refusal.to_string()).await;
        }
    };
    connection.subscribed().await;
    if let Err(refusal) = service.registry.claim(host, peer, instance).await {
        service.registry.disconnect(host, connection.id);
        warn!(host = %peer.host, "refused a second agent process under one host name, connected to another replica");
        return refuse(socket, refusal.to_string()).await;
    }
    // Read after another replica's session of this host was closed. Its frames still
    // queued there may commit after this; the store keeps each record once.
    let committed = match service.store.last_seq(host).await {
        Ok(committed) => committed,
        Err(error) => {
            service.registry.disconnect(host, connection.id);
            return Err(End::Closed(AWAY, format!("store unavailable: {error}")));
        }
    };
    // The host's DockerHost spec, if it has one, over the collector's defaults.
    let (config, generation) = crate::resources::reconcile::settings_for(
        &service.store,
        peer.host.as_str(),
        &service.agent_config,
    )
    .await;
    service.registry.set_applied_spec(
        host,
        connection.id,
        AppliedSpec {
            generation,
            error: None,
        },
    );
    let welcome = CollectorMessage::Welcome(Welcome {
        protocol_version: PROTOCOL_VERSION,
        host: peer.host.clone(),
        last_seq: committed,
        config,
    });
    if let Err(end) = send(socket, &welcome).await {
        service.registry.disconnect(host, connection.id);
        return Err(end);
    }
    info!(host = %peer.host, agent_version = %hello.agent_version, last_seq = committed, "agent connected");

    // Before this session's frames are read, so none of them is applied before the load.
    if let Err(error) = service
        .metrics
        .attach(&service.store, host, &peer.host, connection.id)
        .await
    {
        service.registry.disconnect(host, connection.id);
        return Err(End::Closed(AWAY, format!("store unavailable: {error}")));
    }
    let mut on_agent = hello.profiles.clone();
    on_agent.truncate(1024);
    service.profiler.agent_connected(host, on_agent);
    let result = stream(
        socket,
        peer,
        service,
        shutdown,
        host,
        committed,
        &mut connection,
    )
    .await;
    service.registry.disconnect(host, connection.id);
    service.metrics.detach(host, connection.id);
    result
}

async fn stream(
    socket: &mut WebSocket,
    peer: &Peer,
    service: &AgentService,
    shutdown: &CancellationToken,
    host: HostId,
    committed: u64,
    connection: &mut super::registry::Connection,
) -> Result<End, End> {
    let (acked, mut acked_changes) = watch::channel(committed);
    let agent_budget = MemoryBudget::new(AGENT_BUDGET_BYTES);
    let mut budget_warned = false;
    let poisoned = CancellationToken::new();
    let mut last_received: Option<u64> = None;
    let mut last_heard = Instant::now();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.reset();
    loop {
        tokio::select! {
            end = ended(shutdown, &connection.close, &connection.reason) => return Ok(end),
            () = poisoned.cancelled() => return Ok(End::Violation(POLICY, "a frame could not be stored; see the collector's log".into())),
            next = socket.recv() => {
                let next = next.ok_or_else(|| End::Gone("connection closed".into()))?;
                // A large message waits for room in this agent's budget, then the
                // collector's, before it is decoded; meanwhile nothing more is read.
                let wire_bytes = match &next {
                    Ok(Message::Text(text)) => text.len(),
                    _ => 0,
                };
                let mut budget = Vec::new();
                if !budget_warned && agent_budget.would_wait(wire_bytes) {
                    budget_warned = true;
                    warn!(host = %peer.host, budget_mib = AGENT_BUDGET_BYTES >> 20,
                        "this agent sends large frames faster than they are stored; reading from it pauses until its earlier frames are stored");
                }
                for pool in [&agent_budget, &service.budget] {
                    let permit = pool.take(wire_bytes);
                    tokio::pin!(permit);
                    loop {
                        tokio::select! {
                            end = ended(shutdown, &connection.close, &connection.reason) => return Ok(end),
                            permit = &mut permit => {
                                budget.extend(permit);
                                break;
                            }
                            _ = heartbeat.tick() => {
                                debug!(host = %peer.host, "waiting for memory budget; pinging meanwhile");
                                ping(socket).await?;
                            }
                        }
                    }
                }
                last_heard = Instant::now();
                *connection.heard.lock().expect("heard lock") = last_heard;
                let Some(message) = decode(next)? else { continue };
                match message {
                    AgentMessage::Data(frame) => {
                        if frame.seq <= committed {
                            debug!(host = %peer.host, seq = frame.seq, "already stored; acknowledging again");
                            let seq = committed.max(*acked.borrow());
                            send(socket, &CollectorMessage::Ack { seq }).await?;
                            continue;
                        }
                        if last_received.is_some_and(|previous| frame.seq <= previous) {
                            return Err(End::Violation(POLICY, format!(
                                "out-of-order frame {} after {}", frame.seq, last_received.unwrap_or_default()
                            )));
                        }
                        last_received = Some(frame.seq);
                        let mut records = frame.records;
                        let cut: usize = records.iter_mut().map(limits::enforce).sum();
                        if cut > 0 {
                            warn!(host = %peer.host, seq = frame.seq, objects = cut,
                                "a frame carried more objects than the bounds allow; the excess was left out");
                        }
                        let submitted = service
                            .pipeline
                            .submit(Submission {
                                host,
                                host_name: peer.host.clone(),
                                seq: frame.seq,
                                records,
                                dropped: frame.dropped,
                                acked: acked.clone(),
                                close_session: poisoned.clone(),
                                received: Instant::now(),
                                budget,
                            });
                        tokio::pin!(submitted);
                        loop {
                            tokio::select! {
                                end = ended(shutdown, &connection.close, &connection.reason) => return Ok(end),
                                result = &mut submitted => {
                                    result.map_err(|_| End::Closed(AWAY, "collector shutting down".into()))?;
                                    break;
                                }
                                _ = heartbeat.tick() => {
                                    debug!(host = %peer.host, "the writers' queue is full; pinging meanwhile");
                                    ping(socket).await?;
                                }
                            }
                        }
                        // While the writers' queue was full nothing was read from this agent:
                        // its silence then is the collector's, not a sign the agent is gone.
                        last_heard = Instant::now();
                        *connection.heard.lock().expect("heard lock") = last_heard;
                    }
                    AgentMessage::CommandResult(result) => service.registry.complete(host, result.id, result.outcome),
                    AgentMessage::ProfileSample(live) => service.profiler.live_sample(host, live.profile_id, live.sample, live.read_ns),
                    AgentMessage::Status(mut status) => {
                        // Bounded as the hello's list is: it travels in presence announcements.
                        status.profiles.truncate(1024);
                        service.registry.set_status(host, connection.id, status)
                    }
                    AgentMessage::Hello(_) => return Err(End::Violation(POLICY, "a second hello".into())),
                }
            }
            changed = acked_changes.changed() => {
                if changed.is_ok() {
                    let seq = *acked_changes.borrow_and_update();
                    send(socket, &CollectorMessage::Ack { seq }).await?;
                }
            }
            Some(command) = connection.commands.recv() => {
                send(socket, &CollectorMessage::Command(command)).await?;
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > DEAD_AFTER {
                    return Ok(End::Closed(AWAY, format!("no message or pong for {} s", DEAD_AFTER.as_secs())));
                }
                ping(socket).await?;
            }
        }
    }
}

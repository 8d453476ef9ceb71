//! The NATS connection that links collector replicas (`--nats-url`), for the two internal
//! interfaces that must cross them: the live bus ([`crate::live`]) and commands to agents
//! ([`crate::transport::registry`]). Without it both stay in this process.
//!
//! Subjects, under the prefix `dockermon`:
//! - `dockermon.live`: every [`crate::live::LiveUpdate`], JSON; each replica receives the
//!   others' (not its own: the connection asks the server for no echo).
//! - `dockermon.agents.<host id>.command`: request/reply to the replica holding that host's
//!   agent, which subscribes while the agent's session lasts; no subscriber means the agent
//!   is connected nowhere, which NATS answers at once ("no responders").
//! - `dockermon.agents.<host id>.claim`: request/reply to the same replica, from one where
//!   that host's agent is connecting: the holder closes its session or refuses the newcomer
//!   (one host, one agent, across replicas).
//! - `dockermon.presence`: each replica's connected agents, in full, on every change and
//!   every few seconds.
//!
//! Delivery is NATS core's: at most once, in order per publisher. What must not be lost
//! never travels here: agents' records are committed to the database before they are
//! published, and commands have exactly one outcome, a timeout included.

use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::config::NatsConfig;
use crate::health::{Dependency, Readiness};
use crate::store::HostId;

/// The subject prefix of everything the collector sends.
const PREFIX: &str = "dockermon";
/// How often the connection is pinged. A link cut off without a FIN (a network partition)
/// is given up at the tick that finds two pings unanswered, 6–9 s after the cut, so a
/// replica says it is not ready within about 10 s instead of the client's minutes.
const PING_EVERY: Duration = Duration::from_secs(3);

/// A replica's connection to the NATS server, cheap to clone.
#[derive(Clone)]
pub struct Broker {
    client: Client,
    /// Fired each time the connection comes back after a loss, when messages may have been
    /// missed.
    reconnected: tokio::sync::watch::Receiver<u64>,
}

impl Broker {
    /// Connects to `config.url`, in the background when the server is not reachable yet:
    /// `readiness` says whether NATS is connected from now on, and the client reconnects by
    /// itself. Errors: an unreadable credentials or CA file, a malformed URL.
    pub async fn connect(config: &NatsConfig, readiness: Readiness) -> anyhow::Result<Broker> {
        use anyhow::Context;
        let (reconnections, reconnected) = tokio::sync::watch::channel(0u64);
        // Shown in logs and in /readyz, which anyone reaching port 9810 reads: no password.
        let url = redacted(&config.url);
        if config.credentials_file.is_none() && !config.url.contains('@') {
            warn!(%url, "NATS without credentials: whoever reaches it can send commands to agents through the replicas; give --nats-credentials-file (or user:password in the URL) and let only the collectors reach NATS");
        }
        readiness.not_ready(Dependency::Nats, format!("NATS {url}: connecting"));
        let mut options = ConnectOptions::new()
            .name("dockermon-collector")
            .no_echo()
            .ping_interval(PING_EVERY)
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let (readiness, url) = (readiness.clone(), url.clone());
                let reconnections = reconnections.clone();
                async move { on_event(event, &readiness, &url, &reconnections) }
            });
        if let Some(file) = &config.credentials_file {
            options = options.credentials_file(file).await.with_context(|| {
                format!("cannot read the NATS credentials file {}", file.display())
            })?;
        }
        if config
            .url
            .split(',')
            .any(|address| address.starts_with("tls://"))
        {
            options = options.require_tls(true);
        }
        if let Some(ca) = &config.ca {
            options = options.add_root_certificates(ca.clone());
        }
        let client = options
            .connect(config.url.as_str())
            .await
            .with_context(|| format!("cannot use NATS at {}", redacted(&config.url)))?;
        Ok(Broker {
            client,
            reconnected,
        })
    }

    /// Publishes `message` as JSON on `subject` (under the prefix). Never waits for the
    /// server: while disconnected, the client buffers and then drops.
    pub async fn publish(&self, subject: &str, message: &impl Serialize) {
        match serde_json::to_vec(message) {
            Ok(payload) => self.publish_encoded(subject, payload).await,
            Err(error) => warn!(%subject, %error, "cannot encode a message for NATS"),
        }
    }

    /// Publishes a message already encoded, as [`Broker::publish`] does.
    pub async fn publish_encoded(&self, subject: &str, payload: Vec<u8>) {
        if let Err(error) = self
            .client
            .publish(subject_of(subject), Bytes::from(payload))
            .await
        {
            warn!(%subject, %error, "cannot publish to NATS");
        }
    }

    /// The largest message the server takes, in bytes: its `max_payload` (the client
    /// assumes NATS' default, 1 MiB, until the server has said).
    pub fn max_payload(&self) -> usize {
        self.client.max_payload()
    }

    /// Waits until the server has everything sent so far (subscriptions included); gives
    /// up quietly when it cannot answer.
    pub async fn flush(&self) {
        if let Err(error) = self.client.flush().await {
            warn!(%error, "NATS did not confirm what was sent");
        }
    }

    /// Messages on `subject` (under the prefix), decoded, with the subject to reply to.
    /// Messages that do not decode are logged and skipped.
    pub async fn subscribe<T: DeserializeOwned>(
        &self,
        subject: &str,
    ) -> anyhow::Result<impl futures::Stream<Item = (T, Option<async_nats::Subject>)> + use<T>>
    {
        use futures::StreamExt;
        let subscriber = self.client.subscribe(subject_of(subject)).await?;
        let subject = subject.to_owned();
        Ok(subscriber.filter_map(move |message| {
            let decoded = serde_json::from_slice::<T>(&message.payload);
            if let Err(error) = &decoded {
                warn!(%subject, %error, "a NATS message that does not decode; skipped");
            }
            std::future::ready(decoded.ok().map(|value| (value, message.reply)))
        }))
    }

    /// Answers a request (see [`Broker::subscribe`]) with `message`, as JSON.
    pub async fn reply(&self, to: async_nats::Subject, message: &impl Serialize) {
        match serde_json::to_vec(message) {
            Ok(payload) => {
                if let Err(error) = self.client.publish(to, Bytes::from(payload)).await {
                    warn!(%error, "cannot answer a NATS request");
                }
            }
            Err(error) => warn!(%error, "cannot encode an answer for NATS"),
        }
    }

    /// Sends a request on `subject` (under the prefix) and waits up to `timeout` for the
    /// answer, all told. Not connected: `Failed` at once, never a request that leaves later
    /// (the client would queue it until it reconnects, after the asker gave up).
    pub async fn request<T: DeserializeOwned>(
        &self,
        subject: &str,
        message: &impl Serialize,
        timeout: Duration,
    ) -> Result<T, RequestError> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(RequestError::Failed("not connected to NATS".into()));
        }
        let payload =
            serde_json::to_vec(message).map_err(|e| RequestError::Failed(e.to_string()))?;
        let request = async_nats::Request::new()
            .payload(Bytes::from(payload))
            .timeout(Some(timeout));
        let sent = self.client.send_request(subject_of(subject), request);
        // The client's own timeout covers the wait for the answer, not the queue before it.
        let answer = tokio::time::timeout(timeout, sent)
            .await
            .map_err(|_| RequestError::TimedOut)?
            .map_err(|error| match error.kind() {
                async_nats::RequestErrorKind::NoResponders => RequestError::NoResponders,
                async_nats::RequestErrorKind::TimedOut => RequestError::TimedOut,
                _ => RequestError::Failed(error.to_string()),
            })?;
        serde_json::from_slice(&answer.payload).map_err(|e| RequestError::Failed(e.to_string()))
    }

    /// Changes each time the connection comes back after being lost.
    pub fn reconnections(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reconnected.clone()
    }
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Nobody subscribes to the subject.
    #[error("no replica answers for it")]
    NoResponders,
    #[error("no answer in time")]
    TimedOut,
    /// NATS is not connected, or the answer was not understood.
    #[error("the replicas' NATS link failed: {0}")]
    Failed(String),
}

/// `url` (comma-separated addresses) without the user and password of any address.
pub fn redacted(url: &str) -> String {
    url.split(',')
        .map(
            |address| match (address.split_once("://"), address.rsplit_once('@')) {
                (Some((scheme, _)), Some((_, host))) => format!("{scheme}://***@{host}"),
                _ => address.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join(",")
}

/// The subject of commands to `host`'s agent.
pub fn command_subject(host: HostId) -> String {
    format!("agents.{}.command", host.0)
}

/// The subject on which a replica asks for `host`'s session, which the replica holding it
/// answers.
pub fn claim_subject(host: HostId) -> String {
    format!("agents.{}.claim", host.0)
}

fn subject_of(subject: &str) -> async_nats::Subject {
    async_nats::Subject::from(format!("{PREFIX}.{subject}"))
}

fn on_event(
    event: Event,
    readiness: &Readiness,
    url: &str,
    reconnections: &tokio::sync::watch::Sender<u64>,
) {
    match event {
        Event::Connected => {
            let lost = !readiness.works(Dependency::Nats);
            readiness.ready(Dependency::Nats);
            info!(url, "connected to NATS");
            if lost {
                reconnections.send_modify(|count| *count += 1);
            }
        }
        Event::Disconnected => {
            warn!(url, "disconnected from NATS; reconnecting");
            readiness.not_ready(
                Dependency::Nats,
                format!("NATS {url}: disconnected; live updates and commands of other replicas' agents are cut off"),
            );
        }
        Event::SlowConsumer(_) => {
            warn!(
                url,
                "this replica cannot keep up with NATS: live updates were dropped"
            );
        }
        Event::ServerError(error) => warn!(url, %error, "NATS server error"),
        Event::ClientError(error) => warn!(url, %error, "NATS client error"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn credentials_in_the_url_are_not_shown() {
        assert_eq!(
            redacted("nats://dm:s3cret@n1:4222,tls://token@n2:4222,nats://n3:4222"),
            "nats://***@n1:4222,tls://***@n2:4222,nats://n3:4222"
        );
    }
}

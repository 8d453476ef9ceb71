//! The agent ↔ collector protocol: one WebSocket per agent over TLS 1.3, dialled by the
//! agent to `wss://COLLECTOR:3812/v1/agent` with its client certificate.
//!
//! Conversation: the agent sends [`Hello`]; the collector answers [`Welcome`] (with the
//! agent's configuration and the last sequence number it has committed for this host) or
//! `Refused`. Then the agent streams [`DataFrame`]s with strictly increasing sequence
//! numbers; the collector answers `Ack { seq }` once every frame up to `seq` is committed,
//! and may send [`Command`]s, which the agent answers with a [`CommandResult`]. Every
//! message is one JSON WebSocket text message with a `"type"` field; the agent sends long
//! ones in WebSocket fragments of at most 4 KiB, which keeps the collector's per-agent read
//! buffer small. Messages larger than [`MAX_FRAME_BYTES`] are a protocol violation.
//!
//! Outside the numbered stream, an agent sends live profile samples
//! ([`AgentMessage::ProfileSample`], at most once: the same samples also travel in
//! numbered frames) and its [`AgentStatus`] when it changes. What an agent can do beyond
//! protocol 1 it announces in [`Hello::capabilities`]; the collector asks for nothing an
//! agent did not announce, so older agents keep working.
//!
//! Enrollment (no client certificate yet) is a JSON `POST` to [`ENROLL_PATH`] over TLS
//! whose server certificate the agent checks against the CA fingerprint pinned in its
//! [`JoinToken`]; renewal is a `POST` to [`RENEW_PATH`] with the current certificate. In a
//! Kubernetes cluster an agent may instead enroll at [`SERVICE_ACCOUNT_ENROLL_PATH`] with its
//! projected ServiceAccount token, trusting the collector through a CA bundle it was given.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{ContainerId, HostName, ProfileEndReason, ProfileSample, Record};

pub const AGENT_PATH: &str = "/v1/agent";
pub const ENROLL_PATH: &str = "/v1/enroll";
pub const RENEW_PATH: &str = "/v1/renew";
pub const SERVICE_ACCOUNT_ENROLL_PATH: &str = "/v1/enroll/service-account";
pub const DEFAULT_AGENT_PORT: u16 = 3812;
/// The largest message either side accepts.
pub const MAX_FRAME_BYTES: usize = 16 << 20;
/// The oldest agent protocol this build still speaks.
pub const MIN_PROTOCOL_VERSION: u32 = 1;

/// Agent → collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    Hello(Hello),
    Data(DataFrame),
    CommandResult(CommandResult),
    /// A profile sample for live watchers, sent as soon as it is read. Not numbered and
    /// not acknowledged: lost if the connection is down, and then still delivered in the
    /// session's [`crate::ProfileBatch`].
    ProfileSample(LiveProfileSample),
    /// What the agent is doing now, sent when it changes.
    Status(AgentStatus),
}

/// The `profile` capability: the agent runs profile sessions ([`CommandAction::ProfileStart`]).
pub const CAPABILITY_PROFILE: &str = "profile";
/// The agent honours [`AgentConfig::paused`].
pub const CAPABILITY_PAUSE: &str = "pause";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveProfileSample {
    pub profile_id: u64,
    pub sample: ProfileSample,
    /// When the agent had the sample in hand (Unix nanoseconds): where delivery latency to
    /// watchers is measured from.
    pub read_ns: i64,
}

/// The agent's own state, for the collector to show and export.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Profile sessions running on the agent now.
    #[serde(default)]
    pub profiles: Vec<u64>,
    /// Docker stats streams the agent holds open (one per profiled container).
    #[serde(default)]
    pub docker_streams: u32,
    /// Frames in the agent's spool that the collector has not acknowledged.
    #[serde(default)]
    pub spool_frames: u64,
    /// Bytes of those frames.
    #[serde(default)]
    pub spool_bytes: u64,
}

/// Collector → agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CollectorMessage {
    Welcome(Welcome),
    /// The collector will not talk to this agent; the connection closes.
    Refused {
        reason: String,
    },
    /// Every data frame with a sequence number up to `seq` is durably stored.
    Ack {
        seq: u64,
    },
    Command(Command),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub agent_version: String,
    pub protocol_version: u32,
    /// What the agent can do beyond the protocol's base (e.g. [`CAPABILITY_PROFILE`]).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The profile sessions still running on the agent: after a reconnect the collector
    /// ends those it thinks are running and the agent no longer has.
    #[serde(default)]
    pub profiles: Vec<u64>,
    /// Random, new with every agent process: a reconnection of the same process replaces
    /// its old session at once, while another process presenting the same certificate
    /// (a copied state directory) is refused as long as the first is alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol_version: u32,
    /// The name the collector knows this agent by (from its certificate).
    pub host: HostName,
    /// The newest sequence number already committed for this host: the agent can forget
    /// every spooled frame up to it, even if the ack for it was lost.
    pub last_seq: u64,
    pub config: AgentConfig,
}

/// What the collector wants an agent to collect, and how often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentConfig {
    pub stats_interval_ms: u64,
    pub stats_concurrency: u32,
    /// `None`: disk usage is not measured.
    pub usage_interval_ms: Option<u64>,
    pub usage_timeout_ms: u64,
    /// Stats and disk-usage collection paused (a `DockerHost`'s `spec.paused`); events and
    /// the container list keep flowing. Older agents ignore it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// A batch of records, numbered so the collector can acknowledge it and recognise a
/// re-delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFrame {
    pub seq: u64,
    pub records: Vec<Record>,
    /// What the agent's spool has had to drop since the agent started, by kind.
    #[serde(default)]
    pub dropped: Dropped,
}

/// Records dropped by a full spool: periodic stats first, then usage; events last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dropped {
    pub stats: u64,
    pub usage: u64,
    pub events: u64,
    pub other: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub id: u64,
    /// After this long the collector reports a timeout, whatever the agent does.
    pub timeout_ms: u64,
    pub action: CommandAction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CommandAction {
    /// Apply a new collection configuration now.
    SetConfig(AgentConfig),
    /// Act on a container. The agent refuses actions outside its own allowlist.
    Container {
        container_id: String,
        action: ContainerAction,
    },
    /// Start a profile session (agents with the `profile` capability only).
    ProfileStart(ProfileStart),
    /// End a profile session; the agent sends its last samples with this reason.
    ProfileStop {
        profile_id: u64,
        reason: ProfileEndReason,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileStart {
    pub profile_id: u64,
    pub container_id: ContainerId,
    /// Time between samples, 1 to 10 s.
    pub interval_ms: u64,
    /// The session ends on its own after this long.
    pub duration_ms: u64,
    /// The agent ends the session (`interrupted`) when it has been cut off from the
    /// collector for this long.
    pub disconnected_grace_ms: u64,
}

/// What people may do to a container through Dockermon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerAction {
    Start,
    Stop,
    Restart,
    Pause,
    Unpause,
    Kill,
    Remove,
}

impl ContainerAction {
    pub const ALL: [ContainerAction; 7] = [
        ContainerAction::Start,
        ContainerAction::Stop,
        ContainerAction::Restart,
        ContainerAction::Pause,
        ContainerAction::Unpause,
        ContainerAction::Kill,
        ContainerAction::Remove,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ContainerAction::Start => "start",
            ContainerAction::Stop => "stop",
            ContainerAction::Restart => "restart",
            ContainerAction::Pause => "pause",
            ContainerAction::Unpause => "unpause",
            ContainerAction::Kill => "kill",
            ContainerAction::Remove => "remove",
        }
    }

    pub fn parse(text: &str) -> Option<ContainerAction> {
        Self::ALL.into_iter().find(|action| action.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    pub id: u64,
    pub outcome: CommandOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CommandOutcome {
    Done { detail: Option<String> },
    Failed { message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub token: String,
    pub csr_pem: String,
}

/// Enrollment by Kubernetes workload identity: the collector reviews `service_account_token`
/// with the API server and issues a certificate for `host` only if the token was issued to a
/// pod on the node of that name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceAccountEnrollRequest {
    /// The projected, audience-bound ServiceAccount token (a JWT), as the kubelet wrote it.
    pub service_account_token: String,
    /// The node name the agent runs on, which becomes its host name.
    pub host: HostName,
    pub csr_pem: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenewRequest {
    pub csr_pem: String,
}

/// The answer to enrollment and renewal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertificateIssued {
    pub host: HostName,
    pub certificate_pem: String,
    pub ca_pem: String,
}

/// An error answer from the collector's HTTP endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// A one-time join token: `dmj1-<CA fingerprint>-<secret>`, both 64 hex digits. The
/// fingerprint (SHA-256 of the CA certificate's DER) lets a new agent trust the collector
/// before it has any certificate; the secret authorises one enrollment.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_fingerprint: [u8; 32],
    pub secret: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed join token: expected dmj1-<64 hex digits>-<64 hex digits>")]
pub struct MalformedToken;

impl FromStr for JoinToken {
    type Err = MalformedToken;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.trim().split('-');
        let (Some("dmj1"), Some(fingerprint), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(MalformedToken);
        };
        Ok(JoinToken {
            ca_fingerprint: from_hex(fingerprint).ok_or(MalformedToken)?,
            secret: from_hex(secret).ok_or(MalformedToken)?,
        })
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dmj1-{}-{}",
            to_hex(&self.ca_fingerprint),
            to_hex(&self.secret)
        )
    }
}

/// Never prints the secret.
impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "JoinToken(ca {}, secret ***)",
            to_hex(&self.ca_fingerprint)
        )
    }
}

/// Lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DiskUsage, HostName};

    #[test]
    fn messages_round_trip_with_a_type_tag() {
        let agent = [
            AgentMessage::Hello(Hello {
                agent_version: "0.1.0".into(),
                protocol_version: 1,
                capabilities: vec![CAPABILITY_PROFILE.into()],
                profiles: vec![3],
                instance: Some("5f0c".into()),
            }),
            AgentMessage::Status(AgentStatus {
                profiles: vec![3],
                docker_streams: 1,
                spool_frames: 2,
                spool_bytes: 300,
            }),
            AgentMessage::Data(DataFrame {
                seq: 7,
                records: vec![Record::Usage(DiskUsage::default())],
                dropped: Dropped {
                    stats: 3,
                    ..Default::default()
                },
            }),
            AgentMessage::CommandResult(CommandResult {
                id: 9,
                outcome: CommandOutcome::Failed {
                    message: "no".into(),
                },
            }),
        ];
        for message in agent {
            let json = serde_json::to_string(&message).unwrap();
            assert_eq!(
                serde_json::from_str::<AgentMessage>(&json).unwrap(),
                message,
                "{json}"
            );
        }
        let config = AgentConfig {
            stats_interval_ms: 30_000,
            stats_concurrency: 64,
            usage_interval_ms: None,
            usage_timeout_ms: 60_000,
            paused: true,
        };
        let collector = [
            CollectorMessage::Welcome(Welcome {
                protocol_version: 1,
                host: HostName::new("web-1").unwrap(),
                last_seq: 41,
                config: config.clone(),
            }),
            CollectorMessage::Refused {
                reason: "revoked".into(),
            },
            CollectorMessage::Ack { seq: 42 },
            CollectorMessage::Command(Command {
                id: 1,
                timeout_ms: 5000,
                action: CommandAction::SetConfig(config),
            }),
            CollectorMessage::Command(Command {
                id: 2,
                timeout_ms: 5000,
                action: CommandAction::ProfileStart(ProfileStart {
                    profile_id: 9,
                    container_id: "c0ffee".into(),
                    interval_ms: 1000,
                    duration_ms: 60_000,
                    disconnected_grace_ms: 10_000,
                }),
            }),
            CollectorMessage::Command(Command {
                id: 3,
                timeout_ms: 5000,
                action: CommandAction::ProfileStop {
                    profile_id: 9,
                    reason: ProfileEndReason::NoWatchers,
                },
            }),
        ];
        for message in collector {
            let json = serde_json::to_string(&message).unwrap();
            assert!(json.starts_with("{\"type\":"), "{json}");
            assert_eq!(
                serde_json::from_str::<CollectorMessage>(&json).unwrap(),
                message,
                "{json}"
            );
        }
    }

    #[test]
    fn a_hello_from_an_agent_without_capabilities_still_reads() {
        // Protocol-1 agents from before capabilities existed.
        let hello: AgentMessage = serde_json::from_str(
            r#"{"type":"hello","agent_version":"0.1.0","protocol_version":1}"#,
        )
        .unwrap();
        let AgentMessage::Hello(hello) = hello else {
            panic!("not a hello")
        };
        assert!(hello.capabilities.is_empty());
        assert!(hello.profiles.is_empty());
    }

    #[test]
    fn join_tokens_round_trip_and_reject_garbage() {
        let token = JoinToken {
            ca_fingerprint: [0xab; 32],
            secret: [0x01; 32],
        };
        let text = token.to_string();
        assert_eq!(text.len(), 5 + 64 + 1 + 64);
        assert_eq!(text.parse::<JoinToken>().unwrap(), token);
        assert!(
            !format!("{token:?}").contains("0101"),
            "Debug leaks the secret"
        );
        for bad in [
            "",
            "dmj1",
            "dmj2-00-00",
            &text[..text.len() - 1],
            &text.replace('a', "g"),
            &format!("{text}-x"),
        ] {
            assert_eq!(bad.parse::<JoinToken>(), Err(MalformedToken), "{bad}");
        }
    }
}

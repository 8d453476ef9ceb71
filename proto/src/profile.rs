//! On-demand profiles: one container sampled every second (or every few seconds) by its
//! host's agent, for as long as someone asks.
//!
//! A profile session is created by the collector, which gives it its id; the agent reads
//! the container's counters, computes the rates over each interval, and reports every
//! sample twice: at once as a live message for watchers (at most once), and in
//! [`ProfileBatch`] records, at most 10 s apart, through the lossless spool path (exactly
//! once). Both carry the same sample, so what a watcher saw is what is saved. The last
//! batch of a session carries [`ProfileEnd`]: why it ended and how many samples the agent
//! read in all.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{ContainerId, StatsCounters, StatsRates};

/// One reading of a profiled container: the counters Docker (or the cgroup) gave at
/// `time_ns`, and the rates since the previous reading of the same session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileSample {
    /// When the counters were read (Docker's `read` time), Unix nanoseconds.
    pub time_ns: i64,
    pub counters: StatsCounters,
    pub rates: StatsRates,
}

/// Samples of one profile session, in order, as they travel through the spool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileBatch {
    /// The collector's id of the session.
    pub profile_id: u64,
    pub container_id: ContainerId,
    #[serde(default)]
    pub samples: Vec<ProfileSample>,
    /// Set on the session's last batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<ProfileEnd>,
}

/// How a profile session ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileEnd {
    /// When it ended, Unix nanoseconds.
    pub time_ns: i64,
    pub reason: ProfileEndReason,
    /// Samples the agent read over the whole session.
    pub samples: u64,
    /// What went wrong, for [`ProfileEndReason::Failed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Why a profile session ended. Every session ends with exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileEndReason {
    /// Someone stopped it.
    Stopped,
    /// Its duration was over.
    Duration,
    /// Nobody watched it any more (sessions started over the WebSocket).
    NoWatchers,
    /// The container stopped, died or was removed.
    ContainerStopped,
    /// The agent and the collector lost each other for longer than the grace period, or
    /// the agent restarted.
    Interrupted,
    /// Docker could not be read.
    Failed,
    #[serde(other)]
    Unknown,
}

impl ProfileEndReason {
    pub const ALL: [ProfileEndReason; 6] = [
        ProfileEndReason::Stopped,
        ProfileEndReason::Duration,
        ProfileEndReason::NoWatchers,
        ProfileEndReason::ContainerStopped,
        ProfileEndReason::Interrupted,
        ProfileEndReason::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProfileEndReason::Stopped => "stopped",
            ProfileEndReason::Duration => "duration",
            ProfileEndReason::NoWatchers => "no_watchers",
            ProfileEndReason::ContainerStopped => "container_stopped",
            ProfileEndReason::Interrupted => "interrupted",
            ProfileEndReason::Failed => "failed",
            ProfileEndReason::Unknown => "unknown",
        }
    }

    pub fn parse(text: &str) -> ProfileEndReason {
        Self::ALL
            .into_iter()
            .find(|reason| reason.as_str() == text)
            .unwrap_or(ProfileEndReason::Unknown)
    }
}

impl fmt::Display for ProfileEndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_by_name() {
        for reason in ProfileEndReason::ALL {
            assert_eq!(ProfileEndReason::parse(reason.as_str()), reason);
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, format!("\"{reason}\""));
        }
        assert_eq!(ProfileEndReason::parse("bored"), ProfileEndReason::Unknown);
        let later: ProfileEndReason = serde_json::from_str("\"cosmic_ray\"").unwrap();
        assert_eq!(later, ProfileEndReason::Unknown);
    }
}

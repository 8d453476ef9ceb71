//! A `DockerHost`'s status from what the collector knows: the host's row (the agent's
//! last host record), its agent's connection, its certificates, and which spec the agent
//! acknowledged. Pure, so the store's controller and the Kubernetes operator compute the
//! same status, and unit tests can check each condition.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::docker_host::{ContainerCounts, DockerHostStatus};
use crate::store::HostRow;

/// A report time moves the status on its own only after this long, so that the status is
/// written when something changes, not once per stats sweep.
pub const REPORT_TIME_STEP_NS: i64 = 300 * 1_000_000_000;

/// What is known about one host, for its status.
#[derive(Debug, Clone, Default)]
pub struct HostFacts<'a> {
    /// `None`: no agent of this name has enrolled (or the host was deleted).
    pub host: Option<&'a HostRow>,
    pub connected: bool,
    /// When its newest valid certificate expires (Unix ns); `None` when it has none.
    pub certificate_expires_ns: Option<i64>,
    pub volumes: Option<i64>,
    /// The spec's `metadata.generation`.
    pub generation: i64,
    /// The generation whose settings the connected agent acknowledged.
    pub applied_generation: Option<i64>,
    /// Why the agent refused the settings, if it did.
    pub apply_error: Option<String>,
}

/// The status for `facts`, keeping each condition's transition time from `previous` while
/// the condition's value stays the same.
pub fn host_status(
    facts: &HostFacts<'_>,
    previous: Option<&DockerHostStatus>,
    now_ns: i64,
) -> DockerHostStatus {
    let enrolled = facts.certificate_expires_ns.is_some() && facts.host.is_some();
    let ready = facts.connected
        && facts.apply_error.is_none()
        && facts.applied_generation == Some(facts.generation);
    let conditions = vec![
        condition(
            "Enrolled",
            enrolled,
            if enrolled {
                "CertificateValid"
            } else if facts.host.is_some() {
                "CertificateExpired"
            } else {
                "NotEnrolled"
            },
            if enrolled {
                "the host holds a valid certificate from the collector"
            } else if facts.host.is_some() {
                "the host has no valid certificate: re-admit it with a new join token"
            } else {
                "no agent of this name has joined: create a join token for it and start its agent"
            },
            facts,
            previous,
            now_ns,
        ),
        condition(
            "Connected",
            facts.connected,
            if facts.connected {
                "AgentConnected"
            } else {
                "AgentDisconnected"
            },
            if facts.connected {
                "the agent is connected"
            } else {
                "the agent is not connected"
            },
            facts,
            previous,
            now_ns,
        ),
        condition(
            "Ready",
            ready,
            match (&facts.apply_error, facts.connected, ready) {
                (_, false, _) => "AgentDisconnected",
                (Some(_), true, _) => "SpecRefused",
                (None, true, true) => "SpecApplied",
                (None, true, false) => "SpecPending",
            },
            &match (&facts.apply_error, facts.connected, ready) {
                (_, false, _) => "the agent is not connected".to_string(),
                (Some(error), true, _) => format!("the agent refused the settings: {error}"),
                (None, true, true) => "the agent runs this spec".to_string(),
                (None, true, false) => "the agent has not acknowledged this spec yet".to_string(),
            },
            facts,
            previous,
            now_ns,
        ),
    ];
    let info = facts.host.and_then(|host| host.info.as_ref());
    let last_seen = facts.host.and_then(|host| host.last_seen_ns);
    // The report time moves in steps (see REPORT_TIME_STEP_NS), and at once when the
    // connection changes.
    let last_report_time = match (
        last_seen,
        previous.and_then(|p| p.last_report_time.as_deref()),
    ) {
        (None, _) => None,
        (Some(seen), Some(shown))
            if connection_unchanged(facts, previous)
                && parse_time(shown).is_some_and(|shown| seen - shown < REPORT_TIME_STEP_NS) =>
        {
            Some(shown.to_string())
        }
        (Some(seen), _) => Some(format_time(seen)),
    };
    DockerHostStatus {
        conditions,
        observed_generation: facts.applied_generation,
        agent_version: facts
            .host
            .map(|host| host.agent_version.clone())
            .filter(|v| !v.is_empty()),
        docker_version: facts
            .host
            .map(|host| host.docker_version.clone())
            .filter(|v| !v.is_empty()),
        os: info.map(|info| info.os.clone()),
        arch: info.map(|info| info.architecture.clone()),
        stats_source: info
            .map(|info| info.stats_source.clone())
            .filter(|s| !s.is_empty()),
        containers: info.map(|info| ContainerCounts {
            total: i64::from(info.containers),
            running: i64::from(info.containers_running),
            paused: i64::from(info.containers_paused),
            stopped: i64::from(info.containers_stopped),
        }),
        images: info.map(|info| i64::from(info.images)),
        volumes: facts.volumes,
        last_report_time,
        certificate_expiry: facts.certificate_expires_ns.map(format_time),
    }
}

fn connection_unchanged(facts: &HostFacts<'_>, previous: Option<&DockerHostStatus>) -> bool {
    previous
        .and_then(|status| status.conditions.iter().find(|c| c.type_ == "Connected"))
        .is_some_and(|c| (c.status == "True") == facts.connected)
}

fn condition(
    type_: &str,
    value: bool,
    reason: &str,
    message: &str,
    facts: &HostFacts<'_>,
    previous: Option<&DockerHostStatus>,
    now_ns: i64,
) -> Condition {
    let status = if value { "True" } else { "False" };
    let last_transition_time = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| time(now_ns));
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        last_transition_time,
        observed_generation: Some(facts.generation),
    }
}

/// Kubernetes' `Time` (seconds precision, as the API server keeps it) from Unix ns.
pub fn time(ns: i64) -> Time {
    Time(Timestamp::from_second(ns.div_euclid(1_000_000_000)).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// RFC 3339, to the second (`2026-11-30T14:00:00Z`), from Unix ns.
pub fn format_time(ns: i64) -> String {
    time(ns).0.to_string()
}

/// Unix ns from RFC 3339.
pub fn parse_time(text: &str) -> Option<i64> {
    text.parse::<Timestamp>()
        .ok()
        .map(|t| t.as_nanosecond() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::HostId;

    const S: i64 = 1_000_000_000;

    fn host(last_seen_s: i64) -> HostRow {
        HostRow {
            id: HostId(1),
            name: "web-1".into(),
            engine_id: "E".into(),
            docker_version: "20.10.24".into(),
            agent_version: "0.1.0".into(),
            info: None,
            created_ns: 0,
            last_seen_ns: Some(last_seen_s * S),
        }
    }

    fn get<'a>(status: &'a DockerHostStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn conditions_follow_the_facts_and_keep_transition_times() {
        let row = host(1000);
        let mut facts = HostFacts {
            host: Some(&row),
            connected: true,
            certificate_expires_ns: Some(5000 * S),
            generation: 2,
            applied_generation: Some(1),
            ..HostFacts::default()
        };
        let pending = host_status(&facts, None, 1000 * S);
        assert_eq!(get(&pending, "Enrolled").status, "True");
        assert_eq!(get(&pending, "Connected").status, "True");
        assert_eq!(get(&pending, "Ready").reason, "SpecPending");
        assert_eq!(
            pending.certificate_expiry.as_deref(),
            Some("1970-01-01T01:23:20Z")
        );

        facts.applied_generation = Some(2);
        let applied = host_status(&facts, Some(&pending), 1010 * S);
        assert_eq!(get(&applied, "Ready").reason, "SpecApplied");
        assert_eq!(applied.observed_generation, Some(2));
        assert_eq!(
            get(&applied, "Connected").last_transition_time,
            get(&pending, "Connected").last_transition_time,
            "an unchanged condition keeps its transition time"
        );
        assert_ne!(
            get(&applied, "Ready").last_transition_time,
            get(&pending, "Ready").last_transition_time
        );

        facts.connected = false;
        let gone = host_status(&facts, Some(&applied), 1020 * S);
        assert_eq!(get(&gone, "Connected").reason, "AgentDisconnected");
        assert_eq!(get(&gone, "Ready").status, "False");

        let none = HostFacts {
            generation: 1,
            ..HostFacts::default()
        };
        let waiting = host_status(&none, None, 0);
        assert_eq!(get(&waiting, "Enrolled").reason, "NotEnrolled");
    }

    #[test]
    fn report_time_moves_in_steps_while_the_connection_holds() {
        fn facts_at(row: &HostRow) -> HostFacts<'_> {
            HostFacts {
                host: Some(row),
                connected: true,
                certificate_expires_ns: Some(1),
                generation: 1,
                applied_generation: Some(1),
                ..HostFacts::default()
            }
        }
        let first_row = host(1000);
        let first = host_status(&facts_at(&first_row), None, 1000 * S);
        let later_row = host(1030);
        let later = host_status(&facts_at(&later_row), Some(&first), 1030 * S);
        assert_eq!(later, first, "30 s later nothing changed worth a write");
        let much_later_row = host(1000 + 301);
        let moved = host_status(&facts_at(&much_later_row), Some(&first), 1301 * S);
        assert_ne!(moved.last_report_time, first.last_report_time);
    }
}

//! The one rule for Docker-provided text that may carry secrets, applied by the agent before
//! anything leaves the host and again by the collector on receipt (and when reading what an
//! older agent stored):
//!
//! - **Command lines are never kept.** Docker writes the command of `docker exec` and of
//!   health checks into the action of `exec_create`/`exec_start`/`exec_detach` events
//!   (`exec_create: sh -c PGPASSWORD=… psql`); the action is cut to its name.
//! - **Event attributes are kept only when they describe the event**: the object's name and
//!   image, exit code, signal, exec id, network and volume details, and the compose labels
//!   that identify a container. Docker also copies every label of a container into its
//!   container events; those belong to the inventory, under the next rule.
//! - **Labels are kept, except secret-looking values**: a label whose key names a secret
//!   (a password, token, secret, credential, API or private key, basic-auth users) has its
//!   value replaced by [`REDACTED`]. Labels drive filters and compose identity, so the rest
//!   are kept and shown to every signed-in user.
//! - Environment variables are never read.

use std::collections::BTreeMap;

use crate::DockerEvent;

/// What a secret-looking label value becomes.
pub const REDACTED: &str = "***";

/// Actions whose text after the name is a command line.
const COMMAND_ACTIONS: &[&str] = &["exec_create", "exec_start", "exec_detach"];

/// Event attributes worth keeping: they describe the event, not the object's labels.
const KEPT_ATTRIBUTES: &[&str] = &[
    "name",
    "image",
    "exitCode",
    "signal",
    "execID",
    "container",
    "type",
    "driver",
    "destination",
    "read/write",
    "propagation",
    "com.docker.compose.project",
    "com.docker.compose.service",
    "com.docker.compose.container-number",
    // Dockermon's own gap records.
    "from_ns",
    "to_ns",
    "reason",
];

/// Key fragments that mark a secret wherever they appear in a label key.
const SECRET_FRAGMENTS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "credential",
    "apikey",
    "api_key",
    "api-key",
    "privatekey",
    "private_key",
    "private-key",
    "basicauth",
    "digestauth",
];

/// Key segments (between `.`, `_`, `-`, `/`) that mark a secret on their own.
const SECRET_SEGMENTS: &[&str] = &["pwd", "pass", "auth", "key", "credentials"];

/// Whether a label key names a secret.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_FRAGMENTS
        .iter()
        .any(|fragment| key.contains(fragment))
        || key
            .split(['.', '_', '-', '/'])
            .any(|segment| SECRET_SEGMENTS.contains(&segment))
}

/// Redacts the values of secret-looking labels.
pub fn labels(labels: &mut BTreeMap<String, String>) {
    for (key, value) in labels.iter_mut() {
        if is_secret_key(key) && value != REDACTED {
            *value = REDACTED.to_owned();
        }
    }
}

/// An event's action without a command line (`exec_start: sh -c …` → `exec_start`).
pub fn action(action: &str) -> &str {
    let name = action.split(':').next().unwrap_or_default().trim();
    if COMMAND_ACTIONS.contains(&name) {
        name
    } else {
        action
    }
}

/// Keeps only the attributes that describe an event.
pub fn attributes(attributes: &mut BTreeMap<String, String>) {
    attributes.retain(|key, _| KEPT_ATTRIBUTES.contains(&key.as_str()));
}

/// Applies the rule to an event.
pub fn event(event: &mut DockerEvent) {
    let cut = action(&event.action);
    if cut.len() != event.action.len() {
        event.action = cut.to_owned();
    }
    attributes(&mut event.attributes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventKind;

    fn exec_event(action: &str) -> DockerEvent {
        DockerEvent {
            time_ns: 1,
            kind: EventKind::Container,
            action: action.into(),
            actor_id: "c".into(),
            actor_name: Some("db".into()),
            attributes: BTreeMap::from([
                ("name".into(), "db".into()),
                ("image".into(), "postgres:16".into()),
                ("execID".into(), "e1".into()),
                ("DB_PASSWORD".into(), "hunter2".into()),
                ("com.example.team".into(), "ops".into()),
                ("com.docker.compose.service".into(), "db".into()),
            ]),
            scope: None,
        }
    }

    #[test]
    fn exec_and_health_check_commands_never_stay() {
        for (raw, kept) in [
            ("exec_create: sh -c echo DB_PASSWORD=hunter2", "exec_create"),
            ("exec_start: sh -c echo DB_PASSWORD=hunter2", "exec_start"),
            ("exec_detach: psql -W secret", "exec_detach"),
            ("exec_die", "exec_die"),
            ("health_status: unhealthy", "health_status: unhealthy"),
            ("start", "start"),
        ] {
            let mut event = exec_event(raw);
            super::event(&mut event);
            assert_eq!(event.action, kept);
        }
    }

    #[test]
    fn only_descriptive_attributes_stay() {
        let mut event = exec_event("exec_start: env");
        super::event(&mut event);
        let keys: Vec<&str> = event.attributes.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["com.docker.compose.service", "execID", "image", "name"]
        );
    }

    #[test]
    fn secret_looking_label_values_are_redacted() {
        let mut map = BTreeMap::from([
            ("DB_PASSWORD".into(), "hunter2".into()),
            (
                "traefik.http.middlewares.a.basicauth.users".into(),
                "u:$apr1$x".into(),
            ),
            ("com.example.api-key".into(), "k".into()),
            ("vault.token".into(), "t".into()),
            ("app.pwd".into(), "p".into()),
            ("com.docker.compose.project".into(), "shop".into()),
            ("org.opencontainers.image.authors".into(), "Ann".into()),
            ("tier".into(), "front".into()),
        ]);
        labels(&mut map);
        let redacted: Vec<&str> = map
            .iter()
            .filter(|(_, v)| *v == REDACTED)
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(
            redacted,
            [
                "DB_PASSWORD",
                "app.pwd",
                "com.example.api-key",
                "traefik.http.middlewares.a.basicauth.users",
                "vault.token"
            ]
        );
        assert_eq!(map["org.opencontainers.image.authors"], "Ann");
    }
}

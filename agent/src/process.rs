//! Process plumbing shared by the agent and collector binaries (the collector embeds an
//! agent in standalone mode): logs to stderr, shutdown on SIGTERM/SIGINT, and error
//! messages that carry their causes.

use std::io::IsTerminal;

use clap::ValueEnum;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs to stderr (stdout may carry records) through a `target=level,…` filter (tracing's
/// `Targets`: `warn,dockermon_agent::stats=debug`), in colour only on a terminal. `Targets`
/// rather than `EnvFilter`: the same syntax for targets and levels without span and field
/// matching, which nobody used, and without the regex engine that came with it — a large
/// share of the agent's binary and so of its resident memory (BENCHMARKS.md). A log line that cannot be written (stderr closed: the SSH session, `tee` or
/// `| head` that read it has gone) is dropped: losing a log line is better than losing the
/// process, and tracing's own fallback (`eprintln!` of the failure) would panic on the same
/// closed stderr.
pub fn init_logging(filter: &str, format: LogFormat) -> Result<(), String> {
    let targets = log_filter(filter)?;
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false);
    let registry = tracing_subscriber::registry().with(targets);
    match format {
        LogFormat::Text => registry.with(layer).init(),
        LogFormat::Json => registry.with(layer.json()).init(),
    }
    Ok(())
}

/// Parses a `--log` filter; the error names the filter and what is wrong with it.
fn log_filter(filter: &str) -> Result<Targets, String> {
    filter.parse().map_err(|e| format!("{filter:?}: {e}"))
}

/// Writes a line to stderr like `eprintln!`, except that a closed stderr is ignored instead
/// of panicking (see [`init_logging`]).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr(), $($arg)*);
    }};
}

/// Makes every file and directory this process creates private to its user (umask 077):
/// the database with its password hashes, keys, certificates, spools, secrets. Called
/// first thing in `main`, before any of them is created.
pub fn private_files() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// What under `dir` (itself included, two levels down) other users can read or write: what
/// an earlier version or a hand-made setup left too open. Certificates (`*.crt`, `*.pem`
/// under `pki/`) are public by nature and not reported, nor is access through this
/// process's own group (`shared_bits`).
pub fn shared_files(dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    fn visit(path: &std::path::Path, depth: u32, own_group: u32, found: &mut Vec<String>) {
        let Ok(metadata) = std::fs::symlink_metadata(path) else {
            return;
        };
        let mode = metadata.permissions().mode() & 0o777;
        let public = path.extension().is_some_and(|extension| extension == "crt");
        if shared_bits(mode, metadata.is_dir(), metadata.gid(), own_group) != 0 && !public {
            found.push(format!("{} (mode {mode:04o})", path.display()));
        }
        if metadata.is_dir() && depth < 2 {
            for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
                visit(&entry.path(), depth + 1, own_group, found);
            }
        }
    }
    let mut found = Vec::new();
    visit(dir, 0, rustix::process::getegid().as_raw(), &mut found);
    found
}

/// The permission bits of `mode` that give access to users other than this process's:
/// those of others, and those of the file's group unless it is `own_group`, the group this
/// process runs as. That group is the process's own in the setups that make data
/// directories group-writable on purpose: Kubernetes gives a pod's volumes its `fsGroup`
/// (group-writable and setgid, with the pod's processes as the group's only members), and
/// Debian's user-private groups hold their user alone. Of a directory, only write access
/// counts: reading or entering one shows names, while each file's own mode guards what it
/// holds (a volume's root is commonly 0755 or 0777 with the group added).
fn shared_bits(mode: u32, directory: bool, group: u32, own_group: u32) -> u32 {
    let mode = if directory { mode & 0o222 } else { mode };
    let group_bits = if group == own_group { 0 } else { mode & 0o070 };
    group_bits | (mode & 0o007)
}

/// A flag whose value is a secret, and where the secret should come from instead.
pub struct SecretFlag {
    /// clap's id of the argument (the field's name).
    pub id: &'static str,
    pub flag: &'static str,
    pub instead: &'static str,
    /// Whether a value is a secret at all (a database URL without a password is not).
    pub secret: fn(&str) -> bool,
}

/// Warnings for secret flags given on the command line, where every local user can read
/// them (`ps`, `/proc/<pid>/cmdline`); environment variables and files are not. Looks into
/// subcommands too.
pub fn secrets_on_command_line(matches: &clap::ArgMatches, flags: &[SecretFlag]) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut current = Some(matches);
    while let Some(matches) = current {
        for flag in flags {
            let on_command_line = matches
                .try_get_one::<String>(flag.id)
                .ok()
                .flatten()
                .filter(|value| (flag.secret)(value))
                .is_some()
                && matches.value_source(flag.id) == Some(clap::parser::ValueSource::CommandLine);
            if on_command_line {
                warnings.push(format!(
                    "{} on the command line can be read by every user of this machine (ps); use {} instead",
                    flag.flag, flag.instead
                ));
            }
        }
        current = matches.subcommand().map(|(_, sub)| sub);
    }
    warnings
}

/// Cancels `cancel` on the first SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when the returned future first runs: spawned, that could be after the process
/// has logged that it started, and a SIGTERM sent on that line would meet the default action
/// (death by signal, no clean stop). Call it inside the runtime.
pub fn cancel_on_signal(cancel: CancellationToken) -> impl Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::warn!("cannot install signal handlers; stop the process with SIGKILL");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down");
        cancel.cancel();
    }
}

/// An error and its causes, `: `-separated, each said once: many libraries repeat their
/// cause in their own message (sqlx's "error returned from database: 1045 …" has the
/// 1045 error as its source), and a reason printed twice reads like two problems.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {

    #[test]
    fn files_others_can_read_are_found_certificates_aside() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let set = |path: &std::path::Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        set(dir.path(), 0o700);
        std::fs::create_dir(dir.path().join("pki")).unwrap();
        set(&dir.path().join("pki"), 0o700);
        // Files this process makes have its own group: group access is not sharing.
        for (name, mode) in [
            ("dockermon.db", 0o644),
            ("dockermon.db-wal", 0o660),
            ("pki/ca.crt", 0o644),
            ("pki/ca.key", 0o600),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, "x").unwrap();
            set(&path, mode);
        }
        let found = shared_files(dir.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].ends_with("dockermon.db (mode 0644)"), "{found:?}");
    }

    use super::*;

    #[test]
    fn only_others_and_foreign_groups_count_as_shared() {
        // A pod's data volume (kubelet, fsGroup 65532): the pod's own group may write.
        assert_eq!(shared_bits(0o775, true, 65532, 65532), 0);
        assert_eq!(shared_bits(0o777, true, 65532, 65532), 0o002);
        assert_eq!(shared_bits(0o660, false, 65532, 65532), 0);
        assert_eq!(shared_bits(0o664, false, 65532, 65532), 0o004);
        // Another group's members are other users.
        assert_eq!(shared_bits(0o750, false, 100, 65532), 0o050);
        assert_eq!(shared_bits(0o770, true, 100, 65532), 0o020);
        assert_eq!(shared_bits(0o755, true, 100, 65532), 0);
        assert_eq!(shared_bits(0o600, false, 100, 65532), 0);
    }

    #[test]
    fn log_filters_take_a_default_level_and_per_target_levels() {
        use tracing::Level;
        let filter = log_filter("warn,dockermon_agent::stats=debug,hyper=off").unwrap();
        assert!(filter.would_enable("dockermon_agent::stats", &Level::DEBUG));
        assert!(filter.would_enable("dockermon_agent::stats::rates", &Level::DEBUG));
        assert!(!filter.would_enable("dockermon_agent::events", &Level::INFO));
        assert!(filter.would_enable("dockermon_agent::events", &Level::WARN));
        assert!(!filter.would_enable("hyper::proto", &Level::ERROR));
        let error = log_filter("dockermon=loud").unwrap_err();
        assert!(error.starts_with("\"dockermon=loud\": "), "{error}");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot start")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn error_chains_carry_causes() {
        let error = Outer(std::io::Error::other("port 9810 in use"));
        assert_eq!(error_chain(&error), "cannot start: port 9810 in use");
    }
}

//! Process plumbing shared by the agent and collector binaries (the collector embeds an
//! agent in standalone mode): logs to stderr, shutdown on SIGTERM/SIGINT, and error
//! messages that carry their causes.

use std::io::IsTerminal;

use clap::ValueEnum;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs to stderr (stdout may carry records) with a tracing env-filter, in colour only on a
/// terminal. A log line that cannot be written (stderr closed: the SSH session, `tee` or
/// `| head` that read it has gone) is dropped: losing a log line is better than losing the
/// process, and tracing's own fallback (`eprintln!` of the failure) would panic on the same
/// closed stderr.
pub fn init_logging(filter: &str, format: LogFormat) -> Result<(), String> {
    let filter = EnvFilter::try_new(filter).map_err(|e| format!("{filter:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
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

/// Cancels `cancel` on the first SIGTERM or SIGINT.
pub async fn cancel_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
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
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot start")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn error_chains_carry_causes() {
        let error = Outer(std::io::Error::other("port 9810 in use"));
        assert_eq!(error_chain(&error), "cannot start: port 9810 in use");
    }
}

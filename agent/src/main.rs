//! `dockermon-agent`: parse configuration, set up logging and signals, run.
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when Docker cannot be reached
//! or output fails, 2 for configuration errors.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use dockermon_agent::agent;
use dockermon_agent::config::{Cli, LogFormat};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// How long shutdown may take before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.resolve() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("dockermon-agent: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = init_logging(&cli.log, cli.log_format) {
        eprintln!("dockermon-agent: configuration error: log: {error}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("dockermon-agent: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let cancel = CancellationToken::new();
        tokio::spawn(cancel_on_signal(cancel.clone()));
        let run = agent::run(config, cancel.clone());
        tokio::pin!(run);
        let result = tokio::select! {
            result = &mut run => result,
            () = async { cancel.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
                tracing::warn!("shutdown took too long; exiting");
                Ok(())
            }
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("dockermon-agent: {}", error_chain(&error));
                ExitCode::FAILURE
            }
        }
    })
}

fn init_logging(filter: &str, format: LogFormat) -> Result<(), String> {
    let filter = EnvFilter::try_new(filter).map_err(|e| format!("{filter:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

async fn cancel_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop the agent with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
    cancel.cancel();
}

/// An error and its causes, `: `-separated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

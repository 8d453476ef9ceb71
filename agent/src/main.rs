//! `dockermon-agent`: parse configuration, set up logging and signals, run.
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when Docker cannot be reached
//! or output fails, 2 for configuration errors.

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};
use dockermon_agent::agent;
use dockermon_agent::config::Cli;
use dockermon_agent::process::{
    SecretFlag, cancel_on_signal, error_chain, init_logging, private_files, secrets_on_command_line,
};
use dockermon_agent::say;
use tokio_util::sync::CancellationToken;

/// How long shutdown may take before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    // Everything this process creates is private to its user.
    private_files();
    // One TLS crypto provider for the whole process, before anything uses TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    let config = match cli.resolve() {
        Ok(config) => config,
        Err(error) => {
            say!(
                "dockermon-agent: configuration error: {}",
                error_chain(&error)
            );
            return ExitCode::from(2);
        }
    };
    let secrets = secrets_on_command_line(
        &matches,
        &[SecretFlag {
            id: "join_token",
            flag: "--join-token",
            instead: "DOCKERMON_JOIN_TOKEN or --join-token-file",
            secret: |_| true,
        }],
    );
    if let Err(error) = init_logging(&config.log, config.log_format) {
        say!("dockermon-agent: configuration error: log: {error}");
        return ExitCode::from(2);
    }
    for warning in secrets {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            say!("dockermon-agent: cannot start the runtime: {error}");
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
                say!("dockermon-agent: {}", error_chain(&error));
                ExitCode::FAILURE
            }
        }
    })
}

//! `dockermon-collector`: parse configuration, set up logging and signals, run a command.
//!
//! Exit codes: 0 after a clean shutdown, 1 when something fails at run time (a failed
//! migration, an unusable listener), 2 for configuration errors.

use std::process::ExitCode;

use clap::Parser;
use dockermon_agent::process::{cancel_on_signal, init_logging};
use dockermon_agent::say;
use dockermon_collector::commands::{self, config_error};
use dockermon_collector::config::{self, Cli, Command};
use dockermon_collector::serve::serve;
use dockermon_collector::standalone::standalone;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    // One TLS crypto provider for the whole process, before anything uses TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let file = match config::read_file(cli.config.as_deref()) {
        Ok(file) => file,
        Err(error) => return config_error(&error),
    };
    let (log, log_format) = cli.logging(&file);
    if let Err(error) = init_logging(&log, log_format) {
        say!("dockermon-collector: configuration error: log: {error}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            say!("dockermon-collector: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => {
            let config = match args.resolve(&file) {
                Ok(config) => config,
                Err(error) => return config_error(&error),
            };
            runtime.block_on(async {
                let cancel = CancellationToken::new();
                tokio::spawn(cancel_on_signal(cancel.clone()));
                serve(config, cancel).await
            })
        }
        Command::Standalone(args) => {
            let (config, docker_host) = match args.resolve(&file) {
                Ok(resolved) => resolved,
                Err(error) => return config_error(&error),
            };
            runtime.block_on(async {
                let cancel = CancellationToken::new();
                tokio::spawn(cancel_on_signal(cancel.clone()));
                standalone(config, &docker_host, cancel).await
            })
        }
        command => return commands::run(&runtime, command, &file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            say!(
                "dockermon-collector: {}",
                dockermon_agent::process::error_chain(error.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

//! `dockermon-collector`: parse configuration, set up logging and signals, run a command.
//!
//! Exit codes: 0 after a clean shutdown, 1 when something fails at run time (a failed
//! migration, an unusable listener), 2 for configuration errors.

use std::process::ExitCode;

use clap::Parser;
use dockermon_agent::process::{cancel_on_signal, error_chain, init_logging};
use dockermon_collector::config::{self, Cli, Command};
use dockermon_collector::serve::serve;
use dockermon_collector::store::Store;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = match config::read_file(cli.config.as_deref()) {
        Ok(file) => file,
        Err(error) => return config_error(&error),
    };
    if let Err(error) = init_logging(&cli.log, cli.log_format) {
        eprintln!("dockermon-collector: configuration error: log: {error}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("dockermon-collector: cannot start the runtime: {error}");
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
        Command::Migrate(args) => {
            let database = match args.resolve(&file) {
                Ok(database) => database,
                Err(error) => return config_error(&error),
            };
            runtime.block_on(async {
                let store = Store::connect(&database.url).await?;
                store.migrate().await?;
                eprintln!("dockermon-collector: {} is up to date", database.url);
                anyhow::Ok(())
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dockermon-collector: {}", error_chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn config_error(error: &config::ConfigError) -> ExitCode {
    eprintln!(
        "dockermon-collector: configuration error: {}",
        error_chain(error)
    );
    ExitCode::from(2)
}

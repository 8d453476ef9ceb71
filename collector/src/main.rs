//! `dockermon-collector`: parse configuration, set up logging and signals, run a command.
//!
//! Exit codes: 0 after a clean shutdown, 1 when something fails at run time (a failed
//! migration, an unusable listener), 2 for configuration errors.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use dockermon_agent::process::{
    SecretFlag, cancel_on_signal, init_logging, private_files, secrets_on_command_line,
};
use dockermon_agent::say;
use dockermon_collector::commands::{self, config_error};
use dockermon_collector::config::{self, Cli, Command};
use dockermon_collector::serve::serve;
use dockermon_collector::standalone::standalone;
use tokio_util::sync::CancellationToken;

/// Flags that take a secret: they work, with a warning, since `ps` shows them to everyone.
const SECRET_FLAGS: &[SecretFlag] = &[
    SecretFlag {
        id: "database_url",
        flag: "--database-url with a password",
        instead: "DOCKERMON_DATABASE_URL or --database-url-file",
        secret: has_password,
    },
    SecretFlag {
        id: "jwt_secret",
        flag: "--jwt-secret",
        instead: "DOCKERMON_JWT_SECRET or --jwt-secret-file",
        secret: |_| true,
    },
    SecretFlag {
        id: "admin_password",
        flag: "--admin-password",
        instead: "DOCKERMON_ADMIN_PASSWORD or --admin-password-file",
        secret: |_| true,
    },
];

/// Whether a database URL carries a password (`mysql://user:password@host/db`).
fn has_password(url: &str) -> bool {
    url.split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .is_some_and(|(credentials, _)| credentials.contains(':'))
}

fn main() -> ExitCode {
    // Everything this process creates is private to its user.
    private_files();
    // One TLS crypto provider for the whole process, before anything uses TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    let file = match config::read_file(cli.config.as_deref()) {
        Ok(file) => file,
        Err(error) => return config_error(&error),
    };
    let (log, log_format) = cli.logging(&file);
    if let Err(error) = init_logging(&log, log_format) {
        say!("dockermon-collector: configuration error: log: {error}");
        return ExitCode::from(2);
    }
    for warning in secrets_on_command_line(&matches, SECRET_FLAGS) {
        tracing::warn!("{warning}");
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

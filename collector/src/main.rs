//! `dockermon-collector`: parse configuration, set up logging and signals, run a command.
//!
//! Exit codes: 0 after a clean shutdown, 1 when something fails at run time (a failed
//! migration, an unusable listener), 2 for configuration errors.

use std::process::ExitCode;

use clap::Parser;
use dockermon_agent::process::{cancel_on_signal, error_chain, init_logging};
use dockermon_collector::config::{self, Cli, Command, HostCommand, PkiCommand, TokenCommand};
use dockermon_collector::pki::{Authority, PkiPaths};
use dockermon_collector::serve::serve;
use dockermon_collector::store::Store;
use dockermon_proto::transport::JoinToken;
use dockermon_proto::{HostName, now_ns};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    // One TLS crypto provider for the whole process, before anything uses TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();
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
        Command::Pki(PkiCommand::Init(args)) => {
            let data_dir = args
                .data_dir
                .clone()
                .or_else(|| file.data_dir.clone())
                .unwrap_or_else(|| "./data".into());
            let paths = PkiPaths::in_data_dir(&data_dir);
            let sans = if args.sans.is_empty() {
                default_server_names()
            } else {
                args.sans.clone()
            };
            Authority::init(&paths, &sans, args.force)
                .map(|authority| {
                    println!(
                        "CA and server certificate written to {}",
                        paths.dir.display()
                    );
                    println!("server names: {}", sans.join(", "));
                    println!(
                        "CA fingerprint (SHA-256): {}",
                        dockermon_proto::transport::to_hex(&authority.fingerprint())
                    );
                })
                .map_err(anyhow::Error::from)
        }
        Command::Token(TokenCommand::Create(args)) => {
            let database = match args.database.resolve(&file) {
                Ok(database) => database,
                Err(error) => return config_error(&error),
            };
            let host = match HostName::new(args.host.clone()) {
                Ok(host) => host,
                Err(error) => {
                    return config_error(&config::ConfigError::Invalid {
                        key: "host",
                        reason: error.to_string(),
                    });
                }
            };
            let ttl = match config::duration("ttl", &args.ttl) {
                Ok(ttl) => ttl,
                Err(error) => return config_error(&error),
            };
            runtime.block_on(async {
                let authority = Authority::load(&PkiPaths::in_data_dir(&database.data_dir))?;
                let store = Store::connect(&database.url).await?;
                store.migrate().await?;
                let token = JoinToken {
                    ca_fingerprint: authority.fingerprint(),
                    secret: rand::random(),
                };
                let now = now_ns();
                store
                    .create_join_token(&token.secret, &host, None, now, now + ttl.as_nanos() as i64)
                    .await?;
                println!("{token}");
                eprintln!(
                    "dockermon-collector: one-time join token for {host}, valid for {}",
                    args.ttl
                );
                anyhow::Ok(())
            })
        }
        Command::Host(HostCommand::Delete(args)) => {
            let database = match args.database.resolve(&file) {
                Ok(database) => database,
                Err(error) => return config_error(&error),
            };
            let host = match HostName::new(args.name.clone()) {
                Ok(host) => host,
                Err(error) => {
                    return config_error(&config::ConfigError::Invalid {
                        key: "name",
                        reason: error.to_string(),
                    });
                }
            };
            runtime.block_on(async {
                let store = Store::connect(&database.url).await?;
                store.migrate().await?;
                let existed = store.delete_host(&host, now_ns()).await?;
                eprintln!(
                    "dockermon-collector: {host} {}; its certificates are revoked",
                    if existed { "deleted" } else { "was not known" }
                );
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

/// Names agents are likely to use for this collector: localhost, loopback, the host name.
fn default_server_names() -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && host != "localhost" {
            names.push(host.to_owned());
        }
    }
    names
}

//! `dockermon-collector`: parse configuration, set up logging and signals, run a command.
//!
//! Exit codes: 0 after a clean shutdown, 1 when something fails at run time (a failed
//! migration, an unusable listener), 2 for configuration errors.

use std::process::ExitCode;

use clap::Parser;
use dockermon_agent::process::{cancel_on_signal, error_chain, init_logging};
use dockermon_collector::admin;
use dockermon_collector::config::{
    self, Cli, Command, FileConfig, HostCommand, PkiCommand, TokenCommand, UserCommand,
};
use dockermon_collector::pki::{Authority, PkiPaths};
use dockermon_collector::serve::serve;
use dockermon_collector::standalone::standalone;
use dockermon_collector::store::Store;
use dockermon_collector::transport::enroll::create_join_token;
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
                let (token, _) = create_join_token(&store, &authority, &host, ttl, None).await?;
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
        Command::User(command) => return run_user_command(&runtime, command, &file),
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

fn run_user_command(
    runtime: &tokio::runtime::Runtime,
    command: UserCommand,
    file: &FileConfig,
) -> ExitCode {
    let database = match &command {
        UserCommand::Add(args) => args.database.resolve(file),
        UserCommand::Passwd(args) => args.database.resolve(file),
        UserCommand::List(args) => args.resolve(file),
    };
    let database = match database {
        Ok(database) => database,
        Err(error) => return config_error(&error),
    };
    let result = runtime.block_on(async {
        let store = Store::connect(&database.url).await?;
        store.migrate().await?;
        match command {
            UserCommand::Add(args) => {
                let (password, generated) = admin::read_password(&args.password)?;
                let user =
                    admin::add_user(&store, &args.email, &args.role, password.clone()).await?;
                eprintln!(
                    "dockermon-collector: added {} ({})",
                    user.email,
                    user.role.as_str()
                );
                if generated {
                    println!("{password}");
                    eprintln!("dockermon-collector: the password above is shown only now");
                }
            }
            UserCommand::Passwd(args) => {
                let (password, generated) = admin::read_password(&args.password)?;
                admin::set_password(&store, &args.email, password.clone()).await?;
                eprintln!(
                    "dockermon-collector: password of {} changed; their sessions have ended",
                    args.email
                );
                if generated {
                    println!("{password}");
                }
            }
            UserCommand::List(_) => {
                println!("{:<8} {:<40} {:<10} STATUS", "ID", "EMAIL", "ROLE");
                for user in admin::list_users(&store).await? {
                    let status = if user.disabled { "disabled" } else { "active" };
                    println!(
                        "{:<8} {:<40} {:<10} {status}",
                        user.id,
                        user.email,
                        user.role.as_str()
                    );
                }
            }
        }
        anyhow::Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dockermon-collector: {}", error_chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

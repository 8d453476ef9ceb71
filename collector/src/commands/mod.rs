//! The shell's admin commands: `migrate`, `pki init`, `token create|list|revoke`,
//! `host list|delete`, `user add|passwd|list`, and for resources `crds`, `apply`, `get`
//! and `delete` ([`resource_commands`]).
//!
//! Each acts on a deployment's existing database ([`Store::open_existing`]): run without
//! the deployment's `--database-url` or `--data-dir`, a command refuses instead of creating
//! a new, empty database and reporting success on it. Only `migrate` (like `serve` and
//! `standalone`) sets a database up. What a command prints for people goes to stderr; what
//! a script takes (a token, a generated password, a list) goes to stdout, and a closed
//! stdout is an error, since the one copy of a token must not vanish silently.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use dockermon_agent::process::error_chain;
use dockermon_agent::say;
use dockermon_proto::{HostName, now_ns};

mod resource_commands;

use crate::admin;
use crate::config::{
    self, Command, ConfigError, DatabaseConfig, FileConfig, HostCommand, PkiCommand, PkiInitArgs,
    TokenCommand, UserCommand,
};
use crate::pki::{Authority, PkiPaths};
use crate::store::Store;
use crate::transport::join_tokens::{self, TokenRequest};

/// Runs an admin command; the process's exit code (0, 1 on failure, 2 for configuration).
pub fn run(runtime: &tokio::runtime::Runtime, command: Command, file: &FileConfig) -> ExitCode {
    let result = match command {
        Command::Serve(_) | Command::Standalone(_) => {
            unreachable!("serve and standalone are not admin commands")
        }
        Command::Pki(PkiCommand::Init(args)) => pki_init(&args, file),
        Command::Migrate(args) => match args.resolve(file) {
            Ok(database) => runtime.block_on(migrate(&database)),
            Err(error) => return config_error(&error),
        },
        Command::Token(command) => {
            let database = match &command {
                TokenCommand::Create(args) => args.database.resolve(file),
                TokenCommand::List(args) => args.database.resolve(file),
                TokenCommand::Revoke(args) => args.database.resolve(file),
            };
            match database.and_then(|database| Ok((database, token_input(&command)?))) {
                Ok((database, input)) => runtime.block_on(token(&database, command, input)),
                Err(error) => return config_error(&error),
            }
        }
        Command::Host(command) => {
            let database = match &command {
                HostCommand::List(args) => args.resolve(file),
                HostCommand::Delete(args) => args.database.resolve(file),
            };
            match database {
                Ok(database) => runtime.block_on(host(&database, command)),
                Err(error) => return config_error(&error),
            }
        }
        Command::Crds => output(format_args!("{}", crate::resources::crds_yaml().trim_end())),
        Command::Apply(args) => match args.database.resolve(file) {
            Ok(database) => runtime.block_on(resource_commands::apply(&database, &args)),
            Err(error) => return config_error(&error),
        },
        Command::Get(args) => match args.database.resolve(file) {
            Ok(database) => runtime.block_on(resource_commands::get(&database, &args)),
            Err(error) => return config_error(&error),
        },
        Command::Delete(args) => match args.database.resolve(file) {
            Ok(database) => runtime.block_on(resource_commands::delete(&database, &args)),
            Err(error) => return config_error(&error),
        },
        Command::User(command) => {
            let database = match &command {
                UserCommand::Add(args) => args.database.resolve(file),
                UserCommand::Passwd(args) => args.database.resolve(file),
                UserCommand::List(args) => args.resolve(file),
            };
            match database {
                Ok(database) => runtime.block_on(user(&database, command)),
                Err(error) => return config_error(&error),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            say!("dockermon-collector: {}", error_chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// A configuration error, reported once; exit code 2.
pub fn config_error(error: &ConfigError) -> ExitCode {
    say!(
        "dockermon-collector: configuration error: {}",
        error_chain(error)
    );
    ExitCode::from(2)
}

/// A line for scripts, on stdout.
pub(crate) fn output(line: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("cannot write to standard output")
}

async fn migrate(database: &DatabaseConfig) -> anyhow::Result<()> {
    let store = Store::connect(&database.url).await?;
    store.migrate().await?;
    say!("dockermon-collector: {} is up to date", database.url);
    Ok(())
}

fn pki_init(args: &PkiInitArgs, file: &FileConfig) -> anyhow::Result<()> {
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
    let authority = Authority::init(&paths, &sans, args.force)?;
    output(format_args!(
        "CA and server certificate written to {}",
        paths.dir.display()
    ))?;
    output(format_args!("server names: {}", sans.join(", ")))?;
    output(format_args!(
        "CA fingerprint (SHA-256): {}",
        dockermon_proto::transport::to_hex(&authority.fingerprint())
    ))
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

/// What `token create` was given, checked before anything connects.
struct TokenInput {
    host: Option<HostName>,
    ttl: std::time::Duration,
}

fn token_input(command: &TokenCommand) -> Result<TokenInput, ConfigError> {
    let TokenCommand::Create(args) = command else {
        return Ok(TokenInput {
            host: None,
            ttl: std::time::Duration::ZERO,
        });
    };
    let host = HostName::new(args.host.clone()).map_err(|error| ConfigError::Invalid {
        key: "host",
        reason: error.to_string(),
    })?;
    let ttl = config::duration("ttl", &args.ttl)?;
    if !(join_tokens::MIN_TTL..=join_tokens::MAX_TTL).contains(&ttl) {
        return Err(ConfigError::Invalid {
            key: "ttl",
            reason: format!("{} is out of range: use 1s to 7d", args.ttl),
        });
    }
    Ok(TokenInput {
        host: Some(host),
        ttl,
    })
}

async fn token(
    database: &DatabaseConfig,
    command: TokenCommand,
    input: TokenInput,
) -> anyhow::Result<()> {
    let store = Store::open_existing(&database.url).await?;
    match command {
        TokenCommand::Create(args) => {
            let host = input.host.expect("checked by token_input");
            let authority = match Authority::load(&PkiPaths::in_data_dir(&database.data_dir)) {
                // The database was found, so this is a deployment: its CA is elsewhere,
                // and `pki init` here would make a second one no agent trusts.
                Err(crate::pki::PkiError::Missing(dir)) => anyhow::bail!(
                    "no CA in {}: pass the deployment's --data-dir (or set DOCKERMON_DATA_DIR)",
                    dir.display()
                ),
                loaded => loaded?,
            };
            let request = TokenRequest {
                host: &host,
                ttl: input.ttl,
                replace: args.replace,
                created_by: None,
            };
            let (token, _) = join_tokens::create(&store, &authority, request).await?;
            output(format_args!("{token}"))?;
            say!(
                "dockermon-collector: one-time join token for {host}, valid for {}{}",
                args.ttl,
                if args.replace {
                    "; its current agent is refused once the new one enrolls"
                } else {
                    ""
                }
            );
        }
        TokenCommand::List(args) => {
            let now = now_ns();
            output(format_args!(
                "{:<6} {:<32} {:<8} {:<20} CREATED BY",
                "ID", "HOST", "STATE", "EXPIRES"
            ))?;
            for token in store.join_tokens(args.all, now).await? {
                output(format_args!(
                    "{:<6} {:<32} {:<8} {:<20} {}",
                    token.id,
                    token.host,
                    token.state(now),
                    rfc3339(token.expires_ns),
                    token
                        .created_by
                        .map_or_else(|| "shell".to_owned(), |id| format!("user {id}")),
                ))?;
            }
        }
        TokenCommand::Revoke(args) => {
            let token = store
                .revoke_join_token(args.id, now_ns())
                .await
                .map_err(|error| match error {
                    crate::store::StoreError::NotFound => {
                        anyhow::anyhow!(
                            "there is no join token {} (see `token list --all`)",
                            args.id
                        )
                    }
                    other => other.into(),
                })?;
            say!(
                "dockermon-collector: join token {} for {} is revoked",
                token.id,
                token.host
            );
        }
    }
    store.close().await;
    Ok(())
}

async fn host(database: &DatabaseConfig, command: HostCommand) -> anyhow::Result<()> {
    let store = Store::open_existing(&database.url).await?;
    match command {
        HostCommand::List(_) => {
            let now = now_ns();
            output(format_args!(
                "{:<32} {:<20} {:<10} AGENT",
                "NAME", "LAST SEEN", "ENROLLED"
            ))?;
            for host in store.hosts().await? {
                let enrolled = match HostName::new(host.name.clone()) {
                    Ok(name) => !store.live_certificates(&name, now).await?.is_empty(),
                    Err(_) => false,
                };
                output(format_args!(
                    "{:<32} {:<20} {:<10} {}",
                    host.name,
                    host.last_seen_ns
                        .map_or_else(|| "never".to_owned(), rfc3339),
                    if enrolled { "yes" } else { "no" },
                    host.agent_version,
                ))?;
            }
        }
        HostCommand::Delete(args) => {
            let name = HostName::new(args.name.clone())
                .map_err(|error| anyhow::anyhow!("{:?} is not a host name: {error}", args.name))?;
            if !store.hosts().await?.iter().any(|h| h.name == name.as_str()) {
                anyhow::bail!(
                    "there is no host named {name} in {} (see `host list`)",
                    database.url
                );
            }
            store.delete_host(&name, now_ns()).await?;
            say!(
                "dockermon-collector: {name} deleted; its certificates are revoked and its agent is disconnected within seconds"
            );
        }
    }
    store.close().await;
    Ok(())
}

async fn user(database: &DatabaseConfig, command: UserCommand) -> anyhow::Result<()> {
    let store = Store::open_existing(&database.url).await?;
    match command {
        UserCommand::Add(args) => {
            let (password, generated) = admin::read_password(&args.password)?;
            let user = admin::add_user(&store, &args.email, &args.role, password.clone()).await?;
            say!(
                "dockermon-collector: added {} ({})",
                user.email,
                user.role.as_str()
            );
            if generated {
                output(format_args!("{password}"))?;
                say!("dockermon-collector: the password above is shown only now");
            }
        }
        UserCommand::Passwd(args) => {
            let (password, generated) = admin::read_password(&args.password)?;
            admin::set_password(&store, &args.email, password.clone()).await?;
            say!(
                "dockermon-collector: password of {} changed; their sessions have ended",
                args.email
            );
            if generated {
                output(format_args!("{password}"))?;
            }
        }
        UserCommand::List(_) => {
            output(format_args!(
                "{:<8} {:<40} {:<10} STATUS",
                "ID", "EMAIL", "ROLE"
            ))?;
            for user in admin::list_users(&store).await? {
                let status = if user.disabled { "disabled" } else { "active" };
                output(format_args!(
                    "{:<8} {:<40} {:<10} {status}",
                    user.id,
                    user.email,
                    user.role.as_str()
                ))?;
            }
        }
    }
    store.close().await;
    Ok(())
}

/// A Unix time in nanoseconds as RFC 3339, to the second.
fn rfc3339(ns: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ns.div_euclid(1_000_000_000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ns.to_string())
}

//! The README's configuration examples are real: each parses as its binary's `--config`
//! file, and each names every setting (but the alternatives it leaves out on purpose), so a
//! new flag cannot go undocumented.

use clap::CommandFactory;

/// The body of the README's ```yaml block that starts with `# <name>`.
fn example(name: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("the README");
    let start = readme
        .find(&format!("```yaml\n# {name}\n"))
        .unwrap_or_else(|| panic!("a yaml block for {name} in the README"));
    let body = &readme[start + "```yaml\n".len()..];
    body[..body.find("```").expect("the block ends")].to_owned()
}

/// The file keys of `command`'s flags (and its parent's global ones), but `skip`.
fn keys(command: &clap::Command, globals: &clap::Command, skip: &[&str]) -> Vec<String> {
    command
        .get_arguments()
        .chain(globals.get_arguments().filter(|a| a.is_global_set()))
        .filter_map(|arg| arg.get_long())
        .filter(|flag| !["help", "version", "config"].contains(flag) && !skip.contains(flag))
        .map(|flag| flag.replace('-', "_"))
        .collect()
}

fn assert_complete(text: &str, keys: &[String]) {
    let missing: Vec<&String> = keys
        .iter()
        .filter(|key| {
            !text
                .lines()
                .any(|line| line.starts_with(&format!("{key}:")))
        })
        .collect();
    assert!(missing.is_empty(), "the README's example lacks {missing:?}");
}

#[test]
fn the_agent_example_is_a_complete_agent_config() {
    let text = example("agent.yaml");
    serde_yaml::from_str::<dockermon_agent::config::FileConfig>(&text)
        .unwrap_or_else(|error| panic!("agent.yaml: {error}"));
    let cli = dockermon_agent::config::Cli::command();
    // The token is a secret (join_token_file); stdout output, certificates from elsewhere
    // and, in a cluster, enrolling with a ServiceAccount token (shown commented out) are
    // alternatives to what the example shows.
    let skip = [
        "join-token",
        "output",
        "cert",
        "key",
        "ca",
        "service-account-token-file",
        "host-name",
    ];
    assert_complete(&text, &keys(&cli, &cli, &skip));
}

#[test]
fn the_collector_example_is_a_complete_collector_config() {
    let text = example("collector.yaml");
    serde_yaml::from_str::<dockermon_collector::config::FileConfig>(&text)
        .unwrap_or_else(|error| panic!("collector.yaml: {error}"));
    let cli = dockermon_collector::config::Cli::command();
    // Inline secrets go by their *_file keys; certificate files and the metrics token are
    // alternatives to the built-in CA and an open /metrics; docker_host is standalone's.
    let skip = [
        "jwt-secret",
        "admin-password",
        "database-url",
        "tls-cert",
        "tls-key",
        "client-ca",
        "metrics-token-file",
    ];
    let serve = cli.find_subcommand("serve").unwrap();
    assert_complete(&text, &keys(serve, &cli, &skip));
}

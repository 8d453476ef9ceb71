//! `dockermon-collector`.

use clap::Parser;

/// Stores what Dockermon agents report and serves it.
#[derive(Debug, Parser)]
#[command(name = "dockermon-collector", version)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("dockermon-collector: no subcommands yet");
    std::process::exit(2);
}

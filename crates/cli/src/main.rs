//! `atm`: the command-line endpoint of this project.

use clap::{Parser, Subcommand};

mod cmd_demo;
mod cmd_scenario;
mod cmd_simulate;
mod cmd_tm;
mod cmd_uri;
mod stores;

/// Automatic Trust Management (XEP-0450) with Trust Messages (XEP-0434).
#[derive(Parser)]
#[command(name = "atm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The seed walkthrough: 8 manual authentications become all 20.
    Demo(cmd_demo::DemoArgs),
    /// Trust messages (XEP-0434): validate and show.
    #[command(subcommand)]
    Tm(cmd_tm::TmCommand),
    /// Trust Message URIs: generate, parse, QR code.
    #[command(subcommand)]
    Uri(cmd_uri::UriCommand),
    /// Scenarios: play a timeline of user actions and network events.
    #[command(subcommand)]
    Scenario(cmd_scenario::ScenarioCommand),
    /// Simulate many accounts and devices: what ATM saves, what it costs.
    Simulate(cmd_simulate::SimulateArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(a) => cmd_demo::run(a),
        Command::Tm(c) => cmd_tm::run(c),
        Command::Uri(c) => cmd_uri::run(c),
        Command::Scenario(c) => cmd_scenario::run(c),
        Command::Simulate(a) => cmd_simulate::run(a),
    }
}

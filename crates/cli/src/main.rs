//! `atm`: the command-line endpoint of this project.

use clap::{Parser, Subcommand};

mod cmd_tm;
mod cmd_uri;

/// Automatic Trust Management (XEP-0450) with Trust Messages (XEP-0434).
#[derive(Parser)]
#[command(name = "atm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Trust messages (XEP-0434): validate and show.
    #[command(subcommand)]
    Tm(cmd_tm::TmCommand),
    /// Trust Message URIs: generate, parse, QR code.
    #[command(subcommand)]
    Uri(cmd_uri::UriCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Tm(c) => cmd_tm::run(c),
        Command::Uri(c) => cmd_uri::run(c),
    }
}

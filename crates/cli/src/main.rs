//! `atm`: the command-line endpoint of this project.

use clap::{Parser, Subcommand};

/// Automatic Trust Management (XEP-0450) with Trust Messages (XEP-0434).
#[derive(Parser)]
#[command(name = "atm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {}
}

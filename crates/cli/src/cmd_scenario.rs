//! `atm scenario run FILE [--json] [--store DIR]`: play a scenario
//! (`shared/design/scenario-format.md`). Exit 0 when every expectation held,
//! 1 when one failed, 2 when the file is invalid.

use std::path::{Path, PathBuf};

use anyhow::Result;
use atm_sim::scenario::Scenario;
use clap::Subcommand;

/// Scenario commands.
#[derive(Subcommand)]
pub enum ScenarioCommand {
    /// Play a scenario file through the real engine on the in-process network.
    Run {
        /// The scenario (JSON).
        file: PathBuf,
        /// Print the scenario format's JSON object instead of a timeline.
        #[arg(long)]
        json: bool,
        /// Keep every endpoint's SQLite store in this folder (default: a
        /// temporary folder, removed afterwards).
        #[arg(long)]
        store: Option<PathBuf>,
        /// Encrypt every trust message: `omemo` (OMEMO 2 + SCE, pure Rust).
        #[arg(long, value_enum)]
        crypto: Option<CryptoArg>,
    },
}

/// The encryption of trust messages in a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CryptoArg {
    /// OMEMO 2 (XEP-0384) with SCE envelopes (XEP-0420).
    Omemo,
}

/// Runs a scenario command; exits with the format's status.
pub fn run(cmd: ScenarioCommand) -> Result<()> {
    let ScenarioCommand::Run {
        file,
        json,
        store,
        crypto,
    } = cmd;
    let code = match execute(&file, json, store.as_deref(), crypto.is_some()) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(Invalid(message)) => {
            eprintln!("error: {}: {message}", file.display());
            2
        }
    };
    std::process::exit(code);
}

/// The file could not be used: nothing was run.
struct Invalid(String);

fn execute(file: &Path, json: bool, store: Option<&Path>, omemo: bool) -> Result<bool, Invalid> {
    let text = std::fs::read_to_string(file).map_err(|e| Invalid(format!("cannot read: {e}")))?;
    let default_name = file
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let scenario = Scenario::from_json(&text, &default_name).map_err(|e| Invalid(e.to_string()))?;
    let stores = crate::stores::ScenarioStores::new(
        store,
        scenario.encryption.as_str(),
        &scenario.endpoints,
    )
    .map_err(Invalid)?;
    let mut outcome = atm_sim::run_with(scenario, stores, omemo).map_err(Invalid)?;
    if json {
        let value = atm_sim::runner::to_json(&mut outcome).map_err(Invalid)?;
        let text = serde_json::to_string_pretty(&value).map_err(|e| Invalid(e.to_string()))?;
        println!("{text}");
    } else {
        print!(
            "{}",
            atm_sim::runner::to_text(&mut outcome).map_err(Invalid)?
        );
    }
    Ok(outcome.ok())
}

//! `atm scenario run FILE [--json] [--store DIR] [--transport sim|xmpp]
//! [--server prosody|ejabberd|HOST:PORT] [--ca FILE] [--qxmpp-peer PATH]`:
//! play a scenario
//! (`shared/design/scenario-format.md`) on the in-process network or with
//! live endpoints on a real XMPP server (`docs/live-scenarios.md`). Exit 0
//! when every expectation held, 1 when one failed, 2 when the file is
//! invalid or cannot be played over the transport, 3 when the live network
//! could not be set up.

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
        /// Only for `--transport sim` (over XMPP everything is OMEMO 2).
        #[arg(long, value_enum)]
        crypto: Option<CryptoArg>,
        /// `sim`: the deterministic in-process network (default); `xmpp`:
        /// one live endpoint per scenario endpoint on a real XMPP server.
        #[arg(long, value_enum, default_value = "sim")]
        transport: TransportArg,
        /// With `--transport xmpp`: `prosody` (default) or `ejabberd`, a
        /// private server started on loopback for the run, or `HOST:PORT`,
        /// a running server on which the accounts are registered in-band.
        #[arg(long)]
        server: Option<String>,
        /// With `--server HOST:PORT`: the CA certificate (PEM) that signed
        /// the server's certificate.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// With `--transport xmpp`: the QXmpp peer binary
        /// (`interop/qxmpp-peer`) that plays the endpoints marked
        /// `"implementation": "qxmpp"` (default: `$ATM_QXMPP_PEER`).
        #[arg(long)]
        qxmpp_peer: Option<PathBuf>,
    },
}

/// Where a scenario is played.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportArg {
    /// The deterministic in-process network.
    Sim,
    /// Live endpoints on a real XMPP server.
    Xmpp,
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
        transport,
        server,
        ca,
        qxmpp_peer,
    } = cmd;
    let result = match transport {
        TransportArg::Sim => {
            if server.is_some() || ca.is_some() || qxmpp_peer.is_some() {
                Err(Invalid(
                    "--server, --ca and --qxmpp-peer apply only to --transport xmpp".into(),
                ))
            } else {
                execute(&file, json, store.as_deref(), crypto.is_some())
            }
        }
        TransportArg::Xmpp => {
            if crypto.is_some() {
                Err(Invalid(
                    "--crypto applies only to --transport sim (over XMPP every trust message is OMEMO 2 encrypted)".into(),
                ))
            } else {
                let qxmpp_peer = qxmpp_peer.or_else(|| {
                    std::env::var_os("ATM_QXMPP_PEER")
                        .filter(|p| !p.is_empty())
                        .map(PathBuf::from)
                });
                execute_live(
                    &file,
                    json,
                    store,
                    server.as_deref(),
                    ca.as_deref(),
                    qxmpp_peer,
                )
            }
        }
    };
    let code = match result {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(Invalid(message)) => {
            eprintln!("error: {}: {message}", file.display());
            2
        }
    };
    std::process::exit(code);
}

/// `--transport xmpp`.
fn execute_live(
    file: &Path,
    json: bool,
    store: Option<PathBuf>,
    server: Option<&str>,
    ca: Option<&Path>,
    qxmpp_peer: Option<PathBuf>,
) -> Result<bool, Invalid> {
    let scenario = read(file)?;
    // Refused before anything runs.
    if let Some(reason) = atm_live::refusal(&scenario) {
        return Err(Invalid(reason));
    }
    let server = atm_live::ServerChoice::parse(server.unwrap_or("prosody"), ca).map_err(Invalid)?;
    let mut options = atm_live::LiveOptions::new(server);
    options.store = store;
    options.qxmpp_peer = qxmpp_peer;
    if let Some(reason) = atm_live::refusal_with(&scenario, &options) {
        return Err(Invalid(reason));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Invalid(format!("cannot start the async runtime: {e}")))?;
    match runtime.block_on(atm_live::run(&scenario, &options)) {
        Ok(outcome) => {
            if json {
                let text = serde_json::to_string_pretty(&outcome.json)
                    .map_err(|e| Invalid(e.to_string()))?;
                println!("{text}");
            } else {
                print!("{}", outcome.text);
            }
            Ok(outcome.ok)
        }
        Err(atm_live::LiveError::Refused(reason)) => Err(Invalid(reason)),
        Err(error @ atm_live::LiveError::Setup(_)) => {
            eprintln!("error: {}: {error}", file.display());
            std::process::exit(3);
        }
    }
}

fn read(file: &Path) -> Result<Scenario, Invalid> {
    let text = std::fs::read_to_string(file).map_err(|e| Invalid(format!("cannot read: {e}")))?;
    let default_name = file
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Scenario::from_json(&text, &default_name).map_err(|e| Invalid(e.to_string()))
}

/// The file could not be used: nothing was run.
struct Invalid(String);

fn execute(file: &Path, json: bool, store: Option<&Path>, omemo: bool) -> Result<bool, Invalid> {
    let scenario = read(file)?;
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

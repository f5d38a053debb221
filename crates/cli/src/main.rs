//! `atm`: the command-line endpoint of this project.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

mod cmd_demo;
mod cmd_scenario;
mod cmd_simulate;
mod cmd_tm;
mod cmd_uri;
mod device;
mod stores;

use device::{words, Request};

/// Automatic Trust Management (XEP-0450) with Trust Messages (XEP-0434).
#[derive(Parser)]
#[command(name = "atm", version, about)]
struct Cli {
    /// The state directory of this machine's device (for `account`, `uri`,
    /// `scan`, `keys`, `authenticate`, `distrust`, `run`, `send`, `status`).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
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
    /// This device's Trust Message URI and QR code (with --dir), or the URI
    /// tools: generate, parse, qr.
    Uri(cmd_uri::UriArgs),
    /// Scenarios: play a timeline of user actions and network events.
    #[command(subcommand)]
    Scenario(cmd_scenario::ScenarioCommand),
    /// Simulate many accounts and devices: what ATM saves, what it costs.
    Simulate(cmd_simulate::SimulateArgs),
    /// The account of the device in --dir.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Authenticate (and distrust) the keys of a scanned Trust Message URI.
    Scan(ScanArgs),
    /// Every known key: owner, fingerprint, level, since when, why.
    Keys(JsonArg),
    /// Authenticate a known key (after comparing its fingerprint).
    Authenticate(DecideArgs),
    /// Distrust a known key (asks first unless --yes).
    Distrust(DecideArgs),
    /// Stay online: process, log every decision, show incoming messages.
    Run(JsonArg),
    /// Send an OMEMO 2 encrypted chat message.
    Send(SendArgs),
    /// The device: account, fingerprint, keys by level, contacts, outbox.
    Status(JsonArg),
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create the device directory --dir (new or empty) for an account.
    Init(InitArgs),
}

#[derive(Args)]
struct InitArgs {
    /// The account, user@domain.
    #[arg(long)]
    jid: String,
    /// A file whose first line is the password (copied into DIR, mode 0600).
    #[arg(long)]
    password_file: PathBuf,
    /// The server as HOST:PORT or IP:PORT (default: DNS SRV of the domain).
    #[arg(long)]
    server: Option<String>,
    /// Trust this CA (PEM) for this account instead of the system roots.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// No TLS at all: only for a server on a loopback IP:PORT (--server).
    #[arg(long)]
    insecure_plaintext_loopback: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ScanArgs {
    /// The Trust Message URI (xmpp:...?trust-message;...).
    #[arg(required_unless_present = "image", conflicts_with = "image")]
    uri: Option<String>,
    /// Read the URI from the QR code in a photo or screenshot (PNG, JPEG).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DecideArgs {
    /// The key owner's account.
    jid: String,
    /// The key's fingerprint (hex; spaces and colons are ignored).
    fingerprint: String,
    /// Do not ask for confirmation (distrust).
    #[arg(long)]
    yes: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SendArgs {
    /// The recipient account.
    jid: String,
    /// The text.
    text: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct JsonArg {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn need_dir(dir: Option<PathBuf>, command: &str) -> Result<PathBuf> {
    dir.ok_or_else(|| anyhow!("`atm {command}` needs --dir DIR (the device's state directory)"))
}

fn print_line(text: &str) {
    // A closed pipe (e.g. `| head`) is not an error worth a panic.
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

fn decided_text(value: &Value) -> String {
    let mut lines: Vec<String> = value["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{} of {}: {} -> {}",
                words::grouped(c["fingerprint"].as_str().unwrap_or_default()),
                c["owner"].as_str().unwrap_or_default(),
                c["from"].as_str().unwrap_or("new").replace('_', " "),
                c["to"].as_str().unwrap_or_default().replace('_', " ")
            )
        })
        .collect();
    if lines.is_empty() {
        lines.push(
            "no trust level changed now (keys not known yet are decided when their device appears)"
                .into(),
        );
    }
    lines.push(format!(
        "{} trust message(s) sent",
        value["trust_messages"].as_u64().unwrap_or(0)
    ));
    lines.join("\n")
}

fn show(value: &Value, json: bool, text: impl FnOnce(&Value) -> String) {
    if json {
        print_line(&value.to_string());
    } else {
        print_line(&text(value));
    }
}

fn keys_text(value: &Value) -> String {
    let keys = value["keys"].as_array().cloned().unwrap_or_default();
    if keys.is_empty() {
        return "no keys known yet".into();
    }
    keys.iter()
        .map(|k| {
            format!(
                "{}  {}\n  {} since {}\n  why: {}",
                k["owner"].as_str().unwrap_or_default(),
                words::grouped(k["fingerprint"].as_str().unwrap_or_default()),
                k["level"].as_str().unwrap_or_default().replace('_', " "),
                k["since"].as_str().unwrap_or("it was learned"),
                k["why"].as_str().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn status_text(v: &Value) -> String {
    let levels = v["keys_by_level"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(l, n)| format!("{n} {}", l.replace('_', " ")))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    format!(
        "account      {}\ndevice       {}\nfingerprint  {}\npolicy       {}\nkeys         {}\ndecisions    {} waiting\noutbox       {} stanza(s)\ncontacts     {}",
        v["jid"].as_str().unwrap_or_default(),
        v["device_id"],
        words::grouped(v["fingerprint"].as_str().unwrap_or_default()),
        v["policy"].as_str().unwrap_or_default(),
        if levels.is_empty() { "none".into() } else { levels },
        v["stored_decisions"],
        v["outbox"],
        v["contacts"]
            .as_array()
            .map(|c| c.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "none".into()),
    )
}

fn device_uri(dir: &Path, args: &cmd_uri::UriArgs) -> Result<()> {
    let value = device::request(dir, Request::Uri, false)?;
    let uri = value["uri"].as_str().unwrap_or_default().to_owned();
    cmd_uri::write_qr_files(&uri, args.svg.as_deref(), args.png.as_deref())?;
    if args.json {
        print_line(&value.to_string());
    } else {
        print_line(&format!(
            "{}\n{uri}\n{} device {}, fingerprint {}",
            cmd_uri::terminal_qr(&uri)?,
            value["jid"].as_str().unwrap_or_default(),
            value["device_id"],
            words::grouped(value["fingerprint"].as_str().unwrap_or_default())
        ));
    }
    Ok(())
}

fn endpoint_command(dir: Option<PathBuf>, command: Command) -> Result<()> {
    match command {
        Command::Account(AccountCommand::Init(a)) => {
            let dir = need_dir(dir, "account init")?;
            let value = device::init(device::InitArgs {
                dir,
                jid: a.jid,
                password_file: a.password_file,
                server: a.server,
                ca: a.ca,
                plaintext: a.insecure_plaintext_loopback,
            })?;
            show(&value, a.json, |v| {
                format!(
                    "device {} of {} created in {}, online once (device list and bundle published)\nfingerprint {}\n{}",
                    v["device_id"],
                    v["jid"].as_str().unwrap_or_default(),
                    v["dir"].as_str().unwrap_or_default(),
                    words::grouped(v["fingerprint"].as_str().unwrap_or_default()),
                    v["uri"].as_str().unwrap_or_default()
                )
            });
        }
        Command::Uri(mut args) => match (args.tool.take(), dir) {
            (Some(tool), _) => cmd_uri::run(tool)?,
            (None, Some(dir)) => device_uri(&dir, &args)?,
            (None, None) => {
                return Err(anyhow!(
                    "`atm uri` needs --dir DIR (this device's URI) or a tool: generate, parse, qr"
                ))
            }
        },
        Command::Scan(a) => {
            let dir = need_dir(dir, "scan")?;
            let uri = match (a.uri, a.image) {
                (Some(uri), _) => uri,
                (None, Some(image)) => device::qr_image::read_qr(&image)?,
                (None, None) => return Err(anyhow!("`atm scan` needs a URI or --image FILE")),
            };
            let preview = device::preview_scan(&dir, &uri)?;
            if !a.yes {
                eprintln!("{preview}");
                device::confirm("Authenticate and distrust as this URI says?")?;
            }
            let value = device::request(&dir, Request::Scan(uri), !a.json)?;
            show(&value, a.json, decided_text);
        }
        Command::Keys(a) => {
            let value = device::request(&need_dir(dir, "keys")?, Request::Keys, false)?;
            show(&value, a.json, keys_text);
        }
        Command::Status(a) => {
            let value = device::request(&need_dir(dir, "status")?, Request::Status, false)?;
            show(&value, a.json, status_text);
        }
        Command::Authenticate(a) => {
            let dir = need_dir(dir, "authenticate")?;
            let value =
                device::request(&dir, Request::Authenticate(a.jid, a.fingerprint), !a.json)?;
            show(&value, a.json, decided_text);
        }
        Command::Distrust(a) => {
            let dir = need_dir(dir, "distrust")?;
            if !a.yes {
                device::confirm(&format!(
                    "Distrust key {} of {}? Nothing will be encrypted for it any more, and your other devices will be told.",
                    a.fingerprint, a.jid
                ))?;
            }
            let value = device::request(&dir, Request::Distrust(a.jid, a.fingerprint), !a.json)?;
            show(&value, a.json, decided_text);
        }
        Command::Send(a) => {
            let dir = need_dir(dir, "send")?;
            let value = device::request(&dir, Request::Send(a.jid, a.text), !a.json)?;
            show(&value, a.json, |v| {
                format!(
                    "sent to {}, encrypted for {} device(s)",
                    v["to"].as_str().unwrap_or_default(),
                    v["devices"]
                )
            });
        }
        Command::Run(a) => device::run(&need_dir(dir, "run")?, a.json)?,
        Command::Demo(_) | Command::Tm(_) | Command::Scenario(_) | Command::Simulate(_) => {}
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(a) => cmd_demo::run(a),
        Command::Tm(c) => cmd_tm::run(c),
        Command::Scenario(c) => cmd_scenario::run(c),
        Command::Simulate(a) => cmd_simulate::run(a),
        command => {
            if let Err(e) = endpoint_command(cli.dir, command) {
                eprintln!("error: {e:#}");
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

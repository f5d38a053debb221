//! `atm uri generate|parse|qr`: Trust Message URIs (XEP-0434).

use std::io::Write as _;

use anyhow::{anyhow, Result};
use atm_tm::{qr, Encryption, KeyId, TrustUri};
use clap::{Args, Subcommand};

/// `atm uri`: with `--dir DIR` and no subcommand, the device's own URI and
/// QR code; otherwise one of the tools.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct UriArgs {
    /// A tool (without one, `--dir DIR` shows the device's own URI).
    #[command(subcommand)]
    pub tool: Option<UriCommand>,
    /// Also write the QR code as an SVG file.
    #[arg(long)]
    pub svg: Option<String>,
    /// Also write the QR code as a PNG file.
    #[arg(long)]
    pub png: Option<String>,
    /// Print JSON (no QR code in the terminal).
    #[arg(long)]
    pub json: bool,
}

/// Writes the QR code of `text` to the files asked for.
pub fn write_qr_files(text: &str, svg: Option<&str>, png: Option<&str>) -> Result<()> {
    if let Some(path) = svg {
        let s = qr::to_svg(text).map_err(|e| anyhow!("{e}"))?;
        std::fs::write(path, s).map_err(|e| anyhow!("writing {path}: {e}"))?;
    }
    if let Some(path) = png {
        let p = qr::to_png(text, 8).map_err(|e| anyhow!("{e}"))?;
        std::fs::write(path, p).map_err(|e| anyhow!("writing {path}: {e}"))?;
    }
    Ok(())
}

/// The QR code of `text` for the terminal.
pub fn terminal_qr(text: &str) -> Result<String> {
    qr::to_terminal(text).map_err(|e| anyhow!("{e}"))
}

/// Trust Message URI commands.
#[derive(Subcommand)]
pub enum UriCommand {
    /// Print the Trust Message URI of a key owner.
    Generate {
        /// The key owner's bare JID.
        #[arg(long)]
        jid: String,
        /// The encryption namespace, e.g. urn:xmpp:omemo:2.
        #[arg(long)]
        encryption: String,
        /// A key to trust, hex (repeatable).
        #[arg(long)]
        trust: Vec<String>,
        /// A key to distrust, hex (repeatable).
        #[arg(long)]
        distrust: Vec<String>,
    },
    /// Parse and validate a Trust Message URI.
    Parse {
        /// The URI.
        uri: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Render a URI as a QR code (terminal by default).
    Qr {
        /// The URI (validated first).
        uri: String,
        /// Write an SVG file instead.
        #[arg(long, conflicts_with = "png")]
        svg: Option<String>,
        /// Write a PNG file instead.
        #[arg(long)]
        png: Option<String>,
    },
}

/// Runs a `uri` subcommand; on error prints one line on stderr and
/// exits with status 1.
pub fn run(cmd: UriCommand) -> Result<()> {
    if let Err(e) = execute(cmd) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    Ok(())
}

fn execute(cmd: UriCommand) -> Result<()> {
    match cmd {
        UriCommand::Generate {
            jid,
            encryption,
            trust,
            distrust,
        } => {
            let jid =
                atm_tm::BareJid::new(&jid).map_err(|e| anyhow!("invalid bare JID {jid:?}: {e}"))?;
            let encryption = Encryption::new(encryption.clone())
                .map_err(|e| anyhow!("invalid encryption {encryption:?}: {e}"))?;
            let keys = |list: Vec<String>| -> Result<Vec<KeyId>> {
                list.iter()
                    .map(|h| KeyId::from_hex(h).map_err(|e| anyhow!("key {h:?}: {e}")))
                    .collect()
            };
            let uri = TrustUri {
                jid,
                encryption,
                trust: keys(trust)?,
                distrust: keys(distrust)?,
            };
            // Generate only what parse accepts (keys present, no conflicts).
            let text = uri.to_uri();
            TrustUri::parse(&text).map_err(|e| anyhow!("{e}"))?;
            println!("{text}");
            Ok(())
        }
        UriCommand::Parse { uri, json } => {
            let u = TrustUri::parse(&uri).map_err(|e| anyhow!("invalid trust message URI: {e}"))?;
            let hex = |l: &[KeyId]| l.iter().map(KeyId::to_hex).collect::<Vec<_>>();
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "jid": u.jid.as_str(),
                        "encryption": u.encryption.as_str(),
                        "trust": hex(&u.trust),
                        "distrust": hex(&u.distrust),
                    })
                );
            } else {
                println!("key owner  {}\nencryption {}", u.jid, u.encryption);
                for k in &u.trust {
                    println!("trust      {}", k.to_hex());
                }
                for k in &u.distrust {
                    println!("distrust   {}", k.to_hex());
                }
            }
            Ok(())
        }
        UriCommand::Qr { uri, svg, png } => {
            let u = TrustUri::parse(&uri).map_err(|e| anyhow!("invalid trust message URI: {e}"))?;
            let text = u.to_uri();
            if let Some(path) = svg {
                let s = qr::to_svg(&text).map_err(|e| anyhow!("{e}"))?;
                std::fs::write(&path, s).map_err(|e| anyhow!("writing {path}: {e}"))?;
            } else if let Some(path) = png {
                let p = qr::to_png(&text, 8).map_err(|e| anyhow!("{e}"))?;
                std::fs::write(&path, p).map_err(|e| anyhow!("writing {path}: {e}"))?;
            } else {
                let art = qr::to_terminal(&text).map_err(|e| anyhow!("{e}"))?;
                // A closed pipe (e.g. `| head`) is not an error worth a panic.
                let _ = writeln!(std::io::stdout().lock(), "{art}");
            }
            Ok(())
        }
    }
}

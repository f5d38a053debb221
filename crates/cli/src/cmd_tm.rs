//! `atm tm parse FILE|- [--json]`: validate and show a trust-message element.

use std::io::Read as _;

use anyhow::{anyhow, Result};
use atm_tm::TrustMessage;
use clap::Subcommand;

/// Trust-message (XEP-0434) commands.
#[derive(Subcommand)]
pub enum TmCommand {
    /// Validate a <trust-message/> element; exit 1 with the error if invalid.
    Parse {
        /// File holding the element, or `-` for standard input.
        file: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `tm` subcommand; on error prints one line on stderr and
/// exits with status 1.
pub fn run(cmd: TmCommand) -> Result<()> {
    if let Err(e) = execute(cmd) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    Ok(())
}

fn execute(cmd: TmCommand) -> Result<()> {
    match cmd {
        TmCommand::Parse { file, json } => {
            let text = if file == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(|e| anyhow!("reading standard input: {e}"))?;
                s
            } else {
                std::fs::read_to_string(&file).map_err(|e| anyhow!("reading {file}: {e}"))?
            };
            let tm =
                TrustMessage::parse(&text).map_err(|e| anyhow!("invalid trust message: {e}"))?;
            if json {
                println!("{}", to_json(&tm));
            } else {
                print!("{}", readable(&tm));
            }
            Ok(())
        }
    }
}

/// The JSON shape of issue 2.
pub fn to_json(tm: &TrustMessage) -> serde_json::Value {
    let owners: Vec<serde_json::Value> = tm
        .key_owners
        .iter()
        .map(|o| {
            serde_json::json!({
                "jid": o.jid.as_str(),
                "trust": o.trust.iter().map(|k| k.to_base64()).collect::<Vec<_>>(),
                "distrust": o.distrust.iter().map(|k| k.to_base64()).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "usage": tm.usage.as_str(),
        "encryption": tm.encryption.as_str(),
        "key_owners": owners,
    })
}

fn readable(tm: &TrustMessage) -> String {
    let mut s = format!(
        "trust message: usage {}, encryption {}, {} key owner(s), {} key(s)\n",
        tm.usage,
        tm.encryption,
        tm.key_owners.len(),
        tm.key_count()
    );
    for o in &tm.key_owners {
        s.push_str(&format!("  {}\n", o.jid));
        for k in &o.trust {
            s.push_str(&format!("    trust    {k}\n"));
        }
        for k in &o.distrust {
            s.push_str(&format!("    distrust {k}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let tm = TrustMessage::parse(
            "<trust-message xmlns='urn:xmpp:tm:1' usage='urn:xmpp:atm:1' encryption='urn:xmpp:omemo:2'>\
             <key-owner jid='bob@example.com'><trust>AAE=</trust><distrust>AAI=</distrust></key-owner>\
             </trust-message>",
        )
        .unwrap();
        assert_eq!(
            to_json(&tm),
            serde_json::json!({
                "usage": "urn:xmpp:atm:1",
                "encryption": "urn:xmpp:omemo:2",
                "key_owners": [{"jid": "bob@example.com", "trust": ["AAE="], "distrust": ["AAI="]}]
            })
        );
    }
}

//! The account settings of a device's state directory (`atm account init`):
//! `DIR/account.json` (format, JID, server, CA, plaintext flag),
//! `DIR/password` and `DIR/ca.pem`, each mode 0600 in a directory of mode
//! 0700. The device's own state is `DIR/atm.sqlite` (atm-client).

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::{json, Value};

/// The settings file.
pub const CONFIG_FILE: &str = "account.json";
/// The password file.
pub const PASSWORD_FILE: &str = "password";
/// The CA copied in by `--ca`.
pub const CA_FILE: &str = "ca.pem";
/// The format of `account.json` this build writes and reads.
pub const FORMAT: u64 = 1;

/// How a device reaches its server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The account (bare JID).
    pub jid: jid::BareJid,
    /// `HOST:PORT` or `IP:PORT`; `None`: DNS SRV of the domain.
    pub server: Option<String>,
    /// Whether `DIR/ca.pem` is the only CA trusted (else the system roots).
    pub ca: bool,
    /// Plaintext XMPP to a loopback address (`--insecure-plaintext-loopback`).
    pub plaintext: bool,
}

impl Config {
    fn to_json(&self) -> Value {
        json!({
            "format": FORMAT,
            "jid": self.jid.as_str(),
            "server": self.server,
            "ca": if self.ca { Some(CA_FILE) } else { None },
            "insecure_plaintext_loopback": self.plaintext,
        })
    }

    /// Reads `DIR/account.json`.
    pub fn load(dir: &Path) -> Result<Config> {
        let path = dir.join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !dir.exists() {
                    bail!(
                        "{} does not exist: create it with `atm --dir {} account init --jid JID --password-file FILE`",
                        dir.display(),
                        dir.display()
                    );
                }
                bail!(
                    "{} is missing: {} is not a device directory made by `atm account init`",
                    path.display(),
                    dir.display()
                );
            }
            Err(e) => return Err(anyhow!("reading {}: {e}", path.display())),
        };
        let garbled = |what: &str| anyhow!("{} is garbled: {what}", path.display());
        let value: Value =
            serde_json::from_str(&text).map_err(|e| garbled(&format!("not JSON ({e})")))?;
        let object = value.as_object().ok_or_else(|| garbled("not an object"))?;
        let format = object
            .get("format")
            .and_then(Value::as_u64)
            .ok_or_else(|| garbled("no numeric \"format\""))?;
        if format > FORMAT {
            bail!(
                "{} has format {format}, written by a newer atm; this atm reads format {FORMAT} (nothing was changed)",
                path.display()
            );
        }
        for key in object.keys() {
            if ![
                "format",
                "jid",
                "server",
                "ca",
                "insecure_plaintext_loopback",
            ]
            .contains(&key.as_str())
            {
                return Err(garbled(&format!("unknown field {key:?}")));
            }
        }
        let jid_text = object
            .get("jid")
            .and_then(Value::as_str)
            .ok_or_else(|| garbled("no \"jid\""))?;
        let jid = parse_account(jid_text).map_err(|e| garbled(&e.to_string()))?;
        let server = match object.get("server") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(garbled("\"server\" is not a string")),
        };
        let ca = match object.get("ca") {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) if s == CA_FILE => true,
            Some(_) => return Err(garbled("\"ca\" must be null or \"ca.pem\"")),
        };
        let plaintext = match object.get("insecure_plaintext_loopback") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(garbled("\"insecure_plaintext_loopback\" is not a boolean")),
        };
        Ok(Config {
            jid,
            server,
            ca,
            plaintext,
        })
    }
}

/// Parses an account JID: `local@domain`, no resource.
pub fn parse_account(text: &str) -> Result<jid::BareJid> {
    let jid = jid::BareJid::new(text).map_err(|e| anyhow!("invalid JID {text:?}: {e}"))?;
    if jid.node().is_none() {
        bail!("invalid JID {text:?}: an account needs a local part (user@domain)");
    }
    Ok(jid)
}

/// Reads the password from `DIR/password`.
pub fn load_password(dir: &Path) -> Result<String> {
    let path = dir.join(PASSWORD_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the password file {}", path.display()))?;
    password_from(&text).with_context(|| format!("{}", path.display()))
}

/// The password in a file's text: the first line, without its end.
pub fn password_from(text: &str) -> Result<String> {
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        bail!("the password file is empty");
    }
    Ok(line.to_owned())
}

/// Writes a new file with mode 0600 (never over an existing one).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Creates a directory with mode 0700.
pub fn create_private_dir(path: &Path) -> Result<()> {
    DirBuilder::new()
        .mode(0o700)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Writes the settings of a new device into `dir` (which is new and empty).
pub fn write_new(dir: &Path, config: &Config, password: &str, ca_pem: Option<&[u8]>) -> Result<()> {
    let mut text = serde_json::to_string_pretty(&config.to_json())?;
    text.push('\n');
    write_private(&dir.join(CONFIG_FILE), text.as_bytes())?;
    write_private(&dir.join(PASSWORD_FILE), format!("{password}\n").as_bytes())?;
    if let Some(pem) = ca_pem {
        write_private(&dir.join(CA_FILE), pem)?;
    }
    Ok(())
}

/// A sibling of `dir` to build a new device directory in before it is
/// renamed into place.
pub fn staging_path(dir: &Path) -> Result<PathBuf> {
    let name = dir
        .file_name()
        .ok_or_else(|| anyhow!("{} has no directory name", dir.display()))?;
    let mut staged = name.to_os_string();
    staged.push(format!(".atm-init-{}", std::process::id()));
    Ok(dir.with_file_name(staged))
}

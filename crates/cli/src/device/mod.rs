//! `atm --dir DIR ...`: this machine's device as a live XMPP endpoint (the
//! `atm-client` core on the `atm-endpoint` driver). See
//! `docs/endpoint-cli.md` for the directory, the locking and the socket.
//!
//! Every command runs one [`Request`] through [`perform`]: inside a running
//! `atm run` for the directory (over its Unix socket), or, when none runs,
//! in this process, which then holds the directory's lock, connects (for
//! commands that send), performs, waits for the server's acknowledgement
//! and leaves. Read-only requests (`keys`, `status`, `uri`) need no network.

pub mod config;
pub mod qr_image;
mod run;
pub mod words;

use std::fs::File;
use std::io::{BufRead as _, BufReader, IsTerminal as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use atm_client::{CommandError, Decided, Endpoint, Event, OsRandom};
use atm_endpoint::{Driver, PemRootsConnector, PlaintextLoopbackConnector, Settings, Target};
use atm_tm::{Encryption, TrustUri};
use chrono::Utc;
use serde_json::{json, Value};

use config::Config;

pub use run::run;

/// The lock file: held (flock) by the process that owns the state.
pub const LOCK_FILE: &str = "run.lock";
/// The socket `atm run` listens on.
pub const SOCKET_FILE: &str = "run.sock";

/// The whole login (TCP, TLS, SASL, binding).
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Waiting for the server to acknowledge what a one-shot command sent.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// A one-shot command processes what arrives until this much silence...
pub const SETTLE_QUIET: Duration = Duration::from_millis(1500);
/// ...but at most this long.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// Waiting for a running `atm run` to answer.
pub const SOCKET_TIMEOUT: Duration = Duration::from_secs(120);

/// What a command asks of the device.
#[derive(Debug, Clone)]
pub enum Request {
    /// Every known key.
    Keys,
    /// The device's status.
    Status,
    /// The device's Trust Message URI.
    Uri,
    /// Authenticate/distrust what a URI says.
    Scan(String),
    /// Authenticate a known key.
    Authenticate(String, String),
    /// Distrust a known key.
    Distrust(String, String),
    /// Send an encrypted chat message.
    Send(String, String),
}

impl Request {
    fn to_json(&self) -> Value {
        match self {
            Request::Keys => json!({"op": "keys"}),
            Request::Status => json!({"op": "status"}),
            Request::Uri => json!({"op": "uri"}),
            Request::Scan(uri) => json!({"op": "scan", "uri": uri}),
            Request::Authenticate(j, f) => {
                json!({"op": "authenticate", "jid": j, "fingerprint": f})
            }
            Request::Distrust(j, f) => json!({"op": "distrust", "jid": j, "fingerprint": f}),
            Request::Send(to, text) => json!({"op": "send", "to": to, "text": text}),
        }
    }

    fn from_json(value: &Value) -> Result<Request> {
        let field = |name: &str| -> Result<String> {
            value
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("request without {name:?}"))
        };
        Ok(match field("op")?.as_str() {
            "keys" => Request::Keys,
            "status" => Request::Status,
            "uri" => Request::Uri,
            "scan" => Request::Scan(field("uri")?),
            "authenticate" => Request::Authenticate(field("jid")?, field("fingerprint")?),
            "distrust" => Request::Distrust(field("jid")?, field("fingerprint")?),
            "send" => Request::Send(field("to")?, field("text")?),
            other => bail!("unknown request {other:?}"),
        })
    }

    /// Whether it changes state or sends (and so needs the network when
    /// performed in this process).
    fn sends(&self) -> bool {
        !matches!(self, Request::Keys | Request::Status | Request::Uri)
    }
}

/// Opens the device's core.
pub fn open_core(dir: &Path, config: &Config) -> Result<Endpoint> {
    Endpoint::open(dir, &config.jid, Utc::now(), Box::new(OsRandom))
        .with_context(|| format!("opening the device state in {}", dir.display()))
}

/// Logs the device in with the connector its settings name.
pub async fn connect(dir: &Path, config: &Config, core: Endpoint) -> Result<Driver> {
    let password = config::load_password(dir)?;
    let settings = Settings {
        login_timeout: LOGIN_TIMEOUT,
        ..Settings::default()
    };
    let driver = if config.plaintext {
        let server = config
            .server
            .as_deref()
            .ok_or_else(|| anyhow!("plaintext needs a server address"))?;
        let addr = server
            .parse()
            .map_err(|_| anyhow!("plaintext needs a loopback IP:PORT, not {server:?}"))?;
        let connector = PlaintextLoopbackConnector::new(addr)?;
        Driver::connect(core, connector, &password, settings).await?
    } else if config.ca {
        let pem_path = dir.join(config::CA_FILE);
        let pem = std::fs::read(&pem_path)
            .with_context(|| format!("reading the CA {}", pem_path.display()))?;
        let target = match &config.server {
            Some(server) => Target::parse(server)?,
            None => Target::Host(config.jid.domain().as_str().to_owned(), 5222),
        };
        let connector = PemRootsConnector::new(target, &pem)?;
        Driver::connect(core, connector, &password, settings).await?
    } else {
        let connector = atm_endpoint::system_roots_connector(
            config.jid.domain().as_str(),
            config.server.as_deref(),
        );
        Driver::connect(core, connector, &password, settings).await?
    };
    Ok(driver)
}

/// Steps the driver until nothing arrived for [`SETTLE_QUIET`], nothing is
/// unacknowledged and no request of the core waits for its answer (device
/// lists, bundles, the archive), at most `limit`; hands every event to
/// `on_event`. Reaching the limit is not an error: what is left is done at
/// the next start.
pub async fn settle(
    driver: &mut Driver,
    limit: Duration,
    on_event: &mut dyn FnMut(Event),
) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        let arrived = driver.step(Duration::from_millis(200)).await?;
        while let Some(event) = driver.poll_event() {
            on_event(event);
        }
        if arrived || driver.unacknowledged() > 0 || driver.core().awaiting_responses() > 0 {
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= SETTLE_QUIET {
            break;
        }
    }
    Ok(())
}

fn decided_json(decided: &Decided) -> Value {
    json!({
        "changes": decided.changes.iter().map(|e| words::event(e).1).collect::<Vec<_>>(),
        "trust_messages": decided.trust_messages,
    })
}

fn command_error(error: CommandError) -> anyhow::Error {
    anyhow!("{error}")
}

/// Performs a request on the core alone (no network).
pub fn perform_core(core: &mut Endpoint, request: &Request) -> Result<Value> {
    let now = Utc::now();
    Ok(match request {
        Request::Keys => {
            let keys = core.keys().map_err(command_error)?;
            let own = atm_engine::KeyRef::new(core.jid().clone(), core.own_key().clone());
            json!({"keys": keys.iter().map(|k| words::key_json(k, &own)).collect::<Vec<_>>()})
        }
        Request::Status => {
            let s = core.status().map_err(command_error)?;
            json!({
                "jid": s.jid.as_str(),
                "device_id": s.device_id,
                "fingerprint": s.fingerprint,
                "policy": s.policy.as_str(),
                "keys_by_level": s.keys_by_level.iter().map(|(l, n)| (l.as_str().to_owned(), json!(n))).collect::<serde_json::Map<_, _>>(),
                "stored_decisions": s.stored_decisions,
                "outbox": s.outbox,
                "archive_position": s.archive_position,
                "contacts": s.contacts.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            })
        }
        Request::Uri => json!({
            "uri": core.uri(),
            "jid": core.jid().as_str(),
            "device_id": core.device_id(),
            "fingerprint": core.fingerprint(),
        }),
        Request::Scan(uri) => decided_json(&core.scan(uri, now).map_err(command_error)?),
        Request::Authenticate(j, f) => {
            decided_json(&core.authenticate(j, f, now).map_err(command_error)?)
        }
        Request::Distrust(j, f) => decided_json(&core.distrust(j, f, now).map_err(command_error)?),
        Request::Send(to, text) => {
            let to = config::parse_account(to)?;
            let sent = core
                .send_chat(to.as_str(), text, now)
                .map_err(command_error)?;
            json!({"to": to.as_str(), "devices": sent.devices})
        }
    })
}

/// Performs a request on a connected device. `send` to an account whose
/// devices are not known yet follows it first and waits (bounded) for its
/// device list and bundles.
pub async fn perform(
    driver: &mut Driver,
    request: &Request,
    on_event: &mut dyn FnMut(Event),
) -> Result<Value> {
    if let Request::Send(to, _) = request {
        let jid = config::parse_account(to)?;
        let known = driver
            .core()
            .status()
            .map_err(command_error)?
            .contacts
            .contains(&jid)
            || jid == *driver.core().jid();
        if !known {
            driver.add_contact(&jid).await?;
            settle(driver, SETTLE_LIMIT, on_event).await?;
        }
    }
    let before = driver.core().status().map_err(command_error)?.contacts;
    let result = perform_core(driver.core(), request);
    // A contact the core started following (scanning or deciding on a
    // contact's key): ask for the presence subscription too, without which
    // its server sends no notifications of its device list.
    let mut follow: Vec<jid::BareJid> = driver
        .core()
        .status()
        .map_err(command_error)?
        .contacts
        .into_iter()
        .filter(|c| !before.contains(c))
        .collect();
    if let Request::Authenticate(j, _) | Request::Distrust(j, _) = request {
        if let Ok(owner) = config::parse_account(j) {
            if owner != *driver.core().jid() && !before.contains(&owner) && result.is_ok() {
                follow.push(owner);
            }
        }
    }
    for contact in follow {
        driver.add_contact(&contact).await?;
    }
    driver.flush().await?;
    while let Some(event) = driver.poll_event() {
        on_event(event);
    }
    result
}

/// Tries to take the directory's lock without waiting.
pub fn try_lock(dir: &Path) -> Result<Option<File>> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening the lock {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(anyhow!("locking {}: {e}", path.display())),
    }
}

fn ask_running(dir: &Path, request: &Request) -> Result<Option<Value>> {
    let path = dir.join(SOCKET_FILE);
    let stream = match UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(_) => return Ok(None),
    };
    stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
    stream.set_write_timeout(Some(SOCKET_TIMEOUT))?;
    let mut writer = &stream;
    let mut line = serde_json::to_string(&request.to_json())?;
    line.push('\n');
    writer
        .write_all(line.as_bytes())
        .with_context(|| format!("talking to the running `atm run` at {}", path.display()))?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .with_context(|| format!("waiting for the running `atm run` at {}", path.display()))?;
    let value: Value = serde_json::from_str(&answer)
        .map_err(|e| anyhow!("the running `atm run` answered garbage ({e}): {answer:?}"))?;
    match (value.get("ok"), value.get("error").and_then(Value::as_str)) {
        (Some(result), None) => Ok(Some(result.clone())),
        (_, Some(error)) => Err(anyhow!("{error}")),
        _ => bail!("the running `atm run` answered without a result: {answer:?}"),
    }
}

/// Runs a request: in the running `atm run` if there is one, else here.
pub fn request(dir: &Path, request: Request, log: bool) -> Result<Value> {
    let config = Config::load(dir)?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(value) = ask_running(dir, &request)? {
            return Ok(value);
        }
        if let Some(lock) = try_lock(dir)? {
            let result = here(dir, &config, &request, log);
            drop(lock);
            return result;
        }
        // Another process holds the lock: an `atm run` starting (its socket
        // comes up soon) or another one-shot command finishing.
        if Instant::now() >= deadline {
            bail!(
                "another atm process holds {} and does not answer on {}",
                dir.join(LOCK_FILE).display(),
                dir.join(SOCKET_FILE).display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn here(dir: &Path, config: &Config, request: &Request, log: bool) -> Result<Value> {
    let mut core = open_core(dir, config)?;
    if !request.sends() {
        return perform_core(&mut core, request);
    }
    let mut on_event = |event: Event| {
        if log {
            eprintln!("{}", words::event(&event).0);
        }
    };
    runtime()?.block_on(async {
        let mut driver = connect(dir, config, core).await?;
        let outcome = async {
            settle(&mut driver, SETTLE_LIMIT, &mut on_event).await?;
            let result = perform(&mut driver, request, &mut on_event).await?;
            driver.wait_acknowledged(ACK_TIMEOUT).await?;
            settle(&mut driver, SETTLE_LIMIT, &mut on_event).await?;
            driver.wait_acknowledged(ACK_TIMEOUT).await?;
            Ok::<Value, anyhow::Error>(result)
        }
        .await;
        driver.close().await;
        outcome
    })
}

/// `atm account init`.
pub struct InitArgs {
    /// The state directory.
    pub dir: PathBuf,
    /// The account.
    pub jid: String,
    /// The file holding the password.
    pub password_file: PathBuf,
    /// `HOST:PORT`.
    pub server: Option<String>,
    /// A CA (PEM) to trust instead of the system roots.
    pub ca: Option<PathBuf>,
    /// Plaintext to a loopback address.
    pub plaintext: bool,
}

/// Creates a device directory: checks everything, logs in once (publishing
/// the device), then moves the finished directory into place. A failure
/// leaves nothing behind.
pub fn init(args: InitArgs) -> Result<Value> {
    let jid = config::parse_account(&args.jid)?;
    let password_text = std::fs::read_to_string(&args.password_file)
        .with_context(|| format!("reading the password file {}", args.password_file.display()))?;
    let password = config::password_from(&password_text)
        .with_context(|| format!("{}", args.password_file.display()))?;
    if let Some(server) = &args.server {
        Target::parse(server)?;
    }
    if args.plaintext {
        let server = args.server.as_deref().ok_or_else(|| {
            anyhow!("--insecure-plaintext-loopback needs --server with a loopback IP:PORT")
        })?;
        let addr = server.parse().map_err(|_| {
            anyhow!("--insecure-plaintext-loopback needs a loopback IP:PORT, not {server:?}")
        })?;
        PlaintextLoopbackConnector::new(addr)?;
        if args.ca.is_some() {
            bail!("--ca and --insecure-plaintext-loopback exclude each other");
        }
    }
    let ca_pem = match &args.ca {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the CA {}", path.display()))?;
            PemRootsConnector::new(Target::Host("localhost".into(), 1), &pem)
                .with_context(|| format!("{}", path.display()))?;
            Some(pem)
        }
        None => None,
    };
    match std::fs::read_dir(&args.dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} is not empty: `account init` only creates a new device directory",
                    args.dir.display()
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("{}: {e}", args.dir.display()),
    }
    let config = Config {
        jid,
        server: args.server.clone(),
        ca: ca_pem.is_some(),
        plaintext: args.plaintext,
    };
    let staging = config::staging_path(&args.dir)?;
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("removing the stale {}", staging.display()))?;
    }
    config::create_private_dir(&staging)?;
    let built = (|| -> Result<Value> {
        config::write_new(&staging, &config, &password, ca_pem.as_deref())?;
        let core = open_core(&staging, &config)?;
        let uri = core.uri();
        let device_id = core.device_id();
        let fingerprint = core.fingerprint();
        runtime()?.block_on(async {
            let mut driver = connect(&staging, &config, core).await?;
            let outcome = async {
                settle(&mut driver, SETTLE_LIMIT, &mut |_| {}).await?;
                driver.wait_acknowledged(ACK_TIMEOUT).await?;
                Ok::<(), anyhow::Error>(())
            }
            .await;
            driver.close().await;
            outcome
        })?;
        Ok(json!({
            "dir": args.dir.display().to_string(),
            "jid": config.jid.as_str(),
            "device_id": device_id,
            "fingerprint": fingerprint,
            "uri": uri,
        }))
    })();
    let result = built.and_then(|value| {
        std::fs::rename(&staging, &args.dir)
            .with_context(|| format!("moving {} to {}", staging.display(), args.dir.display()))?;
        Ok(value)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

/// Asks on the terminal; refuses when there is none.
pub fn confirm(question: &str) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!("{question} needs a confirmation: run it on a terminal, or pass --yes");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim().to_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        bail!("cancelled; nothing was changed")
    }
}

/// What a URI would decide, in words, from the device's known keys.
pub fn preview_scan(dir: &Path, uri: &str) -> Result<String> {
    let parsed =
        TrustUri::parse(uri.trim()).map_err(|e| anyhow!("malformed Trust Message URI: {e}"))?;
    if parsed.encryption != Encryption::OMEMO2 {
        bail!(
            "the URI is for encryption {}, this endpoint uses {}",
            parsed.encryption.as_str(),
            Encryption::OMEMO2.as_str()
        );
    }
    let keys = request(dir, Request::Keys, false)?;
    let known = keys["keys"].as_array().cloned().unwrap_or_default();
    let level_of = |hex: &str| -> String {
        known
            .iter()
            .find(|k| k["owner"] == parsed.jid.as_str() && k["fingerprint"] == hex)
            .and_then(|k| k["level"].as_str())
            .map_or(
                "not known yet: decided when its device appears".to_owned(),
                |l| format!("now {}", l.replace('_', " ")),
            )
    };
    let mut text = format!("This URI is about keys of {}:\n", parsed.jid);
    for key in &parsed.trust {
        let hex = key.to_hex();
        text.push_str(&format!(
            "  authenticate {} ({})\n",
            words::grouped(&hex),
            level_of(&hex)
        ));
    }
    for key in &parsed.distrust {
        let hex = key.to_hex();
        text.push_str(&format!(
            "  distrust     {} ({})\n",
            words::grouped(&hex),
            level_of(&hex)
        ));
    }
    text.push_str("Compare the fingerprints with the other device's screen.");
    Ok(text)
}

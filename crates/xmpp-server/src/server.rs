//! [`Server`]: one private Prosody or ejabberd on loopback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use crate::ca::{CertFiles, TestCa};
use crate::client_tls::{register_in_band, TestCaConnector};
use crate::error::{io_error, Error};
use crate::ports::PortLease;
use crate::process::{log_len, tail, Readiness, ServerProcess};
use crate::{ejabberd, prosody, Kind};

/// Set to keep the servers' directories (config, data, logs) after the test.
pub const KEEP_ENV: &str = "ATM_XMPP_SERVER_KEEP";
/// Set to make the servers log at debug level.
pub const DEBUG_ENV: &str = "ATM_XMPP_SERVER_DEBUG";

/// How to start a [`Server`]; [`Options::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct Options {
    /// Which server.
    pub kind: Kind,
    /// The virtual hosts (default `example.org`, `example.com`).
    pub domains: Vec<String>,
    /// The loopback address to listen on (default 127.0.0.1). Must be in
    /// 127.0.0.0/8.
    pub ip: IpAddr,
    /// Refuse c2s without TLS (default true; STARTTLS is always offered).
    pub require_tls: bool,
    /// How long start-up may take (default 30 s Prosody, 60 s ejabberd).
    pub startup_timeout: Duration,
    /// The program to run instead of the one found on PATH or in /usr/sbin
    /// (`prosody`, or `ejabberdctl` for ejabberd).
    pub program: Option<PathBuf>,
}

impl Options {
    /// The defaults for `kind`.
    pub fn new(kind: Kind) -> Self {
        let startup_timeout = match kind {
            Kind::Prosody => Duration::from_secs(30),
            Kind::Ejabberd => Duration::from_secs(60),
        };
        Self {
            kind,
            domains: vec!["example.org".into(), "example.com".into()],
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            require_tls: true,
            startup_timeout,
            program: None,
        }
    }
}

/// A private XMPP server: its own directory, config, test CA and ports on
/// loopback, stopped by pid on [`Server::stop`] or drop. Never the system
/// service, never the default ports, never /etc/prosody or /etc/ejabberd.
#[derive(Debug)]
pub struct Server {
    kind: Kind,
    domains: Vec<String>,
    ip: IpAddr,
    c2s: PortLease,
    s2s: Option<PortLease>,
    dist: Option<PortLease>,
    certs: CertFiles,
    program: PathBuf,
    startup_timeout: Duration,
    process: Option<ServerProcess>,
    dir_path: PathBuf,
    /// Locked while this `Server` lives: tells other processes' reapers
    /// that the directory has an owner (see `reaper`).
    _owner: std::fs::File,
    dir: Option<TempDir>,
}

/// What [`Server::launch`] gets from a caller that has already leased ports
/// (federation needs the peer's ports before it writes a config).
pub(crate) struct Plan {
    pub options: Options,
    pub c2s: PortLease,
    pub s2s: Option<(PortLease, prosody::S2s)>,
}

impl Server {
    /// Starts a private server of `kind` with the default [`Options`].
    pub fn start(kind: Kind) -> Result<Self, Error> {
        Self::start_with(Options::new(kind))
    }

    /// Starts a private server with `options`, and waits until it accepts
    /// connections (bounded by `options.startup_timeout`).
    pub fn start_with(options: Options) -> Result<Self, Error> {
        validate(&options)?;
        let c2s = PortLease::acquire(options.ip)?;
        let ca = TestCa::generate()?;
        Self::launch(
            Plan {
                options,
                c2s,
                s2s: None,
            },
            &ca,
        )
    }

    pub(crate) fn launch(plan: Plan, ca: &TestCa) -> Result<Self, Error> {
        let Plan { options, c2s, s2s } = plan;
        validate(&options)?;
        let program = find_program(options.kind, options.program.as_deref())?;
        crate::reaper::reap_orphans_once();
        let dir = tempfile::Builder::new()
            .prefix(&format!("atm-{}-", options.kind))
            .tempdir()
            .map_err(io_error("creating a directory in", std::env::temp_dir()))?;
        let dir_path = dir.path().to_path_buf();
        let owner = crate::reaper::claim(&dir_path).map_err(io_error("locking", &dir_path))?;
        let domains: Vec<&str> = options.domains.iter().map(String::as_str).collect();
        let mut names = domains.clone();
        names.push("localhost");
        let certs = ca.write_server_files(&dir_path.join("certs"), &names, &[options.ip])?;
        let debug_log = std::env::var_os(DEBUG_ENV).is_some();
        let mut dist = None;
        let mut s2s_lease = None;
        match options.kind {
            Kind::Prosody => {
                let data = dir_path.join("data");
                std::fs::create_dir_all(&data).map_err(io_error("creating", &data))?;
                let plugins = dir_path.join("plugins");
                std::fs::create_dir_all(&plugins).map_err(io_error("creating", &plugins))?;
                crate::ca::write(
                    &plugins.join("mod_s2s_static_routes.lua"),
                    prosody::STATIC_ROUTES_PLUGIN,
                )?;
                let s2s_config = s2s.as_ref().map(|(_, config)| config);
                let config = prosody::Config {
                    dir: &dir_path,
                    ip: options.ip,
                    c2s_port: c2s.port(),
                    domains: &options.domains,
                    certs: &certs,
                    require_tls: options.require_tls,
                    s2s: s2s_config,
                    debug_log,
                };
                crate::ca::write(&prosody::config_path(&dir_path), &prosody::render(&config))?;
                s2s_lease = s2s.map(|(lease, _)| lease);
            }
            Kind::Ejabberd => {
                let lease = PortLease::acquire(IpAddr::V4(Ipv4Addr::LOCALHOST))?;
                let config = ejabberd::Config {
                    dir: &dir_path,
                    ip: options.ip,
                    c2s_port: c2s.port(),
                    dist_port: lease.port(),
                    domains: &options.domains,
                    certs: &certs,
                    require_tls: options.require_tls,
                    debug_log,
                };
                ejabberd::write_files(&program, &config)?;
                dist = Some(lease);
            }
        }
        let mut server = Self {
            kind: options.kind,
            domains: options.domains,
            ip: options.ip,
            c2s,
            s2s: s2s_lease,
            dist,
            certs,
            program,
            startup_timeout: options.startup_timeout,
            process: None,
            dir_path,
            _owner: owner,
            dir: Some(dir),
        };
        server.start_again()?;
        Ok(server)
    }

    /// Starts the server again after [`Server::stop`]: same directory, data,
    /// config and ports. Does nothing if it is running.
    pub fn start_again(&mut self) -> Result<(), Error> {
        if self.process.is_some() {
            return Ok(());
        }
        let log = self.log_path();
        let log_offset = log_len(&log);
        let console = self.dir_path.join("console.log");
        let command = match self.kind {
            Kind::Prosody => prosody::command(&self.program, &self.dir_path),
            Kind::Ejabberd => ejabberd::command(&self.dir_path),
        };
        let mut process = ServerProcess::spawn(self.kind, command, &console)?;
        // For the reaper of another process, should this one die before
        // stopping the server (Prosody can write its own pid file after its
        // port is already open).
        let pid_file = self.dir_path.join(crate::reaper::HARNESS_PID_FILE);
        crate::ca::write(&pid_file, &format!("{}\n", process.pid()))?;
        let mut ports = vec![self.c2s_addr()];
        if let Some(port) = self.s2s_port() {
            ports.push(SocketAddr::new(self.ip, port));
        }
        let log_lines: Vec<String> = match self.kind {
            Kind::Prosody => {
                let mut lines = vec![prosody::activated_line("c2s", self.c2s_addr())];
                if let Some(port) = self.s2s_port() {
                    lines.push(prosody::activated_line(
                        "s2s",
                        SocketAddr::new(self.ip, port),
                    ));
                }
                lines
            }
            Kind::Ejabberd => vec![
                ejabberd::STARTED_LINE.to_owned(),
                ejabberd::accepting_line(self.c2s_addr()),
            ],
        };
        let readiness = Readiness {
            ports: &ports,
            log_lines: &log_lines,
            log: &log,
            extra_logs: std::slice::from_ref(&console),
            log_offset,
            timeout: self.startup_timeout,
        };
        // On failure `process` is dropped, which stops it by pid.
        process.wait_ready(&readiness)?;
        self.process = Some(process);
        Ok(())
    }

    /// Stops the server (SIGTERM to its pid, SIGKILL after 10 s). The
    /// directory, data and ports stay reserved for [`Server::start_again`].
    pub fn stop(&mut self) -> Result<(), Error> {
        match self.process.take() {
            Some(mut process) => process.stop(),
            None => Ok(()),
        }
    }

    /// Stops and starts the server: same data directory, same ports.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.stop()?;
        self.start_again()
    }

    /// Whether the server process is running (started and not stopped).
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// The server's pid, while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ServerProcess::pid)
    }

    /// Which server this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Where clients connect (c2s, STARTTLS).
    pub fn c2s_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.c2s.port())
    }

    /// The s2s listener's port, for a federated Prosody.
    pub fn s2s_port(&self) -> Option<u16> {
        self.s2s.as_ref().map(PortLease::port)
    }

    /// ejabberd's Erlang distribution port (on 127.0.0.1).
    pub fn erlang_dist_port(&self) -> Option<u16> {
        self.dist.as_ref().map(PortLease::port)
    }

    /// The test CA's certificate (PEM): the only CA clients should trust.
    pub fn ca_pem_path(&self) -> &Path {
        &self.certs.ca
    }

    /// The served domains (virtual hosts).
    pub fn domains(&self) -> &[String] {
        &self.domains
    }

    /// The server's private directory (config, data, logs).
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// The server's main log (Prosody: `prosody.log`; ejabberd:
    /// `logs/ejabberd.log`). Console output is in `console.log` beside it.
    pub fn log_path(&self) -> PathBuf {
        match self.kind {
            Kind::Prosody => prosody::log_path(&self.dir_path),
            Kind::Ejabberd => ejabberd::log_path(&self.dir_path),
        }
    }

    /// The last `lines` lines of the main log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path(), lines)
    }

    /// A connector for tokio-xmpp that reaches this server and trusts only
    /// its test CA.
    pub fn connector(&self) -> Result<TestCaConnector, Error> {
        Ok(TestCaConnector::from_ca_file(
            self.c2s_addr(),
            self.ca_pem_path(),
        )?)
    }

    /// Creates the account `local@domain` by in-band registration
    /// (XEP-0077) over STARTTLS, within 15 s.
    pub async fn register(&self, local: &str, domain: &str, password: &str) -> Result<(), Error> {
        if !self.domains.iter().any(|d| d == domain) {
            return Err(Error::UnknownDomain {
                domain: domain.to_owned(),
                served: self.domains.clone(),
            });
        }
        let connector = self.connector()?;
        register_in_band(&connector, local, domain, password, Duration::from_secs(15)).await?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop();
        if std::env::var_os(KEEP_ENV).is_some() {
            if let Some(dir) = self.dir.take() {
                let _ = dir.keep();
            }
        }
    }
}

/// Loopback only; at least one domain, each a plain lower-case DNS name
/// (it is written into Lua and YAML configuration and a certificate).
pub(crate) fn validate(options: &Options) -> Result<(), Error> {
    let invalid = |reason: String| Err(Error::InvalidOptions { reason });
    if !options.ip.is_loopback() {
        return invalid(format!("{} is not a loopback address", options.ip));
    }
    if options.domains.is_empty() {
        return invalid("no domain to serve".into());
    }
    for domain in &options.domains {
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if domain.len() > 253 || !domain.split('.').all(label_ok) {
            return invalid(format!("{domain:?} is not a plain lower-case DNS name"));
        }
    }
    Ok(())
}

/// The program that runs `kind`: `explicit` if given, else the first match
/// on PATH, /usr/sbin, /usr/bin. ejabberd also needs `/usr/bin/erl`, which
/// its `ejabberdctl` hard-codes.
fn find_program(kind: Kind, explicit: Option<&Path>) -> Result<PathBuf, Error> {
    let (name, package) = match kind {
        Kind::Prosody => ("prosody", "prosody"),
        Kind::Ejabberd => ("ejabberdctl", "ejabberd"),
    };
    let program = match explicit {
        Some(path) if path.is_file() => path.to_path_buf(),
        Some(path) => {
            return Err(Error::BinaryMissing {
                program: name,
                path: path.to_path_buf(),
                package,
            })
        }
        None => search_path(name).ok_or_else(|| Error::BinaryMissing {
            program: name,
            path: PathBuf::from(format!("$PATH, /usr/sbin, /usr/bin ({name})")),
            package,
        })?,
    };
    if kind == Kind::Ejabberd {
        let erl = Path::new("/usr/bin/erl");
        if !erl.is_file() {
            return Err(Error::BinaryMissing {
                program: "erl",
                path: erl.into(),
                package,
            });
        }
    }
    Ok(program)
}

fn search_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

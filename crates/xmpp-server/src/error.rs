//! The harness's errors: one enum, every variant says what failed and where.

use std::path::PathBuf;
use std::time::Duration;

use crate::Kind;

/// Why a private server (or a client step of the harness) failed.
///
/// Start-up failures carry the tail of the server's log, so that a failing
/// test shows why the server refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A server program is not installed.
    #[error(
        "{program} not found (looked for {path}); install it with \
         `apt-get install {package}` or run `bash scripts/test.sh`, which does"
    )]
    BinaryMissing {
        /// The program that was looked for (`prosody`, `ejabberdctl`, `erl`).
        program: &'static str,
        /// The path that does not exist.
        path: PathBuf,
        /// The Debian package that provides it.
        package: &'static str,
    },

    /// A file or directory of the server's private directory could not be
    /// written or read.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("writing", "creating", ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The test CA or a server certificate could not be generated.
    #[error("generating the test certificate for {subject}: {source}")]
    Certificate {
        /// The certificate's subject ("test CA", or a domain).
        subject: String,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },

    /// No free loopback port could be reserved.
    #[error("no free TCP port on {ip} after trying {tried} candidates")]
    NoFreePort {
        /// The loopback address the port was wanted on.
        ip: std::net::IpAddr,
        /// How many ports were tried.
        tried: usize,
    },

    /// The server process could not be spawned.
    #[error("spawning {kind} ({program}): {source}")]
    Spawn {
        /// Which server.
        kind: Kind,
        /// The program that was executed.
        program: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The server process exited while it was starting.
    #[error("{kind} exited during start-up ({status}); last lines of {log}:\n{log_tail}")]
    Exited {
        /// Which server.
        kind: Kind,
        /// The exit status, as printed by the operating system.
        status: String,
        /// The log that was read.
        log: PathBuf,
        /// Its last lines.
        log_tail: String,
    },

    /// The server did not become ready in time.
    #[error("{kind} not ready after {waited:?} ({waiting_for}); last lines of {log}:\n{log_tail}")]
    NotReady {
        /// Which server.
        kind: Kind,
        /// How long the harness waited.
        waited: Duration,
        /// What was missing (the c2s port, the pid file, a log line).
        waiting_for: String,
        /// The log that was read.
        log: PathBuf,
        /// Its last lines.
        log_tail: String,
    },

    /// The server did not stop after SIGTERM and SIGKILL.
    #[error("{kind} (pid {pid}) did not stop: {reason}")]
    Stop {
        /// Which server.
        kind: Kind,
        /// The process id that was signalled.
        pid: u32,
        /// What went wrong.
        reason: String,
    },

    /// The [`crate::Options`] cannot be used (a non-loopback address, no
    /// domain, a domain that is not a plain DNS name).
    #[error("invalid server options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: String,
    },

    /// A domain that this server does not serve was named.
    #[error("{domain} is not a domain of this server (it serves {served:?})")]
    UnknownDomain {
        /// The domain asked for.
        domain: String,
        /// The domains served.
        served: Vec<String>,
    },

    /// A client step (TLS, login, registration, a stanza exchange) failed.
    #[error(transparent)]
    Client(#[from] crate::client_tls::ClientError),
}

/// Shorthand for I/O errors with their path.
pub(crate) fn io_error(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

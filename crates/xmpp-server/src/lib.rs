//! Private XMPP servers for tests and for `atm scenario run --transport
//! xmpp`: Prosody 0.12 or ejabberd 23.01 (Debian packages) started as
//! child processes on loopback, on free ports, with their own temporary
//! directory, configuration and test CA; never the system service, never
//! the default ports, never /etc/prosody or /etc/ejabberd.
//!
//! Each server has two virtual hosts (`example.org`, `example.com`), PEP
//! (OMEMO 2 nodes keep up to 1000 items), carbons, MAM (archiving by
//! default), offline storage, stream management, in-band registration from
//! loopback, and STARTTLS with a certificate from a CA generated per run.
//! [`Federation`] runs two Prosody processes that talk s2s over loopback.
//! `docs/servers.md` in the repository says how, and which quirks are
//! handled.
//!
//! Call order: [`Server::start`] (blocks until the server accepts
//! connections, or fails with the tail of its log), then
//! [`Server::register`] accounts, connect clients with
//! [`client_tls::connect`] over [`Server::connector`], optionally
//! [`Server::restart`], and [`Server::stop`] or drop (which stops it by
//! pid). Start, restart, stop and drop block the thread (seconds for
//! ejabberd, at most 10 s + 5 s for a server that ignores SIGTERM); in async
//! code call them from `spawn_blocking`. [`reap_orphans`] stops servers whose
//! test process was killed before it could.
//!
//! ```no_run
//! use std::time::Duration;
//! use atm_xmpp_server::{client_tls, Kind, Server};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::start(Kind::Prosody)?;
//! server.register("alice", "example.org", "secret").await?;
//! let jid = client_tls::bare_jid("alice", "example.org")?;
//! let (stream, bound) =
//!     client_tls::connect(&server.connector()?, jid.into(), "secret", Duration::from_secs(10))
//!         .await?;
//! println!("{bound} online at {}", server.c2s_addr());
//! stream.close().await;
//! # Ok(()) }
//! ```

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod ca;
pub mod client_tls;
mod ejabberd;
mod error;
mod federation;
mod ports;
mod process;
mod prosody;
mod reaper;
mod server;

pub use ca::{CertFiles, ServerCertificate, TestCa};
pub use error::Error;
pub use federation::{Federation, Side};
pub use ports::PortLease;
pub use reaper::reap_orphans;
pub use server::{Options, Server, DEBUG_ENV, KEEP_ENV};

/// Which server software.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Prosody 0.12 (Debian package `prosody`).
    Prosody,
    /// ejabberd 23.01 (Debian package `ejabberd`).
    Ejabberd,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Prosody => "prosody",
            Kind::Ejabberd => "ejabberd",
        })
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "prosody" => Ok(Kind::Prosody),
            "ejabberd" => Ok(Kind::Ejabberd),
            other => Err(format!(
                "unknown server {other:?} (expected prosody or ejabberd)"
            )),
        }
    }
}

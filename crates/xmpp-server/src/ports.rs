//! Free loopback ports that no other harness instance can take.
//!
//! A port is leased by holding an exclusive lock on
//! `$TMPDIR/atm-xmpp-server-ports/PORT.lock` for as long as the server uses
//! it; the lock dies with the process that holds it. Ports come from
//! 20000–32767, below Linux's ephemeral range (32768–60999), so the kernel
//! never hands them out to outgoing connections or to `bind(0)` in the gap
//! between the lease and the server's own bind. A candidate is also checked
//! by binding it once. Parallel tests in one process and test runs of other
//! processes therefore never get the same port.

use std::fs::{File, OpenOptions, TryLockError};
use std::net::{IpAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{io_error, Error};

const FIRST: u16 = 20_000;
const COUNT: u16 = 12_768;

/// A TCP port reserved for one server until the lease is dropped.
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    _lock: File,
}

impl PortLease {
    /// The port number.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Leases a port that is free on `ip` now and not leased by anyone else.
    pub fn acquire(ip: IpAddr) -> Result<Self, Error> {
        if !ip.is_loopback() {
            return Err(Error::InvalidOptions {
                reason: format!("{ip} is not a loopback address"),
            });
        }
        let dir = lock_dir();
        std::fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
        let start = start_offset();
        let tries = 4_000;
        for step in 0..tries {
            let port = FIRST + ((start + step * 7919) % u32::from(COUNT)) as u16;
            let path = dir.join(format!("{port}.lock"));
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io_error("opening", &path))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(source)) => {
                    return Err(Error::Io {
                        action: "locking",
                        path,
                        source,
                    })
                }
            }
            if TcpListener::bind((ip, port)).is_ok() {
                return Ok(Self { port, _lock: file });
            }
        }
        Err(Error::NoFreePort {
            ip,
            tried: tries as usize,
        })
    }
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("atm-xmpp-server-ports")
}

/// A starting point that differs between processes and between calls.
fn start_offset() -> u32 {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mixed = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(nanos)
        .wrapping_add(call.wrapping_mul(104_729));
    mixed % u32::from(COUNT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::net::Ipv4Addr;

    #[test]
    fn leases_are_distinct_and_bindable() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let leases: Vec<PortLease> = (0..20).map(|_| PortLease::acquire(ip).unwrap()).collect();
        let ports: HashSet<u16> = leases.iter().map(PortLease::port).collect();
        assert_eq!(ports.len(), leases.len());
        for port in &ports {
            assert!((FIRST..FIRST + COUNT).contains(port));
            TcpListener::bind((ip, *port)).unwrap();
        }
    }

    #[test]
    fn a_leased_port_is_not_leased_again() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let held = PortLease::acquire(ip).unwrap();
        // A second lock on the same file from this process must fail while held.
        let path = lock_dir().join(format!("{}.lock", held.port()));
        let again = OpenOptions::new().write(true).open(path).unwrap();
        assert!(matches!(again.try_lock(), Err(TryLockError::WouldBlock)));
    }
}

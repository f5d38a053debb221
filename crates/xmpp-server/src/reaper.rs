//! Stops servers whose test process died without stopping them (killed by
//! a time-out, SIGKILL, a crash), so that they do not run on forever.
//!
//! Each server directory holds `owner.lock`, locked by the process that
//! owns the [`crate::Server`] for its whole life; the lock dies with that
//! process. A directory whose lock can be taken has no owner any more: if
//! the pid in its pid file is still running and that process's command
//! line names the directory (so it is that server and no other process that
//! reused the pid), it is killed by pid and the directory removed (kept
//! with `ATM_XMPP_SERVER_KEEP`).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The lock file inside a server directory.
pub(crate) const OWNER_LOCK: &str = "owner.lock";
/// Prefixes of the server directories in the temporary directory.
pub(crate) const DIR_PREFIXES: [&str; 2] = ["atm-prosody-", "atm-ejabberd-"];
/// The pid the harness wrote right after spawning, then the servers' own
/// pid files (Prosody can write its one after its port is open).
pub(crate) const HARNESS_PID_FILE: &str = "server.pid";
const PID_FILES: [&str; 3] = [HARNESS_PID_FILE, "prosody.pid", "ejabberd.pid"];

/// Creates and locks DIR/owner.lock; keep the file as long as the server.
pub(crate) fn claim(dir: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(OWNER_LOCK))?;
    file.lock()?;
    Ok(file)
}

/// Reaps orphaned servers once per process ([`crate::Server::start`] calls
/// this).
pub(crate) fn reap_orphans_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        reap_orphans();
    });
}

/// Kills, by pid, every server of this harness (in the temporary directory)
/// whose owning process has died, and removes its directory; returns how
/// many servers it killed. [`crate::Server::start`] does this once per
/// process.
pub fn reap_orphans() -> usize {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if DIR_PREFIXES.iter().any(|p| name.starts_with(p)) && reap(&entry.path()) {
            killed += 1;
        }
    }
    killed
}

fn reap(dir: &Path) -> bool {
    // Never create the lock here: a directory without one is being set up.
    let Ok(lock) = OpenOptions::new().write(true).open(dir.join(OWNER_LOCK)) else {
        return false;
    };
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) | Err(TryLockError::Error(_)) => return false,
    }
    let mut killed = false;
    for pid in orphan_pids(dir) {
        let Ok(raw) = i32::try_from(pid) else {
            continue;
        };
        if kill(Pid::from_raw(raw), Signal::SIGKILL).is_ok() {
            killed = true;
            let started = Instant::now();
            while proc_dir(pid).exists() && started.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    drop(lock);
    if killed && std::env::var_os(crate::KEEP_ENV).is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
    killed
}

fn proc_dir(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}"))
}

/// Pids from the directory's pid files whose command line names `dir`.
fn orphan_pids(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut pids: Vec<u32> = PID_FILES
        .iter()
        .filter_map(|file| std::fs::read_to_string(dir.join(file)).ok())
        .filter_map(|text| text.trim().parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(proc_dir(*pid).join("cmdline"))
                .map(|cmdline| String::from_utf8_lossy(&cmdline).contains(&needle))
                .unwrap_or(false)
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

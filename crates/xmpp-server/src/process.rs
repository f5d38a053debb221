//! One server process: spawn, wait until ready, stop by pid.

use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{io_error, Error};
use crate::Kind;

/// How long a server gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long to wait for the process to vanish after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(40);

/// A running server process that this harness spawned (never anyone
/// else's): its [`Child`] is the server itself (Prosody's Lua process,
/// ejabberd's `beam.smp`, the launcher script `exec`s into it).
#[derive(Debug)]
pub(crate) struct ServerProcess {
    kind: Kind,
    child: Child,
}

/// What readiness means for one server.
pub(crate) struct Readiness<'a> {
    /// Ports that must accept a TCP connection.
    pub ports: &'a [SocketAddr],
    /// Lines that must appear in the log (after `log_offset`): they show
    /// that this server, not some other process, bound the ports.
    pub log_lines: &'a [String],
    /// The log to read for `log_lines` and for the error's tail.
    pub log: &'a Path,
    /// Other files whose tail helps explain a failure (console output).
    pub extra_logs: &'a [PathBuf],
    /// Only log text after this byte offset counts (a restart appends).
    pub log_offset: u64,
    /// How long to wait.
    pub timeout: Duration,
}

impl ServerProcess {
    /// Spawns `command` with stdin closed and stdout/stderr appended to
    /// `console_log`.
    pub fn spawn(kind: Kind, mut command: Command, console_log: &Path) -> Result<Self, Error> {
        let open = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(console_log)
                .map_err(io_error("opening", console_log))
        };
        command.stdin(Stdio::null()).stdout(open()?).stderr(open()?);
        let program = PathBuf::from(command.get_program());
        let child = command.spawn().map_err(|source| Error::Spawn {
            kind,
            program,
            source,
        })?;
        Ok(Self { kind, child })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until every port accepts and the log line (if any) appeared;
    /// fails early, with the log's tail, if the process exits.
    pub fn wait_ready(&mut self, ready: &Readiness<'_>) -> Result<(), Error> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::Exited {
                    kind: self.kind,
                    status: status.to_string(),
                    log: ready.log.to_path_buf(),
                    log_tail: tails(ready.log, ready.extra_logs),
                });
            }
            let missing = missing_condition(ready);
            let Some(waiting_for) = missing else {
                return Ok(());
            };
            if started.elapsed() >= ready.timeout {
                return Err(Error::NotReady {
                    kind: self.kind,
                    waited: started.elapsed(),
                    waiting_for,
                    log: ready.log.to_path_buf(),
                    log_tail: tails(ready.log, ready.extra_logs),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Stops the process: SIGTERM, up to 10 s for a clean exit, then
    /// SIGKILL. Only this pid is signalled.
    pub fn stop(&mut self) -> Result<(), Error> {
        if let Ok(Some(_)) = self.child.try_wait() {
            return Ok(());
        }
        let pid = self.pid();
        let kind = self.kind;
        let stop_error = move |reason: String| Error::Stop { kind, pid, reason };
        let raw = i32::try_from(pid).map_err(|_| stop_error("pid out of range".into()))?;
        // ESRCH: already gone (reaped below).
        let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
        if self.wait_exit(STOP_GRACE) {
            return Ok(());
        }
        let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
        if self.wait_exit(KILL_WAIT) {
            return Ok(());
        }
        Err(stop_error(format!(
            "still running {KILL_WAIT:?} after SIGKILL"
        )))
    }

    fn wait_exit(&mut self, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return true,
                Ok(None) => std::thread::sleep(POLL),
            }
        }
        false
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn missing_condition(ready: &Readiness<'_>) -> Option<String> {
    for addr in ready.ports {
        if TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_err() {
            return Some(format!("TCP port {addr}"));
        }
    }
    if !ready.log_lines.is_empty() {
        let text = read_from(ready.log, ready.log_offset);
        if let Some(line) = ready
            .log_lines
            .iter()
            .find(|line| !text.contains(line.as_str()))
        {
            return Some(format!("log line {line:?} in {}", ready.log.display()));
        }
    }
    None
}

/// The size of `path` (0 if missing): where new log text will start.
pub(crate) fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn read_from(path: &Path, offset: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// The last `lines` lines of `path` ("(missing)" if it cannot be read).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({} unreadable: {e})", path.display()),
    }
}

fn tails(log: &Path, extra: &[PathBuf]) -> String {
    let mut out = tail(log, 30);
    for path in extra {
        out.push_str(&format!("\n--- {} ---\n{}", path.display(), tail(path, 15)));
    }
    out
}

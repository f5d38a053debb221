//! A QXmpp endpoint of a mixed scenario: one process of the development peer
//! (`interop/qxmpp-peer`, QXmpp 1.10's OMEMO 2 and ATM managers, one device,
//! in-memory state), driven by JSON lines on its stdin and stdout
//! (`docs/interop.md`, "JSON-line protocol").
//!
//! A reader thread turns the peer's stdout into values; the runner polls
//! them in its rounds, next to its drivers. Everything the peer prints is
//! also written to `NAME.qxmpp.jsonl` (and its stderr to
//! `NAME.qxmpp.stderr`) in the endpoint's folder.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// One peer process.
pub(crate) struct Peer {
    name: String,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Value>,
    /// Replies by command id, until taken.
    replies: HashMap<u64, Value>,
    /// Commands whose reply has not come yet.
    outstanding: HashSet<u64>,
    /// Commands nobody waits for: their replies are dropped.
    unattended: HashSet<u64>,
    next_id: u64,
    stderr: PathBuf,
    /// Why the peer is gone, once it is.
    gone: Option<String>,
}

impl Peer {
    /// Starts the peer binary for endpoint `name`, its logs in `dir`.
    pub(crate) fn spawn(binary: &Path, name: &str, dir: &Path) -> Result<Peer, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log_path = dir.join(format!("{name}.qxmpp.jsonl"));
        let stderr = dir.join(format!("{name}.qxmpp.stderr"));
        let stderr_file =
            std::fs::File::create(&stderr).map_err(|e| format!("{}: {e}", stderr.display()))?;
        let mut log =
            std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let mut child = Command::new(binary)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr_file)
            .spawn()
            .map_err(|e| format!("starting the QXmpp peer {}: {e}", binary.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the QXmpp peer's stdin or stdout is missing".into());
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| json!({"event": "unparsed", "text": line}));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Ok(Peer {
            name: name.to_owned(),
            child,
            stdin,
            lines: rx,
            replies: HashMap::new(),
            outstanding: HashSet::new(),
            unattended: HashSet::new(),
            next_id: 1,
            stderr,
            gone: None,
        })
    }

    /// Sends a command; returns its id.
    pub(crate) fn send(&mut self, mut command: Value) -> Result<u64, String> {
        if let Some(reason) = &self.gone {
            return Err(reason.clone());
        }
        let id = self.next_id;
        self.next_id += 1;
        command["id"] = json!(id);
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("{} (QXmpp): writing to the peer: {e}", self.name))?;
        self.outstanding.insert(id);
        Ok(id)
    }

    /// Sends a command whose reply nobody waits for (it still counts as
    /// outstanding until it comes).
    pub(crate) fn send_unattended(&mut self, command: Value) -> Result<(), String> {
        let id = self.send(command)?;
        self.unattended.insert(id);
        Ok(())
    }

    /// The events printed since the last call (replies are kept for
    /// [`Peer::take_reply`]). An error once the process has exited.
    pub(crate) fn poll(&mut self) -> Result<Vec<Value>, String> {
        let mut events = Vec::new();
        let mut any = false;
        while let Ok(value) = self.lines.try_recv() {
            any = true;
            if let (Some(id), Some(_)) = (value.get("id").and_then(Value::as_u64), value.get("ok"))
            {
                self.outstanding.remove(&id);
                if !self.unattended.remove(&id) {
                    self.replies.insert(id, value);
                }
                continue;
            }
            events.push(value);
        }
        if !any && self.gone.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.gone = Some(format!(
                    "the QXmpp peer of {} exited ({status}); its stderr: {}",
                    self.name,
                    std::fs::read_to_string(&self.stderr)
                        .unwrap_or_default()
                        .trim()
                ));
            }
        }
        match (&self.gone, events.is_empty()) {
            (Some(reason), true) => Err(reason.clone()),
            _ => Ok(events),
        }
    }

    /// The reply to command `id`, if it came.
    pub(crate) fn take_reply(&mut self, id: u64) -> Option<Value> {
        self.replies.remove(&id)
    }

    /// Commands still without a reply.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Asks the peer to disconnect and exit; kills it after 5 s.
    pub(crate) fn quit(&mut self) {
        if self.gone.is_some() {
            let _ = self.child.wait();
            return;
        }
        let _ = writeln!(self.stdin, "{{\"cmd\":\"quit\"}}");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.gone = Some("quit".into());
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.gone = Some("killed".into());
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.gone.is_none() {
            self.quit();
        }
    }
}

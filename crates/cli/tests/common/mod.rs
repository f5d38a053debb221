//! Drives the real `atm` binary against a private Prosody (started by
//! atm-xmpp-server on loopback; a test fails loudly if it cannot start).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    dead_code
)]

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use atm_xmpp_server::{Kind, Server};
use serde_json::Value;

pub const PASSWORD: &str = "correct horse battery staple";
/// One command, login and acknowledgement included, under heavy load.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(180);

pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self, what: &str) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "{what} failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn fails(&self, what: &str, needle: &str) -> &Self {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "{what} should fail\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "{what}: stderr should say {needle:?}\nstderr:\n{}",
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "{what} panicked:\n{}",
            self.stderr
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!("not JSON ({e}): {:?}\nstderr: {}", self.stdout, self.stderr)
        })
    }
}

pub fn atm_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_atm"));
    command.env_remove("ATM_TEST_STOP_BEFORE_ENCRYPTED");
    command
}

/// Runs `atm ARGS` with no terminal on stdin, bounded by [`COMMAND_LIMIT`].
pub fn atm(args: &[&str]) -> Out {
    let mut child = atm_command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn atm");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + COMMAND_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "atm {args:?} did not finish within {COMMAND_LIMIT:?}; stderr: {}",
                err_thread.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Out {
        code: status.code(),
        stdout: out_thread.join().unwrap(),
        stderr: err_thread.join().unwrap(),
    }
}

pub struct Prosody {
    pub server: Server,
    pub work: tempfile::TempDir,
}

impl Prosody {
    /// Starts a private Prosody and registers `accounts` (local@example.org).
    pub fn start(accounts: &[&str]) -> Prosody {
        let server = Server::start(Kind::Prosody)
            .unwrap_or_else(|e| panic!("could not start a private Prosody: {e}"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for local in accounts {
            runtime
                .block_on(server.register(local, "example.org", PASSWORD))
                .unwrap_or_else(|e| panic!("registering {local}: {e}"));
        }
        let work = tempfile::tempdir().unwrap();
        std::fs::write(work.path().join("password"), format!("{PASSWORD}\n")).unwrap();
        Prosody { server, work }
    }

    pub fn addr(&self) -> String {
        self.server.c2s_addr().to_string()
    }

    pub fn ca(&self) -> String {
        self.server.ca_pem_path().display().to_string()
    }

    pub fn password_file(&self) -> String {
        self.work.path().join("password").display().to_string()
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// `atm --dir DIR account init` for `jid` on this server.
    pub fn init(&self, name: &str, jid: &str) -> PathBuf {
        let dir = self.dir(name);
        let d = dir.display().to_string();
        atm(&[
            "--dir",
            &d,
            "account",
            "init",
            "--jid",
            jid,
            "--password-file",
            &self.password_file(),
            "--server",
            &self.addr(),
            "--ca",
            &self.ca(),
        ])
        .ok(&format!("account init {name}"));
        dir
    }
}

pub fn d(dir: &Path) -> String {
    dir.display().to_string()
}

/// The device's own URI and fingerprint.
pub fn uri_of(dir: &Path) -> (String, String) {
    let v = atm(&["--dir", &d(dir), "uri", "--json"]).ok("uri").json();
    (
        v["uri"].as_str().unwrap().to_owned(),
        v["fingerprint"].as_str().unwrap().to_owned(),
    )
}

/// The level `dir` holds for `owner`'s key `fingerprint` (None: unknown).
pub fn level(dir: &Path, owner: &str, fingerprint: &str) -> Option<String> {
    let v = atm(&["--dir", &d(dir), "keys", "--json"]).ok("keys").json();
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["owner"] == owner && k["fingerprint"] == fingerprint)
        .map(|k| k["level"].as_str().unwrap().to_owned())
}

/// Polls `check` until it holds, at most `limit`.
pub fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A background `atm run` whose stdout and stderr go to files.
pub struct Running {
    pub child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Running {
    pub fn start(dir: &Path, log: &Path, env: &[(&str, String)]) -> Running {
        let stdout = log.with_extension("out");
        let stderr = log.with_extension("err");
        let mut command = atm_command();
        command
            .args(["--dir", &d(dir), "run"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("spawn atm run");
        let mut running = Running {
            child,
            stdout,
            stderr,
        };
        let deadline = Instant::now() + COMMAND_LIMIT;
        while !running.output().contains("online as") {
            if let Some(status) = running.child.try_wait().unwrap() {
                panic!(
                    "atm run exited ({status}) before it was online: {}",
                    running.errors()
                );
            }
            assert!(
                Instant::now() < deadline,
                "atm run not online: {}",
                running.errors()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        running
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn errors(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) -> String {
        let pid = nix_pid(&self.child);
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "atm run ended with {status}: {}",
                    self.errors()
                );
                break;
            }
            assert!(Instant::now() < deadline, "atm run did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        }
        self.output()
    }

    /// SIGKILL (std's `Child::kill` sends SIGKILL on Unix).
    pub fn kill(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.output()
    }
}

fn nix_pid(child: &Child) -> String {
    child.id().to_string()
}

//! A server whose test process is SIGKILLed keeps running (its owner never
//! stopped it); `reap_orphans` kills it by pid, and leaves servers that
//! still have an owner alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use atm_xmpp_server::{reap_orphans, Kind, Server};

const CHILD_ENV: &str = "ATM_XMPP_SERVER_REAPER_CHILD";

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn orphaned_servers_are_reaped_owned_ones_are_not() {
    let owned = Server::start(Kind::Prosody).unwrap();
    let owned_pid = owned.pid().unwrap();

    // A child process (this test binary, running the helper below) starts a
    // server, prints its pid, and is killed before it can stop it.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_owner_that_gets_killed",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(pid) = line.strip_prefix("server pid ") {
                let _ = tx.send(pid.trim().parse::<u32>().unwrap());
            }
        }
    });
    let orphan_pid = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the child started no server");
    child.kill().unwrap(); // SIGKILL: no Drop runs in the child
    child.wait().unwrap();
    assert!(alive(orphan_pid), "the orphaned server outlives its owner");

    assert!(reap_orphans() >= 1);
    let started = Instant::now();
    while alive(orphan_pid) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "orphan {orphan_pid} still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        alive(owned_pid),
        "a server with a living owner must not be touched"
    );
    drop(owned);
}

/// Helper process for the test above (run by it, ignored otherwise).
#[test]
#[ignore = "helper process of orphaned_servers_are_reaped_owned_ones_are_not"]
fn helper_owner_that_gets_killed() {
    assert!(
        std::env::var_os(CHILD_ENV).is_some(),
        "run only by the reaper test"
    );
    let server = Server::start(Kind::Prosody).unwrap();
    println!("server pid {}", server.pid().unwrap());
    // Bounded: the parent kills this process long before.
    std::thread::sleep(Duration::from_secs(60));
    drop(server);
}

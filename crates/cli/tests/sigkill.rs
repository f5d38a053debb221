//! Issue 11, item 8: an `atm run` killed with SIGKILL between receiving a
//! stanza and processing it (the `ATM_TEST_STOP_BEFORE_ENCRYPTED` hook
//! holds it there), and at random points after, several times, restarted
//! from its directory each time: at the end every device converged,
//! nothing was lost (every trust decision applied, every chat message shown
//! once) and nothing applied twice.
//!
//! The seed is printed; `ATM_FAULT_SEED=N` replays a run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::{atm, d, level, until, uri_of, Prosody, Running};

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";
const ITERATIONS: usize = 6;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn sigkill_between_receiving_and_processing_and_at_random_points() {
    let seed = std::env::var("ATM_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("fault seed: ATM_FAULT_SEED={seed}");
    let mut rng = Rng(seed);

    let p = Prosody::start(&["alice", "bob"]);
    let laptop = p.init("laptop", ALICE);
    let bob = p.init("bob-phone", BOB);
    let (laptop_uri, _) = uri_of(&laptop);
    let (bob_uri, bob_fp) = uri_of(&bob);
    atm(&["--dir", &d(&laptop), "scan", &bob_uri, "--yes"]).ok("alice scans bob");
    atm(&["--dir", &d(&bob), "scan", &laptop_uri, "--yes"]).ok("bob scans alice");
    assert_eq!(
        level(&laptop, BOB, &bob_fp).as_deref(),
        Some("authenticated")
    );

    let mut logs = Vec::new();
    let mut hooked_texts = Vec::new();
    let mut all_texts = Vec::new();
    let mut new_keys = Vec::new();
    for i in 0..ITERATIONS {
        let hooked = i % 2 == 0;
        let text = format!("chat number {i} from bob");
        // Bob gets a new device; his phone authenticates it, which sends a
        // trust message about it to Alice's laptop; then Bob writes.
        let tablet = p.init(&format!("bob-device-{i}"), BOB);
        let (tablet_uri, tablet_fp) = uri_of(&tablet);
        let trigger = {
            let bob = d(&bob);
            let text = text.clone();
            move || {
                atm(&["--dir", &bob, "scan", &tablet_uri, "--yes"])
                    .ok("bob authenticates his new device");
                atm(&["--dir", &bob, "send", ALICE, &text]).ok("bob sends");
            }
        };
        let log = p.dir(&format!("laptop-run-{i}"));
        if hooked {
            let nth = 1 + rng.below(2);
            eprintln!("iteration {i}: kill before processing encrypted stanza {nth}");
            let running = Running::start(
                &laptop,
                &log,
                &[("ATM_TEST_STOP_BEFORE_ENCRYPTED", nth.to_string())],
            );
            trigger();
            let marker = format!("test hook: holding encrypted stanza {nth}");
            until("the run holds the stanza", Duration::from_secs(90), || {
                running.errors().contains(&marker)
            });
            logs.push(running.kill());
            hooked_texts.push(text.clone());
        } else {
            let delay = rng.below(8000);
            eprintln!("iteration {i}: kill {delay} ms after the traffic starts");
            let running = Running::start(&laptop, &log, &[]);
            let started = Instant::now();
            let worker = std::thread::spawn(trigger);
            std::thread::sleep(Duration::from_millis(delay));
            eprintln!("  killed after {:?}", started.elapsed());
            logs.push(running.kill());
            worker.join().unwrap();
        }
        all_texts.push(text);
        new_keys.push(tablet_fp);
    }

    // Restart from the directory and let it converge.
    let running = Running::start(&laptop, &p.dir("laptop-run-final"), &[]);
    until(
        "alice's laptop applied every trust decision",
        Duration::from_secs(120),
        || {
            new_keys
                .iter()
                .all(|k| level(&laptop, BOB, k).as_deref() == Some("authenticated"))
        },
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut all = logs.join("\n");
        all.push_str(&running.output());
        if hooked_texts.iter().all(|t| all.contains(t.as_str())) {
            break;
        }
        if Instant::now() >= deadline {
            for (i, log) in logs.iter().enumerate() {
                eprintln!("--- run {i} ---\n{log}");
            }
            panic!(
                "seed {seed}: a chat message stopped before processing was never shown\n--- final run ---\n{}\n{}",
                running.output(),
                running.errors()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    logs.push(running.stop());
    let all = logs.join("\n");
    // Nothing lost: the messages stopped before processing are shown;
    // nothing applied twice: no message shown twice, no key's
    // authentication reported twice.
    for text in &hooked_texts {
        assert_eq!(all.matches(text.as_str()).count(), 1, "{text:?} in:\n{all}");
    }
    for text in &all_texts {
        let count = all.matches(text.as_str()).count();
        assert!(count <= 1, "{text:?} shown {count} times:\n{all}");
    }
    for key in &new_keys {
        let grouped = key
            .as_bytes()
            .chunks(8)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        let applied = all
            .lines()
            .filter(|l| l.starts_with(&grouped) && l.contains("-> authenticated"))
            .count();
        assert!(applied <= 1, "{key} authenticated {applied} times:\n{all}");
        // Applied from Bob's phone's trust message, not decided here.
        let keys = atm(&["--dir", &d(&laptop), "keys", "--json"])
            .ok("keys")
            .json();
        let entry = keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["fingerprint"] == key.as_str())
            .unwrap()
            .clone();
        assert_eq!(
            entry["decided_by"]["fingerprint"],
            bob_fp.as_str(),
            "{entry}"
        );
        // Bob's phone converged too.
        assert_eq!(level(&bob, BOB, key).as_deref(), Some("authenticated"));
    }
    assert_eq!(
        level(&laptop, BOB, &bob_fp).as_deref(),
        Some("authenticated")
    );
    let status = atm(&["--dir", &d(&laptop), "status", "--json"])
        .ok("status")
        .json();
    assert_eq!(status["outbox"], 0, "{status}");
    eprintln!("fault seed: ATM_FAULT_SEED={seed} passed");
}

//! What the fuzz target asserts of an input, shared with
//! `tests/fuzz_corpus.rs`, which replays the corpus through the same checks
//! in `cargo test`.
//!
//! The bytes are a program for a fixed world (`world.rs`): Alice's A1, A2
//! and Bob's B1 run engines; the attacker holds Alice's stolen S, Bob's
//! rogue R, the outsider O and Alice's L (unknown until learned). Each
//! operation is one byte and its arguments: a user's decision (any key,
//! trust or distrust), a delivery of a message in flight, an attacker's
//! message (sender, recipients, OMEMO header, up to three decisions, forged
//! SCE and decision times), a replay (archive or live), an endpoint going
//! offline or online, a key learned, a restart (a new engine over a copy of
//! the store), and delivering everything. After every engine input the world
//! checks (a) manual wins where it is made, (b) time is bounded and (c)
//! authority; any violation, or an engine panic or error, panics here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "world.rs"]
pub mod world;

use world::{Clock, KeySpec, Time, Universe, World, SECOND};

/// At most this many operations are read (longer inputs are cut).
pub const MAX_OPS: usize = 96;

const YEAR: Time = 365 * 24 * 3600 * SECOND;

fn offset(byte: u8) -> Time {
    match byte % 12 {
        0 => 0,
        1 => 10 * YEAR,
        2 => -10 * YEAR,
        3 => 4 * 60 * SECOND,
        4 => -4 * 60 * SECOND,
        5 => 5 * 60 * SECOND,
        6 => 5 * 60 * SECOND + 1,
        7 => -(5 * 60 * SECOND + 1),
        8 => 1,
        9 => -1,
        10 => i64::from(byte) * SECOND,
        _ => -i64::from(byte) * SECOND,
    }
}

fn world() -> World {
    let (mut accounts, mut keys) = Universe::honest(&[2, 1]);
    accounts.push("mallory@evil.example".into());
    for (name, account, known) in [
        ("S", 0, true),
        ("R", 1, true),
        ("O", 2, true),
        ("L", 0, false),
    ] {
        keys.push(KeySpec {
            name: name.into(),
            account,
            attacker: true,
            known,
        });
    }
    let accounts: Vec<&str> = accounts.iter().map(String::as_str).collect();
    World::new(Universe::new(&accounts, keys), Clock::Global).unwrap()
}

struct Bytes<'a>(&'a [u8]);
impl Bytes<'_> {
    fn next(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }
}

/// Runs the program; returns the violation, if any.
fn run(data: &[u8], trace: bool) -> (World, Result<usize, String>) {
    let mut w = world();
    w.keep_trace = trace;
    w.keep_sent = true;
    let result = program(&mut w, data);
    (w, result)
}

fn program(w: &mut World, data: &[u8]) -> Result<usize, String> {
    let nodes = w.nodes.len();
    let keys = w.u.keys.len();
    let attackers: Vec<usize> = (0..keys).filter(|&k| w.u.node_of[k].is_none()).collect();
    let mut b = Bytes(data);
    let mut ops = 0;
    while ops < MAX_OPS {
        let Some(op) = b.next() else { break };
        ops += 1;
        let mut arg = || b.next().unwrap_or(0);
        match op % 9 {
            0 => {
                let (by, target, trust) = (
                    arg() as usize % nodes,
                    arg() as usize % keys,
                    arg() & 1 == 1,
                );
                w.manual(by, target, trust)?;
            }
            1 | 2 => {
                w.deliver_some(arg() as usize)?;
            }
            3 => {
                let from = attackers[arg() as usize % attackers.len()];
                let to_mask = arg();
                let header_mask = arg();
                let to: Vec<usize> = (0..nodes)
                    .filter(|n| to_mask >> n & 1 == 1)
                    .map(|n| w.u.key_of_node[n])
                    .collect();
                let header: Vec<usize> = (0..keys)
                    .filter(|k| header_mask >> (k % 8) & 1 == 1)
                    .collect();
                let count = 1 + arg() as usize % 3;
                let mut decisions = Vec::new();
                for _ in 0..count {
                    let target = arg() as usize % keys;
                    let flags = arg();
                    let time = (flags & 2 == 2).then(|| offset(flags >> 2));
                    decisions.push((target, flags & 1 == 1, time));
                }
                let sce = offset(arg());
                w.attack(from, &to, &header, &decisions, sce);
            }
            4 => {
                if !w.sent.is_empty() {
                    let wire = w.sent[arg() as usize % w.sent.len()].clone();
                    let to = arg() as usize % nodes;
                    let live = arg() & 1 == 1;
                    if w.u.key_of_node[to] != wire.from {
                        w.replay(&wire, to, live)?;
                    }
                }
            }
            5 => {
                let n = arg() as usize % nodes;
                w.nodes[n].online = !w.nodes[n].online;
            }
            6 => {
                let (n, k) = (arg() as usize % nodes, arg() as usize % keys);
                w.learn(n, k)?;
            }
            7 => {
                w.restart(arg() as usize % nodes);
            }
            _ => {
                let seed = arg() as usize;
                w.quiesce(|len| seed % len)?;
            }
        }
    }
    Ok(ops)
}

/// Runs the program and panics, with the trace, on a violation. Returns the
/// number of operations run.
pub fn engine_inputs(data: &[u8]) -> usize {
    let (_, result) = run(data, false);
    match result {
        Ok(ops) => ops,
        Err(_) => {
            let (w, result) = run(data, true);
            panic!(
                "{}\ntrace:\n{}",
                result.err().unwrap_or_default(),
                w.trace.join("\n")
            );
        }
    }
}

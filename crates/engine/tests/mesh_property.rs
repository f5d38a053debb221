//! Property: when the initial mutual authentications connect every account's
//! endpoints and every pair of accounts, complete propagation ends with every
//! endpoint authenticating every other endpoint's key — whatever the order of
//! the authentications and whoever is offline meanwhile. Every message is
//! checked by the harness to go only to keys its sender holds as authenticated.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use atm_engine::{Propagation, TrustLevel};
use common::Net;
use proptest::prelude::*;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn play(devices: &[usize], seed: u64, offline_percent: u64) -> (Net, Vec<String>) {
    let mut rng = Rng(seed | 1);
    let mut endpoints = Vec::new();
    let mut accounts: Vec<Vec<String>> = Vec::new();
    for (a, n) in devices.iter().enumerate() {
        let mut names = Vec::new();
        for d in 0..*n {
            let name = format!("{}{}", (b'A' + a as u8) as char, d + 1);
            endpoints.push((name.clone(), format!("user{a}@example.org")));
            names.push(name);
        }
        accounts.push(names);
    }
    let refs: Vec<(&str, &str)> = endpoints
        .iter()
        .map(|(n, j)| (n.as_str(), j.as_str()))
        .collect();
    let mut net = Net::new(&refs, Propagation::Complete);
    // A random spanning tree per account, one random pair per pair of accounts.
    let mut edges = Vec::new();
    for names in &accounts {
        for i in 1..names.len() {
            let j = rng.below(i);
            edges.push((names[i].clone(), names[j].clone()));
        }
    }
    for a in 0..accounts.len() {
        for b in a + 1..accounts.len() {
            let x = accounts[a][rng.below(accounts[a].len())].clone();
            let y = accounts[b][rng.below(accounts[b].len())].clone();
            edges.push((x, y));
        }
    }
    let mut actions: Vec<(String, String)> = edges
        .iter()
        .flat_map(|(x, y)| [(x.clone(), y.clone()), (y.clone(), x.clone())])
        .collect();
    for i in (1..actions.len()).rev() {
        actions.swap(i, rng.below(i + 1));
    }
    let names: Vec<String> = endpoints.iter().map(|(n, _)| n.clone()).collect();
    let mut offline: Vec<bool> = vec![false; names.len()];
    for (by, of) in &actions {
        for (i, name) in names.iter().enumerate() {
            if rng.next() % 100 < offline_percent {
                if offline[i] {
                    net.online(name, rng.next().is_multiple_of(2));
                } else {
                    net.offline(name);
                }
                offline[i] = !offline[i];
            }
        }
        // The user acts on a device they hold: it may be offline meanwhile.
        net.auth(by, &[of.as_str()]);
    }
    for (i, name) in names.iter().enumerate() {
        if offline[i] {
            net.online(name, rng.next().is_multiple_of(2));
        }
    }
    (net, names)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn complete_propagation_reaches_the_full_mesh(
        devices in proptest::collection::vec(1usize..=4, 1..=3),
        seed in any::<u64>(),
        offline_percent in 0u64..40,
    ) {
        let (mut net, names) = play(&devices, seed, offline_percent);
        for a in &names {
            for b in &names {
                if a != b {
                    prop_assert_eq!(net.level(a, b), Some(TrustLevel::Authenticated), "{} -> {}", a, b);
                }
            }
        }
    }
}

#[test]
fn seed_sized_runs_converge_in_every_order() {
    for seed in 1..200u64 {
        let (mut net, names) = play(&[3, 2], seed, 20);
        assert_eq!(
            net.authenticated_pairs(),
            names.len() * (names.len() - 1),
            "seed {seed}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]
    /// After the mesh, one endpoint distrusts another's key: its own account
    /// follows; for an own key, the contacts follow too; a contact's account
    /// never takes another account's word about its own keys.
    #[test]
    fn a_distrust_reaches_exactly_who_may_act_on_it(
        devices in proptest::collection::vec(1usize..=3, 2..=3),
        seed in any::<u64>(),
        offline_percent in 0u64..40,
        pick in any::<(u16, u16)>(),
    ) {
        let (mut net, names) = play(&devices, seed, 0);
        let by = &names[pick.0 as usize % names.len()];
        let others: Vec<&String> = names.iter().filter(|n| *n != by).collect();
        let target = others[pick.1 as usize % others.len()].clone();
        let mut rng = Rng(seed.rotate_left(17) | 1);
        let mut away = Vec::new();
        for name in &names {
            if name != by && rng.next() % 100 < offline_percent {
                net.offline(name);
                away.push(name.clone());
            }
        }
        net.distrust(by, &[target.as_str()]);
        for name in &away {
            net.online(name, rng.next().is_multiple_of(2));
        }
        let account = |n: &str| n.as_bytes()[0];
        for at in &names {
            if *at == target {
                continue;
            }
            let same_as_by = account(at) == account(by);
            let own_key_of_by = account(&target) == account(by);
            let expected = if same_as_by || own_key_of_by {
                TrustLevel::ManuallyDistrusted
            } else {
                TrustLevel::Authenticated
            };
            prop_assert_eq!(net.level(at, &target), Some(expected), "{} about {} (by {})", at, target, by);
        }
    }
}

//! The simulator reproduces the seed's numbers on random orders and converges
//! on larger random configurations with offline periods.
#![allow(clippy::unwrap_used, missing_docs)]

use atm_engine::Propagation;
use atm_sim::simulate::{
    initial_authentications, new_device_cost, power_law_exponent, run, Setup, SplitMix,
};

#[test]
fn the_seed_configuration_needs_8_manual_and_gets_12_automatic_in_any_order() {
    for seed in 0..100 {
        let setup = Setup {
            devices: vec![3, 2],
            propagation: Propagation::Complete,
            offline: 0.2,
        };
        let stats = run(&setup, seed).unwrap();
        assert_eq!(stats.manual_authentications, 8, "seed {seed}");
        assert_eq!(stats.automatic_authentications, 12, "seed {seed}");
        assert!(stats.converged(), "seed {seed}");
        assert_eq!(stats.mesh, 20);
    }
}

#[test]
fn literal_xep_rules_do_not_always_converge() {
    let mut incomplete = 0;
    for seed in 0..50 {
        let setup = Setup {
            devices: vec![3, 2],
            propagation: Propagation::Xep,
            offline: 0.0,
        };
        let stats = run(&setup, seed).unwrap();
        assert_eq!(stats.manual_authentications, 8);
        if !stats.converged() {
            incomplete += 1;
        }
    }
    assert!(incomplete > 0);
}

#[test]
fn minimal_initial_sets_connect_every_account_and_pair() {
    let mut rng = SplitMix::new(9);
    let devices = [4, 1, 3, 2];
    let actions = initial_authentications(&devices, &mut rng);
    let setup = Setup {
        devices: devices.to_vec(),
        propagation: Propagation::Complete,
        offline: 0.0,
    };
    assert_eq!(actions.len() as u64, setup.minimal_manual());
    // Every action has its reverse.
    for (a, b) in &actions {
        assert!(actions.contains(&(*b, *a)));
    }
}

#[test]
fn larger_random_runs_converge_with_offline_endpoints() {
    for (devices, seed) in [(vec![5, 4, 3, 2, 1], 1), (vec![3; 8], 2), (vec![1; 6], 3)] {
        let setup = Setup {
            devices,
            propagation: Propagation::Complete,
            offline: 0.3,
        };
        let stats = run(&setup, seed).unwrap();
        assert!(stats.converged(), "{setup:?}: {stats:?}");
        assert_eq!(stats.manual_authentications, setup.minimal_manual());
        assert_eq!(
            stats.manual_authentications + stats.automatic_authentications,
            setup.mesh()
        );
    }
}

#[test]
fn a_new_device_costs_messages_linear_in_the_endpoints() {
    let points: Vec<(f64, f64)> = [4, 8, 16]
        .iter()
        .map(|&k| {
            let (messages, endpoints) =
                new_device_cost(&Setup::uniform(k, 2, Propagation::Complete), 5).unwrap();
            (endpoints as f64, messages as f64)
        })
        .collect();
    let exponent = power_law_exponent(&points).unwrap();
    assert!(exponent < 1.3, "{exponent}");
}

#[test]
fn invalid_setups_are_refused() {
    assert!(run(
        &Setup {
            devices: vec![],
            propagation: Propagation::Complete,
            offline: 0.0
        },
        1
    )
    .is_err());
    assert!(run(
        &Setup {
            devices: vec![2],
            propagation: Propagation::Complete,
            offline: 1.5
        },
        1
    )
    .is_err());
}

/// The engine's margin for a trust message's SCE time and the OMEMO layer's
/// are one policy, written in two crates that do not depend on each other.
#[test]
fn the_engine_and_the_omemo_layer_use_one_time_margin() {
    assert_eq!(atm_engine::MAX_CLOCK_SKEW, atm_omemo::sce::SCE_TIME_MARGIN);
}

//! Plays scenarios live on one private server, several at once, and
//! compares each with the sim transport.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    dead_code
)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atm_live::{LiveOptions, LiveOutcome, ServerChoice};
use atm_sim::{MemoryStores, Scenario};
use atm_xmpp_server::{Kind, Server};
use serde_json::Value;

pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios")
}

pub fn load(path: &Path) -> Scenario {
    let text = std::fs::read_to_string(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    Scenario::from_json(&text, &name).unwrap()
}

/// Every example scenario, with its file name.
pub fn examples() -> Vec<(String, Scenario)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                load(&p),
            )
        })
        .collect()
}

/// The sim transport's JSON object for `scenario`.
pub fn sim_json(scenario: &Scenario) -> Value {
    let mut outcome = atm_sim::run(scenario.clone(), MemoryStores).unwrap();
    atm_sim::runner::to_json(&mut outcome).unwrap()
}

/// Every endpoint's trust map (by endpoint name).
pub fn trust_maps(json: &Value) -> Value {
    let mut maps = serde_json::Map::new();
    for (name, endpoint) in json["endpoints"].as_object().unwrap() {
        maps.insert(name.clone(), endpoint["trust"].clone());
    }
    Value::Object(maps)
}

/// A private server serving every domain of `scenarios`.
pub fn start_server(kind: Kind, scenarios: &[(String, Scenario)]) -> Server {
    let mut domains: Vec<String> = scenarios
        .iter()
        .flat_map(|(_, s)| {
            s.endpoints
                .iter()
                .map(|e| e.jid.domain().as_str().to_owned())
        })
        .collect();
    domains.sort();
    domains.dedup();
    let mut options = atm_xmpp_server::Options::new(kind);
    options.domains = domains;
    let started = Instant::now();
    let server = Server::start_with(options)
        .unwrap_or_else(|e| panic!("the private {kind:?} server did not start: {e}"));
    eprintln!("{kind:?} up after {:?}", started.elapsed());
    server
}

/// Plays one scenario on its own current-thread runtime.
pub fn play(scenario: &Scenario, options: &LiveOptions) -> LiveOutcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(atm_live::run(scenario, options))
        .unwrap_or_else(|e| panic!("{}: {e}", scenario.name))
}

/// Plays every scenario on `server`, `workers` at a time (each with its own
/// account names), and returns the outcomes in order.
pub fn play_all(
    server: &Server,
    scenarios: &[(String, Scenario)],
    workers: usize,
) -> Vec<LiveOutcome> {
    let next = Arc::new(Mutex::new(0usize));
    let results: Arc<Mutex<Vec<Option<LiveOutcome>>>> =
        Arc::new(Mutex::new(vec![None; scenarios.len()]));
    let scenarios: Arc<Vec<(String, Scenario)>> = Arc::new(scenarios.to_vec());
    let server_choice = ServerChoice::Remote {
        addr: server.c2s_addr(),
        ca: server.ca_pem_path().to_path_buf(),
    };
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (next, results, scenarios, choice) = (
                next.clone(),
                results.clone(),
                scenarios.clone(),
                server_choice.clone(),
            );
            std::thread::spawn(move || loop {
                let index = {
                    let mut n = next.lock().unwrap();
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some((file, scenario)) = scenarios.get(index) else {
                    return;
                };
                let options = LiveOptions::new(choice.clone());
                let outcome = play(scenario, &options);
                eprintln!("{file}: ok={} after {:?}", outcome.ok, outcome.elapsed);
                results.lock().unwrap()[index] = Some(outcome);
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let results = std::mem::take(&mut *results.lock().unwrap());
    results.into_iter().map(Option::unwrap).collect()
}

/// The counters of a run's JSON output without `trust_messages_sent` and
/// `deliveries`: how many trust messages it takes depends on how the network
/// interleaves deliveries (a distrust relayed to the co-recipients of its
/// message is passed on only where the direct copy has not arrived yet);
/// the decisions do not.
pub fn decision_counts(json: &Value) -> Value {
    let mut counts = json["counts"].clone();
    if let Some(map) = counts.as_object_mut() {
        map.remove("trust_messages_sent");
        map.remove("deliveries");
    }
    counts
}

/// Plays every example without replay/inject/per-account on a private
/// `kind` server and checks each against the sim transport.
pub fn every_example_matches_sim(kind: Kind) {
    let started = Instant::now();
    let all = examples();
    let playable: Vec<(String, Scenario)> = all
        .iter()
        .filter(|(_, s)| atm_live::refusal(s).is_none())
        .cloned()
        .collect();
    assert!(playable.len() >= 14, "{} playable examples", playable.len());
    let server = start_server(kind, &playable);
    let outcomes = play_all(&server, &playable, 3);
    let mut problems = Vec::new();
    for ((file, scenario), live) in playable.iter().zip(&outcomes) {
        let sim = sim_json(scenario);
        if !live.ok {
            problems.push(format!(
                "{file}: failures {}\n{}",
                live.json["failures"], live.text
            ));
        }
        if trust_maps(&live.json) != trust_maps(&sim) {
            problems.push(format!(
                "{file}: trust maps differ\n  live {}\n  sim  {}",
                trust_maps(&live.json),
                trust_maps(&sim)
            ));
        }
        // Trust levels and the counts of decisions must be the simulator's.
        // How many trust messages it takes can differ: a live network
        // interleaves deliveries differently, and a distrust relayed to the
        // co-recipients of its message changes a level (and is passed on)
        // only where the direct copy has not arrived yet.
        if decision_counts(&live.json) != decision_counts(&sim) {
            problems.push(format!(
                "{file}: counts differ\n  live {}\n  sim  {}",
                live.json["counts"], sim["counts"]
            ));
        } else if live.json["counts"] != sim["counts"] {
            eprintln!(
                "{file}: message counts differ (allowed)\n  live {}\n  sim  {}",
                live.json["counts"], sim["counts"]
            );
        }
    }
    drop(server);
    eprintln!(
        "{} scenarios on {kind:?} in {:?}",
        playable.len(),
        started.elapsed()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

pub const LIMIT: Duration = Duration::from_secs(90);

//! The `implementation` extension of the scenario format: read strictly,
//! `atm` by default, and a `qxmpp` endpoint refused by the simulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use atm_sim::scenario::Implementation;
use atm_sim::{MemoryStores, Scenario};

fn scenario(endpoints: &str) -> Result<Scenario, String> {
    let text = format!(
        r#"{{"endpoints": {endpoints}, "steps": [{{"authenticate": {{"by": "A1", "keys_of": ["B1"]}}}}]}}"#
    );
    Scenario::from_json(&text, "t.json").map_err(|e| e.to_string())
}

#[test]
fn implementation_defaults_to_atm_and_reads_qxmpp() {
    let s = scenario(
        r#"[{"name": "A1", "jid": "a@x.org"},
            {"name": "B1", "jid": "b@x.org", "implementation": "qxmpp"},
            {"name": "B2", "jid": "b@x.org", "implementation": "atm"}]"#,
    )
    .unwrap();
    let kinds: Vec<Implementation> = s.endpoints.iter().map(|e| e.implementation).collect();
    assert_eq!(
        kinds,
        [
            Implementation::Atm,
            Implementation::Qxmpp,
            Implementation::Atm
        ]
    );
    let (index, spec) = s.first_foreign_endpoint().unwrap();
    assert_eq!((index, spec.name.as_str()), (1, "B1"));
    let plain = scenario(r#"[{"name": "A1", "jid": "a@x.org"}, {"name": "B1", "jid": "b@x.org"}]"#)
        .unwrap();
    assert!(plain.first_foreign_endpoint().is_none());
}

#[test]
fn an_unknown_implementation_is_an_error_at_its_path() {
    let error = scenario(
        r#"[{"name": "A1", "jid": "a@x.org"},
            {"name": "B1", "jid": "b@x.org", "implementation": "kaidan"}]"#,
    )
    .unwrap_err();
    assert!(error.starts_with("endpoints[1].implementation:"), "{error}");
    assert!(
        error.contains("kaidan") && error.contains("qxmpp"),
        "{error}"
    );
    let error = scenario(r#"[{"name": "A1", "jid": "a@x.org", "implementation": 3}]"#).unwrap_err();
    assert!(error.starts_with("endpoints[0].implementation:"), "{error}");
}

#[test]
fn the_simulator_refuses_a_qxmpp_endpoint_naming_it() {
    let s = scenario(
        r#"[{"name": "A1", "jid": "a@x.org"},
            {"name": "B1", "jid": "b@x.org", "implementation": "qxmpp"}]"#,
    )
    .unwrap();
    let Err(error) = atm_sim::run(s, MemoryStores) else {
        panic!("the simulator played a qxmpp endpoint")
    };
    assert!(
        error.starts_with("endpoints[1].implementation: \"qxmpp\" (B1)")
            && error.contains("--transport xmpp"),
        "{error}"
    );
}

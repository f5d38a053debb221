//! Plays a [`Scenario`] on the [`Network`] and reports what every endpoint
//! ends up trusting, as the scenario format's JSON or as a readable timeline.

use std::fmt::Write as _;

use atm_engine::{Cause, DecisionTimes, IgnoreReason, KeyRef, TrustLevel};
use serde_json::{json, Value};

use crate::network::{Counts, Event, Network, Sender, StoreFactory};
use crate::scenario::{ExpectedLevel, InjectFrom, Order, Scenario, Step, COUNTERS};

/// An expectation that did not hold, or a step that could not be played.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The step's index in `steps` (as in the JSON path `steps[N]`).
    pub step: usize,
    /// What went wrong.
    pub message: String,
}

/// The outcome of a run.
pub struct Outcome<F: StoreFactory> {
    /// The network in its final state (messages, events, engines).
    pub network: Network<F>,
    /// Every failure, in step order.
    pub failures: Vec<Failure>,
    /// For each step, the index of its first event in `network.events`.
    pub step_events: Vec<usize>,
}

impl<F: StoreFactory> Outcome<F> {
    /// `true` if every expectation held.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Plays every step (all steps run even after a failure).
pub fn run<F: StoreFactory>(scenario: Scenario, factory: F) -> Result<Outcome<F>, String> {
    run_with(scenario, factory, false)
}

/// Plays every step; with `omemo`, every trust message is OMEMO 2 encrypted.
pub fn run_with<F: StoreFactory>(
    scenario: Scenario,
    factory: F,
    omemo: bool,
) -> Result<Outcome<F>, String> {
    if let Some((index, endpoint)) = scenario.first_foreign_endpoint() {
        return Err(format!(
            "endpoints[{index}].implementation: {:?} ({}) is played only over --transport xmpp (with --qxmpp-peer PATH); the simulator plays only this project's engine",
            endpoint.implementation.as_str(),
            endpoint.name
        ));
    }
    let steps = scenario.steps.clone();
    let mut network = Network::with_crypto(scenario, factory, omemo)?;
    let mut failures = Vec::new();
    let mut step_events = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        step_events.push(network.events.len());
        let result = play(&mut network, step).and_then(|mut found| {
            network.run()?;
            found.extend(check(&mut network, step)?);
            Ok(found)
        });
        match result {
            Ok(messages) => failures.extend(messages.into_iter().map(|message| Failure {
                step: index,
                message,
            })),
            Err(message) => failures.push(Failure {
                step: index,
                message,
            }),
        }
    }
    Ok(Outcome {
        network,
        failures,
        step_events,
    })
}

fn play<F: StoreFactory>(net: &mut Network<F>, step: &Step) -> Result<Vec<String>, String> {
    match step {
        Step::Authenticate { by, keys_of } | Step::Distrust { by, keys_of } => {
            let authenticate = matches!(step, Step::Authenticate { .. });
            let by = net.index(by)?;
            for of in keys_of {
                let of = net.index(of)?;
                net.decide(by, of, authenticate)?;
            }
        }
        Step::Scan { by, uri_of } => {
            let (by, of) = (net.index(by)?, net.index(uri_of)?);
            net.scan(by, of)?;
        }
        Step::Offline(e) => {
            let i = net.index(e)?;
            net.set_online(i, false, false)?;
        }
        Step::Online { endpoint, order } => {
            let i = net.index(endpoint)?;
            net.set_online(i, true, *order == Order::Reverse)?;
        }
        Step::Join(e) => {
            let i = net.index(e)?;
            net.join(i)?;
        }
        Step::Fetch { by, keys_of } => {
            let by: Vec<usize> = match by {
                None => (0..net.len()).filter(|&i| net.exists(i)).collect(),
                Some(list) => list
                    .iter()
                    .map(|n| net.index(n))
                    .collect::<Result<_, _>>()?,
            };
            for b in by {
                for of in keys_of {
                    let of = net.index(of)?;
                    net.fetch(b, of)?;
                }
            }
        }
        Step::Restart(e) => {
            let i = net.index(e)?;
            net.restart(i)?;
        }
        Step::Replay { message, to } => {
            let to = net.index(to)?;
            net.replay(*message, to)?;
        }
        Step::Inject {
            to,
            from,
            time,
            encrypted,
            trust_message,
        } => {
            let sender = match from {
                InjectFrom::Endpoint(e) => Sender::Endpoint(net.index(e)?),
                InjectFrom::Outside { jid, key } => Sender::Outside(jid.clone(), key.clone()),
            };
            // The server stamps it with the network time, whatever SCE time
            // the crafted message claims.
            let stamp = net.next_time();
            let time = time.unwrap_or(stamp);
            let xml = substitute(net, trust_message)?;
            let recipients: Vec<usize> =
                to.iter().map(|n| net.index(n)).collect::<Result<_, _>>()?;
            net.inject_crafted(&recipients, &sender, time, stamp, *encrypted, &xml)?;
        }
        Step::Expect { .. } | Step::ExpectMesh { .. } | Step::ExpectCounts(_) => {}
    }
    Ok(Vec::new())
}

/// The key an injection names: an endpoint's, or a fresh one.
fn key_named<F: StoreFactory>(net: &mut Network<F>, name: &str) -> Result<atm_tm::KeyId, String> {
    match net.index(name) {
        Ok(i) => Ok(net.key(i).key.clone()),
        Err(_) => {
            let nobody: atm_tm::BareJid =
                "fresh@keys.invalid".parse().map_err(|e| format!("{e}"))?;
            net.fresh_key(name, &nobody)
        }
    }
}

/// Replaces every `{key:NAME}` by the Base64 key identifier it names.
pub fn substitute<F: StoreFactory>(net: &mut Network<F>, xml: &str) -> Result<String, String> {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(start) = rest.find("{key:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 5..];
        match after.find('}') {
            Some(end) => {
                out.push_str(&key_named(net, &after[..end])?.to_base64());
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn level_failure<F: StoreFactory>(
    net: &mut Network<F>,
    at: usize,
    of: usize,
    expected: ExpectedLevel,
) -> Result<Option<String>, String> {
    let key = net.key(of).clone();
    let level = net.level(at, &key)?;
    Ok(match level {
        Some(l) if expected.matches(l) => None,
        Some(l) => Some(format!(
            "{} holds {} for {}, expected {}",
            net.name(at),
            l,
            net.name(of),
            expected.as_str()
        )),
        None => Some(format!(
            "{} does not know the key of {}, expected {}",
            net.name(at),
            net.name(of),
            expected.as_str()
        )),
    })
}

fn check<F: StoreFactory>(net: &mut Network<F>, step: &Step) -> Result<Vec<String>, String> {
    let mut failures = Vec::new();
    match step {
        Step::Expect { at, key_of, level } => {
            let (at, of) = (net.index(at)?, net.index(key_of)?);
            failures.extend(level_failure(net, at, of, *level)?);
        }
        Step::ExpectMesh { among, level } => {
            let among: Vec<usize> = among
                .iter()
                .map(|n| net.index(n))
                .collect::<Result<_, _>>()?;
            for &at in &among {
                for &of in &among {
                    if at != of {
                        failures.extend(level_failure(net, at, of, *level)?);
                    }
                }
            }
        }
        Step::ExpectCounts(expected) => {
            let counts = net.counts()?;
            for (name, &want) in expected {
                let have = counts
                    .get(name)
                    .ok_or_else(|| format!("unknown counter {name:?}"))?;
                if have != want {
                    failures.push(format!("counter {name} is {have}, expected {want}"));
                }
            }
        }
        _ => {}
    }
    Ok(failures)
}

fn counts_json(counts: &Counts) -> Value {
    let mut map = serde_json::Map::new();
    for name in COUNTERS {
        map.insert(name.to_owned(), json!(counts.get(name).unwrap_or(0)));
    }
    Value::Object(map)
}

/// The JSON object of the scenario format.
pub fn to_json<F: StoreFactory>(outcome: &mut Outcome<F>) -> Result<Value, String> {
    let net = &mut outcome.network;
    let counts = net.counts()?;
    let mut endpoints = serde_json::Map::new();
    for i in 0..net.len() {
        if !net.exists(i) {
            continue;
        }
        let mut trust = serde_json::Map::new();
        for (key, level) in net.known(i)? {
            trust.insert(net.key_name(&key), json!(level.as_str()));
        }
        endpoints.insert(
            net.name(i).to_owned(),
            json!({
                "jid": net.key(i).owner.as_str(),
                "key": net.key(i).key.to_base64(),
                "online": net.is_online(i),
                "trust": trust,
            }),
        );
    }
    let messages: Vec<Value> = net
        .messages
        .iter()
        .map(|m| {
            json!({
                "seq": m.seq,
                "from": net.name(m.from),
                "to": m.to.iter().map(|&j| net.name(j)).collect::<Vec<_>>(),
                "time": DecisionTimes::format_time(m.time),
                "key_owners": m.out.message.key_owners.iter().map(|o| json!({
                    "jid": o.jid.as_str(),
                    "trust": o.trust.iter().map(|k| net.key_name(&KeyRef::new(o.jid.clone(), k.clone()))).collect::<Vec<_>>(),
                    "distrust": o.distrust.iter().map(|k| net.key_name(&KeyRef::new(o.jid.clone(), k.clone()))).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "xml": m.xml,
            })
        })
        .collect();
    Ok(json!({
        "name": net.scenario().name,
        "ok": outcome.failures.is_empty(),
        "failures": outcome.failures.iter().map(|f| json!({"step": f.step, "message": f.message})).collect::<Vec<_>>(),
        "counts": counts_json(&counts),
        "endpoints": endpoints,
        "messages": messages,
    }))
}

/// Describes a cause in words.
pub fn cause_text<F: StoreFactory>(net: &Network<F>, cause: &Cause) -> String {
    match cause {
        Cause::Manual => "by the user".into(),
        Cause::TrustMessage(s) => format!("trust message from {}", net.key_name(s)),
        Cause::Postponed(s) => format!("stored word of {}, now authenticated", net.key_name(s)),
        Cause::Pending(Some(s)) => format!("stored word of {}, key now known", net.key_name(s)),
        Cause::Pending(None) => "stored decision, key now known".into(),
        Cause::Confirmed(s) => format!("confirmed word of {}", net.key_name(s)),
        Cause::Policy => "TOAKAFA policy".into(),
        Cause::KeyLearned => "key learned".into(),
        Cause::Revoked(s) => format!(
            "void word of {}, said after it was distrusted",
            net.key_name(s)
        ),
    }
}

/// One line about an event, or `None` for events not worth a line.
pub fn event_text<F: StoreFactory>(net: &Network<F>, event: &Event) -> Option<String> {
    Some(match event {
        Event::Action { text, .. } => text.clone(),
        Event::Changed {
            at,
            key,
            from,
            to,
            cause,
        } => {
            if matches!(cause, Cause::KeyLearned) {
                return None;
            }
            format!(
                "  {}: {} {} -> {} ({})",
                net.name(*at),
                net.key_name(key),
                from.map_or("unknown", TrustLevel::as_str),
                to,
                cause_text(net, cause)
            )
        }
        Event::Sent(index) => {
            let m = &net.messages[*index];
            let owners: Vec<String> = m
                .out
                .message
                .key_owners
                .iter()
                .map(|o| {
                    let names = |keys: &[atm_tm::KeyId]| {
                        keys.iter()
                            .map(|k| net.key_name(&KeyRef::new(o.jid.clone(), k.clone())))
                            .collect::<Vec<_>>()
                            .join(" ")
                    };
                    let mut s = o.jid.to_string();
                    if !o.trust.is_empty() {
                        let _ = write!(s, " trust [{}]", names(&o.trust));
                    }
                    if !o.distrust.is_empty() {
                        let _ = write!(s, " distrust [{}]", names(&o.distrust));
                    }
                    s
                })
                .collect();
            format!(
                "  message #{} {} -> {} at {}: {}",
                m.seq,
                net.name(m.from),
                m.to.iter()
                    .map(|&j| net.name(j))
                    .collect::<Vec<_>>()
                    .join(", "),
                DecisionTimes::format_time(m.time),
                owners.join("; ")
            )
        }
        Event::Delivered {
            message,
            to,
            replay,
        } => match message {
            Some(index) => format!(
                "  {} receives message #{}{}",
                net.name(*to),
                net.messages[*index].seq,
                if *replay { " (replayed)" } else { "" }
            ),
            None => format!("  {} receives an injected trust message", net.name(*to)),
        },
        Event::Stored { at, key, postponed } => format!(
            "  {}: decision about {} stored ({})",
            net.name(*at),
            net.key_name(key),
            if *postponed {
                "sender not authenticated yet"
            } else {
                "key not known yet"
            }
        ),
        Event::Ignored { at, reason } => {
            format!("  {}: ignored: {}", net.name(*at), ignore_words(reason))
        }
        Event::Refused { at, reason } => format!("  {}: refused: {reason}", net.name(*at)),
    })
}

/// Why a trust message (or part of it) decided nothing, in plain words.
fn ignore_words(reason: &IgnoreReason) -> String {
    match reason {
        IgnoreReason::Unencrypted => "it came unencrypted (no authenticated sender key)".into(),
        IgnoreReason::Usage(u) => format!("its usage is {u}, not urn:xmpp:atm:1"),
        IgnoreReason::Encryption(e) => format!("its encryption is {e}, not this endpoint's"),
        IgnoreReason::Reflected => "it was sent by this very endpoint".into(),
        IgnoreReason::SenderDistrusted => "its sender's key is distrusted".into(),
        IgnoreReason::ForeignOwner(jid) => format!(
            "the part about {jid}'s keys (a contact's endpoint decides only on its own account's keys)"
        ),
        IgnoreReason::OwnKey => "a decision about its own key".into(),
        IgnoreReason::TooManyPostponed => {
            "the rest of the message (too many decisions already wait for this sender or its account)".into()
        }
        IgnoreReason::TooManyPending => {
            "its decisions about unknown keys (too many already wait for this account)".into()
        }
        IgnoreReason::ClockSkew { time, stamp } => format!(
            "all of it: its time {} lies too far from when it was sent ({})",
            DecisionTimes::format_time(*time),
            DecisionTimes::format_time(*stamp)
        ),
        IgnoreReason::SelfVouching => "the sender's decision about its own key".into(),
    }
}

/// The readable timeline and summary.
pub fn to_text<F: StoreFactory>(outcome: &mut Outcome<F>) -> Result<String, String> {
    let mut out = String::new();
    let steps = outcome.network.scenario().steps.clone();
    let _ = writeln!(out, "scenario: {}", outcome.network.scenario().name);
    for (index, step) in steps.iter().enumerate() {
        let _ = writeln!(out, "[{index}] {}", step_text(step));
        let start = outcome.step_events[index];
        let end = outcome
            .step_events
            .get(index + 1)
            .copied()
            .unwrap_or(outcome.network.events.len());
        for event in &outcome.network.events[start..end] {
            if let Some(line) = event_text(&outcome.network, event) {
                let _ = writeln!(out, "    {line}");
            }
        }
        for f in outcome.failures.iter().filter(|f| f.step == index) {
            let _ = writeln!(out, "    FAILED: {}", f.message);
        }
    }
    let counts = outcome.network.counts()?;
    let _ = writeln!(out, "\ncounts:");
    for name in COUNTERS {
        let _ = writeln!(out, "  {name:<26} {}", counts.get(name).unwrap_or(0));
    }
    if outcome.failures.is_empty() {
        let _ = writeln!(out, "\nok: every expectation held");
    } else {
        let _ = writeln!(out, "\n{} failure(s):", outcome.failures.len());
        for f in &outcome.failures {
            let _ = writeln!(out, "  steps[{}]: {}", f.step, f.message);
        }
    }
    Ok(out)
}

/// A step in words.
pub fn step_text(step: &Step) -> String {
    match step {
        Step::Authenticate { by, keys_of } => format!("{by} authenticates {}", keys_of.join(", ")),
        Step::Distrust { by, keys_of } => format!("{by} distrusts {}", keys_of.join(", ")),
        Step::Scan { by, uri_of } => format!("{by} scans the URI of {uri_of}"),
        Step::Offline(e) => format!("{e} goes offline"),
        Step::Online { endpoint, order } => format!(
            "{endpoint} comes back{}",
            if *order == Order::Reverse {
                " (kept messages newest first)"
            } else {
                ""
            }
        ),
        Step::Join(e) => format!("{e} joins"),
        Step::Fetch { by, keys_of } => format!(
            "{} fetch(es) the keys of {}",
            by.as_ref()
                .map_or("everybody".to_string(), |b| b.join(", ")),
            keys_of.join(", ")
        ),
        Step::Restart(e) => format!("{e} restarts"),
        Step::Replay { message, to } => format!("message #{message} is replayed to {to}"),
        Step::Inject {
            to,
            from,
            encrypted,
            ..
        } => format!(
            "a crafted {}trust message from {} reaches {}",
            if *encrypted { "" } else { "unencrypted " },
            match from {
                InjectFrom::Endpoint(e) => e.clone(),
                InjectFrom::Outside { jid, key } => format!("{jid} (key {key})"),
            },
            to.join(", ")
        ),
        Step::Expect { at, key_of, level } => {
            format!("expect {at} holds {} for {key_of}", level.as_str())
        }
        Step::ExpectMesh { among, level } => {
            format!("expect {} among {}", level.as_str(), among.join(", "))
        }
        Step::ExpectCounts(c) => format!(
            "expect counts {}",
            c.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

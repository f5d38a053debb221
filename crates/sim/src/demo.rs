//! The seed walkthrough, for people: Alice's notebook, tablet and smartphone,
//! Bob's notebook and smartphone; 8 manual authentications, and ATM does the
//! other 12. Every number is counted from runs of the real engine.

use std::fmt::Write as _;

use atm_engine::{Cause, KeyRef, Propagation, TrustLevel};

use crate::network::{Event, MemoryStores, Network};
use crate::runner::{self, Outcome};
use crate::scenario::Scenario;

/// The seed walkthrough as a scenario (one manual authentication per step, in
/// the seed's order).
pub const SEED: &str = r#"{
  "name": "seed walkthrough",
  "endpoints": [
    {"name": "A1", "jid": "alice@example.org"},
    {"name": "A2", "jid": "alice@example.org"},
    {"name": "A3", "jid": "alice@example.org"},
    {"name": "B1", "jid": "bob@example.com"},
    {"name": "B2", "jid": "bob@example.com"}
  ],
  "steps": [
    {"authenticate": {"by": "A1", "keys_of": ["A3"]}},
    {"authenticate": {"by": "A2", "keys_of": ["A3"]}},
    {"authenticate": {"by": "A3", "keys_of": ["A1"]}},
    {"authenticate": {"by": "A3", "keys_of": ["A2"]}},
    {"authenticate": {"by": "B1", "keys_of": ["B2"]}},
    {"authenticate": {"by": "B2", "keys_of": ["B1"]}},
    {"authenticate": {"by": "B2", "keys_of": ["A3"]}},
    {"authenticate": {"by": "A3", "keys_of": ["B2"]}}
  ]
}"#;

/// A device's name for people.
pub fn device(name: &str) -> &'static str {
    match name {
        "A1" => "Alice's notebook",
        "A2" => "Alice's tablet",
        "A3" => "Alice's smartphone",
        "B1" => "Bob's notebook",
        "B2" => "Bob's smartphone",
        _ => "a device",
    }
}

/// How one directed authentication came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// By the user.
    Manual,
    /// Through a trust message.
    Automatic,
    /// Not at all.
    Missing,
}

/// One run of the walkthrough under one rule set.
#[derive(Debug, Clone)]
pub struct Run {
    /// The rule set.
    pub propagation: Propagation,
    /// Manual authentications.
    pub manual: u64,
    /// Automatic authentications.
    pub automatic: u64,
    /// Trust messages sent.
    pub messages: u64,
    /// For every ordered pair (by, of) of different devices, how `by` came to
    /// authenticate `of`'s key.
    pub pairs: Vec<(String, String, How)>,
    /// The story, line by line.
    pub story: Vec<String>,
}

impl Run {
    /// Directed authentications reached.
    pub fn reached(&self) -> usize {
        self.pairs.iter().filter(|p| p.2 != How::Missing).count()
    }

    /// Pairs never authenticated.
    pub fn missing(&self) -> Vec<(String, String)> {
        self.pairs
            .iter()
            .filter(|p| p.2 == How::Missing)
            .map(|p| (p.0.clone(), p.1.clone()))
            .collect()
    }
}

/// Plays the walkthrough with `propagation`.
pub fn play(propagation: Propagation) -> Result<Run, String> {
    let mut scenario = Scenario::from_json(SEED, "seed").map_err(|e| e.to_string())?;
    scenario.propagation = propagation;
    let mut outcome = runner::run(scenario, MemoryStores)?;
    let story = story(&outcome);
    let counts = outcome.network.counts()?;
    let net = &mut outcome.network;
    let mut pairs = Vec::new();
    for by in 0..net.len() {
        for of in 0..net.len() {
            if by == of {
                continue;
            }
            let key = net.key(of).clone();
            let how = match net.level(by, &key)? {
                Some(TrustLevel::Authenticated) => {
                    if manual_pair(net, by, &key) {
                        How::Manual
                    } else {
                        How::Automatic
                    }
                }
                _ => How::Missing,
            };
            pairs.push((net.name(by).to_owned(), net.name(of).to_owned(), how));
        }
    }
    Ok(Run {
        propagation,
        manual: counts.manual_authentications,
        automatic: counts.automatic_authentications,
        messages: counts.trust_messages_sent,
        pairs,
        story,
    })
}

fn manual_pair(net: &Network<MemoryStores>, by: usize, key: &KeyRef) -> bool {
    net.events.iter().any(|e| {
        matches!(e, Event::Changed { at, key: k, to: TrustLevel::Authenticated, cause: Cause::Manual, .. }
            if *at == by && k == key)
    })
}

fn who(net: &Network<MemoryStores>, key: &KeyRef) -> String {
    let name = net.key_name(key);
    format!("{} ({name})", device(&name))
}

fn story(outcome: &Outcome<MemoryStores>) -> Vec<String> {
    let net = &outcome.network;
    let mut lines = Vec::new();
    let mut manual = 0;
    for (index, start) in outcome.step_events.iter().enumerate() {
        let end = outcome
            .step_events
            .get(index + 1)
            .copied()
            .unwrap_or(net.events.len());
        for event in &net.events[*start..end] {
            match event {
                Event::Action { by, .. } => {
                    manual += 1;
                    let by_name = net.name(*by);
                    let of = net.events[*start..end].iter().find_map(|e| match e {
                        Event::Changed {
                            at,
                            key,
                            cause: Cause::Manual,
                            ..
                        } if at == by => Some(key.clone()),
                        _ => None,
                    });
                    let of_text = of.as_ref().map_or("a key".to_string(), |k| who(net, k));
                    lines.push(format!(
                        "({manual}) {} ({by_name}) scans the QR code of {of_text}: it authenticates that key by hand.",
                        device(by_name)
                    ));
                }
                Event::Sent(i) => {
                    let m = &net.messages[*i];
                    let mut carried = Vec::new();
                    for o in &m.out.message.key_owners {
                        for k in &o.trust {
                            carried.push(format!(
                                "trust {}",
                                net.key_name(&KeyRef::new(o.jid.clone(), k.clone()))
                            ));
                        }
                        for k in &o.distrust {
                            carried.push(format!(
                                "distrust {}",
                                net.key_name(&KeyRef::new(o.jid.clone(), k.clone()))
                            ));
                        }
                    }
                    let to: Vec<String> = m.to.iter().map(|&j| net.name(j).to_owned()).collect();
                    lines.push(format!(
                        "    {} sends trust message #{} to {}, encrypted only for those keys it has authenticated: {}.",
                        net.name(m.from),
                        m.seq,
                        to.join(", "),
                        carried.join(", ")
                    ));
                }
                Event::Changed {
                    at,
                    key,
                    to: TrustLevel::Authenticated,
                    cause,
                    ..
                } if cause.is_trust_message() => {
                    let why = match cause {
                        Cause::TrustMessage(s) => format!("the trust message comes from {}, whose key it has authenticated", net.key_name(s)),
                        Cause::Postponed(s) => format!("it kept {}'s earlier trust message until it authenticated {}'s key, which it just did", net.key_name(s), net.key_name(s)),
                        Cause::Pending(_) => "it kept the decision until it learned the key".to_string(),
                        _ => "a trust message".to_string(),
                    };
                    lines.push(format!(
                        "    {} ({}) authenticates {} automatically: {why}.",
                        device(net.name(*at)),
                        net.name(*at),
                        who(net, key)
                    ));
                }
                Event::Changed {
                    at,
                    key,
                    from: Some(TrustLevel::AutomaticallyTrusted),
                    to: TrustLevel::AutomaticallyDistrusted,
                    ..
                } => {
                    lines.push(format!(
                        "    {} stops trusting {} blindly: another key of that account is authenticated now (TOAKAFA), so unauthenticated ones wait.",
                        net.name(*at),
                        net.key_name(key)
                    ));
                }
                Event::Stored {
                    at,
                    key,
                    postponed: true,
                } => {
                    lines.push(format!(
                        "    {} ({}) keeps the decision about {} for later: it has not authenticated the sender's key yet.",
                        device(net.name(*at)),
                        net.name(*at),
                        net.key_name(key)
                    ));
                }
                _ => {}
            }
        }
    }
    lines
}

/// The whole demo as text: the story of the complete rule set, then the table.
pub fn text(complete: &Run, xep: &Run) -> String {
    let mut out = String::new();
    let n = complete.pairs.len();
    let _ = writeln!(
        out,
        "Automatic Trust Management (XEP-0450): the seed walkthrough\n"
    );
    let _ = writeln!(
        out,
        "Alice uses a notebook (A1), a tablet (A2) and a smartphone (A3); Bob a notebook (B1) and a smartphone (B2).\n\
         Each device has its own OMEMO key, and every device must authenticate every other device's key: {n} authentications.\n\
         With ATM, the users make 8 of them by scanning QR codes; trust messages do the rest.\n"
    );
    for line in &complete.story {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out);
    let row = |out: &mut String, label: &str, a: String, b: String, c: String| {
        let _ = writeln!(out, "  {label:<34} {a:>12} {b:>18} {c:>14}");
    };
    row(
        &mut out,
        "",
        "without ATM".into(),
        "literal XEP rules".into(),
        "ATM (complete)".into(),
    );
    row(
        &mut out,
        "authentications needed",
        n.to_string(),
        n.to_string(),
        n.to_string(),
    );
    row(
        &mut out,
        "made by hand (QR scans)",
        n.to_string(),
        xep.manual.to_string(),
        complete.manual.to_string(),
    );
    row(
        &mut out,
        "made automatically",
        "0".into(),
        xep.automatic.to_string(),
        complete.automatic.to_string(),
    );
    row(
        &mut out,
        "left undone",
        "0".into(),
        (n - xep.reached()).to_string(),
        (n - complete.reached()).to_string(),
    );
    row(
        &mut out,
        "trust messages sent",
        "0".into(),
        xep.messages.to_string(),
        complete.messages.to_string(),
    );
    let missing = xep.missing();
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|(a, b)| format!("{a} -> {b}")).collect();
        let _ = writeln!(
            out,
            "\nLiteral XEP-0450 rules only send trust messages after a manual authentication, so nothing tells\n\
             these devices about each other: {} (they would need {} more scans).",
            list.join(", "),
            missing.len()
        );
    }
    let _ = writeln!(
        out,
        "ATM here also passes on what a device learned automatically, with the time each decision was made,\n\
         only to keys it has authenticated: all {} of {n}, with {} trust messages. (docs/propagation.md)",
        complete.reached(),
        complete.messages
    );
    out
}

/// The demo as JSON.
pub fn json(complete: &Run, xep: &Run) -> serde_json::Value {
    let run = |r: &Run| {
        serde_json::json!({
            "propagation": r.propagation.as_str(),
            "manual_authentications": r.manual,
            "automatic_authentications": r.automatic,
            "authenticated": r.reached(),
            "left_undone": r.missing().iter().map(|(a, b)| serde_json::json!({"by": a, "of": b})).collect::<Vec<_>>(),
            "trust_messages_sent": r.messages,
            "pairs": r.pairs.iter().map(|(a, b, h)| serde_json::json!({"by": a, "of": b, "how": match h { How::Manual => "manual", How::Automatic => "automatic", How::Missing => "missing" }})).collect::<Vec<_>>(),
            "story": r.story,
        })
    };
    serde_json::json!({
        "authentications_needed": complete.pairs.len(),
        "without_atm": {"manual_authentications": complete.pairs.len()},
        "complete": run(complete),
        "xep": run(xep),
    })
}

/// The five devices and the directed authentications as one SVG.
pub fn svg(run: &Run) -> String {
    let positions = [
        ("A1", 170.0_f64, 170.0_f64),
        ("A2", 170.0, 450.0),
        ("A3", 300.0, 310.0),
        ("B1", 730.0, 170.0),
        ("B2", 730.0, 450.0),
    ];
    let pos = |name: &str| positions.iter().find(|p| p.0 == name).map(|p| (p.1, p.2));
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="900" height="680" viewBox="0 0 900 680" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<defs>
<marker id="m" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#1f3c88"/></marker>
<marker id="a" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#2e9d4f"/></marker>
</defs>
<text x="450" y="34" font-size="20" font-weight="bold" text-anchor="middle">Seed walkthrough: {} of {} authentications ({} manual, {} automatic)</text>
<rect x="60" y="60" width="430" height="470" rx="18" fill="#f3f6fb" stroke="#c9d3e6"/><text x="80" y="84" font-size="15" fill="#44506b">alice@example.org</text>
<rect x="610" y="60" width="240" height="470" rx="18" fill="#f6f3fb" stroke="#d6c9e6"/><text x="630" y="84" font-size="15" fill="#574b6b">bob@example.com</text>
"##,
        run.reached(),
        run.pairs.len(),
        run.manual,
        run.automatic
    );
    for (by, of, how) in &run.pairs {
        let (Some((x1, y1)), Some((x2, y2))) = (pos(by), pos(of)) else {
            continue;
        };
        // Offset each direction to its own side so both arrows show.
        let (dx, dy) = (x2 - x1, y2 - y1);
        let len = (dx * dx + dy * dy).sqrt().max(1.0);
        let (ux, uy) = (dx / len, dy / len);
        let (nx, ny) = (-uy * 7.0, ux * 7.0);
        let r = 40.0;
        let (sx, sy) = (x1 + ux * r + nx, y1 + uy * r + ny);
        let (ex, ey) = (x2 - ux * (r + 2.0) + nx, y2 - uy * (r + 2.0) + ny);
        let style = match how {
            How::Manual => r##"stroke="#1f3c88" stroke-width="3" marker-end="url(#m)""##,
            How::Automatic => {
                r##"stroke="#2e9d4f" stroke-width="2" stroke-dasharray="7 5" marker-end="url(#a)""##
            }
            How::Missing => r##"stroke="#c0392b" stroke-width="1.5" stroke-dasharray="2 4""##,
        };
        let _ = writeln!(
            s,
            r#"<line x1="{sx:.1}" y1="{sy:.1}" x2="{ex:.1}" y2="{ey:.1}" {style}/>"#
        );
    }
    for (name, x, y) in positions {
        let _ = writeln!(
            s,
            r##"<circle cx="{x}" cy="{y}" r="38" fill="white" stroke="#333" stroke-width="2"/><text x="{x}" y="{:.0}" font-size="17" font-weight="bold" text-anchor="middle">{name}</text><text x="{x}" y="{:.0}" font-size="13" text-anchor="middle" fill="#333" stroke="white" stroke-width="4" paint-order="stroke">{}</text>"##,
            y + 6.0,
            if name == "A3" {
                y + 62.0
            } else if y < 300.0 {
                y - 48.0
            } else {
                y + 62.0
            },
            device(name)
        );
    }
    let _ = write!(
        s,
        r##"<line x1="80" y1="575" x2="130" y2="575" stroke="#1f3c88" stroke-width="3" marker-end="url(#m)"/><text x="140" y="580" font-size="14">authenticated by hand (QR scan): {}</text>
<line x1="80" y1="605" x2="130" y2="605" stroke="#2e9d4f" stroke-width="2" stroke-dasharray="7 5" marker-end="url(#a)"/><text x="140" y="610" font-size="14">authenticated automatically by a trust message: {}</text>
<text x="80" y="645" font-size="12" fill="#555">An arrow X → Y: device X authenticated the key of device Y. Propagation: {}; {} trust messages.</text>
</svg>
"##,
        run.pairs.iter().filter(|p| p.2 == How::Manual).count(),
        run.pairs.iter().filter(|p| p.2 == How::Automatic).count(),
        run.propagation.as_str(),
        run.messages
    );
    s
}

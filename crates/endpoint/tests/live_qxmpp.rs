//! Live interop with QXmpp's ATM (issue 12): the seed walkthrough with the
//! devices split between our endpoint and QXmpp 1.10 peer processes
//! (`interop/qxmpp-peer`), distrusts across implementations, OMEMO 2 chat
//! both ways, on a private Prosody.
//!
//! Ignored by default: CI cannot build QXmpp. Run with the peer binary:
//!
//! ```sh
//! ATM_QXMPP_PEER=/tmp/qxmpp-peer-build/qxmpp-peer LD_LIBRARY_PATH=<QXmpp prefix>/lib \
//!   cargo test -p atm-endpoint --test live_qxmpp -- --ignored --test-threads 1
//! ```
//!
//! With `ATM_QXMPP_RECORD=DIR` each run also writes what the QXmpp devices
//! sent ours (stanza, receipt time, what our core did, the SQLite file
//! just before) and what QXmpp decided on our messages, as the fixtures of
//! `crates/client/tests/qxmpp_fixtures.rs`.
//!
//! Each test states its prediction from both rule sets first (our
//! `complete` rules, `docs/propagation.md`; QXmpp's: trust messages only
//! after manual decisions, built before the decision is applied, encrypted
//! only for keys it holds authenticated) and checks it exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;
mod qxmpp;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use atm_client::Event;
use atm_xmpp_server::Kind;
use qxmpp::{Side, World};
use serde_json::{json, Value};

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.com";

/// After every decision: nothing moved anywhere for this long (QXmpp
/// works through asynchronous tasks).
const QUIET: Duration = Duration::from_millis(1500);

/// What QXmpp logs that is about its own doing, not about what it received
/// from us (docs/interop.md, behaviour notes 1 and 3).
const KNOWN_QXMPP_WARNINGS: [&str; 6] = [
    // The harness's explicit device-list subscription before the other
    // account approved the presence subscription (it asks again).
    "could not be subscribed",
    // A message to its own JID built before any own key is authenticated.
    "OMEMO element could not be created because no recipient devices with keys having accepted trust levels could be found",
    // The second copy (direct + carbon) of a message to its own bare JID.
    "OMEMO envelope data is already received",
    "Data for decrypting OMEMO payload could not be extracted",
    "SCE envelope could not be extracted",
    "for key exchange is already received",
];

fn is_known_warning(text: &str) -> bool {
    KNOWN_QXMPP_WARNINGS.iter().any(|k| text.contains(k))
}

/// Starts Prosody and the five seed devices, `qxmpp` naming those that are
/// QXmpp peers; every device learns every other.
async fn five_devices(server: &atm_xmpp_server::Server, run: &str, qxmpp: &[&str]) -> World {
    five_devices_building(server, run, qxmpp, json!(true)).await
}

/// [`five_devices`] with the QXmpp peers' `auto_session_building`.
async fn five_devices_building(
    server: &atm_xmpp_server::Server,
    run: &str,
    qxmpp: &[&str],
    session_building: serde_json::Value,
) -> World {
    let mut world = World::new(server, run);
    world.session_building = session_building;
    for (name, jid) in [
        ("A1", ALICE),
        ("A2", ALICE),
        ("A3", ALICE),
        ("B1", BOB),
        ("B2", BOB),
    ] {
        if qxmpp.contains(&name) {
            world.add_qxmpp(name, jid).await;
        } else {
            world.add_ours(name, jid).await;
        }
    }
    world.all_contacts().await;
    world.everyone_known().await;
    world.settle(QUIET).await;
    world
}

/// The 8 manual decisions of the seed walkthrough, in its order, each
/// followed by quiet.
async fn seed_decisions(world: &mut World) {
    for (at, of) in [
        ("A1", "A3"),
        ("A2", "A3"),
        ("A3", "A1"),
        ("A3", "A2"),
        ("B1", "B2"),
        ("B2", "B1"),
        ("B2", "A3"),
        ("A3", "B2"),
    ] {
        world.authenticate(at, of).await;
        world.settle(QUIET).await;
    }
}

fn all_pairs_but(missing: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    let names = ["A1", "A2", "A3", "B1", "B2"];
    let mut set = BTreeSet::new();
    for at in names {
        for of in names {
            if at != of && !missing.contains(&(at, of)) {
                set.insert((at.to_owned(), of.to_owned()));
            }
        }
    }
    set
}

struct Prediction {
    /// Pairs (at, of) authenticated at the end.
    authenticated: BTreeSet<(String, String)>,
    /// Trust messages sent by our devices and by QXmpp's.
    messages: (usize, usize),
    /// QXmpp's "no recipient devices" warnings (a trust message to its own
    /// JID built before any own key was authenticated).
    no_recipient_warnings: usize,
}

/// Waits until the prediction's authentications hold, lets everything
/// settle, and checks all of it exactly.
async fn check(world: &mut World, what: &str, prediction: &Prediction) {
    let want = prediction.authenticated.clone();
    world
        .until(what, qxmpp::LIMIT, |w| {
            let have: BTreeSet<_> = w.authenticated_pairs().into_iter().collect();
            want.is_subset(&have)
        })
        .await;
    world.settle(QUIET).await;
    let have: BTreeSet<_> = world.authenticated_pairs().into_iter().collect();
    let extra: Vec<_> = have.difference(&want).collect();
    let missing: Vec<_> = want.difference(&have).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{what}: authenticated pairs differ from the prediction: extra {extra:?}, missing {missing:?}\n{}",
        world.describe()
    );
    assert_eq!(
        world.messages_sent(),
        prediction.messages,
        "{what}: trust messages sent (ours, QXmpp's)"
    );
    check_logs(world, what, prediction.no_recipient_warnings);
}

/// QXmpp logged nothing about what we sent; our devices refused nothing
/// and never showed a trust message as chat.
fn check_logs(world: &mut World, what: &str, no_recipient_warnings: usize) {
    let mut no_recipient = 0;
    for peer in &world.peers {
        let warnings = peer.warnings();
        for (index, warning) in warnings.iter().enumerate() {
            // The second copy of an empty message: only right after QXmpp
            // recognised the copy.
            if warning == "Empty OMEMO message could not be successfully processed" {
                assert!(
                    index > 0 && warnings[index - 1].contains("is already received"),
                    "{what}: {} (QXmpp) could not process an empty OMEMO message: {warnings:#?}",
                    peer.name
                );
                continue;
            }
            assert!(
                is_known_warning(warning),
                "{what}: {} (QXmpp) logged: {warning}\nall its warnings: {warnings:#?}",
                peer.name,
            );
            if warning.contains("no recipient devices") {
                no_recipient += 1;
            }
        }
    }
    assert_eq!(
        no_recipient, no_recipient_warnings,
        "{what}: QXmpp's 'no recipient devices' warnings"
    );
    for device in &world.net.devices {
        for event in &device.events {
            assert!(
                !matches!(event, Event::Rejected { .. }),
                "{what}: {} reported {event:?}",
                device.name
            );
            if let Event::Chat { text, .. } = event {
                assert!(
                    text.starts_with("chat "),
                    "{what}: {} showed as chat: {text:?}",
                    device.name
                );
            }
        }
    }
}

/// The (innermost) message that holds the `<encrypted>` element.
fn find_message_with_encrypted(
    element: &tokio_xmpp::parsers::minidom::Element,
) -> Option<&tokio_xmpp::parsers::minidom::Element> {
    if element.name() == "message" && element.get_child("encrypted", qxmpp::NS_OMEMO).is_some() {
        return Some(element);
    }
    element.children().find_map(find_message_with_encrypted)
}

/// Whether `name` showed `text` as an OMEMO 2 chat message.
fn got_chat(world: &World, name: &str, text: &str, sender_key: &str) -> bool {
    match world.side(name) {
        Side::Ours(i) => world.net.devices[i]
            .events
            .iter()
            .any(|e| matches!(e, Event::Chat { text: t, key, .. } if t == text && key.to_hex() == sender_key)),
        // Decrypted: QXmpp reports the sender's key (its `encryption` is
        // the EME hint, which our messages do not carry).
        Side::Qxmpp(i) => world.peers[i]
            .events_named("chat")
            .any(|e| e["body"] == text && e["sender_key_hex"] == sender_key),
    }
}

/// Writes the run's fixtures when `ATM_QXMPP_RECORD` is set: what QXmpp
/// sent our devices (with the SQLite snapshots) and what our devices sent
/// QXmpp with QXmpp's decisions.
fn record(world: &mut World, run: &str) {
    let Some(base) = std::env::var_os("ATM_QXMPP_RECORD") else {
        return;
    };
    let dir = std::path::Path::new(&base).join(run);
    std::fs::create_dir_all(&dir).unwrap();
    let names = world.all_names();
    let devices: Vec<Value> = names
        .iter()
        .map(|n| {
            json!({
                "name": n,
                "jid": world.jid(n),
                "key_hex": world.key_hex(n),
                "implementation": match world.side(n) { Side::Ours(_) => "atm-rs", Side::Qxmpp(_) => "qxmpp-1.10.2" },
            })
        })
        .collect();
    let shared = world.shared.borrow();
    let mut records = Vec::new();
    // Every message with a payload (trust messages, chat, and their second
    // copies) but archive results; of the empty ones (key exchanges), those whose message has
    // no `to` (RFC 6121 §8.1: addressed to the own account), at most 3.
    let mut without_to = 0;
    let kept = shared.records.iter().filter(|r| {
        // Archive results answer a query whose id the core keeps in
        // memory only: a snapshot cannot take them.
        if r.stanza.contains("urn:xmpp:mam:2") {
            return false;
        }
        if r.stanza.contains("<payload") {
            return true;
        }
        let element: tokio_xmpp::parsers::minidom::Element = r.stanza.parse().unwrap();
        let inner_to = find_message_with_encrypted(&element).and_then(|m| m.attr("to"));
        if inner_to.is_none() && without_to < 3 {
            without_to += 1;
            return true;
        }
        false
    });
    for (n, r) in kept.enumerate() {
        let file = format!("{n:02}-{}.sqlite.gz", r.device);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &r.snapshot).unwrap();
        std::fs::write(dir.join(&file), gz.finish().unwrap()).unwrap();
        records.push(json!({
            "device": r.device,
            "jid": r.jid,
            "snapshot": file,
            "received": r.received.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "stanza": r.stanza,
            "handled": r.handled,
            "events": r.events,
        }));
    }
    let manifest = json!({
        "run": run,
        "qxmpp": "1.10.2",
        "server": "Prosody 0.12.3",
        "devices": devices,
        "records": records,
    });
    std::fs::write(
        dir.join("received-from-qxmpp.json"),
        serde_json::to_string_pretty(&manifest).unwrap() + "\n",
    )
    .unwrap();
    // The reverse direction: what each QXmpp device received and decided.
    let mut lines = String::new();
    for peer in &world.peers {
        for event in &peer.events {
            let kind = event["event"].as_str().unwrap_or_default();
            if matches!(
                kind,
                "trust_message" | "trust_changed" | "chat" | "log" | "error" | "omemo_sent"
            ) {
                let mut event = event.clone();
                event["device"] = json!(peer.name);
                lines += &format!("{event}\n");
            }
        }
    }
    std::fs::write(dir.join("qxmpp-transcript.jsonl"), lines).unwrap();
    std::fs::write(
        dir.join("devices.json"),
        serde_json::to_string_pretty(&json!(devices)).unwrap() + "\n",
    )
    .unwrap();
    eprintln!(
        "recorded {} of {} stanzas from QXmpp into {}",
        records.len(),
        shared.records.len(),
        dir.display()
    );
}

async fn start() -> atm_xmpp_server::Server {
    qxmpp::peer_binary();
    common::start(Kind::Prosody).await
}

/// QXmpp as the hub A3; A1, A2, B1, B2 ours.
///
/// Prediction. A1→A3, A2→A3 (ours): nothing to send (no other key
/// authenticated; A3's sync would only name A3). A3→A1 (QXmpp): its
/// message to its own JID is built before A1 is authenticated: no
/// recipient, one warning; nothing else. A3→A2: `{alice:[A2]}` to own JID
/// for A1, then, after applying, `{alice:[A1]}` for A1 and A2: A1 and A2
/// authenticate each other (2 QXmpp messages). B1↔B2 (ours): nothing.
/// B2→A3 (ours): one message to alice (`{bob:[B1]}` for A3, with B1 riding
/// along for `{alice:[A3]}`): B1 authenticates A3, A3 postpones B1.
/// A3→B2 (QXmpp): `{bob:[B2]}` to own JID (A1, A2 authenticate B2); then
/// B2 authenticated releases the postponed B1; `{alice:[A1,A2]}` to bob
/// (B1, B2 authenticate A1, A2): 2 QXmpp messages. Nobody tells A1 and A2
/// about B1: A3 authenticated it automatically (QXmpp sends nothing then),
/// and our B2 and B1 authenticated A1/A2 directly from a trust message
/// (then the sender syncs, not us). 18 of 20; ours 1 message, QXmpp 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the QXmpp peer (ATM_QXMPP_PEER), which CI cannot build; see docs/interop.md"]
async fn seed_walkthrough_with_qxmpp_as_the_hub_a3() {
    let started = Instant::now();
    let server = start().await;
    let mut world = five_devices(&server, "hub-a3", &["A3"]).await;
    seed_decisions(&mut world).await;
    check(
        &mut world,
        "QXmpp as the hub A3",
        &Prediction {
            authenticated: all_pairs_but(&[("A1", "B1"), ("A2", "B1")]),
            messages: (1, 4),
            no_recipient_warnings: 1,
        },
    )
    .await;
    record(&mut world, "hub-a3");
    world.close().await;
    eprintln!("wall time {:?}", started.elapsed());
}

/// QXmpp only on Bob's side: B1, B2 QXmpp; A1–A3 ours.
///
/// Prediction. Alice's four scans (ours) as in the all-ours seed: one
/// message, from A3 after A3→A2 (`{alice:[A1,A2]}` for A1 and A2), 6 own
/// authentications. B1→B2 and B2→B1 (QXmpp): each builds its own-JID
/// message before the key is authenticated: 2 warnings, nothing sent.
/// B2→A3 (QXmpp): `{alice:[A3]}` to own JID (B1 authenticates A3), then
/// `{bob:[B1]}` to alice for A3 (postponed there): 2 QXmpp messages.
/// A3→B2 (ours): B2 authenticated, the postponed B1 released; one message
/// to bob with `{alice:[A1,A2]}` for B1 and B2 and, riding along for A1
/// and A2, `{bob:[B1,B2]}`. All 20; ours 2 messages, QXmpp 2.
///
/// Flaky through QXmpp alone (docs/interop.md, reports 2 and 3): two QXmpp
/// devices of one account starting together sometimes cannot read each
/// other (unmarked key exchanges), or both pick the same prekey of one of
/// ours; the test then fails, naming the refusal or the missing keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the QXmpp peer (ATM_QXMPP_PEER), which CI cannot build; see docs/interop.md"]
async fn seed_walkthrough_with_qxmpp_only_on_bobs_side() {
    let started = Instant::now();
    let server = start().await;
    // Two QXmpp devices of one account, started together, set up as
    // Kaidan sets them, leave one unable to read the other in about 1
    // play of 5 (docs/interop.md, report 2): their sessions are built
    // after setUp(), as the scenario runner does.
    let mut world =
        five_devices_building(&server, "bob-qxmpp", &["B1", "B2"], json!("after_setup")).await;
    seed_decisions(&mut world).await;
    check(
        &mut world,
        "QXmpp only on Bob's side",
        &Prediction {
            authenticated: all_pairs_but(&[]),
            messages: (2, 2),
            no_recipient_warnings: 2,
        },
    )
    .await;
    record(&mut world, "bob-qxmpp");
    world.close().await;
    eprintln!("wall time {:?}", started.elapsed());
}

/// One QXmpp device in each account (A2, B1), then chat both ways, then
/// distrusts across implementations.
///
/// Seed prediction. A1→A3 (ours): nothing. A2→A3 (QXmpp): no recipient,
/// warning. A3→A1 (ours): nothing. A3→A2 (ours): `{alice:[A1,A2]}` for A1
/// and A2. B1→B2 (QXmpp): warning. B2→B1 (ours): nothing. B2→A3 (ours):
/// one message to alice, `{bob:[B1]}` for A3 (postponed), `{alice:[A3]}`
/// for B1 (a sent carbon at B1: QXmpp takes it as its own account's).
/// A3→B2 (ours): releases B1; one message to bob, `{alice:[A1,A2]}` for
/// B1, B2 and `{bob:[B1,B2]}` for A1, A2. All 20; ours 3, QXmpp 0.
///
/// Distrusts (each followed by quiet):
/// 1. B2 (ours) distrusts its own B1 (QXmpp): one message to alice,
///    `{bob: distrust [B1]}` for A1, A2, A3 (B1 is no recipient any more).
///    A2 (QXmpp) and A1, A3 hold B1 `manually_distrusted`.
/// 2. A2 (QXmpp) distrusts the contact's B2 (ours): `{bob: distrust [B2]}`
///    to its own JID, for A1 and A3 (1 QXmpp message); they apply it and
///    relay nothing (A1 and A3 were both recipients).
/// 3. A2 (QXmpp) distrusts its own A1 (ours): no contact key is
///    authenticated at A2 any more, so only `{alice: distrust [A1]}` to its
///    own JID, encrypted for A1 and A3 (A1 still authenticated when it is
///    built); A3 applies it, A1 ignores a decision about its own key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the QXmpp peer (ATM_QXMPP_PEER), which CI cannot build; see docs/interop.md"]
async fn seed_walkthrough_chat_and_distrusts_with_one_qxmpp_device_per_account() {
    let started = Instant::now();
    let server = start().await;
    let mut world = five_devices(&server, "one-each", &["A2", "B1"]).await;
    seed_decisions(&mut world).await;
    check(
        &mut world,
        "one QXmpp device per account",
        &Prediction {
            authenticated: all_pairs_but(&[]),
            messages: (3, 0),
            no_recipient_warnings: 2,
        },
    )
    .await;

    // OMEMO 2 chat both ways (and to the sender's other devices by carbons).
    let Side::Ours(a1) = world.side("A1") else {
        unreachable!()
    };
    world.net.devices[a1]
        .driver
        .core()
        .send_chat(BOB, "chat from A1 (ours)", chrono::Utc::now())
        .unwrap();
    world.net.devices[a1].driver.flush().await.unwrap();
    world
        .command(
            "B1",
            json!({"cmd": "send_chat", "jid": ALICE, "text": "chat from B1 (QXmpp)"}),
        )
        .await;
    let (a1_key, b1_key) = (world.key_hex("A1"), world.key_hex("B1"));
    let expected = [
        ("B2", "chat from A1 (ours)"),
        ("A3", "chat from A1 (ours)"),
        ("B1", "chat from A1 (ours)"),
        ("A2", "chat from A1 (ours)"),
        ("A1", "chat from B1 (QXmpp)"),
        ("A3", "chat from B1 (QXmpp)"),
        ("B2", "chat from B1 (QXmpp)"),
        ("A2", "chat from B1 (QXmpp)"),
    ];
    let chat_started = Instant::now();
    loop {
        let missing: Vec<_> = expected
            .iter()
            .filter(|(name, text)| {
                let key = if text.contains("A1") {
                    &a1_key
                } else {
                    &b1_key
                };
                !got_chat(&world, name, text, key)
            })
            .collect();
        if missing.is_empty() {
            eprintln!("chat arrived everywhere after {:?}", chat_started.elapsed());
            break;
        }
        assert!(
            chat_started.elapsed() < qxmpp::LIMIT,
            "chat missing: {missing:?}\n{}\nQXmpp chat events: {:?}",
            world.describe(),
            world
                .peers
                .iter()
                .flat_map(|p| p
                    .events_named("chat")
                    .map(|e| (p.name.clone(), e.to_string())))
                .collect::<Vec<_>>()
        );
        world.round().await;
    }
    world.settle(QUIET).await;
    let before = world.messages_sent();
    // Chat messages are payload messages too: one each.
    assert_eq!(before, (4, 1), "3 trust messages + 1 chat; 1 chat");

    // 1. Ours distrusts its own QXmpp device.
    world.distrust("B2", "B1").await;
    world
        .until("A1, A2, A3 distrust B1", qxmpp::LIMIT, |w| {
            ["A1", "A2", "A3"]
                .iter()
                .all(|at| w.level(at, "B1").as_deref() == Some("manually_distrusted"))
        })
        .await;
    world.settle(QUIET).await;
    // B2's message to alice, and one relay by each of our co-recipients A1
    // and A3 (a distrust also goes to the co-recipients of the message it
    // came in, docs/propagation.md): whichever copy reaches A1 or A3
    // first changes B1 there, once, and is passed on to the others.
    assert_eq!(world.messages_sent(), (before.0 + 3, before.1));
    // 2. QXmpp distrusts a contact's device of ours.
    world.distrust("A2", "B2").await;
    world
        .until("A1 and A3 distrust B2", qxmpp::LIMIT, |w| {
            ["A1", "A3"]
                .iter()
                .all(|at| w.level(at, "B2").as_deref() == Some("manually_distrusted"))
        })
        .await;
    world.settle(QUIET).await;
    // A2's message to its own account, and again one relay each by A1 and
    // A3, co-recipients of it.
    assert_eq!(world.messages_sent(), (before.0 + 5, before.1 + 1));
    // 3. QXmpp distrusts an own device of ours.
    world.distrust("A2", "A1").await;
    world
        .until("A3 distrusts A1", qxmpp::LIMIT, |w| {
            w.level("A3", "A1").as_deref() == Some("manually_distrusted")
        })
        .await;
    world.settle(QUIET).await;
    // A3 applies it and has nobody to tell: A2 is the sender, A1 the key
    // itself, and Bob's devices are distrusted there.
    assert_eq!(world.messages_sent(), (before.0 + 5, before.1 + 2));
    // Nobody else changed: B1 still trusts what it trusted, A1 keeps its
    // view (a decision about its own key is ignored).
    assert_eq!(world.level("A1", "A2").as_deref(), Some("authenticated"));
    assert_eq!(world.level("A1", "A3").as_deref(), Some("authenticated"));
    assert_eq!(world.level("B1", "B2").as_deref(), Some("authenticated"));
    check_logs(&mut world, "after the distrusts", 2);
    record(&mut world, "one-each");
    world.close().await;
    eprintln!("wall time {:?}", started.elapsed());
}

//! A test double of the network only: a tiny XMPP "server" that routes
//! messages by bare JID to every connected resource, makes sent carbons,
//! keeps offline messages, archives (MAM) and answers PEP publish/items
//! queries and notifies device-list changes. Everything else is real: the
//! cores, OMEMO, the engine and SQLite.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    dead_code
)]

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;

use atm_client::{ns, Endpoint, Event, Handled, Options, OsRandom};
use atm_store::Durability;
use chrono::{DateTime, Duration, Utc};
use jid::{BareJid, Jid};
use minidom::Element;

pub fn nc(name: &str) -> rxml::NcName {
    rxml::NcName::try_from(name).unwrap()
}

pub fn set_attr(element: &mut Element, name: &str, value: &str) {
    element.set_attr(rxml::Namespace::NONE, nc(name), value.to_owned());
}

pub fn bare(text: &str) -> BareJid {
    text.parse().unwrap()
}

pub struct Node {
    pub name: String,
    /// The account the server knows.
    pub jid: BareJid,
    /// The account the core believes it is.
    pub core_jid: BareJid,
    pub full: String,
    pub dir: PathBuf,
    pub core: Option<Endpoint>,
    pub online: bool,
    /// Every event the core reported.
    pub events: Vec<Event>,
    /// Every outcome of handle_stanza.
    pub handled: Vec<Handled>,
}

impl Node {
    pub fn core(&mut self) -> &mut Endpoint {
        self.core.as_mut().expect("core running")
    }
}

pub struct Router {
    pub nodes: Vec<Node>,
    queue: VecDeque<(usize, Element)>,
    pub pep: HashMap<(BareJid, String), Vec<(String, Element)>>,
    offline: HashMap<BareJid, Vec<Element>>,
    pub archive: HashMap<BareJid, Vec<(String, Element)>>,
    /// When each archive entry was stored (its MAM delay stamp).
    archive_times: HashMap<String, DateTime<Utc>>,
    /// Behave like ejabberd 23.01: refuse publish-options with max_items.
    pub refuse_max_items: bool,
    /// Delay and archive stamps in whole seconds, as Prosody writes them
    /// (false: to the nanosecond).
    pub whole_second_stamps: bool,
    counter: u64,
    pub now: DateTime<Utc>,
    /// Message stanzas delivered to clients (direct, carbons, reflections).
    pub delivered_messages: usize,
    /// OMEMO messages with a payload clients sent, and copies of them the
    /// server delivered (direct, carbons, reflections to the sender,
    /// offline; not archive results), with their bytes.
    pub encrypted_sent: usize,
    /// Empty OMEMO messages clients sent (key-exchange replies, heartbeats).
    pub empty_sent: usize,
    pub encrypted_delivered: usize,
    pub encrypted_delivered_bytes: usize,
    /// Messages sent with `<private/>` (no carbons).
    pub private_sent: usize,
    /// Every OMEMO message a client sent, as sent, with its account.
    pub encrypted_messages: Vec<(BareJid, Element)>,
    /// Crashes caused by crash points: (node, point).
    pub crashes: Vec<(usize, atm_client::CrashPoint)>,
    pub directory: tempfile::TempDir,
}

impl Router {
    pub fn new() -> Self {
        Router {
            nodes: Vec::new(),
            queue: VecDeque::new(),
            pep: HashMap::new(),
            offline: HashMap::new(),
            private_sent: 0,
            encrypted_messages: Vec::new(),
            archive: HashMap::new(),
            archive_times: HashMap::new(),
            refuse_max_items: false,
            whole_second_stamps: false,
            counter: 0,
            now: "2026-12-01T10:00:00Z".parse().unwrap(),
            delivered_messages: 0,
            crashes: Vec::new(),
            encrypted_sent: 0,
            empty_sent: 0,
            encrypted_delivered: 0,
            encrypted_delivered_bytes: 0,
            directory: tempfile::tempdir().unwrap(),
        }
    }

    /// Time moves 10 ms per step (a delivery, a user action).
    pub fn tick(&mut self) -> DateTime<Utc> {
        self.now += Duration::milliseconds(10);
        self.now
    }

    fn open(&self, name: &str, jid: &BareJid) -> Endpoint {
        Endpoint::open_with(
            self.directory.path().join(name),
            jid,
            self.now,
            Box::new(OsRandom),
            Options {
                durability: Durability::Normal,
                ..Options::default()
            },
        )
        .unwrap()
    }

    /// Adds a device (not connected yet).
    pub fn add(&mut self, name: &str, jid: &str) -> usize {
        self.add_as(name, jid, jid)
    }

    /// Adds a device whose core believes it is `core_jid` while the server
    /// knows it as `jid` (an impostor).
    pub fn add_as(&mut self, name: &str, core_jid: &str, jid: &str) -> usize {
        let jid = bare(jid);
        let core = self.open(name, &bare(core_jid));
        self.nodes.push(Node {
            name: name.to_owned(),
            full: format!("{jid}/{name}"),
            dir: self.directory.path().join(name),
            core_jid: bare(core_jid),
            jid,
            core: Some(core),
            online: false,
            events: Vec::new(),
            handled: Vec::new(),
        });
        self.nodes.len() - 1
    }

    pub fn index(&self, name: &str) -> usize {
        self.nodes.iter().position(|n| n.name == name).unwrap()
    }

    /// Connects a device: start, offline messages, archive catch-up.
    pub fn connect(&mut self, node: usize) {
        self.nodes[node].online = true;
        let jid = self.nodes[node].jid.clone();
        let core = self.nodes[node].core();
        core.start().unwrap();
        core.catch_up().unwrap();
        for message in self.offline.remove(&jid).unwrap_or_default() {
            let mut copy = message;
            set_attr(&mut copy, "to", &self.nodes[node].full.clone());
            self.queue.push_back((node, copy));
        }
    }

    pub fn disconnect(&mut self, node: usize) {
        self.nodes[node].online = false;
        self.queue.retain(|(n, _)| *n != node);
    }

    /// The process dies: the core is dropped without any goodbye.
    pub fn kill(&mut self, node: usize) {
        self.disconnect(node);
        self.nodes[node].core = None;
    }

    /// Reopens the core from its state directory and connects it.
    pub fn restart(&mut self, node: usize) {
        let (name, jid) = (
            self.nodes[node].name.clone(),
            self.nodes[node].core_jid.clone(),
        );
        self.nodes[node].core = Some(self.open(&name, &jid));
        self.connect(node);
    }

    /// A server's stamp of `time` (XEP-0082).
    fn stamp(&self, time: DateTime<Utc>) -> String {
        let format = if self.whole_second_stamps {
            chrono::SecondsFormat::Secs
        } else {
            chrono::SecondsFormat::Nanos
        };
        time.to_rfc3339_opts(format, true)
    }

    fn next_id(&mut self) -> String {
        self.counter += 1;
        format!("srv-{}", self.counter)
    }

    fn online_resources(&self, jid: &BareJid) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].online && self.nodes[*i].jid == *jid)
            .collect()
    }

    /// Moves stanzas until nothing moves.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for node in 0..self.nodes.len() {
                if !self.nodes[node].online || self.nodes[node].core.is_none() {
                    continue;
                }
                while let Some(transmit) = self.nodes[node].core().poll_transmit().unwrap() {
                    moved = true;
                    self.route(node, transmit.stanza);
                    if let Some(id) = transmit.outbox {
                        self.nodes[node].core().sent(id).unwrap();
                    }
                }
            }
            if let Some((node, stanza)) = self.queue.pop_front() {
                moved = true;
                self.deliver(node, &stanza);
            }
            if !moved {
                return;
            }
        }
        panic!("the network did not settle");
    }

    /// Hands one stanza to a node's core and keeps its outcome and events.
    pub fn deliver(&mut self, node: usize, stanza: &Element) -> Handled {
        if stanza.name() == "message" {
            self.delivered_messages += 1;
            let text = String::from(stanza);
            if text.contains("<encrypted ")
                && text.contains("<payload")
                && stanza.get_child("result", ns::NS_MAM).is_none()
            {
                self.encrypted_delivered += 1;
                self.encrypted_delivered_bytes += text.len();
            }
        }
        let now = self.tick();
        let n = &mut self.nodes[node];
        let handled = match n.core().handle_stanza(stanza, now) {
            Ok(handled) => handled,
            Err(atm_client::CoreError::Crashed(atm_client::CrashPoint::StoreFailure)) => {
                // A failed unit: the core goes on; the stanza is not retried.
                self.crashes
                    .push((node, atm_client::CrashPoint::StoreFailure));
                return Handled::Ignored;
            }
            Err(atm_client::CoreError::Crashed(point)) => {
                // The process died in the middle: nothing more from it.
                self.kill(node);
                self.crashes.push((node, point));
                return Handled::Ignored;
            }
            Err(error) => panic!("{}: {error}", self.nodes[node].name),
        };
        while let Some(event) = n.core().poll_event() {
            n.events.push(event);
        }
        n.handled.push(handled.clone());
        handled
    }

    /// Drains a node's events.
    pub fn collect_events(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        while let Some(event) = n.core().poll_event() {
            n.events.push(event);
        }
    }

    /// Takes what a node wants to send without routing it (marked sent).
    pub fn take_transmits(&mut self, node: usize) -> Vec<Element> {
        let mut out = Vec::new();
        while let Some(transmit) = self.nodes[node].core().poll_transmit().unwrap() {
            if let Some(id) = transmit.outbox {
                self.nodes[node].core().sent(id).unwrap();
            }
            out.push(transmit.stanza);
        }
        out
    }

    /// The server receives `stanza` from node `from` (stamps `from`, routes).
    pub fn route(&mut self, from: usize, mut stanza: Element) {
        let full = self.nodes[from].full.clone();
        let own = self.nodes[from].jid.clone();
        set_attr(&mut stanza, "from", &full);
        match stanza.name() {
            "message" => self.route_message(from, stanza),
            "iq" => self.route_iq(from, &own, stanza),
            _ => {}
        }
    }

    /// Server side of a message from node `from`: archive in both accounts,
    /// deliver to every online resource of the recipient (or store
    /// offline), sent carbons to the sender's other resources.
    pub fn route_message(&mut self, from: usize, stanza: Element) {
        if let Some(encrypted) = stanza.get_child("encrypted", ns::NS_OMEMO) {
            if encrypted.get_child("payload", ns::NS_OMEMO).is_some() {
                self.encrypted_sent += 1;
            } else {
                self.empty_sent += 1;
            }
            self.encrypted_messages
                .push((self.nodes[from].jid.clone(), stanza.clone()));
        }
        let sender = self.nodes[from].jid.clone();
        let to: Jid = stanza.attr("to").unwrap().parse().unwrap();
        let target = to.to_bare();
        // As Prosody: a message to the sender's own bare JID loses its `to`
        // (delivered, carbon-copied and archived without it), and a
        // message with `<private/>` (XEP-0280) gets no carbons.
        let mut stanza = stanza;
        if target == sender {
            stanza.attrs_mut().remove(&rxml::Namespace::NONE, &nc("to"));
        }
        let private = stanza.get_child("private", ns::NS_CARBONS).is_some();
        if private {
            self.private_sent += 1;
        }
        // Recipient's server: stanza-id, archive.
        let mut received = stanza.clone();
        while received.remove_child("stanza-id", ns::NS_SID).is_some() {}
        let archive_id = self.next_id();
        received.append_child(
            Element::builder("stanza-id", ns::NS_SID)
                .attr(nc("id"), archive_id.as_str())
                .attr(nc("by"), target.as_str())
                .build(),
        );
        self.archive_times.insert(archive_id.clone(), self.now);
        self.archive
            .entry(target.clone())
            .or_default()
            .push((archive_id, received.clone()));
        if target != sender {
            let sent_id = self.next_id();
            self.archive_times.insert(sent_id.clone(), self.now);
            self.archive
                .entry(sender.clone())
                .or_default()
                .push((sent_id, stanza.clone()));
        }
        let resources = self.online_resources(&target);
        if resources.is_empty() {
            let mut delayed = received.clone();
            delayed.append_child(
                Element::builder("delay", ns::NS_DELAY)
                    .attr(nc("from"), target.domain().as_str())
                    .attr(nc("stamp"), self.stamp(self.now))
                    .build(),
            );
            self.offline
                .entry(target.clone())
                .or_default()
                .push(delayed);
        }
        for resource in resources {
            self.queue.push_back((resource, received.clone()));
        }
        if target != sender && !private {
            for resource in self.online_resources(&sender) {
                if resource == from {
                    continue;
                }
                let carbon = Element::builder("message", ns::NS_CLIENT)
                    .attr(nc("from"), sender.as_str())
                    .attr(nc("to"), self.nodes[resource].full.as_str())
                    .attr(nc("type"), "chat")
                    .append(
                        Element::builder("sent", ns::NS_CARBONS)
                            .append(
                                Element::builder("forwarded", ns::NS_FORWARD)
                                    .append(stanza.clone())
                                    .build(),
                            )
                            .build(),
                    )
                    .build();
                self.queue.push_back((resource, carbon));
            }
        }
    }

    fn reply(
        &mut self,
        to: usize,
        request: &Element,
        from: Option<&BareJid>,
        kind: &str,
        child: Option<Element>,
    ) {
        let mut reply = Element::builder("iq", ns::NS_CLIENT)
            .attr(nc("type"), kind)
            .attr(nc("id"), request.attr("id").unwrap_or(""))
            .attr(nc("to"), self.nodes[to].full.as_str());
        if let Some(from) = from {
            reply = reply.attr(nc("from"), from.as_str());
        }
        let mut reply = reply.build();
        if let Some(child) = child {
            reply.append_child(child);
        }
        self.queue.push_back((to, reply));
    }

    fn error(condition: &str, text: &str) -> Element {
        Element::builder("error", ns::NS_CLIENT)
            .attr(nc("type"), "wait")
            .append(Element::builder(condition, "urn:ietf:params:xml:ns:xmpp-stanzas").build())
            .append(
                Element::builder("text", "urn:ietf:params:xml:ns:xmpp-stanzas")
                    .append(text)
                    .build(),
            )
            .build()
    }

    fn route_iq(&mut self, from: usize, own: &BareJid, iq: Element) {
        let target = iq
            .attr("to")
            .map(|t| t.parse::<BareJid>().unwrap())
            .unwrap_or_else(|| own.clone());
        let answer_from = iq.attr("to").map(|_| target.clone());
        if iq.get_child("enable", ns::NS_CARBONS).is_some() {
            return self.reply(from, &iq, None, "result", None);
        }
        if let Some(query) = iq.get_child("query", ns::NS_MAM) {
            return self.answer_mam(from, own, &iq, query);
        }
        let Some(pubsub) = iq.get_child("pubsub", ns::NS_PUBSUB) else {
            return self.reply(from, &iq, answer_from.as_ref(), "error", None);
        };
        if let Some(publish) = pubsub.get_child("publish", ns::NS_PUBSUB) {
            let options = pubsub.get_child("publish-options", ns::NS_PUBSUB);
            let has_max_items = options.is_some_and(|o| {
                o.children()
                    .flat_map(|x| x.children())
                    .any(|f| f.attr("var") == Some("pubsub#max_items"))
            });
            if self.refuse_max_items && has_max_items {
                let error = Self::error(
                    "resource-constraint",
                    "Unknown field 'pubsub#max_items' of type 'http://jabber.org/protocol/pubsub#publish-options'",
                );
                return self.reply(from, &iq, None, "error", Some(error));
            }
            let node = publish.attr("node").unwrap().to_owned();
            let item = publish.get_child("item", ns::NS_PUBSUB).unwrap();
            let id = item.attr("id").unwrap().to_owned();
            let payload = item.children().next().unwrap().clone();
            let items = self.pep.entry((own.clone(), node.clone())).or_default();
            items.retain(|(i, _)| *i != id);
            items.push((id.clone(), payload.clone()));
            self.reply(from, &iq, None, "result", None);
            if node == ns::NS_DEVICES || node == ns::NS_BUNDLES {
                // +notify: every online resource (all test accounts are contacts).
                for resource in 0..self.nodes.len() {
                    if !self.nodes[resource].online {
                        continue;
                    }
                    let event = Element::builder("message", ns::NS_CLIENT)
                        .attr(nc("from"), own.as_str())
                        .attr(nc("to"), self.nodes[resource].full.as_str())
                        .attr(nc("type"), "headline")
                        .append(
                            Element::builder("event", ns::NS_PUBSUB_EVENT)
                                .append(
                                    Element::builder("items", ns::NS_PUBSUB_EVENT)
                                        .attr(nc("node"), node.as_str())
                                        .append(
                                            Element::builder("item", ns::NS_PUBSUB_EVENT)
                                                .attr(nc("id"), id.as_str())
                                                .append(payload.clone())
                                                .build(),
                                        )
                                        .build(),
                                )
                                .build(),
                        )
                        .build();
                    self.queue.push_back((resource, event));
                }
            }
            return;
        }
        if let Some(items) = pubsub.get_child("items", ns::NS_PUBSUB) {
            let node = items.attr("node").unwrap().to_owned();
            let wanted: Vec<String> = items
                .children()
                .filter_map(|i| i.attr("id").map(str::to_owned))
                .collect();
            let Some(stored) = self.pep.get(&(target.clone(), node.clone())) else {
                let error = Self::error("item-not-found", "");
                return self.reply(from, &iq, answer_from.as_ref(), "error", Some(error));
            };
            let mut answer =
                Element::builder("items", ns::NS_PUBSUB).attr(nc("node"), node.as_str());
            for (id, payload) in stored {
                if wanted.is_empty() || wanted.contains(id) {
                    answer = answer.append(
                        Element::builder("item", ns::NS_PUBSUB)
                            .attr(nc("id"), id.as_str())
                            .append(payload.clone())
                            .build(),
                    );
                }
            }
            let child = Element::builder("pubsub", ns::NS_PUBSUB)
                .append(answer.build())
                .build();
            return self.reply(from, &iq, answer_from.as_ref(), "result", Some(child));
        }
        self.reply(from, &iq, answer_from.as_ref(), "error", None);
    }

    fn answer_mam(&mut self, from: usize, own: &BareJid, iq: &Element, query: &Element) {
        let query_id = query.attr("queryid").unwrap_or("").to_owned();
        let after = query
            .get_child("set", ns::NS_RSM)
            .and_then(|s| s.get_child("after", ns::NS_RSM))
            .map(|a| a.text());
        let archive = self.archive.get(own).cloned().unwrap_or_default();
        let start = match &after {
            Some(id) => archive
                .iter()
                .position(|(i, _)| i == id)
                .map_or(0, |p| p + 1),
            None => 0,
        };
        let page: Vec<_> = archive[start..].iter().take(5).cloned().collect();
        let complete = start + page.len() >= archive.len();
        for (id, message) in &page {
            let result = Element::builder("message", ns::NS_CLIENT)
                .attr(nc("to"), self.nodes[from].full.as_str())
                .append(
                    Element::builder("result", ns::NS_MAM)
                        .attr(nc("queryid"), query_id.as_str())
                        .attr(nc("id"), id.as_str())
                        .append(
                            Element::builder("forwarded", ns::NS_FORWARD)
                                .append(
                                    Element::builder("delay", ns::NS_DELAY)
                                        .attr(nc("stamp"), self.stamp(self.archive_times[id]))
                                        .build(),
                                )
                                .append(message.clone())
                                .build(),
                        )
                        .build(),
                )
                .build();
            self.queue.push_back((from, result));
        }
        let mut set = Element::builder("set", ns::NS_RSM);
        if let Some((last, _)) = page.last() {
            set = set.append(
                Element::builder("last", ns::NS_RSM)
                    .append(last.as_str())
                    .build(),
            );
        }
        let fin = Element::builder("fin", ns::NS_MAM)
            .attr(nc("complete"), if complete { "true" } else { "false" })
            .append(set.build())
            .build();
        self.reply(from, iq, None, "result", Some(fin));
    }

    /// Connects every node and lets the network settle.
    pub fn start_all(&mut self) {
        for node in 0..self.nodes.len() {
            self.connect(node);
        }
        self.pump();
    }

    /// The level that `at` holds for the key of `of`.
    pub fn level(&mut self, at: usize, of: usize) -> Option<atm_engine::TrustLevel> {
        let key = self.nodes[of].core().own_key().clone();
        let owner = self.nodes[of].core_jid.clone();
        let keys = self.nodes[at].core().keys().unwrap();
        keys.into_iter()
            .find(|k| k.owner == owner && k.key == key)
            .map(|k| k.level)
    }

    /// `at` scans the URI of `of`.
    pub fn scan(&mut self, at: usize, of: usize) {
        let uri = self.nodes[of].core().uri();
        let now = self.tick();
        self.nodes[at].core().scan(&uri, now).unwrap();
        self.collect_events(at);
        self.pump();
    }

    /// Adds every other account as a contact of every node.
    pub fn all_contacts(&mut self) {
        let jids: Vec<BareJid> = self.nodes.iter().map(|n| n.core_jid.clone()).collect();
        for node in 0..self.nodes.len() {
            for jid in &jids {
                self.nodes[node].core().add_contact(jid).unwrap();
            }
        }
    }
}

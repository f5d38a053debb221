//! [`Endpoint`]: the sans-IO core of one device.

mod pubsub;
mod receive;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use atm_engine::{Config, Effect, Engine, Input, KeyId, KeyRef, Propagation};
use atm_omemo::crypto::SecureRandom;
use atm_store::{Durability, EndpointStore};
use atm_tm::NS_OMEMO2;
use chrono::{DateTime, Utc};
use jid::BareJid;
use minidom::Element;

use crate::crypto::{self, Target, NS_BUNDLES, NS_DEVICES};
use crate::error::{CoreError, OpenError, Rejection};
use crate::event::{Event, Handled, Traffic};
use crate::stanza::{self, builder, nc, Channel, NS_CLIENT, NS_HINTS};

/// The database file inside a state directory.
pub const DATABASE_FILE: &str = "atm.sqlite";

/// How long a signed prekey is used before [`Endpoint::maintain`] replaces it.
pub const SIGNED_PREKEY_PERIOD: chrono::TimeDelta = chrono::TimeDelta::weeks(1);

/// How long deduplication keys are kept ([`Endpoint::maintain`]).
pub const PROCESSED_RETENTION: chrono::TimeDelta = chrono::TimeDelta::days(30);

const SETTING_ARCHIVE: &str = "archive_position";
const SETTING_NO_MAX_ITEMS: &str = "pubsub_max_items_refused";

/// Where [`Endpoint::set_crash_point`] stops processing a stanza, as if the
/// process died there (test hook).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After OMEMO decrypted and stored the session advance (in the unit).
    AfterDecrypt,
    /// After the engine committed its changes (in the unit).
    AfterEngine,
    /// After everything was written, before the unit's commit.
    BeforeCommit,
    /// Not a crash: the unit fails after the engine (as a full disk would)
    /// and is rolled back; the error is returned and the endpoint goes on.
    StoreFailure,
}

/// Options of [`Endpoint::open_with`].
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How hard commits wait for the disk.
    pub durability: Durability,
    /// Which trust messages are sent.
    pub propagation: Propagation,
    /// When a device that appears in a device list is learned.
    pub device_learning: DeviceLearning,
    /// Keep a log of the trust messages sent and received, for
    /// [`Endpoint::take_traffic`] (a scenario runner's counters and
    /// settling; off for real use).
    pub record_traffic: bool,
}

/// When a device that appears in a device list becomes a key the engine
/// knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceLearning {
    /// At once: its bundle is fetched as soon as the device list names it
    /// (what a real client does).
    #[default]
    Automatic,
    /// Only when asked by [`Endpoint::learn_device`]: device lists are
    /// stored, bundles of new devices are not fetched, bundle
    /// notifications update only devices learned before. For the scenario
    /// runner, whose `fetch` step decides when a key becomes known.
    OnRequest,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Full,
            propagation: Propagation::Complete,
            device_learning: DeviceLearning::Automatic,
            record_traffic: false,
        }
    }
}

/// A stanza to send. Stanzas with an [`OutboxId`] are stored: report them
/// with [`Endpoint::sent`] once the server has them (they are handed out
/// again after a restart until then).
#[derive(Debug, Clone)]
pub struct Transmit {
    /// The outbox entry, for stored stanzas (trust and chat messages).
    pub outbox: Option<OutboxId>,
    /// The stanza.
    pub stanza: Element,
}

/// An entry of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxId(pub i64);

/// How often one publication is tried before it is reported failed: a server
/// may refuse one while the same account's other devices create the node
/// (seen on ejabberd 23.01), and publishing is idempotent.
const PUBLISH_ATTEMPTS: u8 = 3;

#[derive(Debug, Clone)]
enum Request {
    Publish {
        node: &'static str,
        item: String,
        payload: Element,
        max_items: bool,
        /// Publications tried before this one (a refused one is tried
        /// again, up to [`PUBLISH_ATTEMPTS`] in all).
        attempt: u8,
    },
    DeviceList(BareJid),
    Bundle(BareJid, u32),
    Archive(String),
    Carbons,
}

/// The sans-IO endpoint core of one OMEMO device: see the crate docs for the
/// call order.
pub struct Endpoint {
    directory: PathBuf,
    pub(crate) jid: BareJid,
    pub(crate) device_id: u32,
    pub(crate) own_key: KeyId,
    pub(crate) store: EndpointStore,
    config: Config,
    pub(crate) rng: Box<dyn SecureRandom>,
    tag: u32,
    counter: u64,
    requests: HashMap<String, Request>,
    /// Archive queries with a result that failed (see `handle_iq`).
    failed_queries: HashSet<String>,
    transmit: VecDeque<Element>,
    outbox_polled: i64,
    pub(crate) events: VecDeque<Event>,
    crash_point: Option<CrashPoint>,
    pub(crate) device_learning: DeviceLearning,
    /// `Some` with [`Options::record_traffic`]: the committed log.
    pub(crate) traffic: Option<Vec<Traffic>>,
    /// What the open unit of work logged (moved to `traffic` at its commit).
    pub(crate) traffic_unit: Vec<Traffic>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("directory", &self.directory)
            .field("jid", &self.jid)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

fn random_u32(rng: &mut dyn SecureRandom) -> Result<u32, CoreError> {
    let mut bytes = [0u8; 4];
    rng.try_fill(&mut bytes)
        .map_err(|e| CoreError::Omemo(e.to_string()))?;
    Ok(u32::from_le_bytes(bytes))
}

impl Endpoint {
    /// Opens the state directory of `jid`'s device (creating the directory,
    /// the database, the device id and the OMEMO account on first use).
    ///
    /// # Errors
    /// [`OpenError`]: the directory, a database of a newer format (left
    /// untouched), a directory of another account.
    pub fn open(
        directory: impl AsRef<Path>,
        jid: &BareJid,
        now: DateTime<Utc>,
        rng: Box<dyn SecureRandom>,
    ) -> Result<Self, OpenError> {
        Self::open_with(directory, jid, now, rng, Options::default())
    }

    /// [`Endpoint::open`] with options.
    ///
    /// # Errors
    /// See [`Endpoint::open`].
    pub fn open_with(
        directory: impl AsRef<Path>,
        jid: &BareJid,
        now: DateTime<Utc>,
        mut rng: Box<dyn SecureRandom>,
        options: Options,
    ) -> Result<Self, OpenError> {
        let directory = directory.as_ref().to_path_buf();
        std::fs::create_dir_all(&directory).map_err(|source| OpenError::Directory {
            path: directory.clone(),
            source,
        })?;
        let mut store = EndpointStore::open(
            directory.join(DATABASE_FILE),
            jid,
            NS_OMEMO2,
            options.durability,
        )?;
        let device_id = match store.own_device()? {
            Some((stored, _)) if stored != *jid => {
                return Err(OpenError::OtherAccount {
                    path: directory,
                    found: stored.to_string(),
                    requested: jid.to_string(),
                })
            }
            Some((_, id)) => id,
            None => {
                store.begin()?;
                let created = (|| {
                    let id = (random_u32(rng.as_mut())? & 0x7fff_ffff).max(1);
                    store.set_own_device(jid, id)?;
                    crypto::ensure_account(&mut store, jid, id, now, rng.as_mut())?;
                    Ok::<u32, CoreError>(id)
                })();
                match created {
                    Ok(id) => {
                        store.commit()?;
                        id
                    }
                    Err(error) => {
                        store.rollback()?;
                        return Err(error.into());
                    }
                }
            }
        };
        let identity = crypto::ensure_account(&mut store, jid, device_id, now, rng.as_mut())?;
        let own_key = KeyId::from_bytes(identity.to_vec())
            .map_err(|e| CoreError::Omemo(format!("own identity key: {e}")))?;
        let mut config = Config::new(jid.clone(), own_key.clone());
        config.propagation = options.propagation;
        let tag = random_u32(rng.as_mut())?;
        Ok(Endpoint {
            directory,
            jid: jid.clone(),
            device_id,
            own_key,
            store,
            config,
            rng,
            tag,
            counter: 0,
            requests: HashMap::new(),
            failed_queries: HashSet::new(),
            transmit: VecDeque::new(),
            outbox_polled: 0,
            events: VecDeque::new(),
            crash_point: None,
            device_learning: options.device_learning,
            traffic: options.record_traffic.then(Vec::new),
            traffic_unit: Vec::new(),
        })
    }

    /// The account.
    pub fn jid(&self) -> &BareJid {
        &self.jid
    }

    /// The OMEMO device id.
    pub fn device_id(&self) -> u32 {
        self.device_id
    }

    /// This device's key (its identity key): what others authenticate.
    pub fn own_key(&self) -> &KeyId {
        &self.own_key
    }

    /// How many requests of this core (device lists, bundles, archive
    /// queries, publications) still wait for the server's answer: a driver
    /// that leaves soon after (a one-shot command) waits for zero first.
    pub fn awaiting_responses(&self) -> usize {
        self.requests.len()
    }

    /// The state directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Test hook: stop the next stanza processing at `point`, leaving its
    /// unit of work open, as a process killed there would. Drop the endpoint
    /// afterwards (the open unit is discarded, as by a crash).
    #[doc(hidden)]
    pub fn set_crash_point(&mut self, point: Option<CrashPoint>) {
        self.crash_point = point;
    }

    pub(crate) fn crash(&mut self, point: CrashPoint) -> Result<(), CoreError> {
        if self.crash_point == Some(point) {
            self.crash_point = None;
            return Err(CoreError::Crashed(point));
        }
        Ok(())
    }

    pub(crate) fn next_id(&mut self, what: &str) -> String {
        self.counter += 1;
        format!("atm-{what}-{:08x}-{}", self.tag, self.counter)
    }

    fn request(&mut self, to: Option<&BareJid>, kind: &str, child: Element, request: Request) {
        let id = self.next_id("iq");
        self.transmit.push_back(stanza::iq(kind, &id, to, child));
        self.requests.insert(id, request);
    }

    fn max_items(&self) -> Result<bool, CoreError> {
        Ok(self.store.setting(SETTING_NO_MAX_ITEMS)?.is_none())
    }

    fn publish(
        &mut self,
        node: &'static str,
        item: String,
        payload: Element,
    ) -> Result<(), CoreError> {
        self.publish_attempt(node, item, payload, 0)
    }

    /// Publishes (again, after `attempt` refusals).
    pub(crate) fn publish_attempt(
        &mut self,
        node: &'static str,
        item: String,
        payload: Element,
        attempt: u8,
    ) -> Result<(), CoreError> {
        let max_items = self.max_items()?;
        self.request(
            None,
            "set",
            stanza::publish(node, &item, payload.clone(), max_items),
            Request::Publish {
                node,
                item,
                payload,
                max_items,
                attempt,
            },
        );
        Ok(())
    }

    fn publish_bundle(&mut self) -> Result<(), CoreError> {
        let (bundle, _) = crypto::own_bundle(&mut self.store)?;
        self.publish(NS_BUNDLES, self.device_id.to_string(), bundle)
    }

    fn fetch_device_list(&mut self, jid: &BareJid) {
        self.request(
            Some(jid),
            "get",
            stanza::items_query(NS_DEVICES, None),
            Request::DeviceList(jid.clone()),
        );
    }

    pub(crate) fn fetch_device_list_now(&mut self, jid: &BareJid) {
        self.fetch_device_list(jid);
    }

    /// Asks for a bundle, unless a request for it is already waiting for
    /// its answer (a device list that arrives again before the bundle —
    /// each new device of an account republishes the list — would
    /// otherwise fetch the same bundle once per copy).
    fn fetch_bundle(&mut self, jid: &BareJid, device_id: u32) {
        let waiting = self.requests.values().any(|request| {
            matches!(request, Request::Bundle(owner, id) if owner == jid && *id == device_id)
        });
        if waiting {
            return;
        }
        self.request(
            Some(jid),
            "get",
            stanza::items_query(NS_BUNDLES, Some(&device_id.to_string())),
            Request::Bundle(jid.clone(), device_id),
        );
    }

    /// The `+notify` features to advertise (XEP-0115 capabilities).
    pub const NOTIFY_FEATURES: [&'static str; 2] = [
        "urn:xmpp:omemo:2:devices+notify",
        "urn:xmpp:omemo:2:bundles+notify",
    ];

    /// Call once connected (and after every reconnect that lost the
    /// stream's state): forgets the requests sent on the earlier stream, hands
    /// out every stored stanza not reported [`Endpoint::sent`] again
    /// ([`Endpoint::poll_transmit`]), enables carbons,
    /// publishes the bundle, fetches the own and the contacts' device lists
    /// (the own one is republished with this device if it is missing).
    /// The driver sends initial presence with `urn:xmpp:omemo:2:devices+notify`
    /// and `urn:xmpp:omemo:2:bundles+notify` in its capabilities
    /// ([`Endpoint::NOTIFY_FEATURES`]): bundle notifications keep the stored
    /// bundles fresh, so that a new session never picks a used prekey.
    ///
    /// # Errors
    /// A store failure.
    pub fn start(&mut self) -> Result<(), CoreError> {
        // A new session: answers to the requests sent on an earlier stream
        // never come (a resumed stream needs no start; requests not handed
        // out yet stay), and every stored stanza
        // the server has not acknowledged is handed out again (a receiver
        // recognises a copy it already has).
        let queued: HashSet<String> = self
            .transmit
            .iter()
            .filter_map(|stanza| stanza.attr("id").map(str::to_owned))
            .collect();
        self.requests.retain(|id, _| queued.contains(id));
        self.outbox_polled = 0;
        let enable = builder("enable", stanza::NS_CARBONS).build();
        self.request(None, "set", enable, Request::Carbons);
        self.publish_bundle()?;
        let own = self.jid.clone();
        self.fetch_device_list(&own);
        for contact in self.store.contacts()? {
            self.fetch_device_list(&contact);
        }
        Ok(())
    }

    /// Periodic upkeep, e.g. daily and at start: replaces the signed prekey
    /// once it is [`SIGNED_PREKEY_PERIOD`] old and republishes the bundle
    /// (returns whether it did), and forgets deduplication keys older than
    /// [`PROCESSED_RETENTION`]. Older copies cannot be applied again anyway:
    /// the archive position has moved past them, and the ratchet refuses a
    /// message key used before.
    ///
    /// # Errors
    /// A store failure or no randomness; nothing changed then.
    pub fn maintain(&mut self, now: DateTime<Utc>) -> Result<bool, CoreError> {
        self.store.prune_processed(now - PROCESSED_RETENTION)?;
        let rotated = crypto::rotate_signed_prekey(
            &mut self.store,
            self.rng.as_mut(),
            now,
            SIGNED_PREKEY_PERIOD,
        )?;
        if rotated {
            self.publish_bundle()?;
        }
        Ok(rotated)
    }

    /// Asks the archive (MAM) for everything after the stored position;
    /// pages follow by themselves.
    ///
    /// # Errors
    /// A store failure.
    pub fn catch_up(&mut self) -> Result<(), CoreError> {
        let after = self.store.setting(SETTING_ARCHIVE)?;
        let query_id = self.next_id("mam");
        self.request(
            None,
            "set",
            stanza::mam_query(&query_id, after.as_deref()),
            Request::Archive(query_id),
        );
        Ok(())
    }

    /// The archive position: the id of the last archived stanza processed.
    ///
    /// # Errors
    /// A store failure.
    pub fn archive_position(&self) -> Result<Option<String>, CoreError> {
        Ok(self.store.setting(SETTING_ARCHIVE)?)
    }

    /// The next stanza to send.
    ///
    /// # Errors
    /// A store failure.
    pub fn poll_transmit(&mut self) -> Result<Option<Transmit>, CoreError> {
        if let Some(stanza) = self.transmit.pop_front() {
            return Ok(Some(Transmit {
                outbox: None,
                stanza,
            }));
        }
        let Some((id, text)) = self
            .store
            .outbox_after(self.outbox_polled)?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        self.outbox_polled = id;
        let stanza = text
            .parse::<Element>()
            .map_err(|e| CoreError::Omemo(format!("outbox entry {id}: {e}")))?;
        Ok(Some(Transmit {
            outbox: Some(OutboxId(id)),
            stanza,
        }))
    }

    /// Reports a stored stanza as accepted by the server.
    ///
    /// # Errors
    /// A store failure.
    pub fn sent(&mut self, id: OutboxId) -> Result<(), CoreError> {
        Ok(self.store.remove_outbox(id.0)?)
    }

    /// Asks for the bundle of `jid`'s device `device_id`: once it arrives
    /// and verifies, its key is learned (at the policy's level). The way to
    /// learn a device under [`DeviceLearning::OnRequest`]; harmless under
    /// [`DeviceLearning::Automatic`].
    pub fn learn_device(&mut self, jid: &BareJid, device_id: u32) {
        self.fetch_bundle(jid, device_id);
    }

    /// How many of the core's requests (PEP, archive, carbons) still wait
    /// for the server's answer.
    pub fn pending_requests(&self) -> usize {
        self.requests.len()
    }

    /// The trust messages sent and received since the last call, in order
    /// (empty unless [`Options::record_traffic`]).
    pub fn take_traffic(&mut self) -> Vec<Traffic> {
        self.traffic
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Hands in one received stanza (`<message>` live, from offline storage,
    /// as a carbon or as an archive result; `<iq>` responses). `now` is the
    /// receipt time.
    ///
    /// # Errors
    /// [`CoreError`] when the core failed; the stanza had no effect then and
    /// may be handed in again. A refused stanza is not an error:
    /// [`Handled::Rejected`].
    pub fn handle_stanza(
        &mut self,
        stanza: &Element,
        now: DateTime<Utc>,
    ) -> Result<Handled, CoreError> {
        if stanza.ns() != NS_CLIENT {
            return Ok(Handled::Ignored);
        }
        match stanza.name() {
            "message" => {
                let outcome = self.handle_message(stanza, now);
                if outcome.is_err() {
                    let query = stanza
                        .get_child("result", stanza::NS_MAM)
                        .and_then(|r| r.attr("queryid"));
                    if let Some(query) = query {
                        self.failed_queries.insert(query.to_owned());
                    }
                }
                outcome
            }
            "iq" => self.handle_iq(stanza, now),
            _ => Ok(Handled::Ignored),
        }
    }

    fn reject(&mut self, channel: Channel, rejection: Rejection) -> Result<Handled, CoreError> {
        self.events.push_back(Event::Rejected {
            channel,
            rejection: rejection.clone(),
        });
        Ok(Handled::Rejected(rejection))
    }

    /// Records a stanza as processed (and the archive position) in its own unit.
    fn record(
        &mut self,
        keys: &[String],
        archive_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), CoreError> {
        self.store.begin()?;
        let written = self
            .store
            .mark_processed(keys, now)
            .and_then(|()| match archive_id {
                Some(id) => self.store.set_setting(SETTING_ARCHIVE, id),
                None => Ok(()),
            });
        match written {
            Ok(()) => Ok(self.store.commit()?),
            Err(error) => {
                self.store.rollback()?;
                Err(error.into())
            }
        }
    }

    /// Runs `work` in one unit of work: committed if it succeeds, rolled back
    /// otherwise (except at a crash point, which leaves it open as a crash).
    pub(crate) fn unit<T>(
        &mut self,
        work: impl FnOnce(&mut Self) -> Result<T, Abort>,
    ) -> Result<T, Abort> {
        self.store.begin().map_err(CoreError::from)?;
        self.traffic_unit.clear();
        match work(self) {
            Ok(value) => {
                self.crash(CrashPoint::BeforeCommit)?;
                self.store.commit().map_err(CoreError::from)?;
                let logged = std::mem::take(&mut self.traffic_unit);
                if let Some(traffic) = self.traffic.as_mut() {
                    traffic.extend(logged);
                }
                Ok(value)
            }
            Err(Abort::Core(CoreError::Crashed(point))) if point != CrashPoint::StoreFailure => {
                Err(Abort::Core(CoreError::Crashed(point)))
            }
            Err(error) => {
                self.store.rollback().map_err(CoreError::from)?;
                Err(error)
            }
        }
    }

    pub(crate) fn engine(&mut self) -> Engine<atm_store::TrustView<'_>> {
        Engine::new(self.config.clone(), self.store.trust())
    }

    pub(crate) fn engine_input(
        &mut self,
        input: Input,
        now: DateTime<Utc>,
    ) -> Result<Vec<Effect>, CoreError> {
        Ok(self.engine().handle(input, now)?)
    }

    /// Performs the engine's effects inside the current unit: trust messages
    /// are encrypted and stored in the outbox, the rest becomes events.
    pub(crate) fn apply_effects(
        &mut self,
        effects: Vec<Effect>,
        now: DateTime<Utc>,
        events: &mut Vec<Event>,
    ) -> Result<(), CoreError> {
        for effect in effects {
            match effect {
                Effect::TrustChanged {
                    key,
                    from,
                    to,
                    cause,
                } => events.push(Event::TrustChanged {
                    key,
                    from,
                    to,
                    cause,
                }),
                Effect::Send(outgoing) => {
                    let mut content = vec![Element::from(&outgoing.message)];
                    content.extend(outgoing.decision_times.to_element(now));
                    let (_, sent) = self.send_encrypted_logged(
                        &outgoing.to,
                        &outgoing.recipients,
                        content,
                        now,
                        events,
                    )?;
                    if let (Some((id, recipients)), true) = (sent, self.traffic.is_some()) {
                        self.traffic_unit.push(Traffic::Sent {
                            id,
                            to: outgoing.to.clone(),
                            recipients,
                            time: now,
                            xml: outgoing.message.to_xml(),
                        });
                    }
                }
                Effect::Postponed { sender, decision } => events.push(Event::DecisionPostponed {
                    sender,
                    target: decision.target,
                }),
                Effect::Ignored(reason) => events.push(Event::TrustMessageIgnored { reason }),
                Effect::Pending { .. }
                | Effect::PostponedDropped { .. }
                | Effect::PendingDropped { .. }
                | Effect::PostponedEvicted { .. }
                | Effect::ConfirmationRequested(_)
                | Effect::ConfirmationDeclined(_)
                | Effect::PolicyChanged(_) => {}
            }
        }
        Ok(())
    }

    /// Encrypts `content` for exactly the devices of `keys` and stores the
    /// `<message type='chat'>` to `to` in the outbox. Returns how many
    /// devices it was encrypted for.
    pub(crate) fn send_encrypted(
        &mut self,
        to: &BareJid,
        keys: &[KeyRef],
        content: Vec<Element>,
        now: DateTime<Utc>,
        events: &mut Vec<Event>,
    ) -> Result<usize, CoreError> {
        Ok(self
            .send_encrypted_logged(to, keys, content, now, events)?
            .0)
    }

    /// [`Endpoint::send_encrypted`], also returning the stanza's id and the
    /// keys it was encrypted for (`None` if it was not sent: no device).
    #[allow(clippy::type_complexity)]
    fn send_encrypted_logged(
        &mut self,
        to: &BareJid,
        keys: &[KeyRef],
        content: Vec<Element>,
        now: DateTime<Utc>,
        events: &mut Vec<Event>,
    ) -> Result<(usize, Option<(String, Vec<KeyRef>)>), CoreError> {
        let mut targets = Vec::new();
        let mut reached = Vec::new();
        for key in keys {
            match self
                .store
                .device_with_identity(&key.owner, key.key.as_bytes())?
            {
                Some(device) => match device.bundle {
                    Some(bundle) => {
                        reached.push(key.clone());
                        targets.push(Target {
                            jid: device.jid,
                            device_id: device.device_id,
                            bundle,
                        });
                    }
                    None => events.push(Event::RecipientUnknown { key: key.clone() }),
                },
                None => events.push(Event::RecipientUnknown { key: key.clone() }),
            }
        }
        if targets.is_empty() {
            return Ok((0, None));
        }
        let encrypted = crypto::encrypt(
            &mut self.store,
            self.rng.as_mut(),
            &self.jid,
            self.device_id,
            content,
            now,
            to,
            &targets,
        )?;
        let id = self.next_id("msg");
        let mut message = builder("message", NS_CLIENT)
            .attr(nc("type"), "chat")
            .attr(nc("to"), to.as_str())
            .attr(nc("id"), id.clone())
            .append(encrypted)
            .append(builder("store", NS_HINTS).build());
        if no_carbons_needed(&self.jid, to, &targets) {
            message = message
                .append(builder("private", stanza::NS_CARBONS).build())
                .append(builder("no-copy", NS_HINTS).build());
        }
        let message = message.build();
        self.store.push_outbox(&String::from(&message))?;
        Ok((targets.len(), Some((id, reached))))
    }
}

impl Endpoint {
    /// Stores an empty OMEMO message to one device of `to` in the outbox
    /// (`<store/>` hint, like every OMEMO message of ours; `<private/>` and
    /// `<no-copy/>` (XEP-0280 §Avoiding Carbons): it is for that one device,
    /// so no carbon copies, which the own account's other devices could
    /// only fail to decrypt).
    pub(crate) fn send_empty(
        &mut self,
        to: &BareJid,
        device_id: u32,
        now: DateTime<Utc>,
    ) -> Result<(), CoreError> {
        let encrypted = crypto::encrypt_empty(
            &mut self.store,
            self.rng.as_mut(),
            &self.jid,
            self.device_id,
            now,
            atm_omemo::crypto::DeviceAddress {
                jid: to.clone(),
                device_id,
            },
        )?;
        let id = self.next_id("msg");
        let message = builder("message", NS_CLIENT)
            .attr(nc("type"), "chat")
            .attr(nc("to"), to.as_str())
            .attr(nc("id"), id)
            .append(encrypted)
            .append(builder("store", NS_HINTS).build())
            .append(builder("private", stanza::NS_CARBONS).build())
            .append(builder("no-copy", NS_HINTS).build())
            .build();
        self.store.push_outbox(&String::from(&message))?;
        Ok(())
    }
}

/// Whether a message from `own` to `to`, encrypted for `targets`, may go
/// without carbon copies (XEP-0280 `<private/>` with the XEP-0334
/// `<no-copy/>` hint), which would only reach devices that either get it
/// anyway or cannot decrypt it:
///
/// - to the own bare JID: the server delivers it to every online own
///   resource (of the highest presence priority: our driver always uses
///   the default 0), the sender included; a sent carbon would be a second
///   copy of it (Prosody also sends it without `to`);
/// - to a contact, encrypted for none of the own devices: the own devices
///   have no key material in it.
///
/// A message to a contact that is also encrypted for own devices keeps its
/// carbons: that is how those devices get it live. In every case the
/// archive (MAM; `<store/>` is kept, and neither hint keeps a server from
/// archiving) still holds the message, and offline storage still takes it
/// when no resource of the recipient is online: an own device that is
/// offline catches up from there as before.
fn no_carbons_needed(own: &BareJid, to: &BareJid, targets: &[Target]) -> bool {
    to == own || targets.iter().all(|t| t.jid != *own)
}

/// Why a unit of work stopped.
#[derive(Debug)]
pub(crate) enum Abort {
    /// The stanza was refused.
    Refused(Rejection),
    /// The message was decrypted before (the ratchet refused it).
    Replay,
    /// The core failed.
    Core(CoreError),
}

impl Abort {
    fn into_result(self) -> Result<Rejection, CoreError> {
        match self {
            Abort::Refused(rejection) => Ok(rejection),
            Abort::Replay => Err(CoreError::Omemo(
                "unexpected replay outside message processing".into(),
            )),
            Abort::Core(error) => Err(error),
        }
    }
}

impl From<CoreError> for Abort {
    fn from(error: CoreError) -> Self {
        Abort::Core(error)
    }
}

impl From<atm_store::StoreError> for Abort {
    fn from(error: atm_store::StoreError) -> Self {
        Abort::Core(error.into())
    }
}

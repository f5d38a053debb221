//! The network driver of the ATM endpoint: the sans-IO [`atm_client`] core
//! on a tokio-xmpp 6 [`StanzaStream`].
//!
//! A separate crate rather than a feature of `atm-client`, so that a client
//! that embeds the core with its own XMPP stack never compiles tokio,
//! rustls or tokio-xmpp (a cargo feature is additive across a build graph
//! and would leak in as soon as any crate of the graph turns it on).
//!
//! # What it does
//!
//! [`Driver::connect`] logs in once with the given [`ServerConnector`]
//! (STARTTLS with certificate verification is the connector's job:
//! [`system_roots_connector`] for public servers, [`PemRootsConnector`] for a
//! private server's own CA, which tests use through the harness's
//! `TestCaConnector`;
//! [`PlaintextLoopbackConnector`] is for an explicit request only and
//! refuses any address but loopback), bounded
//! by [`Settings::login_timeout`], and reports why a login failed
//! ([`LoginError`]): tokio-xmpp itself would retry forever. Then it opens a
//! [`StanzaStream`] bound to the resource `atm-DEVICEID` (unique per device),
//! requires stream management (XEP-0198), and brings the device online:
//! initial presence with XEP-0115 capabilities that advertise
//! [`Endpoint::NOTIFY_FEATURES`] (answering the server's disco#info query for
//! them), [`Endpoint::start`] (carbons, bundle, device lists),
//! [`Endpoint::catch_up`], [`Endpoint::maintain`]. After a reconnect that lost
//! the stream's state (tokio-xmpp reports only a `Reset`) it does all that
//! again; a resumed stream needs nothing.
//!
//! [`Driver::step`] waits (bounded) for what the server sends, hands every
//! stanza to [`Endpoint::handle_stanza`] with its receipt time, answers
//! disco#info queries (and refuses other requests with
//! `service-unavailable`), sends everything [`Endpoint::poll_transmit`]
//! gives, and reports a stored stanza with [`Endpoint::sent`] only once the
//! server acknowledged it by stream management: a stanza the stream failed
//! or dropped is sent again (up to [`MAX_RESENDS`] times; after that it
//! stays in the outbox and goes out at the next start of the core). Every
//! [`Settings::maintain_every`] it runs [`Endpoint::maintain`].
//!
//! Why [`StanzaStream`] and not tokio-xmpp's `Client`: `Client` can lose an
//! incoming stanza that arrives while it sends (see the harness's
//! `client_tls::connect`). Offline and archived stanzas may arrive before
//! the stream reports that it is bound; they are kept and handed to the
//! core afterwards, in order.
//!
//! # Call order
//!
//! 1. [`Driver::connect`] with an opened [`Endpoint`].
//! 2. Loop: [`Driver::step`]; show every [`Driver::poll_event`].
//! 3. For a user command: call it on [`Driver::core`], then
//!    [`Driver::flush`] (and [`Driver::wait_acknowledged`] for a one-shot
//!    command that leaves right after).
//! 4. [`Driver::close`] gives the core back.
//!
//! [`Driver::run_until`] is steps 2 and 3's loop for `atm run`.
//!
//! The driver is not `Send` (the core holds a `Box<dyn SecureRandom>`):
//! run it in one task, on a current-thread runtime or a `LocalSet`, and
//! talk to it through channels.

mod plaintext;
mod tls;

pub use plaintext::{PlaintextError, PlaintextLoopbackConnector};
pub use tls::{CaError, PemRootsConnector, Target, TlsConnectError, TlsStream};

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::time::{Duration, Instant};

use atm_client::{CommandError, CoreError, Endpoint, Event, Handled, OutboxId, Transmit};
use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use tokio_xmpp::connect::{DnsConfig, ServerConnector, StartTlsServerConnector};
use tokio_xmpp::parsers::caps::{compute_disco, hash_caps, Caps};
use tokio_xmpp::parsers::disco::{DiscoInfoResult, Identity};
use tokio_xmpp::parsers::hashes::Algo;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::parsers::minidom::Element;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::stanzastream::{
    Event as StreamEvent, StanzaStage, StanzaState, StanzaStream, StanzaToken,
    StreamEvent as Status,
};
use tokio_xmpp::xmlstream::{FallibleStreamElement, Timeouts};
use tokio_xmpp::Stanza;

/// How often a stored stanza the stream failed or dropped is sent again
/// before it is left in the outbox for the next start.
pub const MAX_RESENDS: u32 = 3;

/// The XEP-0115 node of this client.
pub const CAPS_NODE: &str = "https://atm-rs.invalid/atm";

/// Time limits of a [`Driver`].
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The whole login (TCP, STARTTLS, TLS, SASL, binding).
    pub login_timeout: Duration,
    /// Handing a stanza to the stream's queue.
    pub send_timeout: Duration,
    /// Closing the stream.
    pub close_timeout: Duration,
    /// How often [`Endpoint::maintain`] runs.
    pub maintain_every: Duration,
    /// Silence after which tokio-xmpp probes the connection (and the time
    /// it gives the server to answer), see [`Timeouts`].
    pub read_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            login_timeout: Duration::from_secs(20),
            send_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            maintain_every: Duration::from_secs(6 * 3600),
            read_timeout: Duration::from_secs(120),
        }
    }
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The server refused the credentials (SASL failure).
    #[error("login as {jid} refused (wrong password or unknown account): {reason}")]
    Refused {
        /// The account.
        jid: BareJid,
        /// tokio-xmpp's account of the SASL failure.
        reason: String,
    },
    /// The server offers no SASL mechanism the client can use on this
    /// connection (for example none at all without TLS).
    #[error(
        "{jid}'s server offers no usable SASL mechanism on this connection (does it require TLS?)"
    )]
    NoMechanism {
        /// The account.
        jid: BareJid,
    },
    /// The server could not be reached or its certificate was not accepted
    /// (unknown host, connection refused, TLS verification, no STARTTLS).
    #[error("connecting as {jid}: {reason}")]
    Connect {
        /// The account.
        jid: BareJid,
        /// The connector's error (it names the address and the TLS failure).
        reason: String,
    },
    /// The login did not finish in time.
    #[error("login as {jid} timed out after {after:?}")]
    TimedOut {
        /// The account.
        jid: BareJid,
        /// [`Settings::login_timeout`].
        after: Duration,
    },
    /// The server does not offer stream management (XEP-0198), without
    /// which the driver cannot know that the server has a stanza.
    #[error("{jid}'s server does not offer stream management (XEP-0198)")]
    NoStreamManagement {
        /// The account.
        jid: BareJid,
    },
    /// Another protocol failure during the login.
    #[error("login as {jid}: {source}")]
    Xmpp {
        /// The account.
        jid: BareJid,
        /// tokio-xmpp's error.
        #[source]
        source: tokio_xmpp::Error,
    },
    /// The stream ended during the login.
    #[error("login as {jid}: the stream closed")]
    Closed {
        /// The account.
        jid: BareJid,
    },
    /// The device's resource does not make a valid JID.
    #[error("resource for {jid}: {source}")]
    Resource {
        /// The account.
        jid: BareJid,
        /// The parser's error.
        #[source]
        source: tokio_xmpp::jid::Error,
    },
}

/// Why the driver stopped.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// Logging in failed.
    #[error(transparent)]
    Login(#[from] LoginError),
    /// The core failed (the store); the stanza had no effect.
    #[error("endpoint core: {0}")]
    Core(#[from] CoreError),
    /// A command of the core failed.
    #[error("command: {0}")]
    Command(#[from] CommandError),
    /// The stream ended (closed by the server for good).
    #[error("the XMPP stream closed")]
    Closed,
    /// The stream's queue did not take a stanza in time.
    #[error("the XMPP stream did not take a stanza within {after:?}")]
    SendTimedOut {
        /// [`Settings::send_timeout`].
        after: Duration,
    },
    /// The core produced a stanza tokio-xmpp cannot represent (a bug).
    #[error("the core produced a stanza tokio-xmpp refuses: {reason}")]
    Unsendable {
        /// The parser's complaint.
        reason: String,
    },
    /// Stored stanzas were not acknowledged by the server in time.
    #[error("{count} stanza(s) not acknowledged by the server within {after:?}")]
    NotAcknowledged {
        /// How many.
        count: usize,
        /// The limit.
        after: Duration,
    },
}

/// A test hook called before a stanza goes to the core
/// ([`Driver::set_before_stanza`]): the stanza's number and the stanza.
pub type StanzaHook = Box<dyn FnMut(u64, &Element)>;

/// Where [`Driver::set_event_sink`] sends events as they happen.
pub type EventSink = Box<dyn FnMut(Event)>;

/// What the core did with the `<message>` stanzas this driver handed it
/// (live, carbons, offline and archived copies alike), for measurements:
/// [`Driver::tally`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Decrypted and processed as a trust message (a copy seen for the
    /// first time).
    pub trust_messages: u64,
    /// Of those, the ones that changed at least one trust level.
    pub changed_trust: u64,
    /// Decrypted chat messages.
    pub chats: u64,
    /// Copies processed before (same stanza id or content).
    pub duplicates: u64,
    /// OMEMO messages without key material for this device.
    pub not_for_this_device: u64,
    /// Refused messages.
    pub rejected: u64,
    /// Every other message: PEP notifications (device lists, bundles),
    /// unencrypted messages.
    pub other: u64,
}

struct Unacked {
    outbox: OutboxId,
    stanza: Element,
    token: StanzaToken,
    resends: u32,
}

/// An observer of every stanza the driver hands to the core
/// ([`Driver::set_tap`]).
pub trait Tap {
    /// Just before the core processes `stanza` with the receipt time `now`
    /// (the core's store holds everything processed so far, committed).
    fn before(&mut self, core: &Endpoint, stanza: &Element, now: DateTime<Utc>);
    /// Just after: what the core did with it (`None`: the core failed) and
    /// the events it reported for it.
    fn after(
        &mut self,
        core: &Endpoint,
        stanza: &Element,
        handled: Option<&Handled>,
        events: &[Event],
    );
    /// A stanza of the core is handed to the stream for the first time
    /// (resends of unacknowledged stored stanzas are not tapped again).
    fn sending(&mut self, core: &Endpoint, transmit: &Transmit) {
        let _ = (core, transmit);
    }
}

/// One device online: the core, the stream, and what is in flight.
pub struct Driver {
    core: Endpoint,
    stream: StanzaStream,
    bound: FullJid,
    disco: DiscoInfoResult,
    caps: Caps,
    unacked: Vec<Unacked>,
    early: VecDeque<Stanza>,
    seen_resources: HashSet<Jid>,
    resets: u32,
    events: VecDeque<Event>,
    settings: Settings,
    last_maintain: Instant,
    /// `Some` while holding (see [`Driver::connect_holding`]).
    held: Option<Vec<Stanza>>,
    tap: Option<Box<dyn Tap>>,
    handed: u64,
    before_stanza: Option<StanzaHook>,
    event_sink: Option<EventSink>,

    tally: Tally,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("bound", &self.bound)
            .field("unacked", &self.unacked.len())
            .finish_non_exhaustive()
    }
}

/// The disco#info this client answers, with the `+notify` features.
fn disco_info() -> DiscoInfoResult {
    let mut features: BTreeSet<String> = [
        ns::DISCO_INFO,
        ns::CAPS,
        atm_client::ns::NS_OMEMO,
        atm_client::ns::NS_CARBONS,
    ]
    .iter()
    .map(|f| (*f).to_owned())
    .collect();
    features.extend(Endpoint::NOTIFY_FEATURES.iter().map(|f| (*f).to_owned()));
    DiscoInfoResult {
        node: None,
        identities: vec![Identity::new("client", "pc", "en", "atm")],
        features,
        extensions: Vec::new(),
    }
}

fn classify(jid: &BareJid, error: tokio_xmpp::Error) -> LoginError {
    match error {
        tokio_xmpp::Error::Auth(tokio_xmpp::error::AuthError::NoMechanism) => {
            LoginError::NoMechanism { jid: jid.clone() }
        }
        tokio_xmpp::Error::Auth(reason) => LoginError::Refused {
            jid: jid.clone(),
            reason: reason.to_string(),
        },
        tokio_xmpp::Error::Connection(reason) => LoginError::Connect {
            jid: jid.clone(),
            reason: reason.to_string(),
        },
        error @ (tokio_xmpp::Error::DnsProto(_)
        | tokio_xmpp::Error::DnsNet(_)
        | tokio_xmpp::Error::Idna
        | tokio_xmpp::Error::Io(_)) => LoginError::Connect {
            jid: jid.clone(),
            reason: error.to_string(),
        },
        source => LoginError::Xmpp {
            jid: jid.clone(),
            source,
        },
    }
}

/// Connects, negotiates TLS and authenticates once, then closes, within
/// `limit`: a wrong password, an unreachable server or a refused
/// certificate become a [`LoginError`] (tokio-xmpp's stream would retry
/// forever instead).
///
/// # Errors
/// [`LoginError`].
pub async fn check_login<C: ServerConnector>(
    connector: &C,
    jid: &BareJid,
    password: &str,
    limit: Duration,
) -> Result<(), LoginError> {
    let attempt = async {
        let (pending, channel_binding) = connector
            .connect(
                &Jid::from(jid.clone()),
                ns::JABBER_CLIENT,
                timeouts(limit, limit),
            )
            .await
            .map_err(|e| classify(jid, e))?;
        let (features, stream) = pending
            .recv_features::<FallibleStreamElement>()
            .await
            .map_err(|e| classify(jid, e.into()))?;
        let username = jid
            .node()
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default();
        let credentials = sasl::common::Credentials::default()
            .with_username(username)
            .with_password(password.to_owned())
            .with_channel_binding(channel_binding);
        let stream = tokio_xmpp::client_login(stream, features.sasl_mechanisms, credentials)
            .await
            .map_err(|e| classify(jid, e))?;
        drop(stream);
        Ok(())
    };
    tokio::time::timeout(limit, attempt)
        .await
        .map_err(|_| LoginError::TimedOut {
            jid: jid.clone(),
            after: limit,
        })?
}

/// A STARTTLS connector that verifies the server's certificate against the
/// system's trusted roots (tokio-xmpp's own connector, built with
/// `rustls-native-certs`), for real accounts. `server` is `HOST:PORT` (an
/// IP address and port connect without DNS); without it the domain's
/// `_xmpp-client._tcp` SRV record is used, falling back to port 5222.
pub fn system_roots_connector(domain: &str, server: Option<&str>) -> StartTlsServerConnector {
    let dns = match server {
        Some(text) if text.parse::<std::net::SocketAddr>().is_ok() => DnsConfig::addr(text),
        Some(text) => match text
            .rsplit_once(':')
            .and_then(|(host, port)| port.parse::<u16>().ok().map(|port| (host, port)))
        {
            Some((host, port)) => DnsConfig::no_srv(host, port),
            None => DnsConfig::no_srv(text, 5222),
        },
        None => DnsConfig::srv_default_client(domain),
    };
    StartTlsServerConnector::from(dns)
}

fn timeouts(read: Duration, response: Duration) -> Timeouts {
    Timeouts {
        read_timeout: read.max(Duration::from_millis(200)),
        response_timeout: response.max(Duration::from_millis(200)),
    }
}

fn to_stanza(element: Element) -> Result<Stanza, DriverError> {
    Stanza::try_from(element).map_err(|e| DriverError::Unsendable {
        reason: e.to_string(),
    })
}

impl Driver {
    /// Logs `core`'s device in through `connector` and brings it online
    /// (see the crate docs).
    ///
    /// # Errors
    /// [`DriverError::Login`] with the reason, within
    /// [`Settings::login_timeout`]; a core failure.
    pub async fn connect<C: ServerConnector>(
        core: Endpoint,
        connector: C,
        password: &str,
        settings: Settings,
    ) -> Result<Self, DriverError> {
        Self::connect_inner(core, connector, password, settings, false).await
    }

    /// [`Driver::connect`], but every `<message>` and every answer the
    /// server sends is held back, not handed to the core, until
    /// [`Driver::release_held`]: what the server kept for the device (offline
    /// storage, the archive) can then be handed over in another order (the
    /// scenario runner's `"order": "reverse"`). [`Driver::holds_archive_end`]
    /// tells when the archive's first answer is among what is held.
    ///
    /// # Errors
    /// See [`Driver::connect`].
    pub async fn connect_holding<C: ServerConnector>(
        core: Endpoint,
        connector: C,
        password: &str,
        settings: Settings,
    ) -> Result<Self, DriverError> {
        Self::connect_inner(core, connector, password, settings, true).await
    }

    async fn connect_inner<C: ServerConnector>(
        core: Endpoint,
        connector: C,
        password: &str,
        settings: Settings,
        hold: bool,
    ) -> Result<Self, DriverError> {
        let account = core.jid().clone();
        let resource = format!("atm-{}", core.device_id());
        let full = account
            .with_resource_str(&resource)
            .map_err(|source| LoginError::Resource {
                jid: account.clone(),
                source,
            })?;
        check_login(&connector, &account, password, settings.login_timeout).await?;
        let mut stream = StanzaStream::new_c2s(
            connector,
            Jid::from(full),
            password.to_owned(),
            timeouts(settings.read_timeout, settings.login_timeout),
            64,
        );
        let mut early = VecDeque::new();
        let bound = tokio::time::timeout(settings.login_timeout, async {
            loop {
                match stream.next().await {
                    Some(StreamEvent::Stream(Status::Reset {
                        bound_jid,
                        features,
                    })) => {
                        if features.stream_management.is_none() {
                            return Err(LoginError::NoStreamManagement {
                                jid: account.clone(),
                            });
                        }
                        return Ok(bound_jid);
                    }
                    Some(StreamEvent::Stanza(stanza)) => early.push_back(stanza),
                    Some(StreamEvent::Stream(_)) => {}
                    None => {
                        return Err(LoginError::Closed {
                            jid: account.clone(),
                        })
                    }
                }
            }
        })
        .await
        .map_err(|_| LoginError::TimedOut {
            jid: account.clone(),
            after: settings.login_timeout,
        })??;
        let bound = bound.try_into_full().map_err(|_| LoginError::Xmpp {
            jid: account.clone(),
            source: tokio_xmpp::Error::InvalidState,
        })?;
        let disco = disco_info();
        let hash = hash_caps(&compute_disco(&disco), Algo::Sha_1).map_err(|reason| {
            DriverError::Unsendable {
                reason: format!("capabilities hash: {reason}"),
            }
        })?;
        let mut driver = Driver {
            core,
            stream,
            bound,
            disco,
            caps: Caps::new(CAPS_NODE, hash),
            unacked: Vec::new(),
            early,
            seen_resources: HashSet::new(),
            resets: 0,
            events: VecDeque::new(),
            settings,
            last_maintain: Instant::now(),
            held: hold.then(Vec::new),
            tap: None,
            handed: 0,
            before_stanza: None,
            event_sink: None,
            tally: Tally::default(),
        };
        driver.online().await?;
        Ok(driver)
    }

    /// The full JID the server bound.
    pub fn bound_jid(&self) -> &FullJid {
        &self.bound
    }

    /// The core, for commands; call [`Driver::flush`] afterwards.
    pub fn core(&mut self) -> &mut Endpoint {
        &mut self.core
    }

    /// The next event of the core.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Follows `contact`: the core fetches its device list now and at every
    /// start ([`Endpoint::add_contact`]), and the driver asks for a mutual
    /// presence subscription (`subscribe`, and `subscribed` as a
    /// pre-approval, RFC 6121 §3.4), without which the contact's server
    /// sends no PEP notifications of its device list.
    ///
    /// # Errors
    /// A store failure; see [`Driver::flush`].
    pub async fn add_contact(&mut self, contact: &BareJid) -> Result<(), DriverError> {
        self.core.add_contact(contact)?;
        for kind in [PresenceType::Subscribe, PresenceType::Subscribed] {
            let presence = Presence::new(kind).with_to(Jid::from(contact.clone()));
            self.send(Stanza::from(presence)).await?;
        }
        self.flush().await
    }

    /// Sets (or removes) the [`Tap`] that sees every message and answer
    /// the driver hands to the core, just before the core processes it (to
    /// record what a peer sent, with the receipt time, and the state it met:
    /// the core's store is committed at that point). Presence and requests
    /// addressed to this client are answered by the driver and not tapped.
    pub fn set_tap(&mut self, tap: Option<Box<dyn Tap>>) {
        self.tap = tap;
    }

    /// How often the stream was established again with loss of state
    /// since [`Driver::connect`] (each time, presence, carbons and the
    /// core's start were redone).
    pub fn resets(&self) -> u32 {
        self.resets
    }

    /// What the core did with the messages handed to it so far.
    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// How many stored stanzas wait for the server's acknowledgement.
    pub fn unacknowledged(&self) -> usize {
        self.unacked.len()
    }

    /// Presence with capabilities, then the core's start, archive catch-up
    /// and upkeep; at login and after every reconnect that lost state.
    async fn online(&mut self) -> Result<(), DriverError> {
        self.seen_resources.clear();
        let presence = Presence::available().with_payload(self.caps.clone());
        self.send(Stanza::from(presence)).await?;
        self.core.start()?;
        self.core.catch_up()?;
        self.core.maintain(Utc::now())?;
        self.last_maintain = Instant::now();
        self.flush().await?;
        while let Some(stanza) = self.early.pop_front() {
            self.incoming(stanza).await?;
        }
        self.flush().await
    }

    async fn send(&mut self, stanza: Stanza) -> Result<StanzaToken, DriverError> {
        tokio::time::timeout(
            self.settings.send_timeout,
            self.stream.send(Box::new(stanza)),
        )
        .await
        .map_err(|_| DriverError::SendTimedOut {
            after: self.settings.send_timeout,
        })
    }

    /// Sends everything the core has to send; stored stanzas are tracked
    /// until the server acknowledges them.
    ///
    /// # Errors
    /// A core failure, a full stream queue, an unsendable stanza.
    pub async fn flush(&mut self) -> Result<(), DriverError> {
        while let Some(transmit) = self.core.poll_transmit()? {
            if let Some(tap) = self.tap.as_mut() {
                tap.sending(&self.core, &transmit);
            }
            let token = self.send(to_stanza(transmit.stanza.clone())?).await?;
            if let Some(outbox) = transmit.outbox {
                self.unacked.push(Unacked {
                    outbox,
                    stanza: transmit.stanza,
                    token,
                    resends: 0,
                });
            }
        }
        self.collect_events();
        Ok(())
    }

    fn collect_events(&mut self) {
        while let Some(event) = self.core.poll_event() {
            match self.event_sink.as_mut() {
                Some(sink) => sink(event),
                None => self.events.push_back(event),
            }
        }
    }

    /// Hands every event to `sink` as soon as the core reports it (right
    /// after the stanza or command that caused it committed), instead of
    /// queueing it for [`Driver::poll_event`]: what a user interface shows
    /// then lags the committed state by as little as possible (a process
    /// killed in between has processed what it did not show). `None`
    /// queues again.
    pub fn set_event_sink(&mut self, sink: Option<EventSink>) {
        self.event_sink = sink;
        if let Some(sink) = self.event_sink.as_mut() {
            while let Some(event) = self.events.pop_front() {
                sink(event);
            }
        }
        self.collect_events();
    }

    /// Reports acknowledged stanzas to the core; sends failed ones again.
    async fn check_acknowledgements(&mut self) -> Result<(), DriverError> {
        let mut index = 0;
        while index < self.unacked.len() {
            match self.unacked[index].token.state() {
                StanzaState::Acked { .. } => {
                    let done = self.unacked.swap_remove(index);
                    self.core.sent(done.outbox)?;
                }
                StanzaState::Failed { .. } | StanzaState::Dropped => {
                    if self.unacked[index].resends >= MAX_RESENDS {
                        // Left in the outbox: the next start hands it out.
                        self.unacked.swap_remove(index);
                        continue;
                    }
                    let stanza = to_stanza(self.unacked[index].stanza.clone())?;
                    let token = self.send(stanza).await?;
                    let entry = &mut self.unacked[index];
                    entry.token = token;
                    entry.resends += 1;
                    index += 1;
                }
                StanzaState::Queued | StanzaState::Sent { .. } => index += 1,
            }
        }
        Ok(())
    }

    /// Subscriptions with contacts: a contact's `subscribe` is approved; when
    /// a contact approves ours, the own presence (with the capabilities) is
    /// sent again, so that its server learns the `+notify` features and
    /// sends its PEP items, and its device list is fetched again (it may
    /// have been refused before the subscription existed); the device list
    /// of a contact is fetched again whenever one of its resources is seen
    /// online for the first time on this stream.
    async fn presence(&mut self, presence: Presence) -> Result<(), DriverError> {
        let Some(full) = presence.from.clone() else {
            return Ok(());
        };
        let from = full.to_bare();
        if !matches!(
            presence.type_,
            PresenceType::Subscribe | PresenceType::Subscribed | PresenceType::None
        ) || !self.core.status()?.contacts.contains(&from)
        {
            return Ok(());
        }
        if presence.type_ == PresenceType::None {
            // A contact's resource came online (or we just learned of it):
            // its device list may have changed without a notification
            // reaching us (ejabberd 23.01 sent none in our tests).
            if self.seen_resources.insert(full) {
                self.core.add_contact(&from)?;
                self.flush().await?;
            }
        } else if presence.type_ == PresenceType::Subscribe {
            let approve = Presence::new(PresenceType::Subscribed).with_to(Jid::from(from.clone()));
            self.send(Stanza::from(approve)).await?;
        } else {
            let available = Presence::available().with_payload(self.caps.clone());
            self.send(Stanza::from(available)).await?;
            self.core.add_contact(&from)?;
            self.flush().await?;
        }
        Ok(())
    }

    /// Answers a request addressed to this client: disco#info (the
    /// capabilities), `service-unavailable` for anything else.
    async fn answer(&mut self, iq: Iq) -> Result<(), DriverError> {
        let (from, id, payload) = match iq {
            Iq::Get {
                from, id, payload, ..
            } => (from, id, Some(payload)),
            Iq::Set {
                from, id, payload, ..
            } => {
                // A roster push (from the own account) is acknowledged.
                let own = from
                    .as_ref()
                    .is_none_or(|f| f.to_bare() == *self.core.jid());
                if own && payload.is("query", ns::ROSTER) {
                    let result = Iq::Result {
                        from: None,
                        to: from,
                        id,
                        payload: None,
                    };
                    self.send(Stanza::from(result)).await?;
                    return Ok(());
                }
                (from, id, None)
            }
            Iq::Result { .. } | Iq::Error { .. } => return Ok(()),
        };
        let answer = match payload.filter(|p| p.is("query", ns::DISCO_INFO)) {
            Some(query) => {
                let mut info = self.disco.clone();
                info.node = query.attr("node").map(str::to_owned);
                Iq::Result {
                    from: None,
                    to: from,
                    id,
                    payload: Some(Element::from(info)),
                }
            }
            None => Iq::Error {
                from: None,
                to: from,
                id,
                payload: None,
                error: StanzaError::new(
                    ErrorType::Cancel,
                    DefinedCondition::ServiceUnavailable,
                    "en",
                    "",
                ),
            },
        };
        self.send(Stanza::from(answer)).await?;
        Ok(())
    }

    async fn incoming(&mut self, stanza: Stanza) -> Result<(), DriverError> {
        match stanza {
            Stanza::Iq(iq @ (Iq::Get { .. } | Iq::Set { .. })) => return self.answer(iq).await,
            Stanza::Presence(presence) => return self.presence(presence).await,
            _ => {}
        }
        if let Some(held) = self.held.as_mut() {
            held.push(stanza);
            return Ok(());
        }
        let element = Element::from(stanza);
        self.handed += 1;
        if let Some(hook) = self.before_stanza.as_mut() {
            hook(self.handed, &element);
        }
        let now = Utc::now();
        if let Some(tap) = self.tap.as_mut() {
            tap.before(&self.core, &element, now);
        }
        let reported = self.events.len();
        let handled = self.core.handle_stanza(&element, now);
        if handled.is_ok() {
            self.collect_events();
        }
        if let Some(tap) = self.tap.as_mut() {
            let events: Vec<Event> = self.events.iter().skip(reported).cloned().collect();
            tap.after(&self.core, &element, handled.as_ref().ok(), &events);
        }
        let handled = handled?;
        let before = reported;
        if element.name() == "message" {
            let tally = &mut self.tally;
            match handled {
                Handled::TrustMessage => {
                    tally.trust_messages += 1;
                    let changed = self
                        .events
                        .iter()
                        .skip(before)
                        .any(|e| matches!(e, Event::TrustChanged { .. }));
                    tally.changed_trust += u64::from(changed);
                }
                Handled::Chat => tally.chats += 1,
                Handled::Duplicate => tally.duplicates += 1,
                Handled::NotForThisDevice => tally.not_for_this_device += 1,
                Handled::Rejected(_) => tally.rejected += 1,
                Handled::DeviceList | Handled::Bundle | Handled::Response | Handled::Ignored => {
                    tally.other += 1
                }
            }
        }
        Ok(())
    }

    /// Whether an answer of the archive (a MAM `<fin/>`) is among the held
    /// stanzas: everything the server kept offline came before it.
    pub fn holds_archive_end(&self) -> bool {
        self.held.as_ref().is_some_and(|held| {
            held.iter().any(|stanza| match stanza {
                Stanza::Iq(Iq::Result {
                    payload: Some(payload),
                    ..
                }) => payload.is("fin", atm_client::ns::NS_MAM),
                _ => false,
            })
        })
    }

    /// How many stanzas are held.
    pub fn held(&self) -> usize {
        self.held.as_ref().map_or(0, Vec::len)
    }

    /// Stops holding and hands the held stanzas to the core: first the
    /// messages that are not PEP notifications (the kept and archived
    /// messages), newest first if `reverse`, then everything else in the
    /// order received. Does nothing if the driver does not hold.
    ///
    /// # Errors
    /// A core failure; see [`Driver::flush`].
    pub async fn release_held(&mut self, reverse: bool) -> Result<(), DriverError> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        let (mut messages, rest): (Vec<Stanza>, Vec<Stanza>) =
            held.into_iter().partition(|stanza| match stanza {
                Stanza::Message(message) => !message
                    .payloads
                    .iter()
                    .any(|p| p.is("event", ns::PUBSUB_EVENT)),
                _ => false,
            });
        if reverse {
            messages.reverse();
        }
        for stanza in messages.into_iter().chain(rest) {
            let element = Element::from(stanza);
            self.core.handle_stanza(&element, Utc::now())?;
            self.collect_events();
        }
        self.flush().await
    }

    /// Waits at most `limit` for what the server sends and processes it
    /// (everything already queued, too), then sends what the core has,
    /// settles acknowledgements and runs the upkeep when it is due. Returns
    /// whether anything arrived.
    ///
    /// # Errors
    /// [`DriverError::Closed`] when the stream ended; a core failure.
    pub async fn step(&mut self, limit: Duration) -> Result<bool, DriverError> {
        let mut arrived = false;
        if let Ok(first) = tokio::time::timeout(limit, self.stream.next()).await {
            arrived = true;
            self.stream_event(first).await?;
            // What is ready already, without waiting (bounded per step).
            for _ in 0..256 {
                match self.stream.next().now_or_never() {
                    Some(event) => self.stream_event(event).await?,
                    None => break,
                }
            }
        }
        self.flush().await?;
        self.check_acknowledgements().await?;
        if self.last_maintain.elapsed() >= self.settings.maintain_every {
            self.core.maintain(Utc::now())?;
            self.last_maintain = Instant::now();
            self.flush().await?;
        }
        Ok(arrived)
    }

    async fn stream_event(&mut self, event: Option<StreamEvent>) -> Result<(), DriverError> {
        match event {
            None => Err(DriverError::Closed),
            Some(StreamEvent::Stanza(stanza)) => self.incoming(stanza).await,
            Some(StreamEvent::Stream(Status::Reset { bound_jid, .. })) => {
                // State lost: presence, carbons, subscriptions are gone.
                if let Ok(full) = bound_jid.try_into_full() {
                    self.bound = full;
                }
                self.resets += 1;
                // The core hands out again every stored stanza the server
                // has not acknowledged (`Endpoint::start`): the tokens of
                // the lost stream are forgotten.
                self.unacked.clear();
                self.online().await
            }
            Some(StreamEvent::Stream(Status::Suspended | Status::Resumed)) => Ok(()),
        }
    }

    /// Stays online until `shutdown` completes (`atm run`): steps, and hands
    /// every event to `on_event` as it happens. `shutdown` is looked at
    /// between steps (at least every `tick`), never in the middle of
    /// processing a stanza.
    ///
    /// # Errors
    /// See [`Driver::step`].
    pub async fn run_until(
        &mut self,
        shutdown: impl std::future::Future<Output = ()>,
        tick: Duration,
        mut on_event: impl FnMut(Event),
    ) -> Result<(), DriverError> {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            if shutdown.as_mut().now_or_never().is_some() {
                return Ok(());
            }
            self.step(tick).await?;
            while let Some(event) = self.poll_event() {
                on_event(event);
            }
        }
    }

    /// Steps until every stored stanza sent so far is acknowledged by the
    /// server, at most `limit` (for a one-shot command before it leaves).
    ///
    /// # Errors
    /// [`DriverError::NotAcknowledged`] after `limit`; see [`Driver::step`].
    pub async fn wait_acknowledged(&mut self, limit: Duration) -> Result<(), DriverError> {
        let deadline = Instant::now() + limit;
        self.flush().await?;
        self.check_acknowledgements().await?;
        while !self.unacked.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DriverError::NotAcknowledged {
                    count: self.unacked.len(),
                    after: limit,
                });
            }
            let token = self.unacked[0].token.clone();
            let mut token = token;
            let _ = tokio::time::timeout(
                left.min(Duration::from_millis(200)),
                token.wait_for(StanzaStage::Acked),
            )
            .await;
            self.step(Duration::ZERO).await?;
        }
        Ok(())
    }

    /// Test hook: `hook(n, stanza)` is called just before the `n`-th stanza
    /// (counted from 1 on this driver) is handed to
    /// [`Endpoint::handle_stanza`], so
    /// that a fault test can stop or kill the process between receiving a
    /// stanza and processing it. Nothing happens unless a hook is set.
    pub fn set_before_stanza(&mut self, hook: Option<StanzaHook>) {
        self.before_stanza = hook;
    }

    /// Closes the stream (bounded by [`Settings::close_timeout`]) and gives
    /// the core back; stanzas not acknowledged stay in its outbox.
    pub async fn close(self) -> Endpoint {
        let _ = tokio::time::timeout(self.settings.close_timeout, self.stream.close()).await;
        self.core
    }
}

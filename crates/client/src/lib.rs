//! The sans-IO endpoint core of an XMPP client with Automatic Trust
//! Management (XEP-0450) and Trust Messages (XEP-0434) over OMEMO 2
//! (XEP-0384) in SCE envelopes (XEP-0420).
//!
//! No sockets, no clock, no async: stanzas (`minidom` elements) go in,
//! stanzas to send and [`Event`]s come out, the time is passed in, and all
//! state lives in one SQLite file in the device's state directory
//! ([`atm_store::EndpointStore`]). A network driver (tokio-xmpp, or another
//! client's own XMPP stack) moves the stanzas.
//!
//! # Call order
//!
//! 1. [`Endpoint::open`] the state directory (creates the device on first use).
//! 2. Once connected (and after every reconnect): [`Endpoint::start`], then
//!    [`Endpoint::catch_up`] to read the archive after the stored position.
//! 3. For every stanza the server delivers: [`Endpoint::handle_stanza`].
//! 4. For every user command: [`Endpoint::scan`], [`Endpoint::authenticate`],
//!    [`Endpoint::distrust`], [`Endpoint::send_chat`], ...
//! 5. After each of 2–4: send everything [`Endpoint::poll_transmit`] gives,
//!    and report stored ones with [`Endpoint::sent`] once the server has
//!    them; show every [`Endpoint::poll_event`].
//!
//! ```
//! use atm_client::{ns, Endpoint, OsRandom};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let directory = tempfile::tempdir()?;
//! let alice: jid::BareJid = "alice@example.org".parse()?;
//! let now = chrono::DateTime::UNIX_EPOCH;
//! let mut phone = Endpoint::open(directory.path(), &alice, now, Box::new(OsRandom))?;
//! // Its Trust Message URI, for another device to scan.
//! assert!(phone.uri().starts_with("xmpp:alice@example.org?trust-message;encryption=urn:xmpp:omemo:2;trust="));
//! // Connected: carbons on, bundle published, own device list fetched.
//! phone.start()?;
//! let mut sent = Vec::new();
//! while let Some(transmit) = phone.poll_transmit()? {
//!     sent.push(transmit.stanza);
//! }
//! assert!(sent[0].get_child("enable", ns::NS_CARBONS).is_some());
//! let publish = sent[1].get_child("pubsub", ns::NS_PUBSUB).and_then(|p| p.get_child("publish", ns::NS_PUBSUB));
//! assert_eq!(publish.and_then(|p| p.attr("node")), Some(ns::NS_BUNDLES));
//! // The server answers that the device list is empty (no node yet): the
//! // core publishes one with this device.
//! let id = sent[2].attr("id").unwrap_or_default();
//! let answer: minidom::Element = format!("<iq xmlns='jabber:client' type='error' id='{id}' from='alice@example.org'/>").parse()?;
//! phone.handle_stanza(&answer, now)?;
//! let list = phone.poll_transmit()?.ok_or("nothing to send")?.stanza;
//! assert!(String::from(&list).contains(&format!("<device id='{}'/>", phone.device_id())));
//! # Ok(())
//! # }
//! ```
//!
//! # Exactly once
//!
//! Each received message is one unit of work of the store: the OMEMO session
//! advance, the engine's trust changes, the trust messages it sends (in the
//! outbox), the stanza's deduplication keys and the archive position commit
//! together. A crash before the commit leaves no trace (the stanza is
//! processed when it comes again); after it, every copy is recognised.
//!
//! Deduplication keys of a message: `sid:SENDER:ID` with the XEP-0359
//! stanza id the own server assigned (`<stanza-id by=OWN-BARE-JID>`, or the
//! archive result id, which is the same id), scoped by the sender's bare JID
//! so that a forged stanza id only ever shadows the forger's own stanzas;
//! and always `hash:HEX`, SHA-256 of the sender's and the recipient's bare
//! JIDs, the stanza's `id`, and the OMEMO header and payload (see
//! `crypto::OmemoMessage`), which is the same for the direct copy, the
//! carbon, the offline and the archived copy, and differs between any two
//! messages (payload and key material are fresh randomness). A refused
//! stanza records only its hash (which covers everything the checks read),
//! so a tampered copy never shadows the genuine one. The OMEMO ratchet
//! refuses a second decryption as well. Keys older than
//! [`PROCESSED_RETENTION`] are forgotten by [`Endpoint::maintain`].
//!
//! # Sessions
//!
//! Stored bundles follow their owners' republications (PEP notifications of
//! `urn:xmpp:omemo:2:bundles`), so that a new session never picks a used
//! prekey; when two devices' first messages cross, the session each replaced
//! is kept as an alternate and tried when the current one refuses a message.
//!
//! # Wire format
//!
//! Parsed and written as `minidom` elements rather than `xmpp-parsers`
//! types: `atm-tm` and `atm-omemo` are built on minidom 0.19 already, the
//! wrappers needed (carbons, MAM results, PEP items, delay, stanza ids) are
//! small, and a driver on xmpp-parsers converts with `Element::from` /
//! `TryFrom<Element>` at its edge.

mod commands;
mod crypto;
mod endpoint;
mod error;
mod event;
mod stanza;

pub use commands::{ChatSent, Decided, KeyInfo, Status};
pub use endpoint::{
    CrashPoint, DeviceLearning, Endpoint, Options, OutboxId, Transmit, DATABASE_FILE,
    PROCESSED_RETENTION, SIGNED_PREKEY_PERIOD,
};
pub use error::{CommandError, CoreError, OpenError, Rejection};
pub use event::{Event, Handled, Traffic};
pub use stanza::Channel;

/// Namespaces of the stanzas the core reads and writes.
pub mod ns {
    pub use crate::crypto::{NS_BUNDLES, NS_DEVICES};
    pub use crate::stanza::{
        NS_CARBONS, NS_CLIENT, NS_DATA, NS_DELAY, NS_FORWARD, NS_HINTS, NS_MAM, NS_PUBSUB,
        NS_PUBSUB_EVENT, NS_RSM, NS_SID,
    };
    pub use atm_omemo::elements::NS_OMEMO;
}

pub use atm_omemo::crypto::{OsRandom, SecureRandom};

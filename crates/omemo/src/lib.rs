//! OMEMO 2 (XEP-0384, `urn:xmpp:omemo:2`) and Stanza Content Encryption
//! (XEP-0420), sans-IO.
//!
//! * [`crypto`]: keys and bundles, X3DH, the Double Ratchet, payload
//!   encryption, protobuf, session persistence (byte-compatible with
//!   python-omemo/twomemo).
//! * [`elements`]: `<encrypted>`, the device list and the bundle as XML.
//! * [`sce`]: the SCE envelope (`content`, `rpad`, `time`, `from`, `to`)
//!   and its profiles (chat, trust message).
//! * [`device`]: one device putting them together: encrypt SCE content for a
//!   set of recipient devices, decrypt what arrives ("decrypt, persist, act").
//! * [`xml`]: the bounded reader of untrusted XML (size, depth, node count).
//!
//! # Call order
//!
//! Sending: [`device::Device::encrypt`] (or [`device::Device::encrypt_empty`])
//! stores the advanced sessions, then the caller sends the `<encrypted>`.
//! Receiving: read the element with [`elements::Encrypted::read`] (or
//! [`elements::Encrypted::read_for`], only this device's entries), then
//! [`device::Device::decrypt`] with the stanza's sender, recipient and
//! sending time ([`device::Incoming`]); act on [`device::Opened`] (its
//! envelope, [`sce::TimeCheck`], [`device::SessionChange`], and the empty
//! reply the rules ask for, if any), then [`device::Device::acknowledge`].
//!
//! ```
//! use atm_omemo::crypto::{DeviceAddress, MemoryStore, OsRandom};
//! use atm_omemo::device::{Device, EmptyReply, Incoming, Recipient};
//! use atm_omemo::elements::Encrypted;
//! use atm_omemo::sce::{StanzaKind, TimeCheck};
//! use jid::BareJid;
//! use minidom::Element;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (alice_jid, bob_jid) = (BareJid::new("alice@example.org")?, BareJid::new("bob@example.com")?);
//! let now: chrono::DateTime<chrono::Utc> = "2026-01-01T12:00:00Z".parse()?;
//! let mut rng = OsRandom;
//! let mut alice = Device::open(alice_jid.clone(), 1, MemoryStore::new(), now, &mut rng)?;
//! let mut bob = Device::open(bob_jid.clone(), 2, MemoryStore::new(), now, &mut rng)?;
//!
//! // Alice encrypts for Bob's device, building the session from his bundle.
//! let to_bob = Recipient {
//!     address: DeviceAddress { jid: bob_jid.clone(), device_id: 2 },
//!     bundle: Some(bob.bundle()?),
//! };
//! let body = Element::builder("body", "jabber:client").append("hi").build();
//! let sent = alice.encrypt(vec![body.clone()], now, &bob_jid, &[to_bob], &mut rng)?;
//! let wire = String::from(&Element::from(&sent));
//!
//! // Bob reads it with the stanza's sender, recipient and sending time.
//! let (received, skipped) = Encrypted::read(&wire.parse::<Element>()?)?;
//! assert!(skipped.is_empty());
//! let stanza = Incoming { sender: alice_jid.clone(), recipient: bob_jid, sent_at: now, kind: StanzaKind::Chat };
//! let opened = bob.decrypt(&received, &stanza, None, &mut rng)?;
//! assert_eq!(opened.envelope.as_ref().map(|e| e.content.clone()), Some(vec![body]));
//! assert!(matches!(opened.time, TimeCheck::Within { .. }));
//! bob.acknowledge(opened.pending_id)?;
//!
//! // A key exchange built the session: Bob confirms it with an empty message.
//! assert_eq!(opened.reply, Some(EmptyReply::KeyExchangeCompleted));
//! let to_alice = Recipient { address: DeviceAddress { jid: alice_jid, device_id: 1 }, bundle: None };
//! let empty = bob.encrypt_empty(&[to_alice], &mut rng)?;
//! assert!(empty.payload.is_none());
//! # Ok(())
//! # }
//! ```
//!
//! # Behaviour since issue 10
//!
//! * Empty OMEMO messages (no `<payload>`) are decrypted and committed
//!   (they confirm sessions and move ratchets on); [`device::Opened::envelope`]
//!   is `None` for them. [`device::Device::encrypt_empty`] sends them, and
//!   [`device::Opened::reply`] says when XEP-0384 asks for one (key exchange
//!   completed, heartbeat at counter [`crypto::HEARTBEAT_COUNTER`]).
//! * [`elements::Encrypted::read`] skips (and reports) malformed `<keys>`
//!   and `<key>` entries instead of refusing the message; a `rid` repeated
//!   for this device is tried entry by entry, and all its entries are spent.
//! * [`device::Device::encrypt`] encrypts once per distinct recipient.
//! * Device-list labels are signed (`labelsig`) and returned only when the
//!   signature verifies ([`elements::Device::label`]); a device list keeps
//!   its valid entries and reports the others ([`elements::DeviceList::read`]).
//! * Server-processed elements (hints, `stanza-id`, addresses, EME) inside
//!   `<content>` are dropped ([`device::Opened::discarded`]).
//! * SCE profiles: for chat `<time>`, `<from>` and (outside group chat)
//!   `<to>` may be absent; a trust message needs `<rpad>` and `<time>`.
//!   [`device::Device::decrypt`] takes the stanza's sending time and reports
//!   the envelope's `<time>` against it ([`sce::TimeCheck`],
//!   [`sce::SCE_TIME_MARGIN`]) without refusing a chat message.
//! * Envelopes are capped at [`sce::MAX_ENVELOPE_BYTES`] (192 KiB) and
//!   their node count at [`xml::node_budget`], keeping memory within about
//!   16 times the input.
//! * Device and key ids must lie in 1..=2^31−1; Base64 may contain XML
//!   whitespace.
//! * [`device::Opened::session`] says when a key exchange replaced a
//!   session, and whether with a different identity key.
//! * `crypto::DeterministicRandom` exists only in this crate's tests and
//!   with the feature `insecure-deterministic-random-for-tests`.

pub mod crypto;
pub mod device;
pub mod elements;
#[cfg(any(test, feature = "insecure-deterministic-random-for-tests"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod sce;
pub mod xml;

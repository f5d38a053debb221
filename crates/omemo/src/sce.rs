//! Stanza Content Encryption (XEP-0420, `urn:xmpp:sce:1`): the envelope that
//! OMEMO 2 encrypts.
//!
//! ```xml
//! <envelope xmlns='urn:xmpp:sce:1'>
//!   <content><trust-message xmlns='urn:xmpp:tm:1' …/></content>
//!   <rpad>random padding of random length</rpad>
//!   <time stamp='2020-01-01T00:00:05Z'/>
//!   <from jid='alice@example.org'/>
//!   <to jid='bob@example.com'/>
//! </envelope>
//! ```
//!
//! [`Envelope::seal`] writes one with random padding and whichever of `time`,
//! `from` and `to` are set. [`Envelope::open`] reads one and applies the
//! profile that fits it:
//!
//! * every envelope: `<from>` and `<to>`, when present, must name the
//!   stanza's sender and recipient (compared as bare JIDs), so that a message
//!   cannot be replayed under another address;
//! * chat (XEP-0384 §SCE Profile): `<time>` is optional and `<from>` a SHOULD,
//!   so both may be absent; `<to>` is required only in a group chat
//!   ([`StanzaKind::GroupChat`]). `<rpad>`, which senders MUST write, is
//!   not required on receipt: padding is never verified (XEP-0420), and
//!   [`OpenedEnvelope::padded`] says whether it was there;
//! * trust message (XEP-0434 §SCE Profile, when `<content>` holds a
//!   `<trust-message xmlns='urn:xmpp:tm:1'>`): `<rpad>` and `<time>` are
//!   required; an envelope without them is refused.
//!
//! Server-processed elements found directly inside `<content>` (XEP-0420
//! §Server-processed Elements: XEP-0334 hints, XEP-0359 `<stanza-id>`,
//! XEP-0033 addresses, XEP-0380 EME) are dropped and reported in
//! [`OpenedEnvelope::discarded`], never handed on as content.
//!
//! The `<time>` is checked against the sending time the caller derives from
//! the stanza (receipt time for a live stanza, the server's delay or archive
//! stamp otherwise) with [`TimeCheck::new`]; the result says whether it lies
//! within [`SCE_TIME_MARGIN`], and the caller acts on it (the ATM engine
//! refuses a trust message outside the margin; a chat client warns).
//!
//! The envelope is read with [`crate::xml::parse_bounded`] under
//! [`MAX_ENVELOPE_BYTES`], which bounds size, depth and node count.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeDelta, Utc};
use jid::{BareJid, Jid};
use minidom::Element;

use crate::crypto::SecureRandom;
use crate::xml::{parse_bounded, XmlError};

/// The SCE namespace.
pub const NS_SCE: &str = "urn:xmpp:sce:1";

/// The trust-message namespace (XEP-0434), whose SCE profile is stricter.
pub const NS_TRUST_MESSAGE: &str = "urn:xmpp:tm:1";

/// Largest envelope accepted (bytes): 192 KiB.
///
/// An envelope travels Base64-encoded in `<payload>` inside one stanza, and
/// servers cap stanzas at 256 KiB by default (Prosody's
/// `c2s_stanza_size_limit`, the limit ejabberd's example configuration sets);
/// Base64 turns 3 bytes into 4, so no envelope larger than 192 KiB can
/// arrive in such a stanza.
pub const MAX_ENVELOPE_BYTES: usize = 192 * 1024;

/// Most padding characters written.
pub const MAX_RPAD: usize = 200;

/// How far an envelope's `<time>` may lie from the sending time derived from
/// the stanza and still count as [`TimeCheck::Within`]: 10 minutes.
///
/// XEP-0420 asks for "a reasonable margin". Two things separate the two
/// times of an honest message: clock error (5 minutes is the customary
/// tolerance for unsynchronized clocks, as in Kerberos) and the time a
/// stanza waits after encryption before the server stamps it (a client that
/// lost its connection resends its queue on reconnect). Ten minutes allows
/// both; a larger margin would let a server hold back or reorder trust
/// messages by that much without notice.
pub const SCE_TIME_MARGIN: TimeDelta = TimeDelta::minutes(10);

/// A decrypted (or to be encrypted) envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The protected elements.
    pub content: Vec<Element>,
    /// When it was sent (`<time stamp>`), if given.
    pub time: Option<DateTime<Utc>>,
    /// The sender (`<from jid>`), if given.
    pub from: Option<Jid>,
    /// The recipient (`<to jid>`), if given.
    pub to: Option<Jid>,
}

/// The kind of stanza an envelope arrived in: a group chat requires `<to>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StanzaKind {
    /// A one-to-one message (`type='chat'` or `normal`).
    Chat,
    /// A group chat message (MUC or MIX, `type='groupchat'`).
    GroupChat,
}

/// A server-processed element dropped from `<content>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscardedElement {
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
}

/// What [`Envelope::open`] read.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenedEnvelope {
    /// The envelope, without the discarded elements.
    pub envelope: Envelope,
    /// Whether it had `<rpad>`.
    pub padded: bool,
    /// Server-processed elements found in `<content>` and dropped.
    pub discarded: Vec<DiscardedElement>,
}

/// An envelope's `<time>` compared with the sending time derived from the
/// stanza. `skew` is `<time>` minus the sending time (positive: the envelope
/// claims a later time than the stanza's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeCheck {
    /// The envelope has no `<time>` (allowed for chat, refused for trust messages).
    Absent,
    /// Within [`SCE_TIME_MARGIN`] of the sending time.
    Within {
        /// The envelope's `<time>`.
        stamp: DateTime<Utc>,
        /// `stamp` minus the sending time.
        skew: TimeDelta,
    },
    /// Further than [`SCE_TIME_MARGIN`] from the sending time: clock
    /// misconfiguration or a replayed or held-back stanza. XEP-0420: alert
    /// the user or reject the stanza.
    Outside {
        /// The envelope's `<time>`.
        stamp: DateTime<Utc>,
        /// `stamp` minus the sending time.
        skew: TimeDelta,
    },
}

impl TimeCheck {
    /// Compares `stamp` with `sent_at` (receipt time for a live stanza, the
    /// server's delay or archive stamp otherwise).
    #[must_use]
    pub fn new(stamp: Option<DateTime<Utc>>, sent_at: DateTime<Utc>) -> Self {
        let Some(stamp) = stamp else {
            return TimeCheck::Absent;
        };
        let skew = stamp.signed_duration_since(sent_at);
        if skew.abs() <= SCE_TIME_MARGIN {
            TimeCheck::Within { stamp, skew }
        } else {
            TimeCheck::Outside { stamp, skew }
        }
    }

    /// The envelope's `<time>`, if any.
    #[must_use]
    pub fn stamp(&self) -> Option<DateTime<Utc>> {
        match self {
            TimeCheck::Absent => None,
            TimeCheck::Within { stamp, .. } | TimeCheck::Outside { stamp, .. } => Some(*stamp),
        }
    }
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SceError {
    /// Not UTF-8.
    #[error("envelope is not UTF-8")]
    NotUtf8,
    /// Not well-formed, too large, too deep or too many nodes.
    #[error("envelope: {0}")]
    Xml(#[from] XmlError),
    /// The root is not `<envelope xmlns='urn:xmpp:sce:1'>`.
    #[error("not an SCE envelope: <{0}>")]
    NotEnvelope(String),
    /// A required child is missing (`content` always; `to` in a group chat;
    /// `rpad` and `time` for a trust message).
    #[error("envelope has no <{0}>")]
    Missing(&'static str),
    /// A child appears twice.
    #[error("envelope has more than one <{0}>")]
    Repeated(&'static str),
    /// An attribute is missing or invalid.
    #[error("envelope <{element}>: invalid {attribute}: {reason}")]
    Invalid {
        /// The element.
        element: &'static str,
        /// The attribute.
        attribute: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `<from>` does not name the stanza's sender.
    #[error("envelope is from {envelope}, but the stanza is from {stanza}")]
    WrongSender {
        /// The envelope's `from`.
        envelope: String,
        /// The stanza's sender.
        stanza: String,
    },
    /// `<to>` does not name the stanza's recipient.
    #[error("envelope is to {envelope}, but the stanza is to {stanza}")]
    WrongRecipient {
        /// The envelope's `to`.
        envelope: String,
        /// The stanza's recipient.
        stanza: String,
    },
    /// The generator failed.
    #[error("random padding: {0}")]
    Random(String),
}

fn ns_name(name: &str) -> rxml::NcName {
    rxml::NcName::try_from(name).unwrap_or_else(|_| unreachable!("a valid attribute name"))
}

/// Whether `element`, found directly in `<content>`, is server-processed
/// (XEP-0420 §Server-processed Elements) and must be dropped.
fn is_server_processed(element: &Element) -> bool {
    element.has_ns("urn:xmpp:hints")
        || element.is("stanza-id", "urn:xmpp:sid:0")
        || element.has_ns("http://jabber.org/protocol/address")
        || element.has_ns("urn:xmpp:eme:0")
}

/// An XEP-0082 DateTime; a stamp without a time zone (as in XEP-0434's own
/// example) is read as UTC.
fn parse_stamp(stamp: &str) -> Result<DateTime<Utc>, SceError> {
    if let Ok(time) = DateTime::parse_from_rfc3339(stamp) {
        return Ok(time.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|naive| naive.and_utc())
        .map_err(|e| SceError::Invalid {
            element: "time",
            attribute: "stamp",
            reason: e.to_string(),
        })
}

impl Envelope {
    /// The envelope as XML with `<rpad>` of random length and content, and
    /// `<time>`, `<from>`, `<to>` for those that are set.
    ///
    /// # Errors
    /// [`SceError::Random`] if the generator fails.
    pub fn seal(&self, rng: &mut dyn SecureRandom) -> Result<String, SceError> {
        let mut random = [0u8; 2];
        rng.try_fill(&mut random)
            .map_err(|e| SceError::Random(e.to_string()))?;
        let length = usize::from(u16::from_le_bytes(random)) % (MAX_RPAD + 1);
        let mut padding = vec![0u8; length];
        rng.try_fill(&mut padding)
            .map_err(|e| SceError::Random(e.to_string()))?;
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let rpad: String = padding
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
            .collect();
        let mut content = Element::builder("content", NS_SCE);
        for element in &self.content {
            content = content.append(element.clone());
        }
        let mut envelope = Element::builder("envelope", NS_SCE)
            .append(content.build())
            .append(Element::builder("rpad", NS_SCE).append(rpad).build());
        if let Some(time) = self.time {
            envelope = envelope.append(
                Element::builder("time", NS_SCE)
                    .attr(
                        ns_name("stamp"),
                        time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                    )
                    .build(),
            );
        }
        for (name, jid) in [("from", &self.from), ("to", &self.to)] {
            if let Some(jid) = jid {
                envelope = envelope.append(
                    Element::builder(name, NS_SCE)
                        .attr(ns_name("jid"), jid.to_string())
                        .build(),
                );
            }
        }
        Ok(String::from(&envelope.build()))
    }

    /// Reads an envelope, drops server-processed elements from its content,
    /// applies the chat or trust-message profile (see the module docs) and
    /// checks `<from>` and `<to>`, when present, against the stanza's
    /// `sender` and `recipient` (compared as bare JIDs: a message to an
    /// account reaches all its devices).
    ///
    /// # Errors
    /// [`SceError`] saying what is wrong.
    pub fn open(
        bytes: &[u8],
        sender: &BareJid,
        recipient: &BareJid,
        kind: StanzaKind,
    ) -> Result<OpenedEnvelope, SceError> {
        let text = std::str::from_utf8(bytes).map_err(|_| SceError::NotUtf8)?;
        let root = parse_bounded(text, MAX_ENVELOPE_BYTES)?;
        let opened = Self::read(root)?;
        let envelope = &opened.envelope;
        let trust_message = envelope
            .content
            .iter()
            .any(|c| c.is("trust-message", NS_TRUST_MESSAGE));
        if trust_message && !opened.padded {
            return Err(SceError::Missing("rpad"));
        }
        if trust_message && envelope.time.is_none() {
            return Err(SceError::Missing("time"));
        }
        if kind == StanzaKind::GroupChat && envelope.to.is_none() {
            return Err(SceError::Missing("to"));
        }
        if let Some(from) = envelope.from.as_ref().filter(|f| f.to_bare() != *sender) {
            return Err(SceError::WrongSender {
                envelope: from.to_string(),
                stanza: sender.to_string(),
            });
        }
        if let Some(to) = envelope.to.as_ref().filter(|t| t.to_bare() != *recipient) {
            return Err(SceError::WrongRecipient {
                envelope: to.to_string(),
                stanza: recipient.to_string(),
            });
        }
        Ok(opened)
    }

    /// Reads an envelope element (no profile and no address checks; the
    /// server-processed elements are dropped).
    ///
    /// # Errors
    /// [`SceError`] saying what is wrong.
    pub fn from_element(root: &Element) -> Result<Envelope, SceError> {
        Self::read(root.clone()).map(|opened| opened.envelope)
    }

    /// Reads an owned envelope element, moving its content out.
    fn read(mut root: Element) -> Result<OpenedEnvelope, SceError> {
        if !root.is("envelope", NS_SCE) {
            return Err(SceError::NotEnvelope(root.name().to_owned()));
        }
        let one = |name: &'static str| -> Result<Option<&Element>, SceError> {
            let mut found = root.children().filter(|c| c.is(name, NS_SCE));
            let first = found.next();
            if found.next().is_some() {
                return Err(SceError::Repeated(name));
            }
            Ok(first)
        };
        one("content")?.ok_or(SceError::Missing("content"))?;
        let padded = one("rpad")?.is_some();
        let time = match one("time")? {
            None => None,
            Some(time) => Some(parse_stamp(time.attr("stamp").ok_or(
                SceError::Invalid {
                    element: "time",
                    attribute: "stamp",
                    reason: "missing".into(),
                },
            )?)?),
        };
        let address = |name: &'static str| -> Result<Option<Jid>, SceError> {
            let Some(element) = one(name)? else {
                return Ok(None);
            };
            let value = element.attr("jid").ok_or(SceError::Invalid {
                element: name,
                attribute: "jid",
                reason: "missing".into(),
            })?;
            Jid::new(value).map(Some).map_err(|e| SceError::Invalid {
                element: name,
                attribute: "jid",
                reason: e.to_string(),
            })
        };
        let from = address("from")?;
        let to = address("to")?;
        let content_element = root
            .get_child_mut("content", NS_SCE)
            .ok_or(SceError::Missing("content"))?;
        let mut content = Vec::new();
        let mut discarded = Vec::new();
        for element in content_element.take_contents_as_children() {
            if is_server_processed(&element) {
                discarded.push(DiscardedElement {
                    name: element.name().to_owned(),
                    namespace: element.ns(),
                });
            } else {
                content.push(element);
            }
        }
        Ok(OpenedEnvelope {
            envelope: Envelope {
                content,
                time,
                from,
                to,
            },
            padded,
            discarded,
        })
    }
}

#[cfg(test)]
#[path = "sce_tests.rs"]
mod tests;

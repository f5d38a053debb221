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
//! [`Envelope::seal`] writes one with random padding; [`Envelope::open`] reads
//! one strictly and checks `from` and `to` against the stanza's sender and
//! recipient, so that a message cannot be replayed under another address. The
//! `time` is returned to the caller (the ATM engine orders decisions by it).

use chrono::{DateTime, SecondsFormat, Utc};
use jid::{BareJid, Jid};
use minidom::Element;

use crate::crypto::SecureRandom;
use crate::xml::{parse_bounded, XmlError};

/// The SCE namespace.
pub const NS_SCE: &str = "urn:xmpp:sce:1";

/// Largest envelope accepted (bytes).
pub const MAX_ENVELOPE_BYTES: usize = 16 * 1024 * 1024;

/// Most padding characters written.
pub const MAX_RPAD: usize = 200;

/// A decrypted (or to be encrypted) envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The protected elements.
    pub content: Vec<Element>,
    /// When it was sent (`<time stamp>`).
    pub time: DateTime<Utc>,
    /// The sender (`<from jid>`).
    pub from: Jid,
    /// The recipient (`<to jid>`).
    pub to: Jid,
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SceError {
    /// Not UTF-8.
    #[error("envelope is not UTF-8")]
    NotUtf8,
    /// Not well-formed or too large or too deep.
    #[error("envelope: {0}")]
    Xml(#[from] XmlError),
    /// The root is not `<envelope xmlns='urn:xmpp:sce:1'>`.
    #[error("not an SCE envelope: <{0}>")]
    NotEnvelope(String),
    /// A required child is missing.
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

impl Envelope {
    /// The envelope as XML with `<rpad>` of random length and content.
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
        let envelope = Element::builder("envelope", NS_SCE)
            .append(content.build())
            .append(Element::builder("rpad", NS_SCE).append(rpad).build())
            .append(
                Element::builder("time", NS_SCE)
                    .attr(
                        ns_name("stamp"),
                        self.time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                    )
                    .build(),
            )
            .append(
                Element::builder("from", NS_SCE)
                    .attr(ns_name("jid"), self.from.to_string())
                    .build(),
            )
            .append(
                Element::builder("to", NS_SCE)
                    .attr(ns_name("jid"), self.to.to_string())
                    .build(),
            )
            .build();
        Ok(String::from(&envelope))
    }

    /// Reads an envelope and checks it was sent by `sender` to `recipient`
    /// (compared as bare JIDs: a message to an account reaches all its devices).
    ///
    /// # Errors
    /// [`SceError`] saying what is wrong.
    pub fn open(bytes: &[u8], sender: &BareJid, recipient: &BareJid) -> Result<Envelope, SceError> {
        let text = std::str::from_utf8(bytes).map_err(|_| SceError::NotUtf8)?;
        let root = parse_bounded(text, MAX_ENVELOPE_BYTES)?;
        let envelope = Self::from_element(&root)?;
        if envelope.from.to_bare() != *sender {
            return Err(SceError::WrongSender {
                envelope: envelope.from.to_string(),
                stanza: sender.to_string(),
            });
        }
        if envelope.to.to_bare() != *recipient {
            return Err(SceError::WrongRecipient {
                envelope: envelope.to.to_string(),
                stanza: recipient.to_string(),
            });
        }
        Ok(envelope)
    }

    /// Reads an envelope element strictly (no address checks).
    ///
    /// # Errors
    /// [`SceError`] saying what is wrong.
    pub fn from_element(root: &Element) -> Result<Envelope, SceError> {
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
        let content = one("content")?.ok_or(SceError::Missing("content"))?;
        one("rpad")?;
        let time = one("time")?.ok_or(SceError::Missing("time"))?;
        let stamp = time.attr("stamp").ok_or(SceError::Invalid {
            element: "time",
            attribute: "stamp",
            reason: "missing".into(),
        })?;
        let time = DateTime::parse_from_rfc3339(stamp)
            .map_err(|e| SceError::Invalid {
                element: "time",
                attribute: "stamp",
                reason: e.to_string(),
            })?
            .with_timezone(&Utc);
        let address = |name: &'static str| -> Result<Jid, SceError> {
            let element = one(name)?.ok_or(SceError::Missing(name))?;
            let value = element.attr("jid").ok_or(SceError::Invalid {
                element: name,
                attribute: "jid",
                reason: "missing".into(),
            })?;
            Jid::new(value).map_err(|e| SceError::Invalid {
                element: name,
                attribute: "jid",
                reason: e.to_string(),
            })
        };
        Ok(Envelope {
            content: content.children().cloned().collect(),
            time,
            from: address("from")?,
            to: address("to")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::DeterministicRandom;

    fn envelope() -> Envelope {
        Envelope {
            content: vec![Element::builder("trust-message", "urn:xmpp:tm:1").build()],
            time: "2020-01-01T00:00:05Z".parse().unwrap_or_default(),
            from: Jid::new("alice@example.org/phone").unwrap_or_else(|_| unreachable!()),
            to: Jid::new("bob@example.com").unwrap_or_else(|_| unreachable!()),
        }
    }

    fn bare(s: &str) -> BareJid {
        BareJid::new(s).unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn seal_open_round_trip_with_random_padding() {
        let mut rng = DeterministicRandom::new([3; 32]);
        let mut lengths = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let sealed = envelope().seal(&mut rng).unwrap_or_default();
            lengths.insert(sealed.len());
            let opened = Envelope::open(
                sealed.as_bytes(),
                &bare("alice@example.org"),
                &bare("bob@example.com"),
            );
            assert_eq!(opened, Ok(envelope()));
        }
        assert!(lengths.len() > 5, "padding varies: {lengths:?}");
    }

    #[test]
    fn addresses_and_structure_are_checked() {
        let mut rng = DeterministicRandom::new([4; 32]);
        let sealed = envelope().seal(&mut rng).unwrap_or_default();
        assert!(matches!(
            Envelope::open(
                sealed.as_bytes(),
                &bare("mallory@example.org"),
                &bare("bob@example.com")
            ),
            Err(SceError::WrongSender { .. })
        ));
        assert!(matches!(
            Envelope::open(
                sealed.as_bytes(),
                &bare("alice@example.org"),
                &bare("carol@example.com")
            ),
            Err(SceError::WrongRecipient { .. })
        ));
        type Check = fn(&SceError) -> bool;
        let cases: [(&str, Check); 6] = [
            ("<envelope xmlns='urn:xmpp:sce:1'><time stamp='2020-01-01T00:00:00Z'/><from jid='a@b'/><to jid='c@d'/></envelope>", |e| *e == SceError::Missing("content")),
            ("<envelope xmlns='urn:xmpp:sce:1'><content/><from jid='a@b'/><to jid='c@d'/></envelope>", |e| *e == SceError::Missing("time")),
            ("<envelope xmlns='urn:xmpp:sce:1'><content/><content/><time stamp='2020-01-01T00:00:00Z'/><from jid='a@b'/><to jid='c@d'/></envelope>", |e| *e == SceError::Repeated("content")),
            ("<envelope xmlns='urn:xmpp:sce:1'><content/><time stamp='yesterday'/><from jid='a@b'/><to jid='c@d'/></envelope>", |e| matches!(e, SceError::Invalid { element: "time", .. })),
            ("<envelope xmlns='urn:xmpp:sce:0'/>", |e| matches!(e, SceError::NotEnvelope(_))),
            ("<envelope xmlns='urn:xmpp:sce:1'><content>", |e| matches!(e, SceError::Xml(_))),
        ];
        for (xml, check) in cases {
            let error = Envelope::open(xml.as_bytes(), &bare("a@b"), &bare("c@d")).unwrap_err();
            assert!(check(&error), "{xml}: {error:?}");
        }
        let deep = format!(
            "<envelope xmlns='urn:xmpp:sce:1'><content>{}</content></envelope>",
            "<a>".repeat(10_000)
        );
        assert!(matches!(
            Envelope::open(deep.as_bytes(), &bare("a@b"), &bare("c@d")),
            Err(SceError::Xml(XmlError::TooDeep { .. }))
        ));
        assert_eq!(
            Envelope::open(&[0xff, 0xfe], &bare("a@b"), &bare("c@d")),
            Err(SceError::NotUtf8)
        );
    }
}

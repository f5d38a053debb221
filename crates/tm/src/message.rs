//! The `<trust-message/>` element: types, limits, validation and
//! serialization.

use std::hash::BuildHasher as _;

use rustc_hash::{FxBuildHasher, FxHashMap as HashMap};

use jid::BareJid;

use crate::error::{KeyKind, Location, ParseError};
use crate::key::KeyId;
use crate::ns::{Encryption, Usage, NS_TM};

/// Bounds applied while reading a trust message, which is
/// attacker-controlled input. Exceeding a bound refuses the whole message;
/// nothing is ever truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most `<trust/>` plus `<distrust/>` elements, counted before
    /// deduplication. Default 100,000.
    pub max_keys: usize,
    /// Most `<key-owner/>` elements, counted before merging. Default 10,000.
    pub max_key_owners: usize,
    /// Largest accepted XML text in bytes. Default 16 MiB, room for 100,000
    /// OMEMO 2 keys with generous whitespace.
    pub max_input_bytes: usize,
    /// Deepest element nesting, foreign elements included (the
    /// `<trust-message/>` itself is depth 1). Default 64. The parser never
    /// recurses, so this bounds memory of the element stack, not the call stack.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_keys: 100_000,
            max_key_owners: 10_000,
            max_input_bytes: 16 * 1024 * 1024,
            max_depth: 64,
        }
    }
}

/// One `<key-owner/>`: a bare JID and the keys of it that are trusted or
/// distrusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    /// The key owner's bare JID.
    pub jid: BareJid,
    /// Keys to trust, in document order, without duplicates.
    pub trust: Vec<KeyId>,
    /// Keys to distrust, in document order, without duplicates.
    pub distrust: Vec<KeyId>,
}

impl KeyOwner {
    /// A key owner with no keys yet.
    pub fn new(jid: BareJid) -> Self {
        KeyOwner {
            jid,
            trust: Vec::new(),
            distrust: Vec::new(),
        }
    }
}

/// A trust message (XEP-0434): `<trust-message xmlns='urn:xmpp:tm:1'
/// usage='…' encryption='…'>` with one or more key owners.
///
/// # Repeated key owners and keys
///
/// Reading is order-preserving and normalizing, so the result always
/// satisfies [`TrustMessage::check`]:
/// * several `<key-owner/>` elements with the same JID are **merged** into
///   the first one, in document order;
/// * a key repeated in the same list of the same owner is **deduplicated**
///   (the first occurrence is kept);
/// * a key of an owner that is both trusted and distrusted is **refused**
///   ([`ParseError::TrustedAndDistrusted`]); a key is identified by its
///   owner and its bytes, so the same bytes under two owners are two keys.
///
/// Each `<key-owner/>` element must itself contain at least one key, even if
/// a later element for the same JID has some.
///
/// Elements of other namespaces are skipped (XMPP extensibility); unknown
/// elements of `urn:xmpp:tm:1`, unknown unnamespaced attributes and
/// non-whitespace text outside the key elements are refused. Key text may be
/// surrounded by XML whitespace, which is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustMessage {
    /// The protocol using this message (e.g. [`Usage::ATM`]).
    pub usage: Usage,
    /// The encryption protocol whose keys are meant (e.g. [`Encryption::OMEMO2`]).
    pub encryption: Encryption,
    /// The key owners, at least one.
    pub key_owners: Vec<KeyOwner>,
}

impl TrustMessage {
    /// Reads a trust message from XML text with the default [`Limits`].
    pub fn parse(xml: &str) -> Result<TrustMessage, ParseError> {
        crate::parse::parse_str(xml, &Limits::default())
    }

    /// Reads a trust message from XML text with the given [`Limits`].
    pub fn parse_with_limits(xml: &str, limits: &Limits) -> Result<TrustMessage, ParseError> {
        crate::parse::parse_str(xml, limits)
    }

    /// Reads a trust message from an already built element with the given
    /// [`Limits`] (`max_input_bytes` does not apply). Errors carry no position.
    pub fn from_element_with_limits(
        elem: &minidom::Element,
        limits: &Limits,
    ) -> Result<TrustMessage, ParseError> {
        crate::parse::from_element(elem, limits)
    }

    /// Checks the invariants a parsed message has (useful for values built
    /// by hand before sending): at least one key owner, each with a key, no
    /// key both trusted and distrusted, no repeated owner or key.
    pub fn check(&self) -> Result<(), ParseError> {
        let limits = Limits {
            max_keys: usize::MAX,
            max_key_owners: usize::MAX,
            max_input_bytes: usize::MAX,
            max_depth: usize::MAX,
        };
        let mut b = Builder::new(&limits);
        let at = Location::default();
        for owner in &self.key_owners {
            b.start_owner(owner.jid.as_str(), at)?;
            for (kind, list) in [
                (KeyKind::Trust, &owner.trust),
                (KeyKind::Distrust, &owner.distrust),
            ] {
                for k in list {
                    b.key(kind, k.clone(), at)?;
                }
            }
            b.end_owner()?;
        }
        let rebuilt = b.finish(self.usage.clone(), self.encryption.clone(), at)?;
        // Only repeats make the normalized form differ.
        if rebuilt.key_owners != self.key_owners {
            let jid = self
                .key_owners
                .iter()
                .zip(&rebuilt.key_owners)
                .find(|(a, b)| a != b)
                .map(|(a, _)| a)
                .or(self.key_owners.last())
                .map(|o| o.jid.to_string())
                .unwrap_or_default();
            return Err(ParseError::Repeated { jid });
        }
        Ok(())
    }

    /// Number of key identifiers in all lists.
    pub fn key_count(&self) -> usize {
        self.key_owners
            .iter()
            .map(|o| o.trust.len() + o.distrust.len())
            .sum()
    }

    /// Serializes to compact XML text (no XML declaration, no whitespace
    /// between elements). Each owner writes its `<trust/>` elements, then its
    /// `<distrust/>` elements.
    pub fn to_xml(&self) -> String {
        let mut out =
            String::with_capacity(128 + self.key_count() * 64 + self.key_owners.len() * 48);
        out.push_str("<trust-message xmlns='");
        out.push_str(NS_TM);
        out.push_str("' usage='");
        escape_into(self.usage.as_str(), &mut out);
        out.push_str("' encryption='");
        escape_into(self.encryption.as_str(), &mut out);
        out.push_str("'>");
        for owner in &self.key_owners {
            out.push_str("<key-owner jid='");
            escape_into(owner.jid.as_str(), &mut out);
            out.push_str("'>");
            for k in &owner.trust {
                out.push_str("<trust>");
                k.write_base64(&mut out);
                out.push_str("</trust>");
            }
            for k in &owner.distrust {
                out.push_str("<distrust>");
                k.write_base64(&mut out);
                out.push_str("</distrust>");
            }
            out.push_str("</key-owner>");
        }
        out.push_str("</trust-message>");
        out
    }
}

fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
}

impl std::str::FromStr for TrustMessage {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        TrustMessage::parse(s)
    }
}

impl TryFrom<minidom::Element> for TrustMessage {
    type Error = ParseError;
    fn try_from(elem: minidom::Element) -> Result<Self, ParseError> {
        crate::parse::from_element(&elem, &Limits::default())
    }
}

impl TryFrom<&minidom::Element> for TrustMessage {
    type Error = ParseError;
    fn try_from(elem: &minidom::Element) -> Result<Self, ParseError> {
        crate::parse::from_element(elem, &Limits::default())
    }
}

impl From<TrustMessage> for minidom::Element {
    fn from(tm: TrustMessage) -> minidom::Element {
        minidom::Element::from(&tm)
    }
}

impl From<&TrustMessage> for minidom::Element {
    fn from(tm: &TrustMessage) -> minidom::Element {
        let key = |kind: &str, k: &KeyId| {
            minidom::Element::builder(kind, NS_TM)
                .append(k.to_base64())
                .build()
        };
        let owners = tm.key_owners.iter().map(|o| {
            minidom::Element::builder("key-owner", NS_TM)
                .attr(rxml::xml_ncname!("jid").to_owned(), o.jid.as_str())
                .append_all(o.trust.iter().map(|k| key("trust", k)))
                .append_all(o.distrust.iter().map(|k| key("distrust", k)))
                .build()
        });
        minidom::Element::builder("trust-message", NS_TM)
            .attr(rxml::xml_ncname!("usage").to_owned(), tm.usage.as_str())
            .attr(
                rxml::xml_ncname!("encryption").to_owned(),
                tm.encryption.as_str(),
            )
            .append_all(owners)
            .build()
    }
}

fn jid_hash(jid: &BareJid) -> u64 {
    FxBuildHasher.hash_one(jid.as_str())
}

/// Accumulates a trust message while enforcing limits, merging and
/// deduplication; shared by the text and the element readers.
pub(crate) struct Builder<'l> {
    limits: &'l Limits,
    owners: Vec<KeyOwner>,
    /// Indices into `owners`, by JID (the JIDs are not copied).
    by_jid: hashbrown::HashTable<usize>,
    /// For owners with many keys: owner index → key → kind (small owners are
    /// checked by a scan of their lists, which allocates nothing).
    large: HashMap<usize, HashMap<KeyId, KeyKind>>,
    owner_elements: usize,
    keys: usize,
    /// Index of the open owner, its start, and keys in this element.
    current: Option<(usize, Location, usize)>,
}

impl<'l> Builder<'l> {
    pub(crate) fn new(limits: &'l Limits) -> Self {
        Self::with_capacity(limits, 0)
    }

    /// A builder expecting about `owners` key owners.
    pub(crate) fn with_capacity(limits: &'l Limits, owners: usize) -> Self {
        let owners = owners.min(limits.max_key_owners);
        Builder {
            limits,
            owners: Vec::with_capacity(owners),
            by_jid: hashbrown::HashTable::with_capacity(owners),
            large: HashMap::default(),
            owner_elements: 0,
            keys: 0,
            current: None,
        }
    }

    pub(crate) fn start_owner(&mut self, jid: &str, at: Location) -> Result<(), ParseError> {
        self.owner_elements += 1;
        if self.owner_elements > self.limits.max_key_owners {
            return Err(ParseError::TooManyKeyOwners {
                limit: self.limits.max_key_owners,
                at,
            });
        }
        let parsed = jid::Jid::new(jid).map_err(|e| ParseError::InvalidJid {
            value: jid.to_owned(),
            reason: e.to_string(),
            at,
        })?;
        if !parsed.is_bare() {
            return Err(ParseError::FullJid {
                value: jid.to_owned(),
                at,
            });
        }
        let bare = parsed.into_bare();
        let owners = &self.owners;
        let hash = jid_hash(&bare);
        let found = self
            .by_jid
            .find(hash, |&i| owners.get(i).is_some_and(|o| o.jid == bare));
        let idx = match found {
            Some(&i) => i,
            None => {
                let i = owners.len();
                self.by_jid
                    .insert_unique(hash, i, |&i| owners.get(i).map_or(0, |o| jid_hash(&o.jid)));
                self.owners.push(KeyOwner::new(bare));
                i
            }
        };
        self.current = Some((idx, at, 0));
        Ok(())
    }

    /// The JID of the open owner, for error messages.
    pub(crate) fn current_jid(&self) -> String {
        self.current
            .and_then(|(i, _, _)| self.owners.get(i))
            .map(|o| o.jid.to_string())
            .unwrap_or_default()
    }

    /// Counts a key element against the limit before its text is decoded.
    pub(crate) fn count_key(&mut self, at: Location) -> Result<(), ParseError> {
        self.keys += 1;
        if self.keys > self.limits.max_keys {
            return Err(ParseError::TooManyKeys {
                limit: self.limits.max_keys,
                at,
            });
        }
        Ok(())
    }

    pub(crate) fn key_text(
        &mut self,
        kind: KeyKind,
        text: &str,
        at: Location,
    ) -> Result<(), ParseError> {
        let trimmed = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
        let key = KeyId::from_base64(trimmed).map_err(|reason| ParseError::InvalidKey {
            kind,
            jid: self.current_jid(),
            reason,
            at,
        })?;
        self.add_key(kind, key, at)
    }

    /// Counts and adds an already decoded key.
    pub(crate) fn key(
        &mut self,
        kind: KeyKind,
        key: KeyId,
        at: Location,
    ) -> Result<(), ParseError> {
        self.count_key(at)?;
        self.add_key(kind, key, at)
    }

    fn add_key(&mut self, kind: KeyKind, key: KeyId, at: Location) -> Result<(), ParseError> {
        let Some((idx, _, n)) = self.current.as_mut() else {
            return Err(ParseError::UnexpectedElement {
                name: kind.element_name().into(),
                parent: "trust-message",
                at,
            });
        };
        *n += 1;
        let idx = *idx;
        let Some(owner) = self.owners.get_mut(idx) else {
            return Ok(());
        };
        /// Owners with more keys than this get a set.
        const SCAN: usize = 16;
        let previous = if owner.trust.len() + owner.distrust.len() < SCAN {
            if owner.trust.contains(&key) {
                Some(KeyKind::Trust)
            } else if owner.distrust.contains(&key) {
                Some(KeyKind::Distrust)
            } else {
                None
            }
        } else {
            let set = self.large.entry(idx).or_insert_with(|| {
                let mut set = HashMap::default();
                for k in &owner.trust {
                    set.insert(k.clone(), KeyKind::Trust);
                }
                for k in &owner.distrust {
                    set.insert(k.clone(), KeyKind::Distrust);
                }
                set
            });
            set.get(&key).copied()
        };
        match previous {
            Some(prev) if prev == kind => Ok(()),
            Some(_) => Err(ParseError::TrustedAndDistrusted {
                jid: owner.jid.to_string(),
                key: key.to_base64(),
                at,
            }),
            None => {
                if let Some(set) = self.large.get_mut(&idx) {
                    set.insert(key.clone(), kind);
                }
                match kind {
                    KeyKind::Trust => owner.trust.push(key),
                    KeyKind::Distrust => owner.distrust.push(key),
                }
                Ok(())
            }
        }
    }

    pub(crate) fn end_owner(&mut self) -> Result<(), ParseError> {
        if let Some((_, at, 0)) = self.current {
            return Err(ParseError::KeyOwnerWithoutKeys {
                jid: self.current_jid(),
                at,
            });
        }
        self.current = None;
        Ok(())
    }

    pub(crate) fn finish(
        self,
        usage: Usage,
        encryption: Encryption,
        at: Location,
    ) -> Result<TrustMessage, ParseError> {
        if self.owners.is_empty() {
            return Err(ParseError::NoKeyOwner { at });
        }
        Ok(TrustMessage {
            usage,
            encryption,
            key_owners: self.owners,
        })
    }
}

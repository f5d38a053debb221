//! The Trust Message URI (XEP-0434 §URI Query Types, RFC 5122, XEP-0147):
//! `xmpp:bob@example.com?trust-message;encryption=urn:xmpp:omemo:2;trust=HEX;distrust=HEX`.

use std::collections::HashMap;
use std::fmt;

use jid::BareJid;

use crate::key::{KeyId, KeyIdError};
use crate::message::{KeyOwner, TrustMessage};
use crate::ns::{Encryption, NamespaceError, Usage};
use crate::KeyKind;

/// Why a Trust Message URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// The URI does not start with `xmpp:`.
    #[error("not an xmpp: URI")]
    NotXmpp,
    /// The URI has no `?` query.
    #[error("URI has no query")]
    NoQuery,
    /// The query type is not `trust-message`.
    #[error("query type {0:?} is not trust-message")]
    WrongQueryType(String),
    /// The URI has a `#` fragment, which has no meaning here.
    #[error("URI has a fragment")]
    Fragment,
    /// A `%` is not followed by two hex digits, or the decoded bytes are
    /// not UTF-8.
    #[error("bad percent-encoding in {0}")]
    PercentEncoding(&'static str),
    /// The path is not a valid JID.
    #[error("invalid JID {value:?}: {reason}")]
    InvalidJid {
        /// The decoded path.
        value: String,
        /// The `jid` crate's reason.
        reason: String,
    },
    /// The path is a full JID; the key owner is a bare JID.
    #[error("{0:?} is a full JID; a bare JID is required")]
    FullJid(String),
    /// The first key-value pair is not `encryption`.
    #[error("the first query pair must be encryption")]
    MissingEncryption,
    /// `encryption` is not a valid namespace.
    #[error("invalid encryption {value:?}: {reason}")]
    InvalidEncryption {
        /// The decoded value.
        value: String,
        /// Why.
        reason: NamespaceError,
    },
    /// A pair is not `key=value`, or its key is neither `trust` nor
    /// `distrust` (a second `encryption` included).
    #[error("unexpected query pair {0:?}")]
    UnexpectedPair(String),
    /// There is no `trust` or `distrust` pair.
    #[error("no trust or distrust key")]
    NoKeys,
    /// A key is not Base16.
    #[error("invalid {} key {value:?}: {reason}", kind.element_name())]
    BadKey {
        /// `trust` or `distrust`.
        kind: KeyKind,
        /// The text found.
        value: String,
        /// Why.
        reason: KeyIdError,
    },
    /// The same key is both trusted and distrusted.
    #[error("key {0} is both trusted and distrusted")]
    TrustedAndDistrusted(String),
    /// More keys than [`TrustUri::MAX_KEYS`].
    #[error("more than {0} keys")]
    TooManyKeys(usize),
}

/// A Trust Message URI: one key owner, the encryption, and keys to trust
/// and distrust (lower-case Base16 in the URI, either case accepted).
///
/// As in the element, a key repeated in the same list is deduplicated and
/// a key both trusted and distrusted is refused. Generation writes all
/// `trust` pairs, then all `distrust` pairs, which reproduces the XEP-0434
/// example exactly:
///
/// ```
/// use atm_tm::TrustUri;
/// let text = "xmpp:bob@example.com?trust-message;encryption=urn:xmpp:omemo:2;\
///     trust=623548d3835c6d33ef5cb680f7944ef381cf712bf23a0119dabe5c4f252cd02f;\
///     distrust=b423f5088de9a924d51b31581723d850c7cc67d0a4fe6b267c3d301ff56d2413";
/// let uri = TrustUri::parse(text)?;
/// assert_eq!(uri.jid.as_str(), "bob@example.com");
/// assert_eq!(uri.to_string(), text);
/// # Ok::<(), atm_tm::UriError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustUri {
    /// The key owner (the URI path).
    pub jid: BareJid,
    /// The `encryption` namespace.
    pub encryption: Encryption,
    /// Keys to trust.
    pub trust: Vec<KeyId>,
    /// Keys to distrust.
    pub distrust: Vec<KeyId>,
}

impl TrustUri {
    /// Most keys accepted in one URI (a QR code holds far fewer).
    pub const MAX_KEYS: usize = 10_000;

    /// Parses a Trust Message URI. An authority (`xmpp://me@host/…`) is
    /// accepted and ignored: it only names the account to act from.
    pub fn parse(uri: &str) -> Result<TrustUri, UriError> {
        let rest = uri
            .get(..5)
            .filter(|s| s.eq_ignore_ascii_case("xmpp:"))
            .map(|_| &uri[5..])
            .ok_or(UriError::NotXmpp)?;
        if rest.contains('#') {
            return Err(UriError::Fragment);
        }
        let (path, query) = rest.split_once('?').ok_or(UriError::NoQuery)?;
        let path = match path.strip_prefix("//") {
            Some(auth_path) => auth_path.split_once('/').map_or("", |(_, p)| p),
            None => path,
        };
        let jid_text = percent_decode(path, "path")?;
        let jid = jid::Jid::new(&jid_text).map_err(|e| UriError::InvalidJid {
            value: jid_text.clone(),
            reason: e.to_string(),
        })?;
        if !jid.is_bare() {
            return Err(UriError::FullJid(jid_text));
        }
        let jid = jid.into_bare();

        let mut parts = query.split(';');
        let qtype = parts.next().unwrap_or_default();
        if qtype != "trust-message" {
            return Err(UriError::WrongQueryType(percent_decode(
                qtype,
                "query type",
            )?));
        }
        let enc = parts.next().ok_or(UriError::MissingEncryption)?;
        let enc = enc
            .strip_prefix("encryption=")
            .ok_or(UriError::MissingEncryption)?;
        let enc = percent_decode(enc, "encryption")?;
        let encryption = Encryption::new(enc.clone())
            .map_err(|reason| UriError::InvalidEncryption { value: enc, reason })?;
        let mut out = TrustUri {
            jid,
            encryption,
            trust: Vec::new(),
            distrust: Vec::new(),
        };
        let mut seen: HashMap<KeyId, KeyKind> = HashMap::new();
        for (n, pair) in parts.enumerate() {
            if n >= Self::MAX_KEYS {
                return Err(UriError::TooManyKeys(Self::MAX_KEYS));
            }
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| UriError::UnexpectedPair(pair.to_owned()))?;
            let kind = match k {
                "trust" => KeyKind::Trust,
                "distrust" => KeyKind::Distrust,
                _ => return Err(UriError::UnexpectedPair(pair.to_owned())),
            };
            let v = percent_decode(v, "key")?;
            let key = KeyId::from_hex(&v).map_err(|reason| UriError::BadKey {
                kind,
                value: v.clone(),
                reason,
            })?;
            match seen.get(&key) {
                Some(prev) if *prev == kind => {}
                Some(_) => return Err(UriError::TrustedAndDistrusted(key.to_hex())),
                None => {
                    seen.insert(key.clone(), kind);
                    match kind {
                        KeyKind::Trust => out.trust.push(key),
                        KeyKind::Distrust => out.distrust.push(key),
                    }
                }
            }
        }
        if out.trust.is_empty() && out.distrust.is_empty() {
            return Err(UriError::NoKeys);
        }
        Ok(out)
    }

    /// The URI text (same as `to_string()`).
    pub fn to_uri(&self) -> String {
        let mut s = String::from("xmpp:");
        encode_jid(&self.jid, &mut s);
        s.push_str("?trust-message;encryption=");
        percent_encode(self.encryption.as_str(), is_query_char, &mut s);
        for k in &self.trust {
            s.push_str(";trust=");
            s.push_str(&k.to_hex());
        }
        for k in &self.distrust {
            s.push_str(";distrust=");
            s.push_str(&k.to_hex());
        }
        s
    }

    /// The key owner this URI describes.
    pub fn key_owner(&self) -> KeyOwner {
        KeyOwner {
            jid: self.jid.clone(),
            trust: self.trust.clone(),
            distrust: self.distrust.clone(),
        }
    }

    /// A trust message with this URI's single key owner.
    pub fn to_trust_message(&self, usage: Usage) -> TrustMessage {
        TrustMessage {
            usage,
            encryption: self.encryption.clone(),
            key_owners: vec![self.key_owner()],
        }
    }
}

impl fmt::Display for TrustUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

impl std::str::FromStr for TrustUri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Self, UriError> {
        TrustUri::parse(s)
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 5122 `nodeallow` plus unreserved (localpart).
fn is_node_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
        )
}

/// RFC 3986 reg-name characters (domain).
fn is_host_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
        )
}

/// Query values: unreserved plus `:` and `@`, which RFC 3986 allows in a
/// query and XEP-0434's example writes unencoded (`urn:xmpp:omemo:2`).
fn is_query_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b':' | b'@' | b'/')
}

fn percent_encode(s: &str, keep: fn(u8) -> bool, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

fn encode_jid(jid: &BareJid, out: &mut String) {
    if let Some(node) = jid.node() {
        percent_encode(node.as_str(), is_node_char, out);
        out.push('@');
    }
    percent_encode(jid.domain().as_str(), is_host_char, out);
}

fn percent_decode(s: &str, what: &'static str) -> Result<String, UriError> {
    let raw = s.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or(UriError::PercentEncoding(what))?;
            let b = u8::from_str_radix(hex, 16).map_err(|_| UriError::PercentEncoding(what))?;
            if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(UriError::PercentEncoding(what));
            }
            out.push(b);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UriError::PercentEncoding(what))
}

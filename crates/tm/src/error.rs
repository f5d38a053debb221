//! Errors of trust-message parsing.

use std::fmt;

use crate::key::KeyIdError;
use crate::ns::NamespaceError;

/// A place in the XML input: 1-based line, and 1-based column counted in
/// characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line, starting at 1.
    pub line: usize,
    /// Column in characters, starting at 1.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `input`.
    pub(crate) fn of(input: &str, offset: usize) -> Position {
        let mut offset = offset.min(input.len());
        while !input.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &input[..offset];
        let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Position { line, column }
    }
}

/// Where an error was found: a text position when parsing XML text, nothing
/// when reading an already built [`minidom::Element`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location(pub Option<Position>);

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(p) => write!(f, " at line {}, column {}", p.line, p.column),
            None => Ok(()),
        }
    }
}

/// Which of the two key lists a key identifier is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// `<trust/>`.
    Trust,
    /// `<distrust/>`.
    Distrust,
}

impl KeyKind {
    /// The element name.
    pub fn element_name(self) -> &'static str {
        match self {
            KeyKind::Trust => "trust",
            KeyKind::Distrust => "distrust",
        }
    }
}

/// Why a `<trust-message/>` was refused. Every variant says what was wrong
/// and, when parsing text, where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The input is larger than [`Limits::max_input_bytes`](crate::Limits).
    #[error("input of {size} bytes exceeds the limit of {limit} bytes")]
    InputTooLarge {
        /// Input size in bytes.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The XML is not well-formed (or uses a forbidden construct such as a
    /// DTD or comment).
    #[error("XML error{at}: {message}")]
    Xml {
        /// The XML parser's description.
        message: String,
        /// Where the parser stopped.
        at: Location,
    },
    /// The root element is not a trust message of `urn:xmpp:tm:1`; an element
    /// named `trust-message` in another namespace (such as the old
    /// `urn:xmpp:tm:0`) lands here too.
    #[error(
        "expected <trust-message xmlns='urn:xmpp:tm:1'>, found <{name} xmlns='{namespace}'>{at}"
    )]
    NotATrustMessage {
        /// Name of the element found.
        name: String,
        /// Namespace of the element found.
        namespace: String,
        /// Where.
        at: Location,
    },
    /// A required attribute is absent.
    #[error("<{element}> lacks the '{attribute}' attribute{at}")]
    MissingAttribute {
        /// Element name.
        element: &'static str,
        /// Attribute name.
        attribute: &'static str,
        /// Where.
        at: Location,
    },
    /// An unknown attribute without namespace on a trust-message element.
    #[error("<{element}> has unknown attribute '{attribute}'{at}")]
    UnknownAttribute {
        /// Element name.
        element: &'static str,
        /// Attribute name.
        attribute: String,
        /// Where.
        at: Location,
    },
    /// `usage` or `encryption` is not an acceptable namespace.
    #[error("invalid '{attribute}' value {value:?}{at}: {reason}")]
    InvalidNamespace {
        /// `usage` or `encryption`.
        attribute: &'static str,
        /// The value found.
        value: String,
        /// Why it was refused.
        reason: NamespaceError,
        /// Where.
        at: Location,
    },
    /// The key owner's `jid` is not a valid JID.
    #[error("invalid key owner JID {value:?}{at}: {reason}")]
    InvalidJid {
        /// The value found.
        value: String,
        /// The `jid` crate's reason.
        reason: String,
        /// Where.
        at: Location,
    },
    /// The key owner's `jid` has a resource: key owners are bare JIDs.
    #[error("key owner JID {value:?} is a full JID; a bare JID is required{at}")]
    FullJid {
        /// The value found.
        value: String,
        /// Where.
        at: Location,
    },
    /// The trust message has no `<key-owner/>`.
    #[error("<trust-message> contains no <key-owner>{at}")]
    NoKeyOwner {
        /// Where the trust message starts.
        at: Location,
    },
    /// A `<key-owner/>` element has neither `<trust/>` nor `<distrust/>`.
    #[error("<key-owner jid='{jid}'> contains no <trust> or <distrust>{at}")]
    KeyOwnerWithoutKeys {
        /// The owner.
        jid: String,
        /// Where the key owner starts.
        at: Location,
    },
    /// A `<trust/>`/`<distrust/>` text is not valid, non-empty Base64.
    #[error("invalid <{}> key identifier of {jid}{at}: {reason}", kind.element_name())]
    InvalidKey {
        /// The list.
        kind: KeyKind,
        /// The owner.
        jid: String,
        /// Why.
        reason: KeyIdError,
        /// Where the key element starts.
        at: Location,
    },
    /// The same key of the same owner is both trusted and distrusted.
    #[error("key {key} of {jid} is both trusted and distrusted{at}")]
    TrustedAndDistrusted {
        /// The owner.
        jid: String,
        /// The key, Base64.
        key: String,
        /// Where the second occurrence starts.
        at: Location,
    },
    /// An element of the trust-message namespace where it does not belong.
    #[error("unexpected element <{name}> in <{parent}>{at}")]
    UnexpectedElement {
        /// The element found.
        name: String,
        /// Its parent.
        parent: &'static str,
        /// Where.
        at: Location,
    },
    /// Non-whitespace text where only elements are allowed.
    #[error("unexpected text in <{parent}>{at}")]
    UnexpectedText {
        /// The element holding the text.
        parent: &'static str,
        /// Where.
        at: Location,
    },
    /// More key identifiers than [`Limits::max_keys`](crate::Limits).
    #[error("more than {limit} key identifiers{at}")]
    TooManyKeys {
        /// The limit in force.
        limit: usize,
        /// Where the first key beyond the limit starts.
        at: Location,
    },
    /// More key owner elements than [`Limits::max_key_owners`](crate::Limits).
    #[error("more than {limit} key owners{at}")]
    TooManyKeyOwners {
        /// The limit in force.
        limit: usize,
        /// Where the first key owner beyond the limit starts.
        at: Location,
    },
    /// Elements nested deeper than [`Limits::max_depth`](crate::Limits).
    #[error("elements nested deeper than {limit}{at}")]
    TooDeep {
        /// The limit in force.
        limit: usize,
        /// Where.
        at: Location,
    },
    /// A hand-built message repeats a key owner or a key (only reported by
    /// [`TrustMessage::check`](crate::TrustMessage::check); reading merges
    /// and deduplicates instead).
    #[error("key owner {jid} or one of its keys is repeated")]
    Repeated {
        /// The owner.
        jid: String,
    },
}

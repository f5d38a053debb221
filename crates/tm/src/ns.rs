//! Typed namespace values of the `usage` and `encryption` attributes.

use std::borrow::Cow;
use std::fmt;

/// Namespace of trust messages (XEP-0434 version 1).
pub const NS_TM: &str = "urn:xmpp:tm:1";
/// Namespace of Automatic Trust Management (XEP-0450), the ATM `usage`.
pub const NS_ATM: &str = "urn:xmpp:atm:1";
/// Namespace of OMEMO 2 (XEP-0384), an `encryption` value.
pub const NS_OMEMO2: &str = "urn:xmpp:omemo:2";

/// Why a text is not accepted as a namespace value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamespaceError {
    /// The value is empty.
    #[error("empty namespace")]
    Empty,
    /// The value contains whitespace or a control character.
    #[error("namespace contains whitespace or control character at byte {0}")]
    BadChar(usize),
}

fn check(s: &str) -> Result<(), NamespaceError> {
    if s.is_empty() {
        return Err(NamespaceError::Empty);
    }
    if let Some((i, _)) = s
        .char_indices()
        .find(|(_, c)| c.is_whitespace() || c.is_control())
    {
        return Err(NamespaceError::BadChar(i));
    }
    Ok(())
}

macro_rules! ns_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Cow<'static, str>);

        impl $name {
            /// Checks and wraps a namespace: non-empty, no whitespace or
            /// control characters.
            pub fn new(ns: impl Into<String>) -> Result<Self, NamespaceError> {
                let ns = ns.into();
                check(&ns)?;
                Ok(Self(Cow::Owned(ns)))
            }

            /// The namespace text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = NamespaceError;
            fn from_str(s: &str) -> Result<Self, NamespaceError> {
                Self::new(s)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }
    };
}

ns_type!(
    /// The `usage` attribute: the namespace of the protocol that uses the
    /// trust message, e.g. [`Usage::ATM`].
    Usage
);
ns_type!(
    /// The `encryption` attribute: the namespace of the encryption protocol
    /// whose keys are meant, e.g. [`Encryption::OMEMO2`].
    Encryption
);

impl Usage {
    /// Automatic Trust Management, `urn:xmpp:atm:1`.
    pub const ATM: Usage = Usage(Cow::Borrowed(NS_ATM));
}

impl Encryption {
    /// OMEMO 2, `urn:xmpp:omemo:2`.
    pub const OMEMO2: Encryption = Encryption(Cow::Borrowed(NS_OMEMO2));
}

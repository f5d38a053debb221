//! Trust levels, policies and the other small vocabulary of the engine.

use std::fmt;
use std::str::FromStr;

/// The trust an endpoint holds in one key: the six levels of the reference
/// implementation (QXmpp's `TrustLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrustLevel {
    /// Nothing decided (policy `manual`, or a key not yet judged).
    Undecided,
    /// Trusted blindly by the TOAKAFA policy (no key of the owner is authenticated yet).
    AutomaticallyTrusted,
    /// Trusted by the user without authentication.
    ManuallyTrusted,
    /// Authenticated: by the user, or through a trust message (ATM).
    Authenticated,
    /// Distrusted by the TOAKAFA policy (the owner has authenticated keys, this one is not).
    AutomaticallyDistrusted,
    /// Distrusted: by the user, or through a trust message (ATM).
    ManuallyDistrusted,
}

impl TrustLevel {
    /// All six levels, in declaration order.
    pub const ALL: [TrustLevel; 6] = [
        TrustLevel::Undecided,
        TrustLevel::AutomaticallyTrusted,
        TrustLevel::ManuallyTrusted,
        TrustLevel::Authenticated,
        TrustLevel::AutomaticallyDistrusted,
        TrustLevel::ManuallyDistrusted,
    ];

    /// The snake_case name used in scenarios, JSON and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            TrustLevel::Undecided => "undecided",
            TrustLevel::AutomaticallyTrusted => "automatically_trusted",
            TrustLevel::ManuallyTrusted => "manually_trusted",
            TrustLevel::Authenticated => "authenticated",
            TrustLevel::AutomaticallyDistrusted => "automatically_distrusted",
            TrustLevel::ManuallyDistrusted => "manually_distrusted",
        }
    }

    /// `true` for the two distrusted levels.
    pub fn is_distrusted(self) -> bool {
        matches!(
            self,
            TrustLevel::AutomaticallyDistrusted | TrustLevel::ManuallyDistrusted
        )
    }

    /// `true` for the trusted levels (automatically or manually trusted, authenticated).
    pub fn is_trusted(self) -> bool {
        matches!(
            self,
            TrustLevel::AutomaticallyTrusted
                | TrustLevel::ManuallyTrusted
                | TrustLevel::Authenticated
        )
    }

    /// The level that a decision of this kind sets (`authenticated` or
    /// `manually_distrusted`).
    pub fn of_decision(kind: DecisionKind) -> TrustLevel {
        match kind {
            DecisionKind::Trust => TrustLevel::Authenticated,
            DecisionKind::Distrust => TrustLevel::ManuallyDistrusted,
        }
    }

    /// The kind of decision this level records, if it is a decided level.
    pub fn decision(self) -> Option<DecisionKind> {
        match self {
            TrustLevel::Authenticated => Some(DecisionKind::Trust),
            TrustLevel::ManuallyDistrusted => Some(DecisionKind::Distrust),
            _ => None,
        }
    }
}

impl fmt::Display for TrustLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the six trust levels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trust level {0:?} (expected one of undecided, automatically_trusted, manually_trusted, authenticated, automatically_distrusted, manually_distrusted)")]
pub struct UnknownLevel(pub String);

impl FromStr for TrustLevel {
    type Err = UnknownLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrustLevel::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| UnknownLevel(s.to_owned()))
    }
}

/// What a trust decision says about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecisionKind {
    /// Authenticate the key (`<trust>`).
    Trust,
    /// Distrust the key (`<distrust>`).
    Distrust,
}

/// The security policy of one encryption namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Policy {
    /// Trust Only Authenticated Keys After First Authentication (XEP-0450
    /// §Security Considerations): a new key of an owner with no authenticated key
    /// is `automatically_trusted`; once the owner has an authenticated key, its
    /// `automatically_trusted` keys become `automatically_distrusted` and its new
    /// keys start there.
    #[default]
    Toakafa,
    /// New keys are `undecided` until a decision is made.
    Manual,
}

impl Policy {
    /// `toakafa` or `manual`.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Toakafa => "toakafa",
            Policy::Manual => "manual",
        }
    }
}

impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "toakafa" => Ok(Policy::Toakafa),
            "manual" => Ok(Policy::Manual),
            _ => Err(format!("unknown policy {s:?} (expected toakafa or manual)")),
        }
    }
}

/// Which trust messages an endpoint sends (see `docs/propagation.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Propagation {
    /// The project's rule set: every change travels on along authenticated
    /// keys, so that every authentication a chain allows is reached.
    #[default]
    Complete,
    /// Exactly the trust messages XEP-0450 §Use Cases names, for comparison.
    Xep,
}

impl Propagation {
    /// `complete` or `xep`.
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Complete => "complete",
            Propagation::Xep => "xep",
        }
    }
}

impl FromStr for Propagation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "complete" => Ok(Propagation::Complete),
            "xep" => Ok(Propagation::Xep),
            _ => Err(format!(
                "unknown propagation {s:?} (expected complete or xep)"
            )),
        }
    }
}

/// How keys map to endpoints in the encryption protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyMode {
    /// One key per endpoint (OMEMO).
    #[default]
    PerEndpoint,
    /// One key shared by every endpoint of an account (OOK, e.g. OpenPGP): the
    /// own key stands for every own endpoint and is always a recipient.
    PerAccount,
}

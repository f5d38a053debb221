//! What goes into the engine ([`Input`]) and what comes out ([`Effect`]).

use atm_tm::{BareJid, Encryption, KeyId, TrustMessage};
use chrono::{DateTime, Utc};

use crate::level::{DecisionKind, KeyMode, Policy, Propagation, TrustLevel};
use crate::store::{Confirmation, Decision, KeyRef};
use crate::times::DecisionTimes;

/// How one engine is set up: whose it is and which rules it follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This endpoint's account and key.
    pub own: KeyRef,
    /// The encryption namespace this engine manages (the `encryption` of its
    /// trust messages).
    pub encryption: Encryption,
    /// The policy used until a [`Input::SetPolicy`] is stored.
    pub policy: Policy,
    /// Which trust messages are sent.
    pub propagation: Propagation,
    /// One key per endpoint (OMEMO) or per account (OOK).
    pub key_mode: KeyMode,
    /// Confirmation mode: automatic decisions wait for the user's yes or no.
    pub confirm: bool,
    /// How much unauthenticated senders can make this endpoint store.
    pub limits: Limits,
}

/// Bounds on what others can make an endpoint store before it authenticated
/// them (postponed decisions) or learned the keys decided on (pending
/// decisions).
///
/// What is dropped first: beyond a sender's or an account's own bound, that
/// sender's new decisions are dropped (what it sent first is kept). When all
/// postponed decisions together reach [`Limits::postponed_total`], a new one
/// evicts the oldest decision of the account that holds the most, unless that
/// is the new decision's own account (then the new one is dropped); the own
/// account's decisions are never evicted for another account's. So one
/// account with many keys, or many accounts, can fill at most their own
/// shares, and a flood pushes out the flooders' decisions first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Postponed decisions of one sender key.
    pub postponed_per_sender: usize,
    /// Postponed decisions of all sender keys of one account.
    pub postponed_per_account: usize,
    /// Postponed decisions of all senders together.
    pub postponed_total: usize,
    /// Pending decisions (about keys not yet known) carried by the trust
    /// messages of one account's senders.
    pub pending_per_account: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            postponed_per_sender: crate::engine::MAX_POSTPONED_PER_SENDER,
            postponed_per_account: crate::engine::MAX_POSTPONED_PER_ACCOUNT,
            postponed_total: crate::engine::MAX_POSTPONED_TOTAL,
            pending_per_account: crate::engine::MAX_PENDING_PER_ACCOUNT,
        }
    }
}

impl Config {
    /// OMEMO 2, TOAKAFA, complete propagation, one key per endpoint, no
    /// confirmation.
    pub fn new(own_jid: BareJid, own_key: KeyId) -> Self {
        Config {
            own: KeyRef::new(own_jid, own_key),
            encryption: Encryption::OMEMO2,
            policy: Policy::Toakafa,
            propagation: Propagation::Complete,
            key_mode: KeyMode::PerEndpoint,
            confirm: false,
            limits: Limits::default(),
        }
    }
}

/// A trust message as the transport (OMEMO + SCE) delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The sender's bare JID (from the stanza, checked against SCE `<from>`).
    pub sender: BareJid,
    /// The key the message was encrypted with, `None` if it came unencrypted.
    pub sender_key: Option<KeyId>,
    /// The SCE `<time>`: when the sender says it sent the message.
    pub time: DateTime<Utc>,
    /// When it was sent as the receiver knows it (XEP-0420 §Affix Elements:
    /// "the sending time derived from the stanza"): the time of receipt for a
    /// live stanza, the server's delay or archive stamp for an offline or
    /// archived one, taken as the last instant its precision covers (a stamp
    /// in whole seconds stands for the end of its second, or two decisions
    /// made in that second would tie). The SCE time must lie within
    /// [`MAX_CLOCK_SKEW`](crate::MAX_CLOCK_SKEW) of it, and no decision the
    /// message carries counts as made later than it.
    pub stamp: DateTime<Utc>,
    /// The trust message.
    pub message: TrustMessage,
    /// Original decision times, if the envelope carried them.
    pub decision_times: DecisionTimes,
    /// The other keys the message was encrypted for (from the OMEMO header);
    /// they received the same decisions, so they are not sent them again. May
    /// be empty.
    pub co_recipients: Vec<KeyRef>,
}

/// One thing that happened to the endpoint: the engine's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The user authenticates and/or distrusts keys of one key owner (for
    /// example after comparing fingerprints or scanning a Trust Message URI).
    Manual {
        /// The key owner.
        owner: BareJid,
        /// Keys to authenticate.
        authenticate: Vec<KeyId>,
        /// Keys to distrust.
        distrust: Vec<KeyId>,
    },
    /// A trust message arrived.
    Received(Received),
    /// Keys of an owner were learned (device list and bundles fetched).
    KeysLearned {
        /// The key owner.
        owner: BareJid,
        /// Its keys; already known ones are skipped.
        keys: Vec<KeyId>,
    },
    /// The user changes the security policy.
    SetPolicy(Policy),
    /// The user answers a confirmation request.
    Confirm {
        /// The key the request is about.
        target: KeyRef,
        /// `true` to apply the decision, `false` to drop it.
        accept: bool,
    },
}

impl Input {
    /// The user's decision about one key: authenticate it
    /// ([`DecisionKind::Trust`]) or distrust it.
    pub fn manual(key: KeyRef, kind: DecisionKind) -> Input {
        let (authenticate, distrust) = match kind {
            DecisionKind::Trust => (vec![key.key], vec![]),
            DecisionKind::Distrust => (vec![], vec![key.key]),
        };
        Input::Manual {
            owner: key.owner,
            authenticate,
            distrust,
        }
    }
}

/// Why a level changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// A user action.
    Manual,
    /// A trust message from this (authenticated) sender.
    TrustMessage(KeyRef),
    /// A decision from this sender, postponed until its key was authenticated.
    Postponed(KeyRef),
    /// A decision stored until the key was learned (from this sender, or the
    /// user's own).
    Pending(Option<KeyRef>),
    /// An automatic decision from this sender that the user confirmed.
    Confirmed(KeyRef),
    /// The security policy (TOAKAFA, or a policy change).
    Policy,
    /// This key (distrusted) had decided it after it was distrusted: that
    /// word is void, and the level falls back to what the others said.
    Revoked(KeyRef),
    /// The key was learned and starts at the policy's level.
    KeyLearned,
}

impl Cause {
    /// `true` for changes that came through a trust message (counted as
    /// automatic authentications or distrusts).
    pub fn is_trust_message(&self) -> bool {
        match self {
            Cause::TrustMessage(_) | Cause::Postponed(_) | Cause::Confirmed(_) => true,
            Cause::Pending(sender) => sender.is_some(),
            Cause::Manual | Cause::Policy | Cause::KeyLearned | Cause::Revoked(_) => false,
        }
    }

    /// The sender whose trust message caused this, if any.
    pub fn sender(&self) -> Option<&KeyRef> {
        match self {
            Cause::TrustMessage(s) | Cause::Postponed(s) | Cause::Confirmed(s) => Some(s),
            Cause::Pending(s) => s.as_ref(),
            Cause::Manual | Cause::Policy | Cause::KeyLearned | Cause::Revoked(_) => None,
        }
    }
}

/// A trust message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The account the stanza is addressed to (the own account for messages
    /// only to own endpoints; own endpoints also read messages to a contact).
    pub to: BareJid,
    /// Exactly the keys the message may be encrypted for: each one held as
    /// authenticated by the sender at the end of this input.
    pub recipients: Vec<KeyRef>,
    /// The trust message.
    pub message: TrustMessage,
    /// The original time of every decision in it; the transport puts those
    /// that differ from the send time in a [`DecisionTimes`] element.
    pub decision_times: DecisionTimes,
}

/// Why (part of) a received trust message decided nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoreReason {
    /// It came unencrypted: no authenticated sender key.
    Unencrypted,
    /// Its `usage` is not `urn:xmpp:atm:1`.
    Usage(String),
    /// Its `encryption` is not this engine's namespace.
    Encryption(String),
    /// It was sent by this very endpoint.
    Reflected,
    /// Its sender's key is distrusted.
    SenderDistrusted,
    /// A contact's endpoint sent decisions about another account's keys.
    ForeignOwner(BareJid),
    /// A decision about this endpoint's own key.
    OwnKey,
    /// An unauthenticated sender, or its account, already has as many
    /// decisions waiting as [`Limits`] allows; the rest of its message was
    /// dropped.
    TooManyPostponed,
    /// The sender's account already has as many decisions about unknown keys
    /// waiting as [`Limits::pending_per_account`] allows; those of this
    /// message were dropped.
    TooManyPending,
    /// The SCE time lies more than [`MAX_CLOCK_SKEW`](crate::MAX_CLOCK_SKEW)
    /// away from the sending time the receiver knows (XEP-0420: a wrong clock
    /// or a replayed stanza): the message was rejected.
    ClockSkew {
        /// The SCE time.
        time: DateTime<Utc>,
        /// The sending time the receiver knows.
        stamp: DateTime<Utc>,
    },
    /// A key's decision about itself: it carries no information.
    SelfVouching,
}

/// What the engine did, for the client to show, send or count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A key's level changed.
    TrustChanged {
        /// The key.
        key: KeyRef,
        /// Its level before (`None`: the key was not known).
        from: Option<TrustLevel>,
        /// Its level now.
        to: TrustLevel,
        /// Why.
        cause: Cause,
    },
    /// Send this trust message.
    Send(Outgoing),
    /// A decision was stored until its sender's key is authenticated.
    Postponed {
        /// The sender.
        sender: KeyRef,
        /// The decision.
        decision: Decision,
    },
    /// A decision about an unknown key was stored until the key is learned.
    Pending {
        /// The sender (`None`: the user).
        sender: Option<KeyRef>,
        /// The decision.
        decision: Decision,
    },
    /// Postponed decisions of a sender were dropped because its key is now distrusted.
    PostponedDropped {
        /// The sender.
        sender: KeyRef,
        /// How many.
        count: usize,
    },
    /// Pending decisions (about keys not known yet) of a sender whose key is
    /// now distrusted were dropped.
    PendingDropped {
        /// The sender.
        sender: KeyRef,
        /// How many.
        count: usize,
    },
    /// Postponed decisions were evicted to keep the store bounded (see
    /// [`Limits`]).
    PostponedEvicted {
        /// The account whose senders' decisions were evicted.
        account: BareJid,
        /// How many.
        count: usize,
    },
    /// An automatic decision waits for the user (confirmation mode).
    ConfirmationRequested(Confirmation),
    /// The user declined an automatic decision.
    ConfirmationDeclined(Confirmation),
    /// A trust message, or part of it, decided nothing.
    Ignored(IgnoreReason),
    /// The security policy changed.
    PolicyChanged(Policy),
}

/// Why the engine refused an input, or could not store its effects. Nothing
/// was stored.
#[derive(Debug, thiserror::Error)]
pub enum EngineError<E: std::error::Error + 'static> {
    /// The store failed; the input had no effect.
    #[error("trust store: {0}")]
    Store(#[source] E),
    /// A confirmation answer for a key with no pending confirmation.
    #[error("no confirmation is waiting for key {key} of {owner}")]
    NoConfirmation {
        /// The key owner.
        owner: BareJid,
        /// The key, Base64.
        key: String,
    },
}

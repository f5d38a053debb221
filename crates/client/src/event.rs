//! What the core reports: [`Event`]s for the user interface, [`Handled`] for
//! the caller of [`crate::Endpoint::handle_stanza`].

use atm_engine::{Cause, IgnoreReason, KeyId, KeyRef, TrustLevel};
use chrono::{DateTime, Utc};
use jid::BareJid;

use crate::error::Rejection;
use crate::stanza::Channel;

/// Something the user may want to know, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A device of the own or a contact's account was learned (its bundle
    /// fetched and verified).
    DeviceAppeared {
        /// The account.
        jid: BareJid,
        /// The OMEMO device id.
        device_id: u32,
        /// Its key (identity key).
        key: KeyId,
        /// Its trust level now.
        level: TrustLevel,
        /// Whether ATM authenticated it at once (a decision about it was
        /// waiting); otherwise it is not used until someone decides.
        authenticated: bool,
    },
    /// A key's trust level changed.
    TrustChanged {
        /// The key.
        key: KeyRef,
        /// Before (`None`: newly learned).
        from: Option<TrustLevel>,
        /// After.
        to: TrustLevel,
        /// Why.
        cause: Cause,
    },
    /// A trust message, or part of it, decided nothing.
    TrustMessageIgnored {
        /// Why.
        reason: IgnoreReason,
    },
    /// A decision waits for its sender's key to be authenticated.
    DecisionPostponed {
        /// The sender.
        sender: KeyRef,
        /// The key decided on.
        target: KeyRef,
    },
    /// An encrypted chat message arrived.
    Chat {
        /// The sender's account.
        from: BareJid,
        /// The sender's device.
        device_id: u32,
        /// The sender's key.
        key: KeyId,
        /// The trust in that key (`None`: unknown key).
        level: Option<TrustLevel>,
        /// When it was sent (SCE time).
        sent: DateTime<Utc>,
        /// The text.
        text: String,
    },
    /// A stanza was refused.
    Rejected {
        /// How it came.
        channel: Channel,
        /// Why.
        rejection: Rejection,
    },
    /// The server refused a PEP publication even without `max_items`.
    PublishFailed {
        /// The node.
        node: String,
        /// The server's error.
        reason: String,
    },
    /// A trust message could not be encrypted for a recipient key whose
    /// device is unknown (no bundle).
    RecipientUnknown {
        /// The key.
        key: KeyRef,
    },
}

/// What [`crate::Endpoint::handle_stanza`] did with a stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// A trust message was processed by the engine.
    TrustMessage,
    /// A chat message was decrypted and reported.
    Chat,
    /// A device list was taken in.
    DeviceList,
    /// A bundle was taken in.
    Bundle,
    /// A response to one of our requests was taken in.
    Response,
    /// The stanza had been processed before (same stanza id or content, or
    /// the ratchet recognised the message).
    Duplicate,
    /// An OMEMO message without key material for this device, or an empty one.
    NotForThisDevice,
    /// Not something the core handles (presence, unencrypted message...).
    Ignored,
    /// Refused; also reported as [`Event::Rejected`].
    Rejected(Rejection),
}

/// A trust message in the log of [`crate::Options::record_traffic`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Traffic {
    /// The engine sent a trust message (stored in the outbox).
    Sent {
        /// The `id` of the `<message>` stanza.
        id: String,
        /// The account it is addressed to.
        to: BareJid,
        /// The keys it was encrypted for.
        recipients: Vec<KeyRef>,
        /// Its SCE time.
        time: DateTime<Utc>,
        /// The trust-message element as sent.
        xml: String,
    },
    /// An OMEMO message encrypted for this device arrived and was processed
    /// once (duplicates are not logged again).
    Arrived {
        /// The sender's account.
        from: BareJid,
        /// The `id` of the `<message>` stanza.
        id: Option<String>,
        /// Whether it was a trust message the engine read (`false`: refused,
        /// or not a trust message).
        trust_message: bool,
    },
}

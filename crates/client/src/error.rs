//! Errors: what failed and where. A [`Rejection`] is a stanza refused (it
//! changed nothing); the `*Error` enums are failures of the core itself or of
//! a user command.

use std::path::PathBuf;

use atm_engine::EngineError;
use atm_store::StoreError;

/// Why a received stanza was refused. Nothing was stored, except (where the
/// sender is authentic) its deduplication keys and archive position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A carbon or archive result that did not come from the own account
    /// (someone else wrapped a message to make it look like ours).
    #[error("{wrapper} from {from:?}, not from the own account")]
    ForgedWrapper {
        /// `carbon` or `archive result`.
        wrapper: &'static str,
        /// The outer `from`.
        from: String,
    },
    /// An archive result for a query this core did not send.
    #[error("archive result for unknown query {0:?}")]
    UnknownQuery(Option<String>),
    /// A PEP notification not from a bare JID, or from an account not followed.
    #[error("pubsub notification from {0:?} refused")]
    ForgedNotification(String),
    /// A required child element is missing.
    #[error("<{parent}> has no <{child}>")]
    MissingChild {
        /// The parent.
        parent: &'static str,
        /// The missing child.
        child: &'static str,
    },
    /// A required attribute is missing.
    #[error("<{element}> has no {attribute}")]
    MissingAttribute {
        /// The element.
        element: &'static str,
        /// The attribute.
        attribute: &'static str,
    },
    /// An attribute is invalid.
    #[error("<{element}> {attribute}: {reason}")]
    InvalidAttribute {
        /// The element.
        element: &'static str,
        /// The attribute.
        attribute: &'static str,
        /// Why.
        reason: String,
    },
    /// A JID attribute does not parse.
    #[error("<{element}> {attribute}={value:?}: {reason}")]
    InvalidJid {
        /// The element.
        element: String,
        /// The attribute.
        attribute: &'static str,
        /// The text.
        value: String,
        /// Why.
        reason: String,
    },
    /// A message to another account that is not a copy of one the own
    /// account sent.
    #[error("message to {0} is not for this account")]
    NotAddressedToUs(String),
    /// The `<encrypted>` element is malformed.
    #[error("OMEMO element: {0}")]
    MalformedOmemo(String),
    /// OMEMO refused the message (forged, corrupted, unknown session...).
    #[error("OMEMO refused the message: {0}")]
    Decrypt(String),
    /// The SCE envelope's `from` or `to` does not match the stanza.
    #[error("SCE <{field}> is {envelope}, the stanza says {stanza}")]
    SceMismatch {
        /// `from` or `to`.
        field: &'static str,
        /// The envelope's address.
        envelope: String,
        /// The stanza's address.
        stanza: String,
    },
    /// The SCE envelope is malformed.
    #[error("SCE envelope: {0}")]
    Sce(String),
    /// The decrypted content holds an invalid trust message.
    #[error("trust message: {0}")]
    MalformedTrustMessage(String),
    /// A device list or bundle is malformed or its signature is wrong.
    #[error("{what} of {jid}: {reason}")]
    BadPubsubItem {
        /// `device list` or `bundle N`.
        what: String,
        /// The account.
        jid: String,
        /// Why.
        reason: String,
    },
    /// A bundle names another identity key than the one known for the device.
    #[error("device {device_id} of {jid} changed its identity key; refused")]
    IdentityChanged {
        /// The account.
        jid: String,
        /// The device.
        device_id: u32,
    },
    /// The message's sender key belongs to another device of the sender
    /// than the one the header names (a relabelled key exchange).
    #[error("device {device_id} of {jid} used the key of its device {key_device}")]
    WrongDevice {
        /// The account.
        jid: String,
        /// The device the header names.
        device_id: u32,
        /// The device whose identity key it is.
        key_device: u32,
    },
    /// An iq response to no request of ours, or from another entity than asked.
    #[error("unexpected iq response {id:?} from {from:?}")]
    UnexpectedResponse {
        /// The iq id.
        id: String,
        /// Its `from`.
        from: String,
    },
}

/// A failure of the core: the store, the engine or the OMEMO state. The
/// stanza or command that hit it had no effect (its unit of work was rolled
/// back); the stanza may be handed in again.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The state directory's database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ATM engine failed (through its store).
    #[error("trust engine: {0}")]
    Engine(#[from] EngineError<StoreError>),
    /// The OMEMO device failed locally (state, randomness).
    #[error("OMEMO: {0}")]
    Omemo(String),
    /// Test hook: processing stopped at this point as if the process died.
    #[error("stopped at crash point {0:?}")]
    Crashed(crate::CrashPoint),
}

/// Why a state directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The directory could not be created or read.
    #[error("{}: {source}", path.display())]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened (newer format, corrupt, foreign...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The directory belongs to another account.
    #[error("{} holds the device of {found}, not of {requested}", path.display())]
    OtherAccount {
        /// The directory.
        path: PathBuf,
        /// The account stored there.
        found: String,
        /// The account asked for.
        requested: String,
    },
    /// Creating or reading the device failed.
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// Why a user command failed. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The fingerprint is not hexadecimal key bytes.
    #[error("malformed fingerprint {text:?}: {reason}")]
    MalformedFingerprint {
        /// The text given.
        text: String,
        /// Why.
        reason: String,
    },
    /// No such key of that account is known.
    #[error("no key {fingerprint} of {jid} is known")]
    UnknownKey {
        /// The account.
        jid: String,
        /// The fingerprint (hex).
        fingerprint: String,
    },
    /// The own key cannot be decided on.
    #[error("{0} is this device's own key")]
    OwnKey(String),
    /// The URI is not a valid Trust Message URI.
    #[error("malformed Trust Message URI: {0}")]
    MalformedUri(#[from] atm_tm::UriError),
    /// The URI is about keys of another encryption protocol.
    #[error("the URI is for encryption {found}, this endpoint uses {expected}")]
    OtherEncryption {
        /// The URI's namespace.
        found: String,
        /// Ours.
        expected: String,
    },
    /// The JID does not parse.
    #[error("invalid JID {text:?}: {reason}")]
    InvalidJid {
        /// The text.
        text: String,
        /// Why.
        reason: String,
    },
    /// No device of the recipient may be written to (none known, or none
    /// trusted under the policy).
    #[error("no trusted device of {0} to encrypt for")]
    NoTrustedDevice(String),
    /// The core failed.
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl From<StoreError> for CommandError {
    fn from(error: StoreError) -> Self {
        CommandError::Core(CoreError::Store(error))
    }
}

impl From<EngineError<StoreError>> for CommandError {
    fn from(error: EngineError<StoreError>) -> Self {
        CommandError::Core(CoreError::Engine(error))
    }
}

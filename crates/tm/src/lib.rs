//! Trust Messages (XEP-0434): the `<trust-message xmlns='urn:xmpp:tm:1'/>`
//! element and the Trust Message URI.
//!
//! * [`TrustMessage`] reads strictly from XML text ([`TrustMessage::parse`],
//!   a streaming, non-recursive reader bounded by [`Limits`]) or from a
//!   [`minidom::Element`] (`TryFrom`), and writes back
//!   ([`TrustMessage::to_xml`], `From<TrustMessage> for Element`).
//! * [`TrustUri`] generates and parses
//!   `xmpp:bob@example.com?trust-message;encryption=…;trust=HEX;distrust=HEX`.
//! * [`qr`] renders a URI as a QR code (terminal, SVG, PNG).
//!
//! ```
//! use atm_tm::{TrustMessage, Usage, Encryption};
//! let xml = "<trust-message xmlns='urn:xmpp:tm:1' usage='urn:xmpp:atm:1' \
//!            encryption='urn:xmpp:omemo:2'><key-owner jid='bob@example.com'>\
//!            <trust>YjVI04NcbTPvXLaA95RO84HPcSvyOgEZ2r5cTyUs0C8=</trust>\
//!            </key-owner></trust-message>";
//! let tm = TrustMessage::parse(xml)?;
//! assert_eq!(tm.usage, Usage::ATM);
//! assert_eq!(tm.encryption, Encryption::OMEMO2);
//! assert_eq!(tm.key_owners[0].jid.as_str(), "bob@example.com");
//! assert_eq!(tm.key_owners[0].trust[0].to_hex()[..8], *"623548d3");
//! assert_eq!(TrustMessage::parse(&tm.to_xml())?, tm);
//! # Ok::<(), atm_tm::ParseError>(())
//! ```

mod error;
mod key;
mod message;
mod ns;
mod parse;
pub mod qr;
mod uri;
mod xml;

pub use error::{KeyKind, Location, ParseError, Position};
pub use key::{KeyId, KeyIdError};
pub use message::{KeyOwner, Limits, TrustMessage};
pub use ns::{Encryption, NamespaceError, Usage, NS_ATM, NS_OMEMO2, NS_TM};
pub use uri::{TrustUri, UriError};

/// The bare JID type used for key owners (re-exported from `jid`).
pub use jid::BareJid;

/// A deterministic xorshift generator for the unit tests' generated inputs.
#[cfg(test)]
fn test_rng(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

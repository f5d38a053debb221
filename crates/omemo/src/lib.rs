//! OMEMO 2 (XEP-0384, `urn:xmpp:omemo:2`) and Stanza Content Encryption
//! (XEP-0420), sans-IO.

pub mod crypto;

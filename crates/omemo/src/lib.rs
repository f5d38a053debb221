//! OMEMO 2 (XEP-0384, `urn:xmpp:omemo:2`) and Stanza Content Encryption
//! (XEP-0420), sans-IO.
//!
//! * [`crypto`]: keys and bundles, X3DH, the Double Ratchet, payload
//!   encryption, protobuf, session persistence (byte-compatible with
//!   python-omemo/twomemo).
//! * [`elements`]: `<encrypted>`, the device list and the bundle as XML.
//! * [`sce`]: the SCE envelope (`content`, `rpad`, `time`, `from`, `to`).
//! * [`device`]: one device putting them together: encrypt SCE content for a
//!   set of recipient devices, decrypt what arrives ("decrypt, persist, act").

pub mod crypto;
pub mod device;
pub mod elements;
#[cfg(any(test, feature = "insecure-deterministic-random-for-tests"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod sce;
pub mod xml;

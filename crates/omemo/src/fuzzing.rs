//! Entry points of the fuzz targets for the XML decoders (`crates/omemo/fuzz`),
//! also used by the test that replays their corpora. Each returns `Err`
//! describing a violated property; none may panic on any input.

use jid::BareJid;
use minidom::Element;

use crate::crypto::DeterministicRandom;
use crate::elements::{bundle_from_element, bundle_to_element, DeviceList, Encrypted};
use crate::sce::Envelope;
use crate::xml::parse_bounded;

/// Reads `data` as each OMEMO element; whatever reads must survive a write/read
/// round trip unchanged.
///
/// # Errors
/// A description of the round trip that failed.
pub fn elements(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let Ok(element) = parse_bounded(text, 1 << 20) else {
        return Ok(());
    };
    if let Ok(encrypted) = Encrypted::try_from(&element) {
        if Encrypted::try_from(&Element::from(&encrypted)).as_ref() != Ok(&encrypted) {
            return Err("<encrypted> round trip".into());
        }
    }
    if let Ok(list) = DeviceList::try_from(&element) {
        if DeviceList::try_from(&Element::from(&list)).as_ref() != Ok(&list) {
            return Err("<devices> round trip".into());
        }
    }
    if let Ok(bundle) = bundle_from_element(&element) {
        if bundle_from_element(&bundle_to_element(&bundle)).as_ref() != Ok(&bundle) {
            return Err("<bundle> round trip".into());
        }
    }
    Ok(())
}

/// Opens `data` as an SCE envelope; whatever opens must seal and open again to
/// the same envelope.
///
/// # Errors
/// A description of the round trip that failed.
pub fn envelope(data: &[u8]) -> Result<(), String> {
    let (Ok(sender), Ok(recipient)) = (
        BareJid::new("alice@example.org"),
        BareJid::new("bob@example.com"),
    ) else {
        return Err("fixed JIDs".into());
    };
    let Ok(envelope) = Envelope::open(data, &sender, &recipient) else {
        return Ok(());
    };
    let mut rng = DeterministicRandom::new([5; 32]);
    let sealed = envelope.seal(&mut rng).map_err(|e| e.to_string())?;
    match Envelope::open(sealed.as_bytes(), &sender, &recipient) {
        Ok(again) if again == envelope => Ok(()),
        Ok(_) => Err("envelope round trip changed it".into()),
        Err(e) => Err(format!("a sealed envelope does not open: {e}")),
    }
}

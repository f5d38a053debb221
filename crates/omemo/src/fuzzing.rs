//! Entry points of the fuzz targets for the XML decoders (`crates/omemo/fuzz`),
//! also used by the test that replays their corpora. Each returns `Err`
//! describing a violated property; none may panic on any input.

use jid::BareJid;
use minidom::{Element, Node};

use crate::crypto::DeterministicRandom;
use crate::elements::{
    bundle_from_element, bundle_to_element, DeviceList, Encrypted, MAX_DEVICE_ID, MAX_KEYS,
};
use crate::sce::{Envelope, StanzaKind};
use crate::xml::{node_budget, parse_bounded, MAX_DEPTH};

/// The nodes of a tree as the reader's budget counts them: elements,
/// attributes, namespace declarations, text nodes, and elements with
/// children once more; and its depth.
fn tree_size(element: &Element, depth: usize) -> (usize, usize) {
    let mut nodes = 1
        + element.attrs().len()
        + element.prefixes.declared_prefixes().len()
        + usize::from(element.nodes().next().is_some());
    let mut deepest = depth;
    for node in element.nodes() {
        match node {
            Node::Element(child) => {
                let (n, d) = tree_size(child, depth + 1);
                nodes += n;
                deepest = deepest.max(d);
            }
            Node::Text(_) => nodes += 1,
        }
    }
    (nodes, deepest)
}

/// The reader's limits hold for whatever it accepts.
fn check_limits(text: &str, element: &Element) -> Result<(), String> {
    let (nodes, depth) = tree_size(element, 1);
    if nodes > node_budget(text.len()) {
        return Err(format!(
            "{nodes} nodes accepted in {} bytes (budget {})",
            text.len(),
            node_budget(text.len())
        ));
    }
    if depth > MAX_DEPTH {
        return Err(format!("depth {depth} accepted"));
    }
    Ok(())
}

/// Reads `data` as each OMEMO element; whatever reads must survive a write/read
/// round trip unchanged (with nothing skipped the second time), and keep only
/// valid device ids, at most [`MAX_KEYS`] entries, no repeated device.
///
/// # Errors
/// A description of the property that failed.
pub fn elements(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let Ok(element) = parse_bounded(text, 1 << 20) else {
        return Ok(());
    };
    check_limits(text, &element)?;
    if let Ok((encrypted, _)) = Encrypted::read(&element) {
        if Encrypted::read(&Element::from(&encrypted)) != Ok((encrypted.clone(), vec![])) {
            return Err("<encrypted> round trip".into());
        }
        let keys: Vec<_> = encrypted.keys.values().flatten().collect();
        if keys.len() > MAX_KEYS || keys.iter().any(|k| k.rid == 0 || k.rid > MAX_DEVICE_ID) {
            return Err("<encrypted> kept an invalid key".into());
        }
        if encrypted.sid == 0 || encrypted.sid > MAX_DEVICE_ID {
            return Err("<encrypted> accepted an invalid sid".into());
        }
        // Reading for one device gives exactly that device's entries.
        if let Some((jid, key)) = encrypted
            .keys
            .iter()
            .find_map(|(j, k)| Some((j, k.first()?)))
        {
            let Ok((mine, _)) = Encrypted::read_for(&element, jid, key.rid) else {
                return Err("read_for refused what read accepted".into());
            };
            let expected: Vec<_> = encrypted.keys_for(jid, key.rid).collect();
            let got: Vec<_> = mine.keys.values().flatten().collect();
            if got != expected || mine.sid != encrypted.sid || mine.payload != encrypted.payload {
                return Err("read_for differs from read".into());
            }
        }
    }
    if let Ok((list, _)) = DeviceList::read(&element) {
        if DeviceList::read(&Element::from(&list)) != Ok((list.clone(), vec![])) {
            return Err("<devices> round trip".into());
        }
        let mut ids = std::collections::BTreeSet::new();
        if list
            .devices
            .iter()
            .any(|d| d.id == 0 || d.id > MAX_DEVICE_ID || !ids.insert(d.id))
        {
            return Err("<devices> kept an invalid or repeated id".into());
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
/// the same envelope, with no server-processed element left in it; and the
/// bounded reader's limits must hold for whatever it accepts.
///
/// # Errors
/// A description of the property that failed.
pub fn envelope(data: &[u8]) -> Result<(), String> {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(element) = parse_bounded(text, crate::sce::MAX_ENVELOPE_BYTES) {
            check_limits(text, &element)?;
        }
    }
    let (Ok(sender), Ok(recipient)) = (
        BareJid::new("alice@example.org"),
        BareJid::new("bob@example.com"),
    ) else {
        return Err("fixed JIDs".into());
    };
    let Ok(opened) = Envelope::open(data, &sender, &recipient, StanzaKind::Chat) else {
        return Ok(());
    };
    let envelope = opened.envelope;
    let mut rng = DeterministicRandom::new([5; 32]);
    let sealed = envelope.seal(&mut rng).map_err(|e| e.to_string())?;
    match Envelope::open(sealed.as_bytes(), &sender, &recipient, StanzaKind::Chat) {
        Ok(again) if again.envelope == envelope && again.discarded.is_empty() => Ok(()),
        Ok(_) => Err("envelope round trip changed it".into()),
        Err(e) => Err(format!("a sealed envelope does not open: {e}")),
    }
}

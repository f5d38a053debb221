//! Issue 10 in the element readers: signed device labels, tolerant device
//! lists, Base64 with XML whitespace, device ids within 1..=2^31−1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use atm_omemo::crypto::{DeterministicRandom, IdentityKeyPair, MemoryStore};
use atm_omemo::device::Device;
use atm_omemo::elements::{
    bundle_from_element, bundle_to_element, Device as ListedDevice, DeviceList, ElementError,
    Encrypted,
};
use base64::Engine as _;
use chrono::DateTime;
use jid::BareJid;
use minidom::Element;

fn element(xml: &str) -> Element {
    xml.parse().unwrap()
}

/// Issue 10, item 4: a label reaches the application only with a `labelsig`
/// that verifies with the device's identity key; ours are signed.
#[test]
fn device_labels_are_signed_and_verified() {
    let mut rng = DeterministicRandom::new([31; 32]);
    let phone = Device::open(
        BareJid::new("bob@example.com").unwrap(),
        4223,
        MemoryStore::default(),
        DateTime::UNIX_EPOCH,
        &mut rng,
    )
    .unwrap();
    let identity = phone.identity().unwrap();
    let list = DeviceList {
        devices: vec![phone.list_entry(Some("Bob phone")).unwrap()],
    };
    let xml = String::from(&Element::from(&list));
    assert!(xml.contains("labelsig="), "{xml}");
    let read = DeviceList::try_from(&element(&xml)).unwrap();
    assert_eq!(read, list);
    assert_eq!(read.devices[0].label(&identity), Some("Bob phone"));
    // The signature is Ed25519 over the label's UTF-8 bytes (XEP-0384 §Device list).
    let signature = xml
        .split("labelsig='")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    let signature: [u8; 64] = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .unwrap()
        .try_into()
        .unwrap();
    identity.verify(b"Bob phone", &signature, "label").unwrap();
    // Another key's identity does not verify it.
    let other = IdentityKeyPair::generate(&mut rng).unwrap().public();
    assert_eq!(read.devices[0].label(&other), None);
    // A label the server put in without a signature, or with a signature of
    // another label, never reaches the application.
    let forged = xml.replace("Bob phone", "Bob phone (verified)");
    let (read, skipped) = DeviceList::read(&element(&forged)).unwrap();
    assert_eq!(read.devices[0].label(&identity), None);
    assert!(skipped.is_empty());
    let unsigned = "<devices xmlns='urn:xmpp:omemo:2'><device id='4223' label='Bob phone (verified)'/></devices>";
    let (read, skipped) = DeviceList::read(&element(unsigned)).unwrap();
    assert_eq!(read.devices, [ListedDevice::new(4223)]);
    assert_eq!(read.devices[0].label(&identity), None);
    assert_eq!(
        skipped,
        [ElementError::MissingAttribute {
            element: "device",
            attribute: "labelsig"
        }]
    );
    let short =
        "<devices xmlns='urn:xmpp:omemo:2'><device id='4223' label='x' labelsig='AAAA'/></devices>";
    let (read, skipped) = DeviceList::read(&element(short)).unwrap();
    assert_eq!(read.devices[0].label(&identity), None);
    assert_eq!(skipped.len(), 1);
}

/// Issue 10, smaller point: one bad or repeated entry no longer refuses the
/// whole device list; the valid entries are kept and the rest reported.
#[test]
fn a_device_list_keeps_its_valid_entries() {
    let xml = "<devices xmlns='urn:xmpp:omemo:2'>\
        <device id='1'/><device id='1'/><device id='0'/><device id='x'/>\
        <device/><device id='2147483648'/><device id='2147483647'/><device id='5'/>\
        </devices>";
    let (list, skipped) = DeviceList::read(&element(xml)).unwrap();
    let ids: Vec<u32> = list.devices.iter().map(|d| d.id).collect();
    assert_eq!(ids, [1, 2147483647, 5]);
    assert_eq!(skipped.len(), 5, "{skipped:?}");
    assert!(skipped.contains(&ElementError::Duplicate {
        element: "devices",
        id: 1
    }));
    assert!(skipped.iter().any(|e| e.to_string().contains("2147483648")));
    assert_eq!(DeviceList::try_from(&element(xml)).unwrap(), list);
    assert!(DeviceList::try_from(&element("<devices xmlns='urn:xmpp:omemo:1'/>")).is_err());
}

/// Issue 10, smaller point: Base64 broken into lines or indented (valid
/// `xs:base64Binary` in XML) is read.
#[test]
fn base64_with_xml_whitespace_is_read() {
    let xml = "<encrypted xmlns='urn:xmpp:omemo:2'><header sid='1'>\
        <keys jid='b@c'><key rid='2'>\n   AAEC\r\n\tAwQF  \n</key></keys></header>\
        <payload>\n  BgcI\n  CQ==\n</payload></encrypted>";
    let encrypted = Encrypted::try_from(&element(xml)).unwrap();
    assert_eq!(
        encrypted
            .keys_for(&BareJid::new("b@c").unwrap(), 2)
            .next()
            .unwrap()
            .data,
        [0, 1, 2, 3, 4, 5]
    );
    assert_eq!(encrypted.payload, Some(vec![6, 7, 8, 9]));
    // A bundle whose keys are line-broken, as some clients write them.
    let mut rng = DeterministicRandom::new([32; 32]);
    let account = atm_omemo::crypto::Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    let bundle = account.bundle();
    let mut text = String::from(&bundle_to_element(&bundle));
    let spks = base64::engine::general_purpose::STANDARD.encode(bundle.signed_prekey_signature);
    let (head, tail) = spks.split_at(40);
    text = text.replace(&spks, &format!("\n    {head}\n    {tail}\n  "));
    assert_eq!(bundle_from_element(&element(&text)).unwrap(), bundle);
}

/// Issue 10, smaller point: ids above 2^31−1 are refused (the `sid` for
/// the whole message, a `rid` for its entry only, prekey ids in a bundle).
#[test]
fn ids_above_2_pow_31_minus_1_are_refused() {
    let sid = "<encrypted xmlns='urn:xmpp:omemo:2'><header sid='2147483648'/></encrypted>";
    assert!(matches!(
        Encrypted::try_from(&element(sid)),
        Err(ElementError::Invalid {
            element: "header",
            what: "sid",
            ..
        })
    ));
    let rid = "<encrypted xmlns='urn:xmpp:omemo:2'><header sid='2147483647'>\
        <keys jid='b@c'><key rid='4294967295'>AAAA</key><key rid='3'>AAAA</key></keys></header></encrypted>";
    let (encrypted, skipped) = Encrypted::read(&element(rid)).unwrap();
    assert_eq!(encrypted.keys[&BareJid::new("b@c").unwrap()].len(), 1);
    assert!(matches!(
        skipped.as_slice(),
        [ElementError::Invalid {
            element: "key",
            what: "rid",
            ..
        }]
    ));
    let mut rng = DeterministicRandom::new([33; 32]);
    let account = atm_omemo::crypto::Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    let text = String::from(&bundle_to_element(&account.bundle())).replacen(
        "id='1'",
        "id='2147483648'",
        1,
    );
    assert!(bundle_from_element(&element(&text)).is_err());
}

/// Issue 10, item 2: the same device named twice, in one `<keys>` group or
/// in two groups for the same account (QXmpp adds its own account to every
/// recipient list, so a message to itself names its devices twice): both
/// entries are kept, in document order.
#[test]
fn a_repeated_rid_is_kept_in_document_order() {
    for xml in [
        "<encrypted xmlns='urn:xmpp:omemo:2'><header sid='1'><keys jid='a@b'><key rid='2'>AAEC</key><key rid='2' kex='true'>AwQF</key></keys></header></encrypted>",
        "<encrypted xmlns='urn:xmpp:omemo:2'><header sid='1'><keys jid='a@b'><key rid='2'>AAEC</key></keys><keys jid='a@b'><key rid='2' kex='true'>AwQF</key></keys></header></encrypted>",
    ] {
        let (encrypted, skipped) = Encrypted::read(&element(xml)).unwrap();
        assert!(skipped.is_empty());
        let keys: Vec<_> = encrypted
            .keys_for(&BareJid::new("a@b").unwrap(), 2)
            .map(|k| (k.kex, k.data.clone()))
            .collect();
        assert_eq!(keys, [(false, vec![0, 1, 2]), (true, vec![3, 4, 5])]);
        assert_eq!(Encrypted::try_from(&Element::from(&encrypted)).unwrap(), encrypted);
    }
}

/// Issue 10, item 2: reading only what this device needs: its entries (all
/// of them), never the others', whatever they hold.
#[test]
fn read_for_one_device_reads_only_its_entries() {
    let xml = "<encrypted xmlns='urn:xmpp:omemo:2'><header sid='1'>\
        <keys jid='carol@c'><key rid='2'>!!</key><key rid='x'>AA==</key></keys>\
        <keys jid='@@'/>\
        <keys jid='bob@b'><key rid='3'>!!</key><key rid='2'>AAEC</key><key rid='y'>AA==</key><key rid='2'>AwQF</key></keys>\
        </header><payload>BgcI</payload></encrypted>";
    let bob = BareJid::new("bob@b").unwrap();
    let (encrypted, skipped) = Encrypted::read_for(&element(xml), &bob, 2).unwrap();
    assert_eq!(encrypted.keys.len(), 1);
    let data: Vec<_> = encrypted
        .keys_for(&bob, 2)
        .map(|k| k.data.clone())
        .collect();
    assert_eq!(data, [vec![0, 1, 2], vec![3, 4, 5]]);
    assert_eq!(encrypted.payload, Some(vec![6, 7, 8]));
    // Only the entry that might have been bob's device 2 is reported.
    assert!(
        matches!(
            skipped.as_slice(),
            [ElementError::Invalid {
                element: "key",
                what: "rid",
                ..
            }]
        ),
        "{skipped:?}"
    );
    // Reading everything reports every bad entry.
    let (_, all) = Encrypted::read(&element(xml)).unwrap();
    assert_eq!(all.len(), 5, "{all:?}");
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Round-trip properties: text, minidom element and URI.

use atm_tm::{BareJid, Encryption, KeyId, KeyOwner, TrustMessage, TrustUri, Usage};
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;

fn key() -> impl Strategy<Value = KeyId> {
    vec(any::<u8>(), 1..48).prop_map(|b| KeyId::from_bytes(b).unwrap())
}

fn jid() -> impl Strategy<Value = BareJid> {
    (
        "[a-z0-9_é-][a-z0-9._é-]{0,11}",
        "[a-z0-9]{1,10}\\.(org|com|example)",
    )
        .prop_filter_map("valid bare JID", |(node, domain)| {
            BareJid::new(&format!("{node}@{domain}")).ok()
        })
}

fn owner() -> impl Strategy<Value = KeyOwner> {
    (jid(), btree_set(key(), 1..6), any::<u8>()).prop_map(|(jid, keys, split)| {
        let keys: Vec<KeyId> = keys.into_iter().collect();
        let cut = usize::from(split) % (keys.len() + 1);
        KeyOwner {
            jid,
            trust: keys[..cut].to_vec(),
            distrust: keys[cut..].to_vec(),
        }
    })
}

fn message() -> impl Strategy<Value = TrustMessage> {
    (
        vec(owner(), 1..6),
        "urn:[a-z:0-9&<>']{1,20}",
        "urn:[a-z:0-9]{1,20}",
    )
        .prop_map(|(owners, usage, enc)| {
            // Merge repeated JIDs, as the reader does.
            let mut key_owners: Vec<KeyOwner> = Vec::new();
            for o in owners {
                if !key_owners.iter().any(|k| k.jid == o.jid) {
                    key_owners.push(o);
                }
            }
            TrustMessage {
                usage: Usage::new(usage).unwrap(),
                encryption: Encryption::new(enc).unwrap(),
                key_owners,
            }
        })
}

proptest! {
    #[test]
    fn text_round_trip(tm in message()) {
        prop_assert!(tm.check().is_ok());
        prop_assert_eq!(TrustMessage::parse(&tm.to_xml()).unwrap(), tm);
    }

    #[test]
    fn element_round_trip(tm in message()) {
        let elem: minidom::Element = tm.clone().into();
        prop_assert_eq!(TrustMessage::try_from(elem.clone()).unwrap(), tm.clone());
        // minidom's own serialization reads back through the text reader.
        let mut out = Vec::new();
        elem.write_to(&mut out).unwrap();
        prop_assert_eq!(TrustMessage::parse(&String::from_utf8(out).unwrap()).unwrap(), tm);
    }

    #[test]
    fn uri_round_trip(o in owner(), enc in "urn:[a-z:0-9%/]{1,20}") {
        let u = TrustUri {
            jid: o.jid,
            encryption: Encryption::new(enc).unwrap(),
            trust: o.trust,
            distrust: o.distrust,
        };
        prop_assert_eq!(TrustUri::parse(&u.to_uri()).unwrap(), u);
    }

    #[test]
    fn parsers_never_panic(s in "\\PC{0,200}") {
        let _ = TrustMessage::parse(&s);
        let _ = TrustUri::parse(&s);
    }
}

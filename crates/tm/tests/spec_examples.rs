#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Every `<trust-message>` example of XEP-0434 and XEP-0450 (extracted into
//! `tests/data/*.xml` with the values they show in `*.expected`, written by
//! a regular-expression extraction independent of this crate's parser).

use std::path::Path;

use atm_tm::{KeyKind, TrustMessage};

fn examples() -> Vec<(String, String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().and_then(|e| e.to_str()) == Some("xml") {
            let xml = std::fs::read_to_string(&p).unwrap();
            let exp = std::fs::read_to_string(p.with_extension("expected")).unwrap();
            out.push((p.display().to_string(), xml, exp));
        }
    }
    out.sort();
    out
}

/// Flattens a message in the `.expected` line format.
fn flatten(tm: &TrustMessage) -> Vec<String> {
    let mut lines = vec![
        format!("usage {}", tm.usage),
        format!("encryption {}", tm.encryption),
    ];
    for o in &tm.key_owners {
        for (kind, list) in [(KeyKind::Trust, &o.trust), (KeyKind::Distrust, &o.distrust)] {
            for k in list {
                lines.push(format!(
                    "{} {} {}",
                    o.jid,
                    kind.element_name(),
                    k.to_base64()
                ));
            }
        }
    }
    lines
}

#[test]
fn all_spec_examples_parse_to_shown_values() {
    let ex = examples();
    assert_eq!(ex.len(), 10, "2 examples in XEP-0434, 8 in XEP-0450");
    for (name, xml, expected) in ex {
        let tm = TrustMessage::parse(&xml).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut want: Vec<String> = expected.lines().map(str::to_owned).collect();
        let mut got = flatten(&tm);
        // The examples list trust before distrust within each owner, and
        // owners are not repeated, so order is comparable after a stable
        // grouping by owner; compare as sorted multisets to stay honest
        // about ordering that the examples do not fix.
        want[2..].sort();
        got[2..].sort();
        assert_eq!(got, want, "{name}");
        // Same through minidom.
        let elem: minidom::Element = xml.parse().unwrap();
        assert_eq!(TrustMessage::try_from(elem).unwrap(), tm, "{name}");
        // Round trip.
        assert_eq!(TrustMessage::parse(&tm.to_xml()).unwrap(), tm, "{name}");
    }
}

#[test]
fn hex_looking_xep0450_keys_are_base64() {
    // XEP-0450 writes e.g. 6850019d7ed0feb6d… where Base64 is due: 64
    // characters of valid Base64 text, i.e. 48 bytes.
    for (name, xml, _) in examples() {
        let tm = TrustMessage::parse(&xml).unwrap();
        for o in &tm.key_owners {
            for k in o.trust.iter().chain(&o.distrust) {
                let b64 = k.to_base64();
                if b64.len() == 64 && b64.bytes().all(|c| c.is_ascii_hexdigit()) {
                    assert_eq!(k.as_bytes().len(), 48, "{name}");
                }
            }
        }
    }
}

#[test]
fn xep0434_example_values() {
    let xml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/xep0434-1.xml"),
    )
    .unwrap();
    let tm = TrustMessage::parse(&xml).unwrap();
    assert_eq!(tm.key_owners.len(), 2);
    let bob = &tm.key_owners[1];
    assert_eq!(bob.jid.as_str(), "bob@example.com");
    // The same keys as the XEP-0434 URI example, in hex.
    assert_eq!(
        bob.trust[0].to_hex(),
        "623548d3835c6d33ef5cb680f7944ef381cf712bf23a0119dabe5c4f252cd02f"
    );
    assert_eq!(
        bob.distrust[1].to_hex(),
        "d9f849b6b828309c5f2c8df4f38fd891887da5aaa24a22c50d52f69b4a80817e"
    );
}

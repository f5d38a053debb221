#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! One test per refusal of issue 2, plus limits and the documented handling
//! of repeated key owners and keys. Each refusal is checked through both
//! readers (text and minidom element).

use atm_tm::{KeyKind, Limits, ParseError, Position, TrustMessage};

const K1: &str = "aFABnX7Q/rbTgjBySYzrT2FsYCVYb49mbca5yB734KQ=";
const K2: &str = "IhpPjiKLchgrAG5cpSfTvdzPjZ5v6vTOluHEUehkgCA=";

fn tm(attrs: &str, body: &str) -> String {
    format!("<trust-message xmlns='urn:xmpp:tm:1' {attrs}>{body}</trust-message>")
}

fn std_tm(body: &str) -> String {
    tm("usage='urn:xmpp:atm:1' encryption='urn:xmpp:omemo:2'", body)
}

fn owner(jid: &str, keys: &str) -> String {
    format!("<key-owner jid='{jid}'>{keys}</key-owner>")
}

fn trust(k: &str) -> String {
    format!("<trust>{k}</trust>")
}

fn distrust(k: &str) -> String {
    format!("<distrust>{k}</distrust>")
}

/// Parses with both readers; both must refuse, and the text reader's error
/// is returned.
fn refuse(xml: &str) -> ParseError {
    let text = TrustMessage::parse(xml).expect_err("text reader accepted");
    if let Ok(elem) = xml.parse::<minidom::Element>() {
        let e = TrustMessage::try_from(elem).expect_err("element reader accepted");
        assert_eq!(
            std::mem::discriminant(&e),
            std::mem::discriminant(&text),
            "{e} vs {text}"
        );
    }
    text
}

#[test]
fn full_jid_as_key_owner() {
    let e = refuse(&std_tm(&owner("bob@example.com/phone", &trust(K1))));
    assert!(matches!(e, ParseError::FullJid { ref value, .. } if value == "bob@example.com/phone"));
}

#[test]
fn invalid_jid_as_key_owner() {
    let e = refuse(&std_tm(&owner("@example.com", &trust(K1))));
    assert!(matches!(e, ParseError::InvalidJid { .. }), "{e}");
    let e = refuse(&std_tm(&owner("", &trust(K1))));
    assert!(matches!(e, ParseError::InvalidJid { .. }), "{e}");
}

#[test]
fn missing_usage() {
    let e = refuse(&tm(
        "encryption='urn:xmpp:omemo:2'",
        &owner("b@x", &trust(K1)),
    ));
    assert!(
        matches!(
            e,
            ParseError::MissingAttribute {
                attribute: "usage",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn missing_encryption() {
    let e = refuse(&tm("usage='urn:xmpp:atm:1'", &owner("b@x", &trust(K1))));
    assert!(
        matches!(
            e,
            ParseError::MissingAttribute {
                attribute: "encryption",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn empty_usage() {
    let e = refuse(&tm(
        "usage='' encryption='urn:xmpp:omemo:2'",
        &owner("b@x", &trust(K1)),
    ));
    assert!(
        matches!(
            e,
            ParseError::InvalidNamespace {
                attribute: "usage",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn missing_jid() {
    let e = refuse(&std_tm(&format!("<key-owner>{}</key-owner>", trust(K1))));
    assert!(
        matches!(
            e,
            ParseError::MissingAttribute {
                element: "key-owner",
                attribute: "jid",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn no_key_owner() {
    let e = refuse(&std_tm(""));
    assert!(matches!(e, ParseError::NoKeyOwner { .. }), "{e}");
    // Foreign elements do not count as key owners.
    let e = refuse(&std_tm("<x xmlns='urn:example'/>"));
    assert!(matches!(e, ParseError::NoKeyOwner { .. }), "{e}");
}

#[test]
fn key_owner_without_keys() {
    let e = refuse(&std_tm(&owner("b@x", "")));
    assert!(
        matches!(e, ParseError::KeyOwnerWithoutKeys { ref jid, .. } if jid == "b@x"),
        "{e}"
    );
    // Even if a later element of the same owner has keys.
    let e = refuse(&std_tm(&(owner("b@x", "") + &owner("b@x", &trust(K1)))));
    assert!(matches!(e, ParseError::KeyOwnerWithoutKeys { .. }), "{e}");
}

#[test]
fn invalid_base64() {
    for bad in [
        "not base64!",
        "aGk",
        "aGk==",
        "a",
        "aFABnX7Q/rbTgjBy SYzrT2FsYCVYb49mbca5yB734KQ=",
    ] {
        let e = refuse(&std_tm(&owner("b@x", &trust(bad))));
        assert!(
            matches!(
                e,
                ParseError::InvalidKey {
                    kind: KeyKind::Trust,
                    ..
                }
            ),
            "{bad}: {e}"
        );
    }
    let e = refuse(&std_tm(&owner("b@x", &distrust("%%%%"))));
    assert!(
        matches!(
            e,
            ParseError::InvalidKey {
                kind: KeyKind::Distrust,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn empty_base64() {
    for body in [trust(""), "<trust/>".into(), trust("  \n ")] {
        let e = refuse(&std_tm(&owner("b@x", &body)));
        assert!(
            matches!(
                e,
                ParseError::InvalidKey {
                    reason: atm_tm::KeyIdError::Empty,
                    ..
                }
            ),
            "{body}: {e}"
        );
    }
}

#[test]
fn trusted_and_distrusted() {
    let e = refuse(&std_tm(&owner("b@x", &(trust(K1) + &distrust(K1)))));
    assert!(
        matches!(e, ParseError::TrustedAndDistrusted { ref key, .. } if key == K1),
        "{e}"
    );
    // Also across two elements of the same owner.
    let e = refuse(&std_tm(
        &(owner("b@x", &trust(K1)) + &owner("b@x", &distrust(K1))),
    ));
    assert!(matches!(e, ParseError::TrustedAndDistrusted { .. }), "{e}");
}

#[test]
fn other_namespaces_refused() {
    for ns in ["urn:xmpp:tm:0", "urn:xmpp:tm:2", "jabber:client", ""] {
        let xml = format!(
            "<trust-message xmlns='{ns}' usage='u' encryption='e'>{}</trust-message>",
            owner("b@x", &trust(K1))
        );
        let e = refuse(&xml);
        assert!(
            matches!(e, ParseError::NotATrustMessage { .. }),
            "{ns}: {e}"
        );
    }
    let e = refuse("<message xmlns='jabber:client'/>");
    assert!(matches!(e, ParseError::NotATrustMessage { .. }), "{e}");
}

#[test]
fn foreign_elements_ignored() {
    let body = format!(
        "<x xmlns='urn:example'><key-owner jid='evil@x'><trust>{K2}</trust></key-owner></x>\
         <key-owner jid='b@x'><y xmlns='urn:example'><a><b/></a></y>{}</key-owner>",
        trust(K1)
    );
    let xml = std_tm(&body);
    let t = TrustMessage::parse(&xml).unwrap();
    assert_eq!(t.key_owners.len(), 1);
    assert_eq!(t.key_owners[0].trust.len(), 1);
    assert_eq!(
        TrustMessage::try_from(xml.parse::<minidom::Element>().unwrap()).unwrap(),
        t
    );
}

#[test]
fn unknown_tm_elements_attributes_text_refused() {
    let e = refuse(&std_tm(&(owner("b@x", &trust(K1)) + "<bogus/>")));
    assert!(matches!(e, ParseError::UnexpectedElement { .. }), "{e}");
    let e = refuse(&std_tm(&owner(
        "b@x",
        &(trust(K1) + "<key-owner jid='c@x'/>"),
    )));
    assert!(matches!(e, ParseError::UnexpectedElement { .. }), "{e}");
    let e = refuse(&std_tm(&format!(
        "<key-owner jid='b@x' extra='1'>{}</key-owner>",
        trust(K1)
    )));
    assert!(matches!(e, ParseError::UnknownAttribute { .. }), "{e}");
    let e = refuse(&std_tm(&(owner("b@x", &trust(K1)) + "hello")));
    assert!(matches!(e, ParseError::UnexpectedText { .. }), "{e}");
}

#[test]
fn repeated_owners_merge_and_keys_dedup() {
    let xml = std_tm(
        &(owner("b@x", &(trust(K1) + &trust(K1)))
            + &owner("c@x", &distrust(K1))
            + &owner("b@x", &(trust(K2) + &trust(K1)))),
    );
    let t = TrustMessage::parse(&xml).unwrap();
    assert_eq!(t.key_owners.len(), 2);
    assert_eq!(t.key_owners[0].jid.as_str(), "b@x");
    assert_eq!(
        t.key_owners[0]
            .trust
            .iter()
            .map(|k| k.to_base64())
            .collect::<Vec<_>>(),
        vec![K1, K2]
    );
    // Same bytes under another owner are another key.
    assert_eq!(t.key_owners[1].distrust.len(), 1);
    assert!(t.check().is_ok());
    let mut dup = t.clone();
    dup.key_owners.push(dup.key_owners[0].clone());
    assert!(matches!(dup.check(), Err(ParseError::Repeated { .. })));
}

#[test]
fn too_many_keys_refused_not_truncated() {
    let limits = Limits {
        max_keys: 2,
        ..Limits::default()
    };
    let ok = std_tm(&owner("b@x", &(trust(K1) + &trust(K2))));
    assert!(TrustMessage::parse_with_limits(&ok, &limits).is_ok());
    // Counted before deduplication.
    let over = std_tm(&owner("b@x", &(trust(K1) + &trust(K2) + &trust(K1))));
    let e = TrustMessage::parse_with_limits(&over, &limits).unwrap_err();
    assert!(matches!(e, ParseError::TooManyKeys { limit: 2, .. }), "{e}");
    let elem: minidom::Element = over.parse().unwrap();
    let e = TrustMessage::from_element_with_limits(&elem, &limits).unwrap_err();
    assert!(matches!(e, ParseError::TooManyKeys { .. }), "{e}");
    assert_eq!(Limits::default().max_keys, 100_000);
}

#[test]
fn default_limit_of_100000_keys() {
    let keys: String = (0..100_001u32)
        .map(|i| {
            let mut b = [7u8; 32];
            b[..4].copy_from_slice(&i.to_be_bytes());
            trust(&atm_tm::KeyId::from(b).to_base64())
        })
        .collect();
    let xml = std_tm(&owner("b@x", &keys));
    let e = TrustMessage::parse(&xml).unwrap_err();
    assert!(
        matches!(e, ParseError::TooManyKeys { limit: 100_000, .. }),
        "{e}"
    );
}

#[test]
fn too_many_owners_and_too_large_and_too_deep() {
    let limits = Limits {
        max_key_owners: 1,
        ..Limits::default()
    };
    let xml = std_tm(&(owner("b@x", &trust(K1)) + &owner("b@x", &trust(K2))));
    assert!(matches!(
        TrustMessage::parse_with_limits(&xml, &limits),
        Err(ParseError::TooManyKeyOwners { limit: 1, .. })
    ));
    let limits = Limits {
        max_input_bytes: 10,
        ..Limits::default()
    };
    assert!(matches!(
        TrustMessage::parse_with_limits(&xml, &limits),
        Err(ParseError::InputTooLarge { limit: 10, .. })
    ));
    // Deep foreign nesting: refused by depth, no stack overflow.
    let deep = std_tm(&format!(
        "{}{}{}",
        "<x xmlns='urn:e'>".repeat(100_000),
        "</x>".repeat(100_000),
        owner("b@x", &trust(K1))
    ));
    assert!(matches!(
        TrustMessage::parse(&deep),
        Err(ParseError::TooDeep { limit: 64, .. })
    ));
    let limits = Limits {
        max_depth: 1_000_000,
        ..Limits::default()
    };
    assert!(TrustMessage::parse_with_limits(&deep, &limits).is_ok());
}

#[test]
fn xml_errors_have_line_and_column() {
    let xml = "<trust-message xmlns='urn:xmpp:tm:1' usage='u' encryption='e'>\n  <key-owner jid='b@x'>\n    <trust>abc</trsut>\n</trust-message>";
    match TrustMessage::parse(xml).unwrap_err() {
        ParseError::Xml { at, .. } => assert_eq!(at.0.unwrap().line, 3),
        e => panic!("{e}"),
    }
    let xml =
        "<trust-message xmlns='urn:xmpp:tm:1' usage='u' encryption='e'>\n  <key-owner jid='b@x/r'>";
    match TrustMessage::parse(xml).unwrap_err() {
        ParseError::FullJid { at, .. } => assert_eq!(at.0, Some(Position { line: 2, column: 3 })),
        e => panic!("{e}"),
    }
    let e = TrustMessage::parse("<!DOCTYPE x [<!ENTITY a 'b'>]><x/>").unwrap_err();
    assert!(matches!(e, ParseError::Xml { .. }), "{e}");
    assert!(TrustMessage::parse("").is_err());
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Trust Message URI tests, including the XEP-0434 example byte for byte.

use atm_tm::{Encryption, KeyId, TrustUri, UriError, Usage};

const EXAMPLE: &str = "xmpp:bob@example.com?trust-message;encryption=urn:xmpp:omemo:2;trust=623548d3835c6d33ef5cb680f7944ef381cf712bf23a0119dabe5c4f252cd02f;distrust=b423f5088de9a924d51b31581723d850c7cc67d0a4fe6b267c3d301ff56d2413;distrust=d9f849b6b828309c5f2c8df4f38fd891887da5aaa24a22c50d52f69b4a80817e";

#[test]
fn xep0434_example_parse_and_generate() {
    let spec = std::fs::read_to_string("/work/shared/specs/xep-0434.xml")
        .unwrap_or_else(|_| include_str!("data/xep0434-uri.txt").to_owned());
    assert!(spec
        .replace("]]>&ns-omemo;<![CDATA[", "urn:xmpp:omemo:2")
        .contains(EXAMPLE));
    let u = TrustUri::parse(EXAMPLE).unwrap();
    assert_eq!(u.jid.as_str(), "bob@example.com");
    assert_eq!(u.encryption, Encryption::OMEMO2);
    assert_eq!(u.trust.len(), 1);
    assert_eq!(u.distrust.len(), 2);
    // Generation from independently built values reproduces it exactly.
    let built = TrustUri {
        jid: "bob@example.com".parse().unwrap(),
        encryption: Encryption::OMEMO2,
        trust: vec![KeyId::from_hex(
            "623548d3835c6d33ef5cb680f7944ef381cf712bf23a0119dabe5c4f252cd02f",
        )
        .unwrap()],
        distrust: vec![
            KeyId::from_hex("b423f5088de9a924d51b31581723d850c7cc67d0a4fe6b267c3d301ff56d2413")
                .unwrap(),
            KeyId::from_hex("d9f849b6b828309c5f2c8df4f38fd891887da5aaa24a22c50d52f69b4a80817e")
                .unwrap(),
        ],
    };
    assert_eq!(built.to_uri(), EXAMPLE);
    assert_eq!(built, u);
    // The same keys as the XEP-0434 element example (Base64 there).
    assert_eq!(
        u.trust[0].to_base64(),
        "YjVI04NcbTPvXLaA95RO84HPcSvyOgEZ2r5cTyUs0C8="
    );
    let tm = u.to_trust_message(Usage::ATM);
    assert_eq!(
        tm.key_owners[0].distrust[1].to_base64(),
        "2fhJtrgoMJxfLI3084/YkYh9paqiSiLFDVL2m0qAgX4="
    );
}

#[test]
fn upper_case_hex_accepted_lower_written() {
    let u = TrustUri::parse(&EXAMPLE.replace("623548d3835c", "623548D3835C")).unwrap();
    assert_eq!(u.to_uri(), EXAMPLE);
}

#[test]
fn non_ascii_localpart_percent_encoded() {
    let u = TrustUri::parse(
        "xmpp:%C3%A9lise@example.com?trust-message;encryption=urn:xmpp:omemo:2;trust=00ff",
    )
    .unwrap();
    assert_eq!(u.jid.as_str(), "élise@example.com");
    assert_eq!(
        u.to_uri(),
        "xmpp:%C3%A9lise@example.com?trust-message;encryption=urn:xmpp:omemo:2;trust=00ff"
    );
    // Raw IRI form is accepted too.
    let v = TrustUri::parse(
        "xmpp:élise@example.com?trust-message;encryption=urn:xmpp:omemo:2;trust=00ff",
    )
    .unwrap();
    assert_eq!(u, v);
}

#[test]
fn authority_ignored() {
    let u = TrustUri::parse("xmpp://me@example.org/bob@example.com?trust-message;encryption=urn:xmpp:omemo:2;trust=00ff").unwrap();
    assert_eq!(u.jid.as_str(), "bob@example.com");
}

#[test]
fn repeated_keys_dedup() {
    let u = TrustUri::parse("xmpp:b@x?trust-message;encryption=e;trust=00ff;trust=00FF").unwrap();
    assert_eq!(u.trust.len(), 1);
}

fn refuse(s: &str) -> UriError {
    TrustUri::parse(s).expect_err(s)
}

#[test]
fn refusals() {
    assert!(matches!(
        refuse("http://x?trust-message;encryption=e;trust=00"),
        UriError::NotXmpp
    ));
    assert!(matches!(
        refuse("xmpp:b@x?message;body=hi"),
        UriError::WrongQueryType(_)
    ));
    assert!(matches!(
        refuse("xmpp:b@x?roster"),
        UriError::WrongQueryType(_)
    ));
    assert!(matches!(refuse("xmpp:b@x"), UriError::NoQuery));
    assert!(matches!(
        refuse("xmpp:b@x/phone?trust-message;encryption=e;trust=00"),
        UriError::FullJid(_)
    ));
    assert!(matches!(
        refuse("xmpp:@x?trust-message;encryption=e;trust=00"),
        UriError::InvalidJid { .. }
    ));
    assert!(matches!(
        refuse("xmpp:b@x?trust-message;trust=00;encryption=e"),
        UriError::MissingEncryption
    ));
    assert!(matches!(
        refuse("xmpp:b@x?trust-message"),
        UriError::MissingEncryption
    ));
    assert!(matches!(
        refuse("xmpp:b@x?trust-message;encryption="),
        UriError::InvalidEncryption { .. }
    ));
    assert!(matches!(
        refuse("xmpp:b@x?trust-message;encryption=e"),
        UriError::NoKeys
    ));
    assert!(matches!(
        refuse("xmpp:b@x?trust-message;encryption=e;trust=0g"),
        UriError::BadKey { .. }
    ));
    assert!(matches!(
        refuse("xmpp:b@x?trust-message;encryption=e;trust=abc"),
        UriError::BadKey { .. }
    ));
    assert!(matches!(
        refuse("xmpp:b@x?trust-message;encryption=e;trust="),
        UriError::BadKey { .. }
    ));
    assert!(matches!(
        refuse("xmpp:b@x?trust-message;encryption=e;trust=00;distrust=00"),
        UriError::TrustedAndDistrusted(_)
    ));
    assert!(matches!(
        refuse("xmpp:b@x?trust-message;encryption=e;encryption=f;trust=00"),
        UriError::UnexpectedPair(_)
    ));
    assert!(matches!(
        refuse("xmpp:b@x?trust-message;encryption=e;trsut=00"),
        UriError::UnexpectedPair(_)
    ));
    assert!(matches!(
        refuse("xmpp:b@x?trust-message;encryption=e;trust=00#f"),
        UriError::Fragment
    ));
    assert!(matches!(
        refuse("xmpp:b%ZZ@x?trust-message;encryption=e;trust=00"),
        UriError::PercentEncoding(_)
    ));
    assert!(matches!(
        refuse("xmpp:b%FF@x?trust-message;encryption=e;trust=00"),
        UriError::PercentEncoding(_)
    ));
    assert!(matches!(
        refuse("xmpp:b@x?trust-message;encryption=e;trust=%+1"),
        UriError::PercentEncoding(_)
    ));
}

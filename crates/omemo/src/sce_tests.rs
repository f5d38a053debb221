use super::*;
use crate::crypto::DeterministicRandom;

fn jid(s: &str) -> Jid {
    Jid::new(s).unwrap_or_else(|_| unreachable!())
}

fn bare(s: &str) -> BareJid {
    BareJid::new(s).unwrap_or_else(|_| unreachable!())
}

fn envelope() -> Envelope {
    Envelope {
        content: vec![Element::builder("trust-message", NS_TRUST_MESSAGE).build()],
        time: "2020-01-01T00:00:05Z".parse().ok(),
        from: Some(jid("alice@example.org/phone")),
        to: Some(jid("bob@example.com")),
    }
}

fn open_chat(xml: &str) -> Result<OpenedEnvelope, SceError> {
    Envelope::open(xml.as_bytes(), &bare("a@b"), &bare("c@d"), StanzaKind::Chat)
}

#[test]
fn seal_open_round_trip_with_random_padding() {
    let mut rng = DeterministicRandom::new([3; 32]);
    let mut lengths = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let sealed = envelope().seal(&mut rng).unwrap_or_default();
        lengths.insert(sealed.len());
        let opened = Envelope::open(
            sealed.as_bytes(),
            &bare("alice@example.org"),
            &bare("bob@example.com"),
            StanzaKind::Chat,
        )
        .map(|o| (o.envelope, o.padded, o.discarded));
        assert_eq!(opened, Ok((envelope(), true, vec![])));
    }
    assert!(lengths.len() > 5, "padding varies: {lengths:?}");
}

#[test]
fn addresses_and_structure_are_checked() {
    let mut rng = DeterministicRandom::new([4; 32]);
    let sealed = envelope().seal(&mut rng).unwrap_or_default();
    let open = |from: &str, to: &str| {
        Envelope::open(sealed.as_bytes(), &bare(from), &bare(to), StanzaKind::Chat)
    };
    assert!(matches!(
        open("mallory@example.org", "bob@example.com"),
        Err(SceError::WrongSender { .. })
    ));
    assert!(matches!(
        open("alice@example.org", "carol@example.com"),
        Err(SceError::WrongRecipient { .. })
    ));
    type Check = fn(&SceError) -> bool;
    let cases: [(&str, Check); 6] = [
        ("<envelope xmlns='urn:xmpp:sce:1'><time stamp='2020-01-01T00:00:00Z'/><from jid='a@b'/><to jid='c@d'/></envelope>", |e| *e == SceError::Missing("content")),
        ("<envelope xmlns='urn:xmpp:sce:1'><content/><content/><time stamp='2020-01-01T00:00:00Z'/><from jid='a@b'/><to jid='c@d'/></envelope>", |e| *e == SceError::Repeated("content")),
        ("<envelope xmlns='urn:xmpp:sce:1'><content/><time stamp='yesterday'/><from jid='a@b'/><to jid='c@d'/></envelope>", |e| matches!(e, SceError::Invalid { element: "time", .. })),
        ("<envelope xmlns='urn:xmpp:sce:1'><content/><from jid='a@b'/><from jid='a@b'/></envelope>", |e| *e == SceError::Repeated("from")),
        ("<envelope xmlns='urn:xmpp:sce:0'/>", |e| matches!(e, SceError::NotEnvelope(_))),
        ("<envelope xmlns='urn:xmpp:sce:1'><content>", |e| matches!(e, SceError::Xml(_))),
    ];
    for (xml, check) in cases {
        let error = open_chat(xml).unwrap_err();
        assert!(check(&error), "{xml}: {error:?}");
    }
    let deep = format!(
        "<envelope xmlns='urn:xmpp:sce:1'><content>{}</content></envelope>",
        "<a>".repeat(10_000)
    );
    assert!(matches!(
        open_chat(&deep),
        Err(SceError::Xml(XmlError::TooDeep { .. }))
    ));
    assert_eq!(
        Envelope::open(&[0xff, 0xfe], &bare("a@b"), &bare("c@d"), StanzaKind::Chat),
        Err(SceError::NotUtf8)
    );
}

/// Issue 10, item 6: XEP-0384's chat profile makes `<time>` optional,
/// `<from>` a SHOULD and `<to>` required only in a group chat.
#[test]
fn chat_profile_accepts_an_envelope_without_time_from_or_to() {
    let body = "<body xmlns='jabber:client'>hi</body>";
    for xml in [
        format!("<envelope xmlns='urn:xmpp:sce:1'><content>{body}</content><rpad>x</rpad><from jid='a@b'/></envelope>"),
        format!("<envelope xmlns='urn:xmpp:sce:1'><content>{body}</content><rpad/></envelope>"),
        format!("<envelope xmlns='urn:xmpp:sce:1'><content>{body}</content><to jid='c@d/x'/></envelope>"),
    ] {
        let opened = open_chat(&xml).unwrap_or_else(|e| panic!("{xml}: {e}"));
        assert_eq!(opened.envelope.content.len(), 1);
        assert_eq!(opened.envelope.time, None);
    }
    // A group chat envelope must name its recipient (the room).
    let no_to = format!("<envelope xmlns='urn:xmpp:sce:1'><content>{body}</content><rpad/><from jid='a@b'/></envelope>");
    assert_eq!(
        Envelope::open(
            no_to.as_bytes(),
            &bare("a@b"),
            &bare("room@muc.d"),
            StanzaKind::GroupChat
        ),
        Err(SceError::Missing("to"))
    );
    let with_to = no_to.replace("</envelope>", "<to jid='room@muc.d'/></envelope>");
    assert!(Envelope::open(
        with_to.as_bytes(),
        &bare("a@b"),
        &bare("room@muc.d"),
        StanzaKind::GroupChat
    )
    .is_ok());
}

/// XEP-0434 §SCE Profile: a trust message needs `<rpad>` and `<time>`.
#[test]
fn trust_message_profile_requires_rpad_and_time() {
    let tm = "<trust-message xmlns='urn:xmpp:tm:1' usage='urn:xmpp:atm:1' encryption='urn:xmpp:omemo:2'/>";
    let time = "<time stamp='2020-01-01T00:00:00Z'/>";
    let no_rpad =
        format!("<envelope xmlns='urn:xmpp:sce:1'><content>{tm}</content>{time}</envelope>");
    assert_eq!(open_chat(&no_rpad), Err(SceError::Missing("rpad")));
    let no_time = format!(
        "<envelope xmlns='urn:xmpp:sce:1'><content>{tm}</content><rpad>ab</rpad></envelope>"
    );
    assert_eq!(open_chat(&no_time), Err(SceError::Missing("time")));
    let both = format!(
        "<envelope xmlns='urn:xmpp:sce:1'><content>{tm}</content><rpad>ab</rpad>{time}</envelope>"
    );
    assert!(open_chat(&both).is_ok());
    // XEP-0434's own example writes its stamp without a time zone: read as UTC.
    let naive = both.replace("00:00:00Z", "00:00:00");
    assert_eq!(
        open_chat(&naive).map(|o| o.envelope.time),
        Ok("2020-01-01T00:00:00Z".parse().ok())
    );
}

/// Issue 10, item 5: XEP-0420 §Server-processed Elements inside `<content>`
/// are dropped, not handed on (a forged stanza id, a hint, addresses, EME).
#[test]
fn server_processed_elements_in_content_are_discarded() {
    let xml = "<envelope xmlns='urn:xmpp:sce:1'><content>\
        <body xmlns='jabber:client'>hi</body>\
        <stanza-id xmlns='urn:xmpp:sid:0' id='forged' by='c@d'/>\
        <origin-id xmlns='urn:xmpp:sid:0' id='kept'/>\
        <store xmlns='urn:xmpp:hints'/>\
        <addresses xmlns='http://jabber.org/protocol/address'><address type='to' jid='e@f'/></addresses>\
        <encryption xmlns='urn:xmpp:eme:0' namespace='urn:xmpp:omemo:2'/>\
        </content><rpad/></envelope>";
    let opened = open_chat(xml).unwrap();
    let kept: Vec<_> = opened
        .envelope
        .content
        .iter()
        .map(|e| e.name().to_owned())
        .collect();
    assert_eq!(kept, ["body", "origin-id"]);
    let dropped: Vec<_> = opened
        .discarded
        .iter()
        .map(|d| (d.name.as_str(), d.namespace.as_str()))
        .collect();
    assert_eq!(
        dropped,
        [
            ("stanza-id", "urn:xmpp:sid:0"),
            ("store", "urn:xmpp:hints"),
            ("addresses", "http://jabber.org/protocol/address"),
            ("encryption", "urn:xmpp:eme:0"),
        ]
    );
    assert_eq!(
        Envelope::from_element(&xml.parse().unwrap())
            .unwrap()
            .content
            .len(),
        2
    );
}

#[test]
fn time_check_reports_the_skew_against_the_sending_time() {
    let sent: DateTime<Utc> = "2020-01-01T12:00:00Z".parse().unwrap();
    let at = |s: &str| s.parse::<DateTime<Utc>>().ok();
    assert_eq!(TimeCheck::new(None, sent), TimeCheck::Absent);
    assert_eq!(
        TimeCheck::new(at("2020-01-01T11:55:00Z"), sent),
        TimeCheck::Within {
            stamp: at("2020-01-01T11:55:00Z").unwrap(),
            skew: TimeDelta::minutes(-5)
        }
    );
    assert_eq!(
        TimeCheck::new(at("2020-01-01T12:10:00Z"), sent),
        TimeCheck::Within {
            stamp: at("2020-01-01T12:10:00Z").unwrap(),
            skew: SCE_TIME_MARGIN
        }
    );
    let late = TimeCheck::new(at("2020-01-01T12:10:01Z"), sent);
    assert!(matches!(late, TimeCheck::Outside { skew, .. } if skew == TimeDelta::seconds(601)));
    let replayed = TimeCheck::new(at("2019-12-31T12:00:00Z"), sent);
    assert!(matches!(replayed, TimeCheck::Outside { skew, .. } if skew == TimeDelta::days(-1)));
    assert_eq!(replayed.stamp(), at("2019-12-31T12:00:00Z"));
}

/// Issue 10, item 7: the size cap is what a stanza can carry, and a flood
/// of tiny elements within it is refused by the node budget.
#[test]
fn envelope_size_and_node_count_are_bounded() {
    let big = format!(
        "<envelope xmlns='urn:xmpp:sce:1'><content/><rpad>{}</rpad></envelope>",
        "x".repeat(MAX_ENVELOPE_BYTES)
    );
    assert!(matches!(
        open_chat(&big),
        Err(SceError::Xml(XmlError::TooLarge { .. }))
    ));
    let flood = format!(
        "<envelope xmlns='urn:xmpp:sce:1'><content>{}</content></envelope>",
        "<a/>".repeat(10_000)
    );
    assert!(matches!(
        open_chat(&flood),
        Err(SceError::Xml(XmlError::TooManyNodes { .. }))
    ));
}

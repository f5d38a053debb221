//! What the fuzz targets assert of an input, shared with `tests/corpus.rs`,
//! which replays the corpora through the same checks in `cargo test`.

use atm_tm::{Limits, ParseError, TrustMessage, TrustUri};

#[path = "rxml_oracle.rs"]
mod rxml_oracle;

/// The text reader never panics; what it reads round-trips through the
/// serializer and through minidom; and where the input is a well-formed
/// document for rxml (the strict XMPP parser) and minidom builds its element,
/// the element reader reaches the same message, or refuses it too. Returns
/// whether the text reader took the input.
pub fn element(data: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(data) else {
        return false;
    };
    // The element reader has no depth bound (minidom built the tree already).
    let limits = Limits {
        max_depth: usize::MAX,
        ..Limits::default()
    };
    let parsed = TrustMessage::parse_with_limits(s, &limits);
    if let Ok(tm) = &parsed {
        assert_eq!(&TrustMessage::parse(&tm.to_xml()).unwrap(), tm);
        let elem: minidom::Element = tm.clone().into();
        assert_eq!(&TrustMessage::try_from(elem).unwrap(), tm);
    }
    // rxml 0.14 accepts a repeated default namespace declaration
    // (`<a xmlns='u' xmlns='v'/>`), which XML's unique-attribute rule refuses.
    let repeated_xmlns = matches!(&parsed, Err(ParseError::Xml { message, .. })
        if message == "attribute xmlns appears twice");
    if !repeated_xmlns && rxml_oracle::accepts(s) {
        if let Ok(elem) = s.parse::<minidom::Element>() {
            let built = TrustMessage::from_element_with_limits(&elem, &limits);
            assert_eq!(parsed.as_ref().ok(), built.as_ref().ok(), "{s:?}");
        }
    }
    parsed.is_ok()
}

/// The URI parser never panics, and what it reads round-trips. Returns
/// whether it took the input.
pub fn uri(data: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(u) = TrustUri::parse(s) else {
        return false;
    };
    assert_eq!(TrustUri::parse(&u.to_uri()).unwrap(), u);
    true
}

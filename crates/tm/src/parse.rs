//! Readers: a streaming one over XML text (no recursion, bounded), and one
//! over a built [`minidom::Element`].

use crate::error::{KeyKind, Location, ParseError, Position};
use crate::message::{Builder, Limits, TrustMessage};
use crate::ns::{Encryption, Usage, NS_TM};
use std::borrow::Cow;

use crate::xml::{Attribute, Reader, Token};

/// Where the reader is, outside skipped foreign subtrees.
enum State<'a> {
    BeforeRoot,
    InRoot,
    /// With the byte offset of the `<key-owner>`.
    InOwner(usize),
    /// With the byte offsets of the key element and of its owner.
    InKey(KeyKind, usize, usize, Cow<'a, str>),
    AfterRoot,
}

fn is_xml_space(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

fn namespace_value<T>(
    attribute: &'static str,
    value: Option<&str>,
    make: impl Fn(String) -> Result<T, crate::ns::NamespaceError>,
    at: Location,
) -> Result<T, ParseError> {
    let Some(value) = value else {
        return Err(ParseError::MissingAttribute {
            element: "trust-message",
            attribute,
            at,
        });
    };
    make(value.to_owned()).map_err(|reason| ParseError::InvalidNamespace {
        attribute,
        value: value.to_owned(),
        reason,
        at,
    })
}

/// Refuses unnamespaced attributes not in `allowed`; namespaced ones
/// (e.g. `xml:lang`) are ignored.
fn check_attrs<'a>(
    element: &'static str,
    attrs: impl Iterator<Item = (bool, &'a str)>,
    allowed: &[&str],
    at: Location,
) -> Result<(), ParseError> {
    for (unnamespaced, name) in attrs {
        if unnamespaced && !allowed.contains(&name) {
            return Err(ParseError::UnknownAttribute {
                element,
                attribute: name.to_owned(),
                at,
            });
        }
    }
    Ok(())
}

/// Fills in the position of an error raised without one.
fn locate(mut e: ParseError, here: Location) -> ParseError {
    use ParseError as P;
    match &mut e {
        P::MissingAttribute { at, .. }
        | P::UnknownAttribute { at, .. }
        | P::InvalidNamespace { at, .. }
        | P::InvalidJid { at, .. }
        | P::FullJid { at, .. }
        | P::NoKeyOwner { at }
        | P::KeyOwnerWithoutKeys { at, .. }
        | P::InvalidKey { at, .. }
        | P::TrustedAndDistrusted { at, .. }
        | P::UnexpectedElement { at, .. }
        | P::UnexpectedText { at, .. }
        | P::TooManyKeys { at, .. }
        | P::TooManyKeyOwners { at, .. }
        | P::TooDeep { at, .. }
        | P::Xml { at, .. }
        | P::NotATrustMessage { at, .. } => {
            if at.0.is_none() {
                *at = here;
            }
        }
        P::InputTooLarge { .. } | P::Repeated { .. } => {}
    }
    e
}

fn plain_attrs<'a>(attrs: &'a [Attribute<'_>]) -> impl Iterator<Item = (bool, &'a str)> {
    attrs.iter().map(|a| (a.namespace.is_none(), a.name))
}

/// The value of an unnamespaced attribute.
fn attr<'a>(attrs: &'a [Attribute<'_>], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|a| a.namespace.is_none() && a.name == name)
        .map(|a| a.value.as_ref())
}

fn key_kind(name: &str) -> Option<KeyKind> {
    match name {
        "trust" => Some(KeyKind::Trust),
        "distrust" => Some(KeyKind::Distrust),
        _ => None,
    }
}

/// Streaming reader over XML text.
pub(crate) fn parse_str(input: &str, limits: &Limits) -> Result<TrustMessage, ParseError> {
    if input.len() > limits.max_input_bytes {
        return Err(ParseError::InputTooLarge {
            size: input.len(),
            limit: limits.max_input_bytes,
        });
    }
    let mut reader = Reader::new(input);
    let mut state = State::BeforeRoot;
    // A key owner takes at least ~60 bytes of XML.
    let mut builder = Builder::with_capacity(limits, input.len() / 64);
    let mut header: Option<(Usage, Encryption, usize)> = None;
    let none = Location::default();
    let mut result: Option<TrustMessage> = None;
    // Depth of open elements, and depth of a foreign subtree being skipped
    // (0 = not skipping).
    let mut depth = 0usize;
    let mut skip = 0usize;
    let loc = |offset: usize| Location(Some(Position::of(input, offset)));

    loop {
        let (token, start) = match reader.next() {
            Ok(Some(t)) => t,
            Ok(None) => break,
            Err(e) => {
                return Err(ParseError::Xml {
                    message: e.message.into_owned(),
                    at: loc(e.offset),
                });
            }
        };
        match token {
            Token::Start {
                namespace: ns,
                name,
            } => {
                let attrs = reader.attributes();
                let off = start;
                let at = || loc(off);
                depth += 1;
                if depth > limits.max_depth {
                    return Err(ParseError::TooDeep {
                        limit: limits.max_depth,
                        at: at(),
                    });
                }
                if skip > 0 {
                    skip += 1;
                    continue;
                }
                let ours = ns == NS_TM;
                match &mut state {
                    State::BeforeRoot => {
                        if !ours || name != "trust-message" {
                            return Err(ParseError::NotATrustMessage {
                                name: name.to_owned(),
                                namespace: ns.into_owned(),
                                at: at(),
                            });
                        }
                        let at = at();
                        check_attrs(
                            "trust-message",
                            plain_attrs(attrs),
                            &["usage", "encryption"],
                            at,
                        )?;
                        let usage = namespace_value("usage", attr(attrs, "usage"), Usage::new, at)?;
                        let encryption = namespace_value(
                            "encryption",
                            attr(attrs, "encryption"),
                            Encryption::new,
                            at,
                        )?;
                        header = Some((usage, encryption, off));
                        state = State::InRoot;
                    }
                    _ if !ours => skip = 1,
                    State::InRoot if name == "key-owner" => {
                        // Positions are computed only on error: each costs a
                        // scan from the start of the input.
                        check_attrs("key-owner", plain_attrs(attrs), &["jid"], none)
                            .map_err(|e| locate(e, at()))?;
                        let Some(jid) = attr(attrs, "jid") else {
                            return Err(ParseError::MissingAttribute {
                                element: "key-owner",
                                attribute: "jid",
                                at: at(),
                            });
                        };
                        builder
                            .start_owner(jid, none)
                            .map_err(|e| locate(e, at()))?;
                        state = State::InOwner(off);
                    }
                    State::InOwner(owner_off) if key_kind(name).is_some() => {
                        let owner_off = *owner_off;
                        let kind = key_kind(name).unwrap_or(KeyKind::Trust);
                        if !attrs.is_empty() {
                            check_attrs(kind.element_name(), plain_attrs(attrs), &[], at())?;
                        }
                        builder.count_key(none).map_err(|e| locate(e, at()))?;
                        state = State::InKey(kind, off, owner_off, Cow::Borrowed(""));
                    }
                    s => {
                        let parent = match s {
                            State::InRoot => "trust-message",
                            State::InOwner(_) => "key-owner",
                            State::InKey(k, ..) => k.element_name(),
                            _ => "document",
                        };
                        return Err(ParseError::UnexpectedElement {
                            name: name.to_owned(),
                            parent,
                            at: at(),
                        });
                    }
                }
            }
            Token::End => {
                depth = depth.saturating_sub(1);
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                state = match std::mem::replace(&mut state, State::AfterRoot) {
                    State::InKey(kind, off, owner_off, text) => {
                        builder
                            .key_text(kind, &text, none)
                            .map_err(|e| locate(e, loc(off)))?;
                        State::InOwner(owner_off)
                    }
                    State::InOwner(off) => {
                        builder.end_owner().map_err(|e| locate(e, loc(off)))?;
                        State::InRoot
                    }
                    State::InRoot => {
                        let Some((usage, encryption, off)) = header.take() else {
                            return Err(ParseError::NoKeyOwner { at: loc(start) });
                        };
                        let b = std::mem::replace(&mut builder, Builder::new(limits));
                        result = Some(
                            b.finish(usage, encryption, none)
                                .map_err(|e| locate(e, loc(off)))?,
                        );
                        State::AfterRoot
                    }
                    other => other,
                };
            }
            Token::Text(text) => {
                if skip > 0 {
                    continue;
                }
                match &mut state {
                    State::InKey(_, _, _, acc) => {
                        if acc.is_empty() {
                            *acc = text;
                        } else {
                            acc.to_mut().push_str(&text);
                        }
                    }
                    State::InRoot if !is_xml_space(&text) => {
                        return Err(ParseError::UnexpectedText {
                            parent: "trust-message",
                            at: loc(start),
                        })
                    }
                    State::InOwner(_) if !is_xml_space(&text) => {
                        return Err(ParseError::UnexpectedText {
                            parent: "key-owner",
                            at: loc(start),
                        })
                    }
                    _ => {}
                }
            }
        }
    }
    let _ = reader.offset();
    result.ok_or_else(|| ParseError::Xml {
        message: "no complete root element".into(),
        at: loc(input.len()),
    })
}

/// Reader over a built element. Foreign children are skipped without being
/// descended into, so this does not recurse either.
pub(crate) fn from_element(
    elem: &minidom::Element,
    limits: &Limits,
) -> Result<TrustMessage, ParseError> {
    let at = Location::default();
    if !elem.is("trust-message", NS_TM) {
        return Err(ParseError::NotATrustMessage {
            name: elem.name().to_owned(),
            namespace: elem.ns(),
            at,
        });
    }
    fn plain(e: &minidom::Element) -> Vec<(bool, &str)> {
        e.attrs()
            .iter()
            .map(|((ns, n), _)| (ns.is_none(), n.as_str()))
            .collect()
    }
    check_attrs(
        "trust-message",
        plain(elem).into_iter(),
        &["usage", "encryption"],
        at,
    )?;
    let usage = namespace_value("usage", elem.attr("usage"), Usage::new, at)?;
    let encryption = namespace_value("encryption", elem.attr("encryption"), Encryption::new, at)?;
    if elem.texts().any(|t| !is_xml_space(t)) {
        return Err(ParseError::UnexpectedText {
            parent: "trust-message",
            at,
        });
    }
    let mut builder = Builder::new(limits);
    for owner in elem.children() {
        if owner.ns() != NS_TM {
            continue;
        }
        if owner.name() != "key-owner" {
            return Err(ParseError::UnexpectedElement {
                name: owner.name().to_owned(),
                parent: "trust-message",
                at,
            });
        }
        check_attrs("key-owner", plain(owner).into_iter(), &["jid"], at)?;
        let Some(jid) = owner.attr("jid") else {
            return Err(ParseError::MissingAttribute {
                element: "key-owner",
                attribute: "jid",
                at,
            });
        };
        builder.start_owner(jid, at)?;
        if owner.texts().any(|t| !is_xml_space(t)) {
            return Err(ParseError::UnexpectedText {
                parent: "key-owner",
                at,
            });
        }
        for key in owner.children() {
            if key.ns() != NS_TM {
                continue;
            }
            let Some(kind) = key_kind(key.name()) else {
                return Err(ParseError::UnexpectedElement {
                    name: key.name().to_owned(),
                    parent: "key-owner",
                    at,
                });
            };
            check_attrs(kind.element_name(), plain(key).into_iter(), &[], at)?;
            if let Some(bad) = key.children().find(|c| c.ns() == NS_TM) {
                return Err(ParseError::UnexpectedElement {
                    name: bad.name().to_owned(),
                    parent: kind.element_name(),
                    at,
                });
            }
            builder.count_key(at)?;
            let text: String = key.texts().collect();
            builder.key_text(kind, &text, at)?;
        }
        builder.end_owner()?;
    }
    builder.finish(usage, encryption, at)
}

//! The XMPP stanzas the core writes and the wrappers it reads (XEP-0060 PEP,
//! XEP-0280 carbons, XEP-0313 MAM, XEP-0203 delay, XEP-0359 stanza ids,
//! XEP-0334 hints), as plain `minidom` elements.

use chrono::{DateTime, Utc};
use jid::{BareJid, Jid};
use minidom::{Element, ElementBuilder};

use crate::error::Rejection;

/// `jabber:client`.
pub const NS_CLIENT: &str = "jabber:client";
/// XEP-0060 pubsub.
pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// XEP-0060 pubsub events.
pub const NS_PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
/// XEP-0004 data forms.
pub const NS_DATA: &str = "jabber:x:data";
/// XEP-0280 Message Carbons.
pub const NS_CARBONS: &str = "urn:xmpp:carbons:2";
/// XEP-0297 forwarding.
pub const NS_FORWARD: &str = "urn:xmpp:forward:0";
/// XEP-0313 Message Archive Management.
pub const NS_MAM: &str = "urn:xmpp:mam:2";
/// XEP-0059 Result Set Management.
pub const NS_RSM: &str = "http://jabber.org/protocol/rsm";
/// XEP-0203 Delayed Delivery.
pub const NS_DELAY: &str = "urn:xmpp:delay";
/// XEP-0359 stanza ids.
pub const NS_SID: &str = "urn:xmpp:sid:0";
/// XEP-0334 Message Processing Hints.
pub const NS_HINTS: &str = "urn:xmpp:hints";
/// The stanza error namespace.
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// Page size of archive queries.
pub const MAM_PAGE: usize = 100;

pub(crate) fn nc(name: &str) -> rxml::NcName {
    rxml::NcName::try_from(name).unwrap_or_else(|_| unreachable!("a constant attribute name"))
}

pub(crate) fn builder(name: &str, ns: &str) -> ElementBuilder {
    Element::builder(name, ns)
}

/// `<iq type=… id=… [to=…]>child</iq>`.
pub(crate) fn iq(kind: &str, id: &str, to: Option<&BareJid>, child: Element) -> Element {
    let mut iq = builder("iq", NS_CLIENT)
        .attr(nc("type"), kind)
        .attr(nc("id"), id);
    if let Some(to) = to {
        iq = iq.attr(nc("to"), to.as_str());
    }
    iq.append(child).build()
}

fn form_field(var: &str, value: &str, hidden: bool) -> Element {
    let mut field = builder("field", NS_DATA).attr(nc("var"), var);
    if hidden {
        field = field.attr(nc("type"), "hidden");
    }
    field
        .append(builder("value", NS_DATA).append(value).build())
        .build()
}

/// A PEP publish with publish-options `access_model=open` and, unless the
/// server refused it before, `max_items=max`.
pub(crate) fn publish(node: &str, item_id: &str, payload: Element, max_items: bool) -> Element {
    let mut form = builder("x", NS_DATA)
        .attr(nc("type"), "submit")
        .append(form_field(
            "FORM_TYPE",
            "http://jabber.org/protocol/pubsub#publish-options",
            true,
        ))
        .append(form_field("pubsub#access_model", "open", false));
    if max_items {
        form = form.append(form_field("pubsub#max_items", "max", false));
    }
    builder("pubsub", NS_PUBSUB)
        .append(
            builder("publish", NS_PUBSUB)
                .attr(nc("node"), node)
                .append(
                    builder("item", NS_PUBSUB)
                        .attr(nc("id"), item_id)
                        .append(payload)
                        .build(),
                )
                .build(),
        )
        .append(
            builder("publish-options", NS_PUBSUB)
                .append(form.build())
                .build(),
        )
        .build()
}

/// `<pubsub><items node=…>[<item id=…/>]</items></pubsub>`.
pub(crate) fn items_query(node: &str, item_id: Option<&str>) -> Element {
    let mut items = builder("items", NS_PUBSUB).attr(nc("node"), node);
    if let Some(id) = item_id {
        items = items.append(builder("item", NS_PUBSUB).attr(nc("id"), id).build());
    }
    builder("pubsub", NS_PUBSUB).append(items.build()).build()
}

/// A MAM query for everything after `after` (from the start if `None`).
pub(crate) fn mam_query(query_id: &str, after: Option<&str>) -> Element {
    let form = builder("x", NS_DATA)
        .attr(nc("type"), "submit")
        .append(form_field("FORM_TYPE", NS_MAM, true))
        .build();
    let mut set =
        builder("set", NS_RSM).append(builder("max", NS_RSM).append(MAM_PAGE.to_string()).build());
    if let Some(after) = after {
        set = set.append(builder("after", NS_RSM).append(after).build());
    }
    builder("query", NS_MAM)
        .attr(nc("queryid"), query_id)
        .append(form)
        .append(set.build())
        .build()
}

/// The items of a pubsub `<items>` (in an iq result's `<pubsub>` or an event).
pub(crate) fn items<'a>(parent: &'a Element, ns: &'a str) -> Option<&'a Element> {
    parent.get_child("items", ns)
}

/// The parsed `from` of a stanza.
pub(crate) fn from_jid(stanza: &Element) -> Result<Option<Jid>, Rejection> {
    jid_attr(stanza, "from")
}

pub(crate) fn jid_attr(
    stanza: &Element,
    attribute: &'static str,
) -> Result<Option<Jid>, Rejection> {
    stanza
        .attr(attribute)
        .map(|text| {
            Jid::new(text).map_err(|e| Rejection::InvalidJid {
                element: stanza.name().to_owned(),
                attribute,
                value: text.to_owned(),
                reason: e.to_string(),
            })
        })
        .transpose()
}

/// The `<delay stamp>` child of `element`, if any and if added by `by` (when
/// `by` is given; `from` is the entity that delayed it).
pub(crate) fn delay_stamp(
    element: &Element,
    by: Option<&[&str]>,
) -> Result<Option<DateTime<Utc>>, Rejection> {
    let Some(delay) = element.get_child("delay", NS_DELAY) else {
        return Ok(None);
    };
    if let Some(allowed) = by {
        let from = delay.attr("from").unwrap_or("");
        if !allowed.contains(&from) {
            return Ok(None);
        }
    }
    let stamp = delay.attr("stamp").ok_or(Rejection::MissingAttribute {
        element: "delay",
        attribute: "stamp",
    })?;
    let parsed = DateTime::parse_from_rfc3339(stamp).map_err(|e| Rejection::InvalidAttribute {
        element: "delay",
        attribute: "stamp",
        reason: e.to_string(),
    })?;
    Ok(Some(parsed.with_timezone(&Utc) + stamp_precision(stamp)))
}

/// How much later than its value a stamp written as `text` may stand for,
/// given the precision it is written to: XEP-0082 allows any number of
/// fractional digits, and Prosody writes none (`2026-12-04T04:57:19Z`), so
/// its stamp covers the whole second. The sending time the engine bounds
/// decision times by must be the latest one the stamp allows: two opposite
/// decisions made 0.13 s and 0.87 s into the same second, caught up from
/// offline storage, must keep their order, and with the stamp taken as the
/// start of the second both would count as made at that start.
fn stamp_precision(text: &str) -> chrono::TimeDelta {
    let digits = text.split_once('.').map_or(0, |(_, rest)| {
        rest.bytes().take_while(u8::is_ascii_digit).count()
    });
    // 10^(9 - digits) ns, less one: the last instant the stamp covers.
    match 9u32.checked_sub(u32::try_from(digits).unwrap_or(9)) {
        Some(exponent) if exponent > 0 => chrono::TimeDelta::nanoseconds(10i64.pow(exponent) - 1),
        _ => chrono::TimeDelta::zero(),
    }
}

/// The XEP-0359 stanza id that `by` assigned, if present.
pub(crate) fn stanza_id<'a>(message: &'a Element, by: &BareJid) -> Option<&'a str> {
    message
        .children()
        .filter(|c| c.is("stanza-id", NS_SID))
        .find(|c| c.attr("by") == Some(by.as_str()))
        .and_then(|c| c.attr("id"))
}

/// How a message reached this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Delivered directly (possibly from offline storage, with a delay).
    Live,
    /// A carbon copy of a message another device of the account received.
    CarbonReceived,
    /// A carbon copy of a message another device of the account sent.
    CarbonSent,
    /// A result of an archive (MAM) query.
    Archive,
}

/// A message taken out of its wrappers.
#[derive(Debug)]
pub(crate) struct Unwrapped<'a> {
    pub channel: Channel,
    pub message: &'a Element,
    /// The archive id (MAM result id), for archive results.
    pub archive_id: Option<String>,
    /// The query the archive result answers.
    pub query_id: Option<String>,
    /// When the message was sent, if it came late (offline or archive).
    pub stamp: Option<DateTime<Utc>>,
}

fn forwarded_message<'a>(
    wrapper: &'a Element,
    what: &'static str,
) -> Result<(&'a Element, &'a Element), Rejection> {
    let forwarded = wrapper
        .get_child("forwarded", NS_FORWARD)
        .ok_or(Rejection::MissingChild {
            parent: what,
            child: "forwarded",
        })?;
    let message = forwarded
        .get_child("message", NS_CLIENT)
        .ok_or(Rejection::MissingChild {
            parent: "forwarded",
            child: "message",
        })?;
    Ok((forwarded, message))
}

/// Takes a received `<message>` out of its carbon or archive wrapper, and
/// refuses wrappers that do not come from the own account: a carbon or an
/// archive result is only believed when its outer `from` is the own bare
/// JID (or absent, which means the own account, for archive results).
pub(crate) fn unwrap_message<'a>(
    outer: &'a Element,
    own: &BareJid,
) -> Result<Unwrapped<'a>, Rejection> {
    let outer_from = from_jid(outer)?;
    let from_own_account = |allow_absent: bool| match &outer_from {
        None => allow_absent,
        Some(jid) => jid.resource().is_none() && jid.to_bare() == *own,
    };
    let forged = |what: &'static str| Rejection::ForgedWrapper {
        wrapper: what,
        from: outer.attr("from").unwrap_or("").to_owned(),
    };
    for (name, channel) in [
        ("received", Channel::CarbonReceived),
        ("sent", Channel::CarbonSent),
    ] {
        if let Some(carbon) = outer.get_child(name, NS_CARBONS) {
            if !from_own_account(false) {
                return Err(forged("carbon"));
            }
            let (_, message) = forwarded_message(carbon, "carbon")?;
            return Ok(Unwrapped {
                channel,
                message,
                archive_id: None,
                query_id: None,
                stamp: None,
            });
        }
    }
    if let Some(result) = outer.get_child("result", NS_MAM) {
        if !from_own_account(true) {
            return Err(forged("archive result"));
        }
        let (forwarded, message) = forwarded_message(result, "result")?;
        let id = result.attr("id").ok_or(Rejection::MissingAttribute {
            element: "result",
            attribute: "id",
        })?;
        return Ok(Unwrapped {
            channel: Channel::Archive,
            message,
            archive_id: Some(id.to_owned()),
            query_id: result.attr("queryid").map(str::to_owned),
            stamp: delay_stamp(forwarded, None)?,
        });
    }
    // Offline storage: the server's own <delay> (from its domain or the
    // account). A <delay> the sender put in is not believed.
    let domain = own.domain().as_str();
    let stamp = delay_stamp(outer, Some(&[domain, own.as_str()]))?;
    Ok(Unwrapped {
        channel: Channel::Live,
        message: outer,
        archive_id: None,
        query_id: None,
        stamp,
    })
}

/// The condition and text of an iq error, for reports.
pub(crate) fn error_text(iq: &Element) -> String {
    let Some(error) = iq.get_child("error", NS_CLIENT) else {
        return "no <error/>".to_owned();
    };
    let condition = error
        .children()
        .find(|c| c.ns() == NS_STANZAS && c.name() != "text")
        .map_or("unknown", |c| c.name());
    let text = error
        .get_child("text", NS_STANZAS)
        .map(|t| t.text())
        .unwrap_or_default();
    if text.is_empty() {
        condition.to_owned()
    } else {
        format!("{condition}: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Element {
        text.parse().unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn own() -> BareJid {
        BareJid::new("alice@example.org").unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn only_the_servers_delay_dates_a_live_message() {
        let stamped = |from: &str| {
            let message = parse(&format!(
                "<message xmlns='jabber:client' from='bob@example.com/B1'>\
                 <delay xmlns='urn:xmpp:delay' from='{from}' stamp='2026-01-01T00:00:00Z'/></message>"
            ));
            unwrap_message(&message, &own()).map(|u| u.stamp.is_some())
        };
        assert_eq!(stamped("example.org"), Ok(true));
        assert_eq!(stamped("alice@example.org"), Ok(true));
        assert_eq!(
            stamped("bob@example.com/B1"),
            Ok(false),
            "the sender's own delay"
        );
        assert_eq!(stamped("example.com"), Ok(false), "another server");
    }

    #[test]
    fn archive_results_take_their_date_and_id_from_the_wrapper() {
        let result = parse(
            "<message xmlns='jabber:client' to='alice@example.org/A1'>\
             <result xmlns='urn:xmpp:mam:2' queryid='q' id='arch-7'>\
             <forwarded xmlns='urn:xmpp:forward:0'>\
             <delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z'/>\
             <message xmlns='jabber:client' from='bob@example.com/B1' to='alice@example.org'/>\
             </forwarded></result></message>",
        );
        let unwrapped = unwrap_message(&result, &own()).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(unwrapped.channel, Channel::Archive);
        assert_eq!(unwrapped.archive_id.as_deref(), Some("arch-7"));
        assert_eq!(unwrapped.query_id.as_deref(), Some("q"));
        assert_eq!(
            unwrapped.stamp,
            "2026-01-01T00:00:00.999999999Z"
                .parse::<DateTime<Utc>>()
                .ok(),
            "a stamp in whole seconds covers its whole second"
        );
        assert_eq!(unwrapped.message.attr("from"), Some("bob@example.com/B1"));
    }

    #[test]
    fn a_stamp_stands_for_the_last_instant_its_precision_covers() {
        let stamp = |text: &str| {
            let message = parse(&format!(
                "<message xmlns='jabber:client' from='bob@example.com/B1'>\
                 <delay xmlns='urn:xmpp:delay' from='example.org' stamp='{text}'/></message>"
            ));
            unwrap_message(&message, &own())
                .unwrap_or_else(|e| unreachable!("{e}"))
                .stamp
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        };
        let at = |text: &str| Some(text.to_owned());
        // Prosody: whole seconds.
        assert_eq!(
            stamp("2026-12-04T04:57:19Z"),
            at("2026-12-04T04:57:19.999999999Z")
        );
        // ejabberd: microseconds.
        assert_eq!(
            stamp("2026-12-04T04:57:19.130000Z"),
            at("2026-12-04T04:57:19.130000999Z")
        );
        assert_eq!(
            stamp("2026-12-04T04:57:19.5Z"),
            at("2026-12-04T04:57:19.599999999Z")
        );
        assert_eq!(
            stamp("2026-12-04T04:57:19.123456789Z"),
            at("2026-12-04T04:57:19.123456789Z")
        );
        // An offset is kept apart from the fraction.
        assert_eq!(
            stamp("2026-12-04T05:57:19+01:00"),
            at("2026-12-04T04:57:19.999999999Z")
        );
        // More digits than nanoseconds: nothing is added.
        assert_eq!(
            stamp("2026-12-04T04:57:19.1234567891Z"),
            at("2026-12-04T04:57:19.123456789Z")
        );
    }

    #[test]
    fn publish_options_carry_max_items_only_when_asked() {
        let payload = Element::builder("devices", "urn:xmpp:omemo:2").build();
        let with = String::from(&publish("node", "current", payload.clone(), true));
        let without = String::from(&publish("node", "current", payload, false));
        assert!(with.contains("pubsub#max_items") && with.contains("pubsub#access_model"));
        assert!(!without.contains("pubsub#max_items") && without.contains("pubsub#access_model"));
    }

    #[test]
    fn stanza_ids_only_from_the_own_account() {
        let message = parse(
            "<message xmlns='jabber:client'>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='bob@example.com' id='b'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='alice@example.org' id='a'/></message>",
        );
        assert_eq!(stanza_id(&message, &own()), Some("a"));
    }
}

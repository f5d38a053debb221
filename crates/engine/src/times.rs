//! Original decision times, carried next to a trust message.
//!
//! A trust message's SCE `<time>` is its send time (XEP-0434). When an
//! endpoint passes on a decision it learned earlier, the decision must keep the
//! time at which it was originally made, or a device that comes back late could
//! undo a newer decision. The times that differ from the SCE time travel in a
//! sibling element inside the SCE `<content>`:
//!
//! ```xml
//! <decision-times xmlns='urn:atm-rs:decision-time:0'>
//!   <decision jid='bob@example.com' key='BASE64' time='2020-01-01T00:00:03Z'/>
//! </decision-times>
//! ```
//!
//! A receiver that knows only XEP-0434 ignores the element (XMPP
//! extensibility) and still accepts the trust message with its SCE time.

use std::collections::HashMap;

use atm_tm::{BareJid, KeyId};
use chrono::{DateTime, SecondsFormat, Utc};
use minidom::Element;

use crate::store::KeyRef;

/// The namespace of the decision-times element.
pub const NS_DECISION_TIME: &str = "urn:atm-rs:decision-time:0";

/// At most this many `<decision>` children are read.
pub const MAX_DECISION_TIMES: usize = 100_000;

/// Original times of the decisions in one trust message, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecisionTimes(pub HashMap<KeyRef, DateTime<Utc>>);

/// Why a decision-times element was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionTimesError {
    /// The element is not `<decision-times xmlns='urn:atm-rs:decision-time:0'>`.
    #[error("not a decision-times element: <{0}>")]
    NotDecisionTimes(String),
    /// A `<decision>` lacks an attribute.
    #[error("decision {index}: missing attribute {attribute}")]
    Missing {
        /// Position among the `<decision>` children, from 0.
        index: usize,
        /// The attribute's name.
        attribute: &'static str,
    },
    /// An attribute value is invalid.
    #[error("decision {index}: invalid {attribute}: {reason}")]
    Invalid {
        /// Position among the `<decision>` children, from 0.
        index: usize,
        /// The attribute's name.
        attribute: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// More than [`MAX_DECISION_TIMES`] children.
    #[error("more than {MAX_DECISION_TIMES} decision times")]
    TooMany,
}

impl DecisionTimes {
    /// Formats a time as the element writes it (RFC 3339, UTC, `Z`).
    pub fn format_time(time: DateTime<Utc>) -> String {
        time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    /// The element, listing only the times that differ from `sce_time`;
    /// `None` if there is none.
    pub fn to_element(&self, sce_time: DateTime<Utc>) -> Option<Element> {
        let mut entries: Vec<(&KeyRef, &DateTime<Utc>)> =
            self.0.iter().filter(|(_, t)| **t != sce_time).collect();
        if entries.is_empty() {
            return None;
        }
        entries.sort();
        let mut builder = Element::builder("decision-times", NS_DECISION_TIME);
        for (key, time) in entries {
            builder = builder.append(
                Element::builder("decision", NS_DECISION_TIME)
                    .attr(rxml::xml_ncname!("jid").to_owned(), key.owner.as_str())
                    .attr(rxml::xml_ncname!("key").to_owned(), key.key.to_base64())
                    .attr(
                        rxml::xml_ncname!("time").to_owned(),
                        Self::format_time(*time),
                    )
                    .build(),
            );
        }
        Some(builder.build())
    }

    /// Reads the element strictly. Children of other names or namespaces are
    /// ignored.
    pub fn from_element(element: &Element) -> Result<Self, DecisionTimesError> {
        if !element.is("decision-times", NS_DECISION_TIME) {
            return Err(DecisionTimesError::NotDecisionTimes(
                element.name().to_owned(),
            ));
        }
        let mut times = HashMap::new();
        for (index, child) in element
            .children()
            .filter(|c| c.is("decision", NS_DECISION_TIME))
            .enumerate()
        {
            if index >= MAX_DECISION_TIMES {
                return Err(DecisionTimesError::TooMany);
            }
            let attr = |attribute: &'static str| {
                child
                    .attr(attribute)
                    .ok_or(DecisionTimesError::Missing { index, attribute })
            };
            let invalid = |attribute: &'static str, reason: String| DecisionTimesError::Invalid {
                index,
                attribute,
                reason,
            };
            let owner = BareJid::new(attr("jid")?).map_err(|e| invalid("jid", e.to_string()))?;
            let key =
                KeyId::from_base64(attr("key")?).map_err(|e| invalid("key", e.to_string()))?;
            let time = DateTime::parse_from_rfc3339(attr("time")?)
                .map_err(|e| invalid("time", e.to_string()))?
                .with_timezone(&Utc);
            times.insert(KeyRef::new(owner, key), time);
        }
        Ok(DecisionTimes(times))
    }

    /// The time of a decision about `key` carried in a trust message with
    /// `sce_time`: the listed time, but never later than the message was sent.
    pub fn time_of(&self, key: &KeyRef, sce_time: DateTime<Utc>) -> DateTime<Utc> {
        self.0.get(key).map_or(sce_time, |t| (*t).min(sce_time))
    }
}

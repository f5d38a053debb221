//! One line per core event and per `Handled`, as recorded in the QXmpp
//! fixtures (`tests/data/qxmpp/*/manifest.json`) and compared on replay.
//! Shared by the live recorder (`crates/endpoint/tests/live_qxmpp.rs`) and
//! the replay test (`tests/qxmpp_fixtures.rs`), so both spell events alike.

use atm_client::{Event, Handled};
use atm_engine::Cause;

fn cause(cause: &Cause) -> String {
    match cause {
        Cause::Manual => "manual".to_owned(),
        Cause::TrustMessage(k) => format!("trust-message {} {}", k.owner, k.key.to_hex()),
        Cause::Postponed(k) => format!("postponed {} {}", k.owner, k.key.to_hex()),
        Cause::Pending(Some(k)) => format!("pending {} {}", k.owner, k.key.to_hex()),
        Cause::Pending(None) => "pending own".to_owned(),
        Cause::Confirmed(k) => format!("confirmed {} {}", k.owner, k.key.to_hex()),
        Cause::Policy => "policy".to_owned(),
        Cause::Revoked(k) => format!("revoked {} {}", k.owner, k.key.to_hex()),
        Cause::KeyLearned => "key-learned".to_owned(),
    }
}

/// An event as one line (times left out: they follow the receipt time).
pub fn event(event: &Event) -> String {
    match event {
        Event::DeviceAppeared {
            jid,
            device_id,
            key,
            level,
            authenticated,
        } => format!(
            "device {jid} {device_id} {} {} authenticated={authenticated}",
            key.to_hex(),
            level.as_str()
        ),
        Event::TrustChanged {
            key,
            from,
            to,
            cause: why,
        } => format!(
            "trust {} {} {} -> {} by {}",
            key.owner,
            key.key.to_hex(),
            from.map_or("none", |l| l.as_str()),
            to.as_str(),
            cause(why)
        ),
        Event::TrustMessageIgnored { reason } => format!("ignored {reason:?}"),
        Event::DecisionPostponed { sender, target } => format!(
            "postponed from {} {} about {} {}",
            sender.owner,
            sender.key.to_hex(),
            target.owner,
            target.key.to_hex()
        ),
        Event::Chat {
            from,
            device_id,
            key,
            level,
            text,
            ..
        } => format!(
            "chat from {from} {device_id} {} {}: {text}",
            key.to_hex(),
            level.map_or("unknown", |l| l.as_str())
        ),
        Event::Rejected { channel, rejection } => format!("rejected {channel:?}: {rejection}"),
        Event::PublishFailed { node, reason } => format!("publish-failed {node}: {reason}"),
        Event::RecipientUnknown { key } => {
            format!("recipient-unknown {} {}", key.owner, key.key.to_hex())
        }
    }
}

/// What the core did, as one word (a rejection with its reason).
pub fn handled(handled: &Handled) -> String {
    match handled {
        Handled::Rejected(r) => format!("Rejected: {r}"),
        other => format!("{other:?}"),
    }
}

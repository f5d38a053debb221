//! Plain words (and JSON) for what the endpoint reports.

use atm_client::{Event, KeyInfo};
use atm_engine::{Cause, KeyRef, TrustLevel};
use serde_json::{json, Value};

/// A fingerprint grouped in blocks of 8 for reading aloud.
pub fn grouped(hex: &str) -> String {
    hex.as_bytes()
        .chunks(8)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A level in words.
pub fn level(level: TrustLevel) -> &'static str {
    match level {
        TrustLevel::Undecided => "undecided",
        TrustLevel::AutomaticallyTrusted => "automatically trusted",
        TrustLevel::ManuallyTrusted => "manually trusted",
        TrustLevel::Authenticated => "authenticated",
        TrustLevel::AutomaticallyDistrusted => "automatically distrusted",
        TrustLevel::ManuallyDistrusted => "distrusted",
    }
}

fn key_short(key: &KeyRef) -> String {
    let hex = key.key.to_hex();
    format!("{} key {}", key.owner, &hex[..hex.len().min(16)])
}

/// Why a key has its level, in words. `own` is this device's key (its
/// statements are the user's decisions).
pub fn why(info: &KeyInfo, own: &KeyRef) -> String {
    let by = match &info.decided_by {
        Some(source) if source == own => "your decision".to_owned(),
        Some(source) => format!("a trust message from {}", key_short(source)),
        None => "a decision".to_owned(),
    };
    match (info.level, info.since) {
        (TrustLevel::AutomaticallyTrusted, _) => format!(
            "the TOAKAFA policy: no key of {} was authenticated when this one was learned",
            info.owner
        ),
        (TrustLevel::AutomaticallyDistrusted, _) => format!(
            "the TOAKAFA policy: {} has authenticated keys and this one is not; not used until someone authenticates it",
            info.owner
        ),
        (TrustLevel::Undecided, _) => "nothing decided yet (manual policy)".to_owned(),
        (level, Some(time)) => format!(
            "{} by {by} made {}",
            self::level(level),
            time.to_rfc3339()
        ),
        (level, None) => format!("{} (no decision time stored)", self::level(level)),
    }
}

/// `atm keys --json` entry.
pub fn key_json(info: &KeyInfo, own: &KeyRef) -> Value {
    let decided_by = info.decided_by.as_ref().map(|source| {
        json!({"owner": source.owner.as_str(), "fingerprint": source.key.to_hex(), "you": source == own})
    });
    json!({
        "owner": info.owner.as_str(),
        "fingerprint": info.fingerprint,
        "level": info.level.as_str(),
        "since": info.since.map(|t| t.to_rfc3339()),
        "why": why(info, own),
        "decided_by": decided_by,
        "device_ids": info.device_ids,
    })
}

fn cause(cause: &Cause) -> String {
    match cause {
        Cause::Manual => "your decision".to_owned(),
        Cause::TrustMessage(s) => format!("a trust message from {}", key_short(s)),
        Cause::Postponed(s) => format!(
            "a decision of {} postponed until its key was authenticated",
            key_short(s)
        ),
        Cause::Pending(Some(s)) => format!(
            "a decision of {} that waited for this key to appear",
            key_short(s)
        ),
        Cause::Pending(None) => "your decision, which waited for this key to appear".to_owned(),
        Cause::Confirmed(s) => format!("your confirmation of a decision of {}", key_short(s)),
        Cause::Policy => "the security policy".to_owned(),
        Cause::Revoked(s) => format!(
            "the revocation of {}, whose later word is void",
            key_short(s)
        ),
        Cause::KeyLearned => "the key was learned (the policy's level)".to_owned(),
    }
}

fn cause_json(c: &Cause) -> Value {
    let kind = match c {
        Cause::Manual => "manual",
        Cause::TrustMessage(_) => "trust_message",
        Cause::Postponed(_) => "postponed",
        Cause::Pending(_) => "pending",
        Cause::Confirmed(_) => "confirmed",
        Cause::Policy => "policy",
        Cause::Revoked(_) => "revoked",
        Cause::KeyLearned => "key_learned",
    };
    let sender = match c {
        Cause::Revoked(s) => Some(s),
        other => other.sender(),
    };
    json!({
        "kind": kind,
        "sender": sender.map(|s| json!({"owner": s.owner.as_str(), "fingerprint": s.key.to_hex()})),
        "text": cause(c),
    })
}

/// An event as one line of plain words and as JSON.
pub fn event(event: &Event) -> (String, Value) {
    match event {
        Event::DeviceAppeared {
            jid,
            device_id,
            key,
            level,
            authenticated,
        } => {
            let verdict = if *authenticated {
                "ATM authenticated it at once (a decision about it was waiting)".to_owned()
            } else if matches!(
                level,
                TrustLevel::Authenticated | TrustLevel::ManuallyTrusted
            ) {
                format!("it is {}", self::level(*level))
            } else if *level == TrustLevel::AutomaticallyTrusted {
                "it is automatically trusted (no key of the account is authenticated yet); authenticate it to be sure".to_owned()
            } else {
                format!(
                    "it is not used until someone authenticates it ({})",
                    self::level(*level)
                )
            };
            (
                format!(
                    "new device {device_id} of {jid}, fingerprint {}: {verdict}",
                    grouped(&key.to_hex())
                ),
                json!({"event": "device_appeared", "jid": jid.as_str(), "device_id": device_id,
                       "fingerprint": key.to_hex(), "level": level.as_str(), "authenticated": authenticated}),
            )
        }
        Event::TrustChanged {
            key,
            from,
            to,
            cause: c,
        } => {
            let from_words = from.map_or("new".to_owned(), |l| self::level(l).to_owned());
            (
                format!(
                    "{} of {}: {} -> {}, because of {}",
                    grouped(&key.key.to_hex()),
                    key.owner,
                    from_words,
                    self::level(*to),
                    cause(c)
                ),
                json!({"event": "trust_changed", "owner": key.owner.as_str(), "fingerprint": key.key.to_hex(),
                       "from": from.map(TrustLevel::as_str), "to": to.as_str(), "cause": cause_json(c)}),
            )
        }
        Event::TrustMessageIgnored { reason } => (
            format!("a trust message decided nothing: {reason:?}"),
            json!({"event": "trust_message_ignored", "reason": format!("{reason:?}")}),
        ),
        Event::DecisionPostponed { sender, target } => (
            format!(
                "a decision of {} about {} waits until the sender's key is authenticated",
                key_short(sender),
                key_short(target)
            ),
            json!({"event": "decision_postponed",
                   "sender": {"owner": sender.owner.as_str(), "fingerprint": sender.key.to_hex()},
                   "target": {"owner": target.owner.as_str(), "fingerprint": target.key.to_hex()}}),
        ),
        Event::Chat {
            from,
            device_id,
            key,
            level,
            sent,
            text,
        } => {
            let trust = level.map_or("unknown key", self::level);
            (
                format!(
                    "message from {from} (device {device_id}, {trust}, sent {}): {text}",
                    sent.to_rfc3339()
                ),
                json!({"event": "chat", "from": from.as_str(), "device_id": device_id,
                       "fingerprint": key.to_hex(), "level": level.map(TrustLevel::as_str),
                       "sent": sent.to_rfc3339(), "text": text}),
            )
        }
        Event::Rejected { channel, rejection } => (
            format!("refused a stanza ({channel:?}): {rejection}"),
            json!({"event": "rejected", "channel": format!("{channel:?}"), "reason": rejection.to_string()}),
        ),
        Event::PublishFailed { node, reason } => (
            format!("the server refused to publish {node}: {reason}"),
            json!({"event": "publish_failed", "node": node, "reason": reason}),
        ),
        Event::RecipientUnknown { key } => (
            format!(
                "a trust message could not be encrypted for {} (its device is unknown)",
                key_short(key)
            ),
            json!({"event": "recipient_unknown", "owner": key.owner.as_str(), "fingerprint": key.key.to_hex()}),
        ),
    }
}

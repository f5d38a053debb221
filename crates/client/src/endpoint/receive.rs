//! Received messages: unwrapping, deduplication, decryption and acting on
//! the content, all in one unit of work per stanza.

use atm_engine::{DecisionTimes, Input, KeyId, KeyRef, Received, TrustMessage, NS_DECISION_TIME};
use atm_tm::NS_TM;
use chrono::{DateTime, Utc};
use jid::BareJid;
use minidom::Element;

use super::{Abort, CrashPoint, DeviceLearning, Endpoint, Request, SETTING_ARCHIVE};
use crate::crypto::{self, DecryptFailure, OmemoMessage, NS_BUNDLES, NS_DEVICES};
use crate::error::{CoreError, Rejection};
use crate::event::{Event, Handled, Traffic};
use crate::stanza::{self, Channel, Unwrapped, NS_CLIENT};

impl Endpoint {
    pub(super) fn handle_message(
        &mut self,
        outer: &Element,
        now: DateTime<Utc>,
    ) -> Result<Handled, CoreError> {
        if outer.attr("type") == Some("error") {
            // A bounce: nothing to decrypt or decide.
            return Ok(Handled::Ignored);
        }
        let unwrapped = match stanza::unwrap_message(outer, &self.jid) {
            Ok(unwrapped) => unwrapped,
            Err(rejection) => return self.reject(Channel::Live, rejection),
        };
        let channel = unwrapped.channel;
        if channel == Channel::Archive {
            let known = unwrapped.query_id.as_ref().is_some_and(|q| {
                self.requests
                    .values()
                    .any(|r| matches!(r, Request::Archive(id) if id == q))
            });
            if !known {
                return self.reject(channel, Rejection::UnknownQuery(unwrapped.query_id.clone()));
            }
        }
        let message = unwrapped.message;
        if let Some(event) = message.get_child("event", stanza::NS_PUBSUB_EVENT) {
            if channel != Channel::Live {
                return Ok(Handled::Ignored);
            }
            return match self.notification(message, event, now) {
                Ok(handled) => Ok(handled),
                Err(Ok(rejection)) => self.reject(channel, rejection),
                Err(Err(error)) => Err(error),
            };
        }
        match self.encrypted_message(&unwrapped, now) {
            Ok(handled) => Ok(handled),
            Err(Ok(rejection)) => self.reject(channel, rejection),
            Err(Err(error)) => Err(error),
        }
    }

    fn notification(
        &mut self,
        message: &Element,
        event: &Element,
        now: DateTime<Utc>,
    ) -> Result<Handled, Result<Rejection, CoreError>> {
        let from = stanza::from_jid(message).map_err(Ok)?;
        let owner = match &from {
            Some(jid) if jid.resource().is_none() => jid.to_bare(),
            _ => {
                return Err(Ok(Rejection::ForgedNotification(
                    message.attr("from").unwrap_or("").to_owned(),
                )))
            }
        };
        let followed = owner == self.jid
            || self
                .store
                .contacts()
                .map_err(|e| Err(e.into()))?
                .contains(&owner);
        if !followed {
            return Err(Ok(Rejection::ForgedNotification(owner.to_string())));
        }
        let Some(items) = stanza::items(event, stanza::NS_PUBSUB_EVENT) else {
            return Ok(Handled::Ignored);
        };
        if items.attr("node") == Some(NS_BUNDLES) {
            return self.bundle_notification(&owner, items, now);
        }
        if items.attr("node") != Some(NS_DEVICES) {
            return Ok(Handled::Ignored);
        }
        let Some(list) = items
            .children()
            .filter(|i| i.name() == "item")
            .find_map(|i| i.get_child("devices", atm_omemo::elements::NS_OMEMO))
        else {
            return Ok(Handled::Ignored);
        };
        let ids = crypto::parse_device_list(list, &owner).map_err(Ok)?;
        self.take_device_list(&owner, ids, now).map_err(Err)
    }

    /// A device republished its bundle (after a prekey was used): the
    /// stored copy is replaced, so that a session built from it later does
    /// not pick a prekey that is gone. Only for devices already known.
    fn bundle_notification(
        &mut self,
        owner: &BareJid,
        items: &Element,
        now: DateTime<Utc>,
    ) -> Result<Handled, Result<Rejection, CoreError>> {
        // Under `OnRequest`, only devices learned before (bundle stored):
        // a notification must not teach a key nobody asked for.
        let only_learned = self.device_learning == DeviceLearning::OnRequest;
        let known: Vec<u32> = self
            .store
            .devices_of(owner)
            .map_err(|e| Err(e.into()))?
            .into_iter()
            .filter(|d| !only_learned || d.identity.is_some())
            .map(|d| d.device_id)
            .collect();
        let mut handled = Handled::Ignored;
        for item in items.children().filter(|i| i.name() == "item") {
            let Some(device_id) = item.attr("id").and_then(|id| id.parse::<u32>().ok()) else {
                continue;
            };
            if !known.contains(&device_id) || (*owner == self.jid && device_id == self.device_id) {
                continue;
            }
            if let Some(bundle) = item.get_child("bundle", atm_omemo::elements::NS_OMEMO) {
                handled = self.take_bundle(owner, device_id, bundle, now)?;
            }
        }
        Ok(handled)
    }

    fn encrypted_message(
        &mut self,
        unwrapped: &Unwrapped<'_>,
        now: DateTime<Utc>,
    ) -> Result<Handled, Result<Rejection, CoreError>> {
        let message = unwrapped.message;
        let archive_id = unwrapped.archive_id.as_deref();
        // The archive position moves with each result, unless an earlier
        // result of the same query failed: then it stays before that one.
        let position = match &unwrapped.query_id {
            Some(query) if self.failed_queries.contains(query) => None,
            _ => archive_id,
        };
        let Some(omemo) = OmemoMessage::find(message).map_err(Ok)? else {
            if position.is_some() {
                self.record(&[], position, now).map_err(Err)?;
            }
            return Ok(Handled::Ignored);
        };
        let sender = stanza::from_jid(message)
            .map_err(Ok)?
            .ok_or(Ok(Rejection::MissingAttribute {
                element: "message",
                attribute: "from",
            }))?
            .to_bare();
        // A message of the own account without `to` is addressed to the
        // own account (RFC 6120 §8.1.1.1, RFC 6121 §8.1): Prosody removes
        // `to` from a message a client sends to its own bare JID, and
        // delivers, carbons and archives it that way (QXmpp's empty
        // key-exchange messages to its own devices arrive so too). From
        // anyone else, `to` is required.
        let to = match stanza::jid_attr(message, "to").map_err(Ok)? {
            Some(to) => to.to_bare(),
            None if sender == self.jid => self.jid.clone(),
            None => {
                return Err(Ok(Rejection::MissingAttribute {
                    element: "message",
                    attribute: "to",
                }))
            }
        };
        if unwrapped.channel == Channel::CarbonSent && sender != self.jid {
            return Err(Ok(Rejection::ForgedWrapper {
                wrapper: "sent carbon",
                from: sender.to_string(),
            }));
        }
        if to != self.jid && sender != self.jid {
            return Err(Ok(Rejection::NotAddressedToUs(to.to_string())));
        }
        let mut keys = vec![format!(
            "hash:{}",
            omemo.content_hash(&sender, &to, message.attr("id"))
        )];
        let stanza_id = match unwrapped.channel {
            Channel::Archive => archive_id,
            _ => stanza::stanza_id(message, &self.jid),
        };
        if let Some(id) = stanza_id {
            keys.push(format!("sid:{sender}:{id}"));
        }
        if self.store.any_processed(&keys).map_err(|e| Err(e.into()))? {
            self.record(&[], position, now).map_err(Err)?;
            return Ok(Handled::Duplicate);
        }
        if !omemo.is_for(&self.jid, self.device_id) {
            // Only the hash, as for refusals below.
            self.record(&keys[..1], position, now).map_err(Err)?;
            return Ok(Handled::NotForThisDevice);
        }
        // When the message was sent as we know it: now for a live one, the
        // server's delay stamp for one from offline storage or the archive.
        // The engine checks the SCE time against it.
        let sending_time = unwrapped.stamp.unwrap_or(now);
        let mut events = Vec::new();
        let outcome = self.unit(|endpoint| {
            let acted =
                endpoint.open_and_act(&omemo, &sender, &to, sending_time, now, &mut events)?;
            endpoint
                .store
                .mark_processed(&keys, now)
                .map_err(CoreError::from)?;
            if let Some(id) = position {
                endpoint
                    .store
                    .set_setting(SETTING_ARCHIVE, id)
                    .map_err(CoreError::from)?;
            }
            Ok(acted)
        });
        if let Some(traffic) = self.traffic.as_mut() {
            if !matches!(outcome, Err(Abort::Core(_) | Abort::Replay)) {
                traffic.push(Traffic::Arrived {
                    from: sender.clone(),
                    id: message.attr("id").map(str::to_owned),
                    trust_message: matches!(outcome, Ok((Handled::TrustMessage, _))),
                });
            }
        }
        let refused = match outcome {
            Ok((handled, bundle_changed)) => {
                self.events.extend(events);
                if bundle_changed {
                    self.publish_bundle().map_err(Err)?;
                }
                return Ok(handled);
            }
            Err(Abort::Core(error)) => return Err(Err(error)),
            Err(refused) => refused,
        };
        // Refused: nothing of it was stored. Its sender is authentic (the
        // server stamped it), so remember its content hash and never try it
        // again. Only the hash: it covers everything the checks read, while
        // a stanza id could be shared with a genuine copy, which must not be
        // shadowed by a refused one.
        self.record(&keys[..1], position, now).map_err(Err)?;
        match refused {
            Abort::Replay => Ok(Handled::Duplicate),
            Abort::Refused(rejection) => Err(Ok(rejection)),
            Abort::Core(error) => Err(Err(error)),
        }
    }

    /// Inside the unit: decrypt (storing the session advance), act on the
    /// content (the engine for a trust message, an event for chat),
    /// acknowledge. Returns what was done and whether the own bundle changed
    /// (a prekey was used: republish).
    fn open_and_act(
        &mut self,
        omemo: &OmemoMessage,
        sender: &BareJid,
        stanza_to: &BareJid,
        sending_time: DateTime<Utc>,
        now: DateTime<Utc>,
        events: &mut Vec<Event>,
    ) -> Result<(Handled, bool), Abort> {
        let sender_device = omemo.sender_device();
        let expected = self
            .store
            .devices_of(sender)
            .map_err(CoreError::from)?
            .into_iter()
            .find(|d| d.device_id == sender_device)
            .and_then(|d| d.identity);
        let (_, prekeys_before) = crypto::own_bundle(&mut self.store)?;
        let opened = crypto::decrypt(
            &mut self.store,
            self.rng.as_mut(),
            &self.jid,
            self.device_id,
            omemo,
            sender,
            stanza_to,
            expected,
            now,
        )
        .map_err(|failure| match failure {
            DecryptFailure::Replay => Abort::Replay,
            DecryptFailure::Refused(rejection) => Abort::Refused(rejection),
            DecryptFailure::Core(error) => Abort::Core(error),
        })?;
        self.crash(CrashPoint::AfterDecrypt)?;
        if let Some(owner) = self
            .store
            .device_with_identity(sender, &opened.sender_identity)
            .map_err(CoreError::from)?
        {
            if owner.device_id != sender_device {
                return Err(Abort::Refused(Rejection::WrongDevice {
                    jid: sender.to_string(),
                    device_id: sender_device,
                    key_device: owner.device_id,
                }));
            }
        }
        let sender_key = KeyId::from_bytes(opened.sender_identity.to_vec())
            .map_err(|e| CoreError::Omemo(format!("sender identity: {e}")))?;
        let handled = if let Some(element) =
            opened.content.iter().find(|e| e.is("trust-message", NS_TM))
        {
            let message = TrustMessage::try_from(element)
                .map_err(|e| Abort::Refused(Rejection::MalformedTrustMessage(e.to_string())))?;
            let decision_times = match opened
                .content
                .iter()
                .find(|e| e.is("decision-times", NS_DECISION_TIME))
            {
                Some(element) => DecisionTimes::from_element(element)
                    .map_err(|e| Abort::Refused(Rejection::MalformedTrustMessage(e.to_string())))?,
                None => DecisionTimes::default(),
            };
            // XEP-0434 §SCE Profile: a trust message carries <time>.
            let time = opened.time.ok_or_else(|| {
                Abort::Refused(Rejection::Sce("a trust message without <time>".into()))
            })?;
            let co_recipients = self.co_recipients(omemo, sender, sender_device)?;
            let received = Received {
                sender: sender.clone(),
                sender_key: Some(sender_key),
                time,
                stamp: sending_time,
                message,
                decision_times,
                co_recipients,
            };
            let effects = self.engine_input(Input::Received(received), now)?;
            self.crash(CrashPoint::AfterEngine)?;
            self.crash(CrashPoint::StoreFailure)?;
            self.apply_effects(effects, now, events)?;
            Handled::TrustMessage
        } else if let Some(body) = opened.content.iter().find(|e| e.is("body", NS_CLIENT)) {
            let key = KeyRef::new(sender.clone(), sender_key.clone());
            let level = self.engine().level(&key).map_err(CoreError::from)?;
            events.push(Event::Chat {
                from: sender.clone(),
                device_id: sender_device,
                key: sender_key,
                level,
                sent: opened.time.unwrap_or(sending_time),
                text: body.text(),
            });
            Handled::Chat
        } else {
            Handled::Ignored
        };
        if opened.reply {
            // XEP-0384 §Business Rules: an empty message back, so that the
            // sender stops sending key exchanges (QXmpp 1.10 marks only its
            // first one kex='true', docs/interop.md) or moves its ratchet on.
            self.send_empty(sender, sender_device, now)?;
        }
        crypto::acknowledge(&mut self.store, opened.pending_id)?;
        let (_, prekeys_after) = crypto::own_bundle(&mut self.store)?;
        Ok((handled, prekeys_before != prekeys_after))
    }

    /// The keys of the other devices the message was encrypted for.
    fn co_recipients(
        &mut self,
        omemo: &OmemoMessage,
        sender: &BareJid,
        sender_device: u32,
    ) -> Result<Vec<KeyRef>, CoreError> {
        let mut keys = Vec::new();
        for (jid, device_id) in omemo.recipients() {
            if (jid == self.jid && device_id == self.device_id)
                || (jid == *sender && device_id == sender_device)
            {
                continue;
            }
            let identity = self
                .store
                .devices_of(&jid)?
                .into_iter()
                .find(|d| d.device_id == device_id)
                .and_then(|d| d.identity);
            if let Some(identity) = identity {
                if let Ok(key) = KeyId::from_bytes(identity.to_vec()) {
                    keys.push(KeyRef::new(jid, key));
                }
            }
        }
        Ok(keys)
    }
}

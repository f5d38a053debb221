//! PEP: device lists and bundles as they arrive (notifications and
//! answers), and the answers to every other request.

use atm_engine::{Input, KeyId, KeyRef, TrustLevel};
use chrono::{DateTime, Utc};
use jid::BareJid;
use minidom::Element;

use super::{Abort, DeviceLearning, Endpoint, Request, PUBLISH_ATTEMPTS, SETTING_NO_MAX_ITEMS};
use crate::crypto::{self, NS_DEVICES};
use crate::error::{CoreError, Rejection};
use crate::event::{Event, Handled};
use crate::stanza::{self, Channel, NS_PUBSUB};

impl Endpoint {
    pub(super) fn take_device_list(
        &mut self,
        owner: &BareJid,
        mut ids: Vec<u32>,
        _now: DateTime<Utc>,
    ) -> Result<Handled, CoreError> {
        if *owner == self.jid {
            if !ids.contains(&self.device_id) {
                let mut published = ids.clone();
                published.push(self.device_id);
                self.publish(
                    NS_DEVICES,
                    "current".into(),
                    crypto::device_list_element(&published),
                )?;
            }
            ids.retain(|id| *id != self.device_id);
        }
        self.store.begin()?;
        let missing = match self.store.set_device_list(owner, &ids) {
            Ok(missing) => missing,
            Err(error) => {
                self.store.rollback()?;
                return Err(error.into());
            }
        };
        self.store.commit()?;
        if self.device_learning == DeviceLearning::Automatic {
            for id in missing {
                self.fetch_bundle(owner, id);
            }
        }
        Ok(Handled::DeviceList)
    }

    pub(super) fn take_bundle(
        &mut self,
        owner: &BareJid,
        device_id: u32,
        bundle: &Element,
        now: DateTime<Utc>,
    ) -> Result<Handled, Result<Rejection, CoreError>> {
        let (identity, text) = crypto::verify_bundle(bundle, owner, device_id).map_err(Ok)?;
        let known = self
            .store
            .devices_of(owner)
            .map_err(|e| Err(e.into()))?
            .into_iter()
            .find(|d| d.device_id == device_id)
            .and_then(|d| d.identity);
        if known.is_some_and(|k| k != identity)
            || (*owner == self.jid && identity.as_slice() == self.own_key.as_bytes())
        {
            return Err(Ok(Rejection::IdentityChanged {
                jid: owner.to_string(),
                device_id,
            }));
        }
        let key = KeyId::from_bytes(identity.to_vec()).map_err(|e| {
            Ok(Rejection::BadPubsubItem {
                what: format!("bundle {device_id}"),
                jid: owner.to_string(),
                reason: e.to_string(),
            })
        })?;
        let mut events = Vec::new();
        self.unit(|endpoint| {
            endpoint
                .store
                .set_bundle(owner, device_id, &identity, &text)
                .map_err(CoreError::from)?;
            let effects = endpoint.engine_input(
                Input::KeysLearned {
                    owner: owner.clone(),
                    keys: vec![key.clone()],
                },
                now,
            )?;
            endpoint.apply_effects(effects, now, &mut events)?;
            if known.is_none() {
                let level = endpoint
                    .engine()
                    .level(&KeyRef::new(owner.clone(), key.clone()))
                    .map_err(CoreError::from)?
                    .unwrap_or(TrustLevel::Undecided);
                events.push(Event::DeviceAppeared {
                    jid: owner.clone(),
                    device_id,
                    key: key.clone(),
                    level,
                    authenticated: level == TrustLevel::Authenticated,
                });
            }
            Ok(())
        })
        .map_err(Abort::into_result)?;
        self.events.extend(events);
        Ok(Handled::Bundle)
    }

    pub(super) fn handle_iq(
        &mut self,
        iq: &Element,
        now: DateTime<Utc>,
    ) -> Result<Handled, CoreError> {
        let kind = iq.attr("type").unwrap_or("");
        if kind != "result" && kind != "error" {
            return Ok(Handled::Ignored);
        }
        let id = iq.attr("id").unwrap_or("").to_owned();
        let from = iq.attr("from").unwrap_or("").to_owned();
        let unexpected = Rejection::UnexpectedResponse {
            id: id.clone(),
            from: from.clone(),
        };
        let Some(request) = self.requests.get(&id).cloned() else {
            return self.reject(Channel::Live, unexpected);
        };
        // The answer must come from whom we asked: the own account (or its
        // server, no `from`) for own requests, the contact's account else.
        let asked = match &request {
            Request::DeviceList(jid) | Request::Bundle(jid, _) => jid.clone(),
            _ => self.jid.clone(),
        };
        let from_ok = match stanza::from_jid(iq) {
            Ok(None) => asked == self.jid,
            Ok(Some(jid)) => jid.to_bare() == asked && jid.resource().is_none(),
            Err(_) => false,
        };
        if !from_ok {
            return self.reject(Channel::Live, unexpected);
        }
        self.requests.remove(&id);
        let result = kind == "result";
        let outcome = match request {
            Request::Carbons => Ok(Handled::Response),
            Request::Publish {
                node,
                item,
                payload,
                max_items,
                attempt,
            } => {
                if !result {
                    if max_items {
                        // ejabberd refuses publish-options with max_items
                        // (servers.md): remember, and publish without it.
                        self.store.set_setting(SETTING_NO_MAX_ITEMS, "1")?;
                        self.publish_attempt(node, item, payload, attempt)?;
                    } else if attempt + 1 < PUBLISH_ATTEMPTS {
                        self.publish_attempt(node, item, payload, attempt + 1)?;
                    } else {
                        self.events.push_back(Event::PublishFailed {
                            node: node.to_owned(),
                            reason: stanza::error_text(iq),
                        });
                    }
                }
                Ok(Handled::Response)
            }
            Request::DeviceList(owner) => {
                if result {
                    let list = iq
                        .get_child("pubsub", NS_PUBSUB)
                        .and_then(|p| stanza::items(p, NS_PUBSUB))
                        .and_then(|items| {
                            items
                                .children()
                                .filter(|i| i.name() == "item")
                                .find_map(|i| i.get_child("devices", atm_omemo::elements::NS_OMEMO))
                        });
                    match list
                        .map(|l| crypto::parse_device_list(l, &owner))
                        .transpose()
                    {
                        Ok(ids) => {
                            self.take_device_list(&owner, ids.unwrap_or_default(), now)?;
                            Ok(Handled::DeviceList)
                        }
                        Err(rejection) => Err(rejection),
                    }
                } else {
                    // No node yet (item-not-found): an empty list.
                    self.take_device_list(&owner, Vec::new(), now)?;
                    Ok(Handled::DeviceList)
                }
            }
            Request::Bundle(owner, device_id) => {
                if !result {
                    return Ok(Handled::Response);
                }
                let wanted = device_id.to_string();
                let bundle = iq
                    .get_child("pubsub", NS_PUBSUB)
                    .and_then(|p| stanza::items(p, NS_PUBSUB))
                    .and_then(|items| {
                        items
                            .children()
                            .filter(|i| i.name() == "item" && i.attr("id") == Some(&wanted))
                            .find_map(|i| i.get_child("bundle", atm_omemo::elements::NS_OMEMO))
                    });
                match bundle {
                    None => Err(Rejection::BadPubsubItem {
                        what: format!("bundle {device_id}"),
                        jid: owner.to_string(),
                        reason: "no <bundle/> item with this id".into(),
                    }),
                    Some(bundle) => match self.take_bundle(&owner, device_id, bundle, now) {
                        Ok(handled) => Ok(handled),
                        Err(Ok(rejection)) => Err(rejection),
                        Err(Err(error)) => return Err(error),
                    },
                }
            }
            Request::Archive(query_id) => {
                // A result of this page that failed (a core error the
                // driver did not retry) must not be skipped: the position
                // stays at the last result processed, and the next
                // catch-up starts there.
                let failed = self.failed_queries.remove(&query_id);
                if result && !failed {
                    let fin = iq.get_child("fin", stanza::NS_MAM);
                    let last = fin
                        .and_then(|f| f.get_child("set", stanza::NS_RSM))
                        .and_then(|s| s.get_child("last", stanza::NS_RSM))
                        .map(|l| l.text());
                    let complete = fin.and_then(|f| f.attr("complete")) == Some("true");
                    if let Some(last) = &last {
                        self.record(&[], Some(last), now)?;
                    }
                    if !complete && last.is_some() {
                        self.catch_up()?;
                    }
                }
                Ok(Handled::Response)
            }
        };
        match outcome {
            Ok(handled) => Ok(handled),
            Err(rejection) => self.reject(Channel::Live, rejection),
        }
    }
}

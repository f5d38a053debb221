//! The XML elements of OMEMO 2 (XEP-0384): `<encrypted>`, the device list and
//! the bundle. Strict readers with typed errors; writers that round-trip.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use jid::BareJid;
use minidom::Element;

use crate::crypto::{Bundle, IdentityPublicKey};

/// `urn:xmpp:omemo:2`.
pub const NS_OMEMO: &str = "urn:xmpp:omemo:2";
/// The device list node and namespace.
pub const NS_DEVICES: &str = "urn:xmpp:omemo:2:devices";
/// The bundles node and namespace.
pub const NS_BUNDLES: &str = "urn:xmpp:omemo:2:bundles";

/// Most `<key>` elements read from one `<encrypted>`.
pub const MAX_KEYS: usize = 10_000;

/// Why an element was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElementError {
    /// The element is not the one expected.
    #[error("expected <{expected} xmlns='{namespace}'>, found <{found}>")]
    Unexpected {
        /// Expected name.
        expected: &'static str,
        /// Expected namespace.
        namespace: &'static str,
        /// Found name.
        found: String,
    },
    /// A required child is missing.
    #[error("<{parent}> has no <{child}>")]
    MissingChild {
        /// The parent.
        parent: &'static str,
        /// The missing child.
        child: &'static str,
    },
    /// A required attribute is missing.
    #[error("<{element}> has no {attribute} attribute")]
    MissingAttribute {
        /// The element.
        element: &'static str,
        /// The attribute.
        attribute: &'static str,
    },
    /// An attribute or text is invalid.
    #[error("<{element}>: invalid {what}: {reason}")]
    Invalid {
        /// The element.
        element: &'static str,
        /// Which attribute or "text".
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Too many children.
    #[error("<{element}> has more than {limit} children")]
    TooMany {
        /// The element.
        element: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The same id twice.
    #[error("<{element}>: id {id} appears twice")]
    Duplicate {
        /// The element.
        element: &'static str,
        /// The id.
        id: u32,
    },
}

fn expect(
    element: &Element,
    name: &'static str,
    namespace: &'static str,
) -> Result<(), ElementError> {
    if element.is(name, namespace) {
        Ok(())
    } else {
        Err(ElementError::Unexpected {
            expected: name,
            namespace,
            found: element.name().to_owned(),
        })
    }
}

fn attr<'a>(
    element: &'a Element,
    name: &'static str,
    attribute: &'static str,
) -> Result<&'a str, ElementError> {
    element
        .attr(attribute)
        .ok_or(ElementError::MissingAttribute {
            element: name,
            attribute,
        })
}

fn u32_attr(
    element: &Element,
    name: &'static str,
    attribute: &'static str,
) -> Result<u32, ElementError> {
    let text = attr(element, name, attribute)?;
    text.parse::<u32>().map_err(|e| ElementError::Invalid {
        element: name,
        what: attribute,
        reason: format!("{text:?}: {e}"),
    })
}

fn base64_text(element: &Element, name: &'static str) -> Result<Vec<u8>, ElementError> {
    let text = element.text();
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ElementError::Invalid {
            element: name,
            what: "text",
            reason: "empty".into(),
        });
    }
    STANDARD.decode(trimmed).map_err(|e| ElementError::Invalid {
        element: name,
        what: "text",
        reason: e.to_string(),
    })
}

fn fixed<const N: usize>(bytes: Vec<u8>, name: &'static str) -> Result<[u8; N], ElementError> {
    let length = bytes.len();
    bytes.try_into().map_err(|_| ElementError::Invalid {
        element: name,
        what: "text",
        reason: format!("{length} bytes, expected {N}"),
    })
}

fn child<'a>(
    element: &'a Element,
    parent: &'static str,
    name: &'static str,
    ns: &'static str,
) -> Result<&'a Element, ElementError> {
    element
        .get_child(name, ns)
        .ok_or(ElementError::MissingChild {
            parent,
            child: name,
        })
}

fn nc(name: &str) -> rxml::NcName {
    rxml::NcName::try_from(name).unwrap_or_else(|_| unreachable!("a valid attribute name"))
}

/// One encrypted key material for one recipient device (`<key rid kex>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyElement {
    /// The recipient device id.
    pub rid: u32,
    /// Whether the bytes are an `OMEMOKeyExchange`.
    pub kex: bool,
    /// `OMEMOKeyExchange` or `OMEMOAuthenticatedMessage` bytes.
    pub data: Vec<u8>,
}

/// `<encrypted xmlns='urn:xmpp:omemo:2'>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    /// The sending device id (`<header sid>`).
    pub sid: u32,
    /// Key elements by recipient account (`<keys jid>`).
    pub keys: BTreeMap<BareJid, Vec<KeyElement>>,
    /// The encrypted payload (`None` for an empty, key-material-only message).
    pub payload: Option<Vec<u8>>,
}

impl Encrypted {
    /// The key element for device `rid` of `jid`.
    pub fn key_for(&self, jid: &BareJid, rid: u32) -> Option<&KeyElement> {
        self.keys.get(jid)?.iter().find(|k| k.rid == rid)
    }
}

impl From<&Encrypted> for Element {
    fn from(e: &Encrypted) -> Element {
        let mut header = Element::builder("header", NS_OMEMO).attr(nc("sid"), e.sid.to_string());
        for (jid, keys) in &e.keys {
            let mut group = Element::builder("keys", NS_OMEMO).attr(nc("jid"), jid.as_str());
            for k in keys {
                let mut key = Element::builder("key", NS_OMEMO).attr(nc("rid"), k.rid.to_string());
                if k.kex {
                    key = key.attr(nc("kex"), "true");
                }
                group = group.append(key.append(STANDARD.encode(&k.data)).build());
            }
            header = header.append(group.build());
        }
        let mut encrypted = Element::builder("encrypted", NS_OMEMO).append(header.build());
        if let Some(payload) = &e.payload {
            encrypted = encrypted.append(
                Element::builder("payload", NS_OMEMO)
                    .append(STANDARD.encode(payload))
                    .build(),
            );
        }
        encrypted.build()
    }
}

impl TryFrom<&Element> for Encrypted {
    type Error = ElementError;
    fn try_from(element: &Element) -> Result<Self, ElementError> {
        expect(element, "encrypted", NS_OMEMO)?;
        let header = child(element, "encrypted", "header", NS_OMEMO)?;
        let sid = u32_attr(header, "header", "sid")?;
        let mut keys: BTreeMap<BareJid, Vec<KeyElement>> = BTreeMap::new();
        let mut count = 0;
        for group in header.children().filter(|c| c.is("keys", NS_OMEMO)) {
            let jid_text = attr(group, "keys", "jid")?;
            let jid = BareJid::new(jid_text).map_err(|e| ElementError::Invalid {
                element: "keys",
                what: "jid",
                reason: format!("{jid_text:?}: {e}"),
            })?;
            let list = keys.entry(jid).or_default();
            for key in group.children().filter(|c| c.is("key", NS_OMEMO)) {
                count += 1;
                if count > MAX_KEYS {
                    return Err(ElementError::TooMany {
                        element: "header",
                        limit: MAX_KEYS,
                    });
                }
                let rid = u32_attr(key, "key", "rid")?;
                let kex = match key.attr("kex") {
                    None | Some("false") | Some("0") => false,
                    Some("true") | Some("1") => true,
                    Some(other) => {
                        return Err(ElementError::Invalid {
                            element: "key",
                            what: "kex",
                            reason: format!("{other:?} is not a boolean"),
                        })
                    }
                };
                if list.iter().any(|k| k.rid == rid) {
                    return Err(ElementError::Duplicate {
                        element: "keys",
                        id: rid,
                    });
                }
                list.push(KeyElement {
                    rid,
                    kex,
                    data: base64_text(key, "key")?,
                });
            }
        }
        let payload = element
            .get_child("payload", NS_OMEMO)
            .map(|p| base64_text(p, "payload"))
            .transpose()?;
        Ok(Encrypted { sid, keys, payload })
    }
}

/// One entry of the device list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The device id.
    pub id: u32,
    /// A label for people.
    pub label: Option<String>,
}

/// `<devices xmlns='urn:xmpp:omemo:2'>`, the item of the `urn:xmpp:omemo:2:devices` node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceList {
    /// The devices.
    pub devices: Vec<Device>,
}

impl From<&DeviceList> for Element {
    fn from(list: &DeviceList) -> Element {
        let mut devices = Element::builder("devices", NS_OMEMO);
        for d in &list.devices {
            let mut device = Element::builder("device", NS_OMEMO).attr(nc("id"), d.id.to_string());
            if let Some(label) = &d.label {
                device = device.attr(nc("label"), label.as_str());
            }
            devices = devices.append(device.build());
        }
        devices.build()
    }
}

impl TryFrom<&Element> for DeviceList {
    type Error = ElementError;
    fn try_from(element: &Element) -> Result<Self, ElementError> {
        expect(element, "devices", NS_OMEMO)?;
        let mut devices: Vec<Device> = Vec::new();
        for d in element.children().filter(|c| c.is("device", NS_OMEMO)) {
            if devices.len() >= MAX_KEYS {
                return Err(ElementError::TooMany {
                    element: "devices",
                    limit: MAX_KEYS,
                });
            }
            let id = u32_attr(d, "device", "id")?;
            if id == 0 {
                return Err(ElementError::Invalid {
                    element: "device",
                    what: "id",
                    reason: "0 is not a device id".into(),
                });
            }
            if devices.iter().any(|x| x.id == id) {
                return Err(ElementError::Duplicate {
                    element: "devices",
                    id,
                });
            }
            devices.push(Device {
                id,
                label: d.attr("label").map(str::to_owned),
            });
        }
        Ok(DeviceList { devices })
    }
}

/// Writes a `<bundle xmlns='urn:xmpp:omemo:2'>`, the item of the
/// `urn:xmpp:omemo:2:bundles` node.
pub fn bundle_to_element(bundle: &Bundle) -> Element {
    let mut prekeys = Element::builder("prekeys", NS_OMEMO);
    for (id, key) in &bundle.prekeys {
        prekeys = prekeys.append(
            Element::builder("pk", NS_OMEMO)
                .attr(nc("id"), id.to_string())
                .append(STANDARD.encode(key))
                .build(),
        );
    }
    Element::builder("bundle", NS_OMEMO)
        .append(
            Element::builder("spk", NS_OMEMO)
                .attr(nc("id"), bundle.signed_prekey_id.to_string())
                .append(STANDARD.encode(bundle.signed_prekey))
                .build(),
        )
        .append(
            Element::builder("spks", NS_OMEMO)
                .append(STANDARD.encode(bundle.signed_prekey_signature))
                .build(),
        )
        .append(
            Element::builder("ik", NS_OMEMO)
                .append(STANDARD.encode(bundle.identity_key.as_bytes()))
                .build(),
        )
        .append(prekeys.build())
        .build()
}

/// Reads a bundle element strictly; the signature is verified.
///
/// # Errors
/// [`ElementError`] saying what is wrong.
pub fn bundle_from_element(element: &Element) -> Result<Bundle, ElementError> {
    expect(element, "bundle", NS_OMEMO)?;
    let spk = child(element, "bundle", "spk", NS_OMEMO)?;
    let signed_prekey_id = u32_attr(spk, "spk", "id")?;
    let signed_prekey = fixed::<32>(base64_text(spk, "spk")?, "spk")?;
    let signature = fixed::<64>(
        base64_text(child(element, "bundle", "spks", NS_OMEMO)?, "spks")?,
        "spks",
    )?;
    let identity = fixed::<32>(
        base64_text(child(element, "bundle", "ik", NS_OMEMO)?, "ik")?,
        "ik",
    )?;
    let identity_key =
        IdentityPublicKey::from_bytes(identity).map_err(|e| ElementError::Invalid {
            element: "ik",
            what: "text",
            reason: e.to_string(),
        })?;
    let mut prekeys = BTreeMap::new();
    for pk in child(element, "bundle", "prekeys", NS_OMEMO)?
        .children()
        .filter(|c| c.is("pk", NS_OMEMO))
    {
        if prekeys.len() >= MAX_KEYS {
            return Err(ElementError::TooMany {
                element: "prekeys",
                limit: MAX_KEYS,
            });
        }
        let id = u32_attr(pk, "pk", "id")?;
        if prekeys
            .insert(id, fixed::<32>(base64_text(pk, "pk")?, "pk")?)
            .is_some()
        {
            return Err(ElementError::Duplicate {
                element: "prekeys",
                id,
            });
        }
    }
    if prekeys.is_empty() {
        return Err(ElementError::MissingChild {
            parent: "prekeys",
            child: "pk",
        });
    }
    let bundle = Bundle {
        identity_key,
        signed_prekey_id,
        signed_prekey,
        signed_prekey_signature: signature,
        prekeys,
    };
    bundle.verify().map_err(|e| ElementError::Invalid {
        element: "spks",
        what: "text",
        reason: e.to_string(),
    })?;
    Ok(bundle)
}

//! The XML elements of OMEMO 2 (XEP-0384): `<encrypted>`, the device list and
//! the bundle. Readers with typed errors; writers that round-trip.
//!
//! What each reader refuses whole and what it skips:
//!
//! * `<encrypted>`: a missing `<header>`, a bad `sid` or a bad `<payload>`
//!   refuse the message (they concern every recipient). A malformed `<keys>`
//!   group or `<key>` entry (bad `jid`, `rid`, `kex` or Base64) concerns only
//!   its recipient: it is skipped and reported by [`Encrypted::read`], so one
//!   bad entry for someone else never stops this device from reading its own.
//!   [`Encrypted::read_for`] reads only one device's entries, without even
//!   decoding the others.
//!   A `rid` may appear more than once (QXmpp writes two entries, two ratchet
//!   steps apart, for its own devices in a message to its own account): all
//!   are kept, [`Encrypted::keys_for`] yields each, and
//!   [`crate::device::Device::decrypt`] tries them in order.
//! * device list: an entry with a bad, zero, out-of-range or repeated id is
//!   skipped and reported by [`DeviceList::read`] (old clients published
//!   duplicates); the valid entries are kept. A label is kept only with its
//!   `labelsig`, and [`Device::label`] returns it only if the signature
//!   verifies with the device's identity key (XEP-0384 §Device list: a label
//!   without a valid signature MUST be ignored). [`Device::with_label`]
//!   signs the labels this device publishes.
//! * bundle: strict, and its signature is verified.
//!
//! Device ids (`sid`, `rid`, device list ids) must lie in 1..=2^31−1
//! ([`MAX_DEVICE_ID`]). Base64 text may contain XML whitespace (spaces, tabs,
//! line breaks), which is ignored.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use jid::BareJid;
use minidom::Element;

use crate::crypto::{Bundle, IdentityKeyPair, IdentityPublicKey};

/// `urn:xmpp:omemo:2`.
pub const NS_OMEMO: &str = "urn:xmpp:omemo:2";
/// The device list node and namespace.
pub const NS_DEVICES: &str = "urn:xmpp:omemo:2:devices";
/// The bundles node and namespace.
pub const NS_BUNDLES: &str = "urn:xmpp:omemo:2:bundles";

/// Most `<key>` elements read from one `<encrypted>`.
pub const MAX_KEYS: usize = 10_000;

/// Largest device id (XEP-0384: between 1 and 2^31 − 1, the positive numbers
/// of a signed 32-bit integer).
pub const MAX_DEVICE_ID: u32 = 0x7fff_ffff;

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

/// A device id (or prekey id) attribute: in 1..=[`MAX_DEVICE_ID`].
fn device_id_attr(
    element: &Element,
    name: &'static str,
    attribute: &'static str,
) -> Result<u32, ElementError> {
    let id = u32_attr(element, name, attribute)?;
    if id == 0 || id > MAX_DEVICE_ID {
        return Err(ElementError::Invalid {
            element: name,
            what: attribute,
            reason: format!("{id} is not in 1..={MAX_DEVICE_ID}"),
        });
    }
    Ok(id)
}

/// Decodes Base64, ignoring XML whitespace anywhere in it (a `xs:base64Binary`
/// may be broken into lines).
fn base64_decode(
    text: &str,
    name: &'static str,
    what: &'static str,
) -> Result<Vec<u8>, ElementError> {
    let is_xml_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r');
    let compact: std::borrow::Cow<'_, str> = if text.contains(is_xml_space) {
        text.chars()
            .filter(|c| !is_xml_space(*c))
            .collect::<String>()
            .into()
    } else {
        text.into()
    };
    if compact.is_empty() {
        return Err(ElementError::Invalid {
            element: name,
            what,
            reason: "empty".into(),
        });
    }
    STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| ElementError::Invalid {
            element: name,
            what,
            reason: e.to_string(),
        })
}

fn base64_text(element: &Element, name: &'static str) -> Result<Vec<u8>, ElementError> {
    base64_decode(&element.text(), name, "text")
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
    /// The first key element for device `rid` of `jid`.
    pub fn key_for(&self, jid: &BareJid, rid: u32) -> Option<&KeyElement> {
        self.keys_for(jid, rid).next()
    }

    /// Every key element for device `rid` of `jid`, in document order (a
    /// sender may write more than one for the same device).
    pub fn keys_for<'a>(
        &'a self,
        jid: &BareJid,
        rid: u32,
    ) -> impl Iterator<Item = &'a KeyElement> + 'a {
        self.keys
            .get(jid)
            .into_iter()
            .flatten()
            .filter(move |k| k.rid == rid)
    }

    /// Reads an `<encrypted>` element; malformed `<keys>` groups and `<key>`
    /// entries are skipped and returned as the second value (see the module
    /// docs).
    ///
    /// # Errors
    /// [`ElementError`] for what concerns every recipient: the element, its
    /// `<header>` and `sid`, the `<payload>`, or more than [`MAX_KEYS`] keys.
    pub fn read(element: &Element) -> Result<(Self, Vec<ElementError>), ElementError> {
        Self::read_filtered(element, None)
    }

    /// Reads only what device `rid` of `jid` needs from an `<encrypted>`
    /// element: its `<key>` entries (every one, in document order), the
    /// `sid` and the payload. Other recipients' entries are neither decoded
    /// nor reported; the entries of `jid` whose `rid` cannot be read (they
    /// might have been this device's) are skipped and reported.
    ///
    /// # Errors
    /// As [`Encrypted::read`].
    pub fn read_for(
        element: &Element,
        jid: &BareJid,
        rid: u32,
    ) -> Result<(Self, Vec<ElementError>), ElementError> {
        Self::read_filtered(element, Some((jid, rid)))
    }

    fn read_filtered(
        element: &Element,
        only: Option<(&BareJid, u32)>,
    ) -> Result<(Self, Vec<ElementError>), ElementError> {
        expect(element, "encrypted", NS_OMEMO)?;
        let header = child(element, "encrypted", "header", NS_OMEMO)?;
        let sid = device_id_attr(header, "header", "sid")?;
        let mut keys: BTreeMap<BareJid, Vec<KeyElement>> = BTreeMap::new();
        let mut skipped = Vec::new();
        let mut count = 0;
        for group in header.children().filter(|c| c.is("keys", NS_OMEMO)) {
            let jid = match attr(group, "keys", "jid").and_then(|text| {
                BareJid::new(text).map_err(|e| ElementError::Invalid {
                    element: "keys",
                    what: "jid",
                    reason: format!("{text:?}: {e}"),
                })
            }) {
                Ok(jid) => jid,
                Err(error) => {
                    if only.is_none() {
                        skipped.push(error);
                    }
                    continue;
                }
            };
            if only.is_some_and(|(wanted, _)| *wanted != jid) {
                continue;
            }
            for key in group.children().filter(|c| c.is("key", NS_OMEMO)) {
                if let Some((_, wanted)) = only {
                    if device_id_attr(key, "key", "rid").is_ok_and(|rid| rid != wanted) {
                        continue;
                    }
                }
                count += 1;
                if count > MAX_KEYS {
                    return Err(ElementError::TooMany {
                        element: "header",
                        limit: MAX_KEYS,
                    });
                }
                match read_key(key) {
                    Ok(key) => keys.entry(jid.clone()).or_default().push(key),
                    Err(error) => skipped.push(error),
                }
            }
        }
        let payload = element
            .get_child("payload", NS_OMEMO)
            .map(|p| base64_text(p, "payload"))
            .transpose()?;
        Ok((Encrypted { sid, keys, payload }, skipped))
    }
}

fn read_key(key: &Element) -> Result<KeyElement, ElementError> {
    let rid = device_id_attr(key, "key", "rid")?;
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
    Ok(KeyElement {
        rid,
        kex,
        data: base64_text(key, "key")?,
    })
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
    /// [`Encrypted::read`] without the report of skipped entries.
    fn try_from(element: &Element) -> Result<Self, ElementError> {
        Encrypted::read(element).map(|(encrypted, _)| encrypted)
    }
}

/// A device label with its signature (`label`, `labelsig`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SignedLabel {
    text: String,
    signature: [u8; 64],
}

/// One entry of the device list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The device id.
    pub id: u32,
    label: Option<SignedLabel>,
}

impl Device {
    /// An entry without a label.
    #[must_use]
    pub fn new(id: u32) -> Self {
        Device { id, label: None }
    }

    /// An entry with `label`, signed with the device's identity key
    /// (`labelsig`: Ed25519 over the label's UTF-8 bytes).
    #[must_use]
    pub fn with_label(id: u32, label: &str, identity: &IdentityKeyPair) -> Self {
        Device {
            id,
            label: Some(SignedLabel {
                text: label.to_owned(),
                signature: identity.sign(label.as_bytes()),
            }),
        }
    }

    /// The label, if it has one whose `labelsig` verifies with `identity`
    /// (the device's identity key, from its bundle). An unsigned or badly
    /// signed label is never returned.
    #[must_use]
    pub fn label(&self, identity: &IdentityPublicKey) -> Option<&str> {
        let label = self.label.as_ref()?;
        identity
            .verify(label.text.as_bytes(), &label.signature, "device label")
            .ok()?;
        Some(&label.text)
    }
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
                device = device
                    .attr(nc("label"), label.text.as_str())
                    .attr(nc("labelsig"), STANDARD.encode(label.signature));
            }
            devices = devices.append(device.build());
        }
        devices.build()
    }
}

impl DeviceList {
    /// Reads a device list; entries with a bad, zero, out-of-range or
    /// repeated id are skipped (the first of a repeated id is kept), and so
    /// are labels without a readable `labelsig`; all are returned as the
    /// second value.
    ///
    /// # Errors
    /// [`ElementError`] if this is not a device list or it has more than
    /// [`MAX_KEYS`] entries.
    pub fn read(element: &Element) -> Result<(Self, Vec<ElementError>), ElementError> {
        expect(element, "devices", NS_OMEMO)?;
        let mut devices: Vec<Device> = Vec::new();
        let mut ids = std::collections::BTreeSet::new();
        let mut skipped = Vec::new();
        for (index, d) in element
            .children()
            .filter(|c| c.is("device", NS_OMEMO))
            .enumerate()
        {
            if index >= MAX_KEYS {
                return Err(ElementError::TooMany {
                    element: "devices",
                    limit: MAX_KEYS,
                });
            }
            let id = match device_id_attr(d, "device", "id") {
                Ok(id) => id,
                Err(error) => {
                    skipped.push(error);
                    continue;
                }
            };
            if !ids.insert(id) {
                skipped.push(ElementError::Duplicate {
                    element: "devices",
                    id,
                });
                continue;
            }
            let label = match (d.attr("label"), d.attr("labelsig")) {
                (None, _) => None,
                (Some(_), None) => {
                    skipped.push(ElementError::MissingAttribute {
                        element: "device",
                        attribute: "labelsig",
                    });
                    None
                }
                (Some(text), Some(signature)) => {
                    match base64_decode(signature, "device", "labelsig").and_then(|bytes| {
                        let length = bytes.len();
                        <[u8; 64]>::try_from(bytes).map_err(|_| ElementError::Invalid {
                            element: "device",
                            what: "labelsig",
                            reason: format!("{length} bytes, expected 64"),
                        })
                    }) {
                        Ok(signature) => Some(SignedLabel {
                            text: text.to_owned(),
                            signature,
                        }),
                        Err(error) => {
                            skipped.push(error);
                            None
                        }
                    }
                }
            };
            devices.push(Device { id, label });
        }
        Ok((DeviceList { devices }, skipped))
    }
}

impl TryFrom<&Element> for DeviceList {
    type Error = ElementError;
    /// [`DeviceList::read`] without the report of skipped entries.
    fn try_from(element: &Element) -> Result<Self, ElementError> {
        DeviceList::read(element).map(|(list, _)| list)
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
    let signed_prekey_id = device_id_attr(spk, "spk", "id")?;
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
        let id = device_id_attr(pk, "pk", "id")?;
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

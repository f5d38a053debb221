//! `--crypto omemo`: every trust message the network carries is SCE-wrapped
//! and OMEMO 2 encrypted for exactly its recipient keys, and decrypted by each
//! receiver; the engine gets the sender key from the session and the time from
//! the envelope. Key identifiers are the devices' identity keys.

use std::collections::HashMap;

use atm_engine::{DecisionTimes, KeyId, KeyRef, TrustMessage, NS_DECISION_TIME};
use atm_omemo::crypto::{DeviceAddress, MemoryStore, RandomError, SecureRandom};
use atm_omemo::device::{Device, Incoming, Recipient};
use atm_omemo::elements::Encrypted;
use atm_omemo::sce::StanzaKind;
use atm_tm::BareJid;
use chrono::{DateTime, Utc};
use minidom::Element;
use sha2::{Digest, Sha256};

/// A device of the simulated network (an endpoint's, or an outside sender's).
pub struct SimDevice {
    /// The OMEMO device (sessions in memory).
    pub device: Device<MemoryStore>,
    /// Its account.
    pub jid: BareJid,
    /// Its key identifier (the identity key).
    pub key: KeyId,
}

/// The simulator's generator: reproducible runs need the same keys from the
/// same scenario, so it is seeded from names, never from the OS. Block `i`
/// is `SHA-256(seed || i)` (SHA-256 as a PRF in counter mode, the
/// construction the scenarios' recorded keys were made with). It lives here,
/// not in `atm-omemo`, whose normal API offers no deterministic generator:
/// only the simulator, whose keys protect nothing, may be seeded.
pub struct SimRandom {
    seed: [u8; 32],
    counter: u64,
    buffer: [u8; 32],
    used: usize,
}

impl SimRandom {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: [u8; 32]) -> Self {
        SimRandom {
            seed,
            counter: 0,
            buffer: [0; 32],
            used: 32,
        }
    }
}

impl SecureRandom for SimRandom {
    fn try_fill(&mut self, dest: &mut [u8]) -> Result<(), RandomError> {
        for byte in dest.iter_mut() {
            if self.used == self.buffer.len() {
                let mut hasher = Sha256::new();
                hasher.update(self.seed);
                hasher.update(self.counter.to_be_bytes());
                self.buffer.copy_from_slice(&hasher.finalize());
                self.counter = self.counter.wrapping_add(1);
                self.used = 0;
            }
            *byte = self.buffer[self.used];
            self.used += 1;
        }
        Ok(())
    }
}

fn seeded(label: &str, name: &str) -> SimRandom {
    SimRandom::new(crate::keys::seed(b"atm-rs sim omemo\0", label, name))
}

impl SimDevice {
    /// A device whose account is derived from `label` and `name`, so runs are
    /// reproducible.
    pub fn new(label: &str, name: &str, jid: BareJid, device_id: u32) -> Result<Self, String> {
        let mut rng = seeded(label, name);
        let device = Device::open(
            jid.clone(),
            device_id,
            MemoryStore::default(),
            DateTime::UNIX_EPOCH,
            &mut rng,
        )
        .map_err(|e| format!("device {name}: {e}"))?;
        let identity = device.identity().map_err(|e| e.to_string())?;
        let key = KeyId::from_bytes(identity.as_bytes().to_vec()).map_err(|e| e.to_string())?;
        Ok(SimDevice { device, jid, key })
    }

    /// The address of this device.
    pub fn address(&self) -> DeviceAddress {
        DeviceAddress {
            jid: self.jid.clone(),
            device_id: self.device.device_id(),
        }
    }
}

/// The OMEMO side of the network: randomness and device lookup.
pub struct Crypto {
    rng: SimRandom,
    /// Outside senders, by key name.
    pub outsiders: HashMap<String, SimDevice>,
}

impl Default for Crypto {
    fn default() -> Self {
        Crypto {
            rng: seeded("network", ""),
            outsiders: HashMap::new(),
        }
    }
}

/// The SCE content of a trust message: the element and, if any, the original
/// decision times.
pub fn content(message: &TrustMessage, times: &DecisionTimes, sent: DateTime<Utc>) -> Vec<Element> {
    let mut content = vec![Element::from(message)];
    if let Some(times) = times.to_element(sent) {
        content.push(times);
    }
    content
}

/// Reads SCE content back: the trust message and the decision times.
pub fn read_content(content: &[Element]) -> Result<(TrustMessage, DecisionTimes), String> {
    let message = content
        .iter()
        .find(|e| e.is("trust-message", atm_tm::NS_TM))
        .ok_or("the envelope holds no trust message")?;
    let message = TrustMessage::try_from(message).map_err(|e| e.to_string())?;
    let times = match content
        .iter()
        .find(|e| e.is("decision-times", NS_DECISION_TIME))
    {
        Some(e) => DecisionTimes::from_element(e).map_err(|e| e.to_string())?,
        None => DecisionTimes::default(),
    };
    Ok((message, times))
}

impl Crypto {
    /// The generator of the network.
    pub fn rng(&mut self) -> &mut dyn SecureRandom {
        &mut self.rng
    }

    /// Encrypts `content` from `from` for `recipients`, in a stanza to `to`.
    pub fn encrypt(
        &mut self,
        from: &mut SimDevice,
        content: Vec<Element>,
        time: DateTime<Utc>,
        to: &BareJid,
        recipients: &[&SimDevice],
    ) -> Result<Encrypted, String> {
        let recipients: Result<Vec<Recipient>, String> = recipients
            .iter()
            .map(|d| {
                Ok(Recipient {
                    address: d.address(),
                    bundle: Some(d.device.bundle().map_err(|e| e.to_string())?),
                })
            })
            .collect();
        from.device
            .encrypt(content, time, to, &recipients?, &mut self.rng)
            .map_err(|e| e.to_string())
    }

    /// Decrypts at `at` a message from `sender_jid` in a stanza to `stanza_to`
    /// sent at `sent_at`: (sender key, SCE time, content, pending id).
    pub fn decrypt(
        &mut self,
        at: &mut SimDevice,
        encrypted: &Encrypted,
        sender_jid: &BareJid,
        stanza_to: &BareJid,
        sent_at: DateTime<Utc>,
    ) -> Result<(KeyId, DateTime<Utc>, Vec<Element>, u64), String> {
        let stanza = Incoming {
            sender: sender_jid.clone(),
            recipient: stanza_to.clone(),
            sent_at,
            kind: StanzaKind::Chat,
        };
        let opened = at
            .device
            .decrypt(encrypted, &stanza, None, &mut self.rng)
            .map_err(|e| e.to_string())?;
        let key = KeyId::from_bytes(opened.sender_identity.as_bytes().to_vec())
            .map_err(|e| e.to_string())?;
        let time = opened.time.stamp().ok_or("the envelope has no <time>")?;
        let envelope = opened.envelope.ok_or("an empty OMEMO message")?;
        Ok((key, time, envelope.content, opened.pending_id))
    }

    /// The recipients named in a message's header, other than `except`.
    pub fn header_recipients(encrypted: &Encrypted, except: &DeviceAddress) -> Vec<DeviceAddress> {
        encrypted
            .keys
            .iter()
            .flat_map(|(jid, keys)| {
                keys.iter().map(move |k| DeviceAddress {
                    jid: jid.clone(),
                    device_id: k.rid,
                })
            })
            .filter(|a| a != except)
            .collect()
    }
}

/// The key of a device address, if it is one of `devices`.
pub fn key_of_address(devices: &[SimDevice], address: &DeviceAddress) -> Option<KeyRef> {
    devices
        .iter()
        .find(|d| d.address() == *address)
        .map(|d| KeyRef::new(d.jid.clone(), d.key.clone()))
}

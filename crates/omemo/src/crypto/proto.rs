//! The protobuf structures of XEP-0384 §Protobuf Schema (proto2, all `required`
//! fields checked on decoding), with `prost` derives on hand-written structs.

use prost::Message;

use super::error::ProtoError;
use super::primitives::MAC_LENGTH;

#[derive(Clone, PartialEq, Message)]
struct OmemoMessageWire {
    #[prost(uint32, optional, tag = "1")]
    n: Option<u32>,
    #[prost(uint32, optional, tag = "2")]
    pn: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "3")]
    dh_pub: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "4")]
    ciphertext: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
struct OmemoAuthenticatedMessageWire {
    #[prost(bytes = "vec", optional, tag = "1")]
    mac: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    message: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
struct OmemoKeyExchangeWire {
    #[prost(uint32, optional, tag = "1")]
    pk_id: Option<u32>,
    #[prost(uint32, optional, tag = "2")]
    spk_id: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "3")]
    ik: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "4")]
    ek: Option<Vec<u8>>,
    #[prost(message, optional, tag = "5")]
    message: Option<OmemoAuthenticatedMessageWire>,
}

fn required<T>(
    value: Option<T>,
    message: &'static str,
    field: &'static str,
) -> Result<T, ProtoError> {
    value.ok_or(ProtoError::MissingField { message, field })
}

fn fixed<const N: usize>(
    value: Vec<u8>,
    message: &'static str,
    field: &'static str,
) -> Result<[u8; N], ProtoError> {
    let actual = value.len();
    value.try_into().map_err(|_| ProtoError::BadLength {
        message,
        field,
        expected: N,
        actual,
    })
}

fn malformed(message: &'static str) -> impl Fn(prost::DecodeError) -> ProtoError {
    move |error| ProtoError::Malformed {
        message,
        reason: error.to_string(),
    }
}

/// `OMEMOMessage`: the Double Ratchet header and the ciphertext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OmemoMessage {
    /// Message number in the sending chain.
    pub n: u32,
    /// Length of the previous sending chain.
    pub pn: u32,
    /// The sender's current ratchet public key (X25519).
    pub dh_pub: [u8; 32],
    /// AES-256-CBC ciphertext; absent in the associated-data form.
    pub ciphertext: Option<Vec<u8>>,
}

impl OmemoMessage {
    const NAME: &'static str = "OMEMOMessage";

    /// Serializes (field order 1..4, as the reference implementation).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        OmemoMessageWire {
            n: Some(self.n),
            pn: Some(self.pn),
            dh_pub: Some(self.dh_pub.to_vec()),
            ciphertext: self.ciphertext.clone(),
        }
        .encode_to_vec()
    }

    /// Parses and checks the required fields.
    ///
    /// # Errors
    /// [`ProtoError`] saying which field is missing or malformed.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        let wire = OmemoMessageWire::decode(bytes).map_err(malformed(Self::NAME))?;
        Ok(Self {
            n: required(wire.n, Self::NAME, "n")?,
            pn: required(wire.pn, Self::NAME, "pn")?,
            dh_pub: fixed(
                required(wire.dh_pub, Self::NAME, "dh_pub")?,
                Self::NAME,
                "dh_pub",
            )?,
            ciphertext: wire.ciphertext,
        })
    }
}

/// `OMEMOAuthenticatedMessage`: the serialized `OMEMOMessage` and its 16-byte tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OmemoAuthenticatedMessage {
    /// Truncated HMAC-SHA-256 over `ad || message`.
    pub mac: [u8; MAC_LENGTH],
    /// The exact bytes of the `OMEMOMessage` the tag covers.
    pub message: Vec<u8>,
}

impl OmemoAuthenticatedMessage {
    const NAME: &'static str = "OMEMOAuthenticatedMessage";

    fn to_wire(&self) -> OmemoAuthenticatedMessageWire {
        OmemoAuthenticatedMessageWire {
            mac: Some(self.mac.to_vec()),
            message: Some(self.message.clone()),
        }
    }

    fn from_wire(wire: OmemoAuthenticatedMessageWire) -> Result<Self, ProtoError> {
        Ok(Self {
            mac: fixed(required(wire.mac, Self::NAME, "mac")?, Self::NAME, "mac")?,
            message: required(wire.message, Self::NAME, "message")?,
        })
    }

    /// Serializes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        self.to_wire().encode_to_vec()
    }

    /// Parses and checks the required fields.
    ///
    /// # Errors
    /// [`ProtoError`] saying which field is missing or malformed.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        Self::from_wire(
            OmemoAuthenticatedMessageWire::decode(bytes).map_err(malformed(Self::NAME))?,
        )
    }
}

/// `OMEMOKeyExchange`: the X3DH header and the first authenticated message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OmemoKeyExchange {
    /// Id of the prekey used.
    pub pk_id: u32,
    /// Id of the signed prekey used.
    pub spk_id: u32,
    /// The initiator's Ed25519 identity key.
    pub ik: [u8; 32],
    /// The initiator's X25519 ephemeral key.
    pub ek: [u8; 32],
    /// The authenticated message.
    pub message: OmemoAuthenticatedMessage,
}

impl OmemoKeyExchange {
    const NAME: &'static str = "OMEMOKeyExchange";

    /// Serializes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        OmemoKeyExchangeWire {
            pk_id: Some(self.pk_id),
            spk_id: Some(self.spk_id),
            ik: Some(self.ik.to_vec()),
            ek: Some(self.ek.to_vec()),
            message: Some(self.message.to_wire()),
        }
        .encode_to_vec()
    }

    /// Parses and checks the required fields.
    ///
    /// # Errors
    /// [`ProtoError`] saying which field is missing or malformed.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        let wire = OmemoKeyExchangeWire::decode(bytes).map_err(malformed(Self::NAME))?;
        Ok(Self {
            pk_id: required(wire.pk_id, Self::NAME, "pk_id")?,
            spk_id: required(wire.spk_id, Self::NAME, "spk_id")?,
            ik: fixed(required(wire.ik, Self::NAME, "ik")?, Self::NAME, "ik")?,
            ek: fixed(required(wire.ek, Self::NAME, "ek")?, Self::NAME, "ek")?,
            message: OmemoAuthenticatedMessage::from_wire(required(
                wire.message,
                Self::NAME,
                "message",
            )?)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omemo_message_encoding_is_proto2_required() {
        // n = 0 must still be emitted (proto2 required): 08 00 10 00 1a 20 <32 bytes>
        let message = OmemoMessage {
            n: 0,
            pn: 0,
            dh_pub: [9; 32],
            ciphertext: None,
        };
        let bytes = message.encode();
        assert_eq!(bytes[..6], [0x08, 0x00, 0x10, 0x00, 0x1a, 0x20]);
        assert_eq!(bytes.len(), 38);
        assert_eq!(OmemoMessage::decode(&bytes).unwrap(), message);
        let with_ciphertext = OmemoMessage {
            ciphertext: Some(vec![1, 2, 3]),
            ..message
        };
        let bytes = with_ciphertext.encode();
        assert_eq!(bytes[38..], [0x22, 0x03, 1, 2, 3]);
        assert_eq!(OmemoMessage::decode(&bytes).unwrap(), with_ciphertext);
    }

    #[test]
    fn missing_and_bad_fields_are_typed_errors() {
        assert_eq!(
            OmemoMessage::decode(&[0x08, 0x01]),
            Err(ProtoError::MissingField {
                message: "OMEMOMessage",
                field: "pn"
            })
        );
        assert!(matches!(
            OmemoMessage::decode(&[0x08, 0x01, 0x10, 0x00, 0x1a, 0x01, 0x00]),
            Err(ProtoError::BadLength {
                field: "dh_pub",
                actual: 1,
                ..
            })
        ));
        assert!(matches!(
            OmemoAuthenticatedMessage::decode(&[0x0a, 0x05, 1]),
            Err(ProtoError::Malformed { .. })
        ));
        assert!(matches!(
            OmemoKeyExchange::decode(&[]),
            Err(ProtoError::MissingField { field: "pk_id", .. })
        ));
    }

    #[test]
    fn key_exchange_round_trip() {
        let exchange = OmemoKeyExchange {
            pk_id: 7,
            spk_id: 1,
            ik: [1; 32],
            ek: [2; 32],
            message: OmemoAuthenticatedMessage {
                mac: [3; 16],
                message: vec![4, 5],
            },
        };
        assert_eq!(
            OmemoKeyExchange::decode(&exchange.encode()).unwrap(),
            exchange
        );
    }
}

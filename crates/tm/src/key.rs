//! Key identifiers: raw bytes, Base64 in elements, Base16 (hex) in URIs.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Why a text could not be read as a [`KeyId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyIdError {
    /// The text was empty: a key identifier has at least one byte.
    #[error("empty key identifier")]
    Empty,
    /// The text is not canonical, padded Base64 (RFC 4648 §4).
    #[error("invalid Base64 key identifier: {0}")]
    Base64(String),
    /// The text is not Base16 (RFC 4648 §8; either case accepted).
    #[error("invalid hex key identifier: {0}")]
    Hex(String),
}

/// A key identifier as carried in a trust message.
///
/// It is opaque bytes; for OMEMO 2 (`urn:xmpp:omemo:2`) it is the 32-byte
/// Ed25519 identity key. Elements carry it as Base64, Trust Message URIs as
/// lower-case Base16. [`Display`](fmt::Display) writes Base64.
///
/// ```
/// use atm_tm::KeyId;
/// let k = KeyId::from_hex("6850019D7ed0").unwrap();
/// assert_eq!(k.to_base64(), "aFABnX7Q");
/// assert_eq!(k.to_hex(), "6850019d7ed0");
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(Vec<u8>);

impl KeyId {
    /// Wraps raw bytes. Empty input is refused.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<Self, KeyIdError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(KeyIdError::Empty);
        }
        Ok(KeyId(bytes))
    }

    /// Reads canonical, padded standard Base64 (RFC 4648 §4). No whitespace
    /// is accepted; callers trim what their format allows.
    pub fn from_base64(text: &str) -> Result<Self, KeyIdError> {
        if text.is_empty() {
            return Err(KeyIdError::Empty);
        }
        // Keys are short: decode on the stack, then allocate the exact size.
        let mut buffer = [0u8; 96];
        if text.len() <= 128 {
            if let Ok(n) = STANDARD.decode_slice(text, &mut buffer) {
                return Self::from_bytes(buffer[..n].to_vec());
            }
        }
        let bytes = STANDARD
            .decode(text)
            .map_err(|e| KeyIdError::Base64(e.to_string()))?;
        Self::from_bytes(bytes)
    }

    /// Reads Base16, upper or lower case, even length.
    pub fn from_hex(text: &str) -> Result<Self, KeyIdError> {
        if text.is_empty() {
            return Err(KeyIdError::Empty);
        }
        let raw = text.as_bytes();
        if !raw.len().is_multiple_of(2) {
            return Err(KeyIdError::Hex(format!("odd length {}", raw.len())));
        }
        let mut out = Vec::with_capacity(raw.len() / 2);
        for (i, pair) in raw.chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or_else(|| bad_hex(text, 2 * i))?;
            let lo = hex_val(pair[1]).ok_or_else(|| bad_hex(text, 2 * i + 1))?;
            out.push(hi << 4 | lo);
        }
        Self::from_bytes(out)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Consumes the identifier, giving its bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Standard padded Base64, as written in `<trust>`/`<distrust>`.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(&self.0)
    }

    /// Lower-case Base16, as written in Trust Message URIs.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(self.0.len() * 2);
        for b in &self.0 {
            s.push(char::from(DIGITS[usize::from(b >> 4)]));
            s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
        s
    }

    /// Appends the Base64 form to `out` without an intermediate allocation.
    pub(crate) fn write_base64(&self, out: &mut String) {
        STANDARD.encode_string(&self.0, out);
    }
}

fn bad_hex(text: &str, at: usize) -> KeyIdError {
    let c = text[at..].chars().next().unwrap_or('?');
    KeyIdError::Hex(format!("invalid character {c:?} at position {at}"))
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.to_base64())
    }
}

impl AsRef<[u8]> for KeyId {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl TryFrom<Vec<u8>> for KeyId {
    type Error = KeyIdError;
    fn try_from(v: Vec<u8>) -> Result<Self, KeyIdError> {
        Self::from_bytes(v)
    }
}

impl TryFrom<&[u8]> for KeyId {
    type Error = KeyIdError;
    fn try_from(v: &[u8]) -> Result<Self, KeyIdError> {
        Self::from_bytes(v.to_vec())
    }
}

impl From<[u8; 32]> for KeyId {
    fn from(v: [u8; 32]) -> Self {
        KeyId(v.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_both_cases_and_lower_output() {
        let k = KeyId::from_hex("ABcd01").unwrap();
        assert_eq!(k.as_bytes(), &[0xab, 0xcd, 0x01]);
        assert_eq!(k.to_hex(), "abcd01");
    }

    #[test]
    fn refusals() {
        assert_eq!(KeyId::from_hex(""), Err(KeyIdError::Empty));
        assert!(matches!(KeyId::from_hex("abc"), Err(KeyIdError::Hex(_))));
        assert!(matches!(KeyId::from_hex("zz"), Err(KeyIdError::Hex(_))));
        assert!(matches!(KeyId::from_hex("é1"), Err(KeyIdError::Hex(_))));
        assert_eq!(KeyId::from_base64(""), Err(KeyIdError::Empty));
        assert!(matches!(
            KeyId::from_base64("a"),
            Err(KeyIdError::Base64(_))
        ));
        assert!(matches!(
            KeyId::from_base64("aGk"),
            Err(KeyIdError::Base64(_))
        ));
        assert!(matches!(
            KeyId::from_base64("a b="),
            Err(KeyIdError::Base64(_))
        ));
        assert_eq!(KeyId::from_bytes(Vec::new()), Err(KeyIdError::Empty));
    }

    #[test]
    fn base64_roundtrip() {
        let k = KeyId::from_base64("aFABnX7Q/rbTgjBySYzrT2FsYCVYb49mbca5yB734KQ=").unwrap();
        assert_eq!(k.as_bytes().len(), 32);
        assert_eq!(
            k.to_string(),
            "aFABnX7Q/rbTgjBySYzrT2FsYCVYb49mbca5yB734KQ="
        );
    }
}

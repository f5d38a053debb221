//! Key identifiers: raw bytes, Base64 in elements, Base16 (hex) in URIs.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

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
///
/// Identifiers of up to 32 bytes (every OMEMO 2 key) are stored inline,
/// without a heap allocation. Equality, order and hashing are those of the
/// bytes.
#[derive(Clone)]
pub struct KeyId(Repr);

/// Longest identifier stored inline.
const INLINE: usize = 32;

#[derive(Clone)]
enum Repr {
    /// `bytes[..len]`, `1 <= len <= INLINE`.
    Inline { len: u8, bytes: [u8; INLINE] },
    /// Longer identifiers.
    Heap(Box<[u8]>),
}

impl KeyId {
    /// Wraps raw bytes. Empty input is refused.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<Self, KeyIdError> {
        let bytes = bytes.into();
        if bytes.len() > INLINE {
            return Ok(KeyId(Repr::Heap(bytes.into_boxed_slice())));
        }
        Self::from_slice(&bytes)
    }

    /// Copies raw bytes. Empty input is refused.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, KeyIdError> {
        if bytes.is_empty() {
            return Err(KeyIdError::Empty);
        }
        if bytes.len() > INLINE {
            return Ok(KeyId(Repr::Heap(bytes.into())));
        }
        let mut inline = [0u8; INLINE];
        inline[..bytes.len()].copy_from_slice(bytes);
        Ok(KeyId(Repr::Inline {
            // At most INLINE (32), so it fits.
            len: bytes.len() as u8,
            bytes: inline,
        }))
    }

    /// Reads canonical, padded standard Base64 (RFC 4648 §4). No whitespace
    /// is accepted; callers trim what their format allows.
    pub fn from_base64(text: &str) -> Result<Self, KeyIdError> {
        if text.is_empty() {
            return Err(KeyIdError::Empty);
        }
        // Keys are short: decode on the stack. Anything the fast decoder does
        // not take (errors, long keys) goes to the base64 crate, which has
        // the last word and the error messages.
        let mut buffer = [0u8; INLINE];
        if let Some(n) = decode_canonical(text.as_bytes(), &mut buffer) {
            return Self::from_slice(&buffer[..n]);
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
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Heap(bytes) => bytes,
        }
    }

    /// Consumes the identifier, giving its bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        match self.0 {
            Repr::Inline { .. } => self.as_bytes().to_vec(),
            Repr::Heap(bytes) => bytes.into_vec(),
        }
    }

    /// Standard padded Base64, as written in `<trust>`/`<distrust>`.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.as_bytes())
    }

    /// Lower-case Base16, as written in Trust Message URIs.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(self.as_bytes().len() * 2);
        for b in self.as_bytes() {
            s.push(char::from(DIGITS[usize::from(b >> 4)]));
            s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
        s
    }

    /// Appends the Base64 form to `out` without an intermediate allocation.
    pub(crate) fn write_base64(&self, out: &mut String) {
        STANDARD.encode_string(self.as_bytes(), out);
    }
}

/// The 6-bit value of each standard Base64 character (RFC 4648 §4), or
/// [`NOT_BASE64`].
const BASE64_VALUE: [u8; 256] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut table = [NOT_BASE64; 256];
    let mut i = 0;
    while i < 64 {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};
const NOT_BASE64: u8 = 0xFF;

/// Decodes canonical, padded standard Base64 (what the base64 crate's
/// `STANDARD` engine accepts: length a multiple of 4, `=` only as the final
/// padding, no bits set after the last byte) into `out`. `None` if the text
/// is not such Base64 or does not fit.
fn decode_canonical(text: &[u8], out: &mut [u8]) -> Option<usize> {
    if text.is_empty() || !text.len().is_multiple_of(4) || text.len() / 4 * 3 > out.len() + 2 {
        return None;
    }
    let (body, last) = text.split_at(text.len() - 4);
    let mut n = 0;
    for quad in body.chunks_exact(4) {
        let bytes = decode_quad(quad[0], quad[1], quad[2], quad[3])?;
        out.get_mut(n..n + 3)?.copy_from_slice(&bytes);
        n += 3;
    }
    // The final quad: its padding says how many bytes it holds, and the bits
    // after the last of them must be zero (canonical form).
    let (take, unused) = match (last[2], last[3]) {
        (b'=', b'=') => (1, BASE64_VALUE[usize::from(last[1])] & 0x0f),
        (b'=', _) => return None,
        (c, b'=') => (2, BASE64_VALUE[usize::from(c)] & 0x03),
        _ => (3, 0),
    };
    let pad = |c: u8| if c == b'=' { b'A' } else { c };
    let bytes = decode_quad(last[0], last[1], pad(last[2]), pad(last[3]))?;
    if unused != 0 {
        return None;
    }
    out.get_mut(n..n + take)?.copy_from_slice(&bytes[..take]);
    Some(n + take)
}

/// Four Base64 characters as three bytes; `None` if one is not Base64.
fn decode_quad(a: u8, b: u8, c: u8, d: u8) -> Option<[u8; 3]> {
    let value = |c: u8| u32::from(BASE64_VALUE[usize::from(c)]);
    let (a, b, c, d) = (value(a), value(b), value(c), value(d));
    if (a | b | c | d) & 0x80 != 0 {
        return None;
    }
    let [_, x, y, z] = (a << 18 | b << 12 | c << 6 | d).to_be_bytes();
    Some([x, y, z])
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

impl PartialEq for KeyId {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for KeyId {}

impl PartialOrd for KeyId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeyId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Hash for KeyId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl AsRef<[u8]> for KeyId {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
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
        Self::from_slice(v)
    }
}

impl From<[u8; 32]> for KeyId {
    fn from(v: [u8; 32]) -> Self {
        KeyId(Repr::Inline { len: 32, bytes: v })
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
    fn inline_and_heap_are_the_same_bytes() {
        for len in [1, 31, 32, 33, 64] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let k = KeyId::from_bytes(bytes.clone()).unwrap();
            assert_eq!(k.as_bytes(), &bytes[..]);
            assert_eq!(KeyId::from_slice(&bytes).unwrap(), k);
            assert_eq!(KeyId::from_base64(&k.to_base64()).unwrap(), k);
            assert_eq!(k.clone().into_bytes(), bytes);
        }
        // Order and equality are those of the bytes, whatever the storage.
        let short = KeyId::from_slice(&[1; 32]).unwrap();
        let long = KeyId::from_slice(&[1; 33]).unwrap();
        assert!(short < long);
        assert_ne!(short, long);
        let mut a = std::collections::hash_map::DefaultHasher::new();
        let mut b = a.clone();
        short.hash(&mut a);
        [1u8; 32][..].hash(&mut b);
        assert_eq!(a.finish(), b.finish());
    }

    /// The fast decoder accepts exactly what the base64 crate accepts, with
    /// the same bytes (for outputs that fit its buffer; empty text is not a
    /// key).
    #[test]
    fn fast_base64_agrees_with_the_crate() {
        let alphabet = b"AQgw+/=9a_ -";
        let mut next = crate::test_rng(0x9e37_79b9_7f4a_7c15);
        let mut texts: Vec<Vec<u8>> = Vec::new();
        // Every text of up to 8 characters over a small alphabet that covers
        // each case: padding placement, trailing bits, foreign characters.
        for len in 0..=8u32 {
            for _ in 0..4000 {
                let t = (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect();
                texts.push(t);
            }
        }
        // Real encodings of 0 to 40 bytes, and one-character mutations.
        for len in 0..=40usize {
            for _ in 0..50 {
                let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                let mut t = STANDARD.encode(&bytes).into_bytes();
                texts.push(t.clone());
                if !t.is_empty() {
                    let at = (next() % t.len() as u64) as usize;
                    t[at] = alphabet[(next() % alphabet.len() as u64) as usize];
                    texts.push(t);
                }
            }
        }
        for text in texts {
            let mut out = [0u8; INLINE];
            let ours = decode_canonical(&text, &mut out).map(|n| out[..n].to_vec());
            let theirs = STANDARD
                .decode(&text)
                .ok()
                .filter(|b| !b.is_empty() && b.len() <= INLINE);
            assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(&text));
        }
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

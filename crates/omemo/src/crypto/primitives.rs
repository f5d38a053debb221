//! The primitive constructions of XEP-0384: HKDF-SHA-256, truncated HMAC-SHA-256,
//! AES-256-CBC with PKCS#7, X25519.

use aes::cipher::{block_padding::Pkcs7, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Length of the truncated authentication tags (XEP-0384: 16 bytes).
pub const MAC_LENGTH: usize = 16;

type Aes256CbcEncryptor = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDecryptor = cbc::Decryptor<aes::Aes256>;

/// HKDF-SHA-256 with the given salt, input key material and info, `N` bytes of output.
pub(crate) fn hkdf_sha256<const N: usize>(
    salt: &[u8],
    input_key_material: &[u8],
    info: &[u8],
) -> Zeroizing<[u8; N]> {
    let hkdf = Hkdf::<Sha256>::new(Some(salt), input_key_material);
    let mut output = Zeroizing::new([0u8; N]);
    // N is at most 80 everywhere in this crate, far below 255 * 32.
    if hkdf.expand(info, output.as_mut_slice()).is_err() {
        output.fill(0);
    }
    output
}

/// HMAC-SHA-256 of the concatenation of `parts`, full 32 bytes.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let mut output = Zeroizing::new([0u8; 32]);
    // HMAC accepts keys of any length; the error branch is unreachable.
    if let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        for part in parts {
            mac.update(part);
        }
        output.copy_from_slice(&mac.finalize().into_bytes());
    }
    output
}

/// HMAC-SHA-256 truncated to [`MAC_LENGTH`] bytes (cut from the end).
pub(crate) fn hmac_sha256_truncated(key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LENGTH] {
    let full = hmac_sha256(key, parts);
    let mut tag = [0u8; MAC_LENGTH];
    tag.copy_from_slice(&full[..MAC_LENGTH]);
    tag
}

/// Constant-time comparison of a received tag with the computed one.
pub(crate) fn tags_equal(received: &[u8], computed: &[u8; MAC_LENGTH]) -> bool {
    received.len() == MAC_LENGTH && bool::from(received.ct_eq(computed.as_slice()))
}

/// Encryption key, authentication key and IV split from 80 bytes of HKDF output.
pub(crate) struct CipherKeys {
    material: Zeroizing<[u8; 80]>,
}

impl CipherKeys {
    /// HKDF-SHA-256(salt = 32 zero bytes, ikm = `key`, info) split 32/32/16.
    pub(crate) fn derive(key: &[u8], info: &[u8]) -> Self {
        Self {
            material: hkdf_sha256::<80>(&[0u8; 32], key, info),
        }
    }

    pub(crate) fn encryption_key(&self) -> &[u8] {
        &self.material[..32]
    }

    pub(crate) fn authentication_key(&self) -> &[u8] {
        &self.material[32..64]
    }

    pub(crate) fn iv(&self) -> &[u8] {
        &self.material[64..80]
    }

    /// AES-256-CBC with PKCS#7 padding.
    pub(crate) fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        match Aes256CbcEncryptor::new_from_slices(self.encryption_key(), self.iv()) {
            Ok(encryptor) => encryptor.encrypt_padded_vec::<Pkcs7>(plaintext),
            // Key and IV lengths are fixed by construction (32 and 16 bytes).
            Err(_) => Vec::new(),
        }
    }

    /// AES-256-CBC decryption and PKCS#7 unpadding; `None` if either fails.
    pub(crate) fn decrypt(&self, ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let decryptor =
            Aes256CbcDecryptor::new_from_slices(self.encryption_key(), self.iv()).ok()?;
        decryptor
            .decrypt_padded_vec::<Pkcs7>(ciphertext)
            .ok()
            .map(Zeroizing::new)
    }
}

/// X25519 of a private scalar (clamped by X25519 itself) and a Montgomery u-coordinate.
pub(crate) fn x25519(private: &[u8; 32], public: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(x25519_dalek::x25519(*private, *public))
}

/// The X25519 public key of a private scalar.
pub(crate) fn x25519_public(private: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::x25519(*private, x25519_dalek::X25519_BASEPOINT_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 5869 test case 1.
    #[test]
    fn hkdf_rfc5869_case_1() {
        let okm = hkdf_sha256::<42>(
            &hex("000102030405060708090a0b0c"),
            &hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
            &hex("f0f1f2f3f4f5f6f7f8f9"),
        );
        assert_eq!(
            okm.to_vec(),
            hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
        );
    }

    /// RFC 4231 test case 2.
    #[test]
    fn hmac_rfc4231_case_2_and_truncation() {
        let full = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        let expected = hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        assert_eq!(full.to_vec(), expected);
        let tag = hmac_sha256_truncated(b"Jefe", &[b"what do ya want for nothing?"]);
        assert_eq!(tag.to_vec(), expected[..16].to_vec());
        assert!(tags_equal(&expected[..16], &tag));
        assert!(!tags_equal(&expected[..15], &tag));
    }

    /// RFC 7748 §5.2 first X25519 vector.
    #[test]
    fn x25519_rfc7748_vector() {
        let scalar: [u8; 32] =
            hex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
                .try_into()
                .unwrap();
        let u: [u8; 32] = hex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
            .try_into()
            .unwrap();
        assert_eq!(
            x25519(&scalar, &u).to_vec(),
            hex("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552")
        );
    }

    #[test]
    fn aes_cbc_round_trip_and_bad_padding() {
        let keys = CipherKeys::derive(&[7u8; 32], b"test");
        let ciphertext = keys.encrypt(b"sixteen byte msg");
        assert_eq!(ciphertext.len(), 32);
        assert_eq!(
            keys.decrypt(&ciphertext).unwrap().as_slice(),
            b"sixteen byte msg"
        );
        assert!(keys.decrypt(&ciphertext[..31]).is_none());
        let other = CipherKeys::derive(&[8u8; 32], b"test");
        // A wrong key almost always breaks the padding; never returns the plaintext.
        assert_ne!(
            other.decrypt(&ciphertext).map(|p| p.to_vec()),
            Some(b"sixteen byte msg".to_vec())
        );
    }
}

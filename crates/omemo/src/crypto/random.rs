//! Injectable randomness: the OS generator in production, a deterministic one
//! in tests.
//!
//! `DeterministicRandom` exists only in this crate's own tests and with the
//! cargo feature `insecure-deterministic-random-for-tests` (which this crate's
//! dev-dependencies enable for its integration tests, benches and examples):
//! a production build cannot name it. A program that needs reproducible
//! randomness outside tests (the simulator) implements [`SecureRandom`] itself.

#[cfg(any(test, feature = "insecure-deterministic-random-for-tests"))]
use sha2::{Digest, Sha256};
#[cfg(any(test, feature = "insecure-deterministic-random-for-tests"))]
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::error::RandomError;

/// A source of cryptographically secure random bytes.
///
/// Every operation that needs randomness takes `&mut dyn SecureRandom`, so tests
/// can inject `DeterministicRandom` and production code uses [`OsRandom`].
pub trait SecureRandom {
    /// Fills `dest` entirely with random bytes.
    ///
    /// # Errors
    /// [`RandomError`] when the generator cannot produce bytes.
    fn try_fill(&mut self, dest: &mut [u8]) -> Result<(), RandomError>;
}

/// Reads 32 random bytes.
pub(crate) fn random_32(rng: &mut dyn SecureRandom) -> Result<[u8; 32], RandomError> {
    let mut bytes = [0u8; 32];
    rng.try_fill(&mut bytes)?;
    Ok(bytes)
}

/// The operating system's generator (`getrandom`).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl SecureRandom for OsRandom {
    fn try_fill(&mut self, dest: &mut [u8]) -> Result<(), RandomError> {
        getrandom::fill(dest).map_err(|error| RandomError {
            reason: error.to_string(),
        })
    }
}

/// A deterministic generator for tests and known-answer vectors:
/// block `i` is `SHA-256(seed || i)`. NOT for production use: only in this
/// crate's tests or with the feature `insecure-deterministic-random-for-tests`.
#[cfg(any(test, feature = "insecure-deterministic-random-for-tests"))]
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DeterministicRandom {
    seed: [u8; 32],
    counter: u64,
    buffer: [u8; 32],
    used: usize,
}

#[cfg(any(test, feature = "insecure-deterministic-random-for-tests"))]
impl DeterministicRandom {
    /// A generator whose whole output is determined by `seed`.
    #[must_use]
    pub fn new(seed: [u8; 32]) -> Self {
        Self {
            seed,
            counter: 0,
            buffer: [0; 32],
            used: 32,
        }
    }
}

#[cfg(any(test, feature = "insecure-deterministic-random-for-tests"))]
impl std::fmt::Debug for DeterministicRandom {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DeterministicRandom")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

#[cfg(any(test, feature = "insecure-deterministic-random-for-tests"))]
impl SecureRandom for DeterministicRandom {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_random_repeats_and_differs_by_seed() {
        let mut first = DeterministicRandom::new([1; 32]);
        let mut second = DeterministicRandom::new([1; 32]);
        let mut third = DeterministicRandom::new([2; 32]);
        let (mut a, mut b, mut c) = ([0u8; 70], [0u8; 70], [0u8; 70]);
        first.try_fill(&mut a).unwrap();
        second.try_fill(&mut b).unwrap();
        third.try_fill(&mut c).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a[..32], a[32..64]);
    }

    #[test]
    fn os_random_fills() {
        let mut bytes = [0u8; 64];
        OsRandom.try_fill(&mut bytes).unwrap();
        assert_ne!(bytes, [0u8; 64]);
    }
}

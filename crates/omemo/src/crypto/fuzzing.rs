//! Entry points shared by the fuzz targets (`crates/omemo/fuzz`) and the test
//! that replays their corpora. Each returns `Err` describing a violated property;
//! none may panic on any input.

use std::sync::OnceLock;

use chrono::DateTime;

use super::account::Account;
use super::proto::{OmemoAuthenticatedMessage, OmemoKeyExchange, OmemoMessage};
use super::random::DeterministicRandom;
use super::session::{receive, Session};

/// Decodes `data` as each protobuf structure; whatever decodes must survive an
/// encode/decode round trip unchanged.
///
/// # Errors
/// A description of the round trip that failed.
pub fn proto(data: &[u8]) -> Result<(), String> {
    if let Ok(message) = OmemoMessage::decode(data) {
        if OmemoMessage::decode(&message.encode()).as_ref() != Ok(&message) {
            return Err("OMEMOMessage round trip".to_owned());
        }
    }
    if let Ok(message) = OmemoAuthenticatedMessage::decode(data) {
        if OmemoAuthenticatedMessage::decode(&message.encode()).as_ref() != Ok(&message) {
            return Err("OMEMOAuthenticatedMessage round trip".to_owned());
        }
    }
    if let Ok(message) = OmemoKeyExchange::decode(data) {
        if OmemoKeyExchange::decode(&message.encode()).as_ref() != Ok(&message) {
            return Err("OMEMOKeyExchange round trip".to_owned());
        }
    }
    Ok(())
}

struct Fixture {
    bob: Account,
    bob_session: Session,
    alice_session: Session,
}

fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let mut rng = DeterministicRandom::new([77; 32]);
            let alice = Account::generate(DateTime::UNIX_EPOCH, &mut rng).ok()?;
            let bob = Account::generate(DateTime::UNIX_EPOCH, &mut rng).ok()?;
            let mut session = Session::initiate(alice.identity(), &bob.bundle(), &mut rng).ok()?;
            let first = session.encrypt(b"fixture");
            let received = receive(&bob, None, None, &first.bytes, true, &mut rng).ok()?;
            Some(Fixture {
                bob,
                bob_session: received.session,
                alice_session: session,
            })
        })
        .as_ref()
}

/// If `data[0] & 2`, encrypts `data[1..]` from the fixture's initiator and checks
/// the responder decrypts it. Then feeds `data[1..]` to [`receive`] (key exchange
/// if `data[0]` is odd) and to
/// [`Session::decrypt`]; a refused message must leave the session byte for byte
/// as it was.
///
/// # Errors
/// A description of the violated property.
pub fn receive_message(data: &[u8]) -> Result<(), String> {
    let Some(fixture) = fixture() else {
        return Err("fixture could not be built".to_owned());
    };
    let Some((flags, bytes)) = data.split_first() else {
        return Ok(());
    };
    let mut rng = DeterministicRandom::new([78; 32]);
    if flags & 2 == 2 {
        // Round trip of arbitrary key material through the established session.
        let mut alice = fixture.alice_session.clone();
        let message = alice.encrypt(bytes);
        let received = receive(
            &fixture.bob,
            Some(&fixture.bob_session),
            None,
            &message.bytes,
            message.key_exchange,
            &mut rng,
        )
        .map_err(|error| format!("round trip refused: {error}"))?;
        if received.plaintext.as_slice() != bytes {
            return Err("round trip changed the plaintext".to_owned());
        }
    }
    let _ = receive(
        &fixture.bob,
        Some(&fixture.bob_session),
        None,
        bytes,
        flags & 1 == 1,
        &mut rng,
    );
    let before = fixture.bob_session.to_bytes();
    let mut session = fixture.bob_session.clone();
    if session.decrypt(bytes, &mut rng).is_err() && session.to_bytes() != before {
        return Err("a refused message changed the session".to_owned());
    }
    Ok(())
}

/// Parses `data` as persisted account and session state; whatever parses must
/// serialize back to a state that parses to the same bytes.
///
/// # Errors
/// A description of the round trip that failed.
pub fn state(data: &[u8]) -> Result<(), String> {
    if let Ok(account) = Account::from_bytes(data) {
        let bytes = account.to_bytes();
        match Account::from_bytes(&bytes) {
            Ok(again) if again.to_bytes() == bytes => {}
            _ => return Err("account state round trip".to_owned()),
        }
    }
    if let Ok(session) = Session::from_bytes(data) {
        let bytes = session.to_bytes();
        match Session::from_bytes(&bytes) {
            Ok(again) if again.to_bytes() == bytes => {}
            _ => return Err("session state round trip".to_owned()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes seed corpora when `ATM_WRITE_FUZZ_SEEDS` names a directory.
    #[test]
    fn seed_corpus_writer_and_fixture() {
        let fixture = fixture().unwrap();
        let mut session = fixture.bob_session.clone();
        let reply = session.encrypt(b"seed");
        let mut alice = fixture.alice_session.clone();
        let to_bob = alice.encrypt(&[7; 48]);
        assert!(to_bob.key_exchange);
        let mut seed = vec![1];
        seed.extend_from_slice(&to_bob.bytes);
        let mut rng = DeterministicRandom::new([79; 32]);
        let received = receive(
            &fixture.bob,
            Some(&fixture.bob_session),
            None,
            &to_bob.bytes,
            true,
            &mut rng,
        );
        assert_eq!(received.unwrap().plaintext.as_slice(), &[7; 48]);
        assert!(receive_message(&seed).is_ok());
        assert!(receive_message(&[0]).is_ok());
        assert!(state(&fixture.bob.to_bytes()).is_ok());
        assert!(state(&session.to_bytes()).is_ok());
        if let Ok(directory) = std::env::var("ATM_WRITE_FUZZ_SEEDS") {
            let directory = std::path::Path::new(&directory);
            std::fs::write(directory.join("state/account"), fixture.bob.to_bytes()).unwrap();
            std::fs::write(directory.join("state/session"), session.to_bytes()).unwrap();
            std::fs::write(directory.join("proto/fixture_reply"), &reply.bytes).unwrap();
            std::fs::write(directory.join("receive/fixture_kex"), &seed).unwrap();
        }
    }
}

//! Automatic Trust Management (XEP-0450): the engine.
//!
//! Sans-IO: an [`Engine`] takes one [`Input`] at a time (a user's decision, a
//! received trust message, newly learned keys, a policy change, a confirmation
//! answer) with the current time, and returns [`Effect`]s (trust changes with
//! their cause, trust messages to send with their exact recipients, postponed
//! decisions, confirmation requests). It reads and writes through a
//! [`TrustStore`]; each input is one [`Changeset`] committed atomically.
//!
//! The rules, and why the default `complete` propagation is as safe as the
//! XEP's literal rules, are written down in `docs/propagation.md`.
//!
//! ```
//! use atm_engine::{Config, Effect, Engine, Input, MemoryStore, KeyRef, TrustLevel};
//! use atm_tm::{BareJid, KeyId};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let alice: BareJid = "alice@example.org".parse()?;
//! let bob: BareJid = "bob@example.com".parse()?;
//! let (a1, a2, b1) = (KeyId::from_bytes([1; 32])?, KeyId::from_bytes([2; 32])?, KeyId::from_bytes([3; 32])?);
//! let now = chrono::DateTime::UNIX_EPOCH;
//!
//! let mut engine = Engine::new(Config::new(alice.clone(), a1), MemoryStore::new());
//! engine.handle(Input::KeysLearned { owner: alice.clone(), keys: vec![a2.clone()] }, now)?;
//! engine.handle(Input::KeysLearned { owner: bob.clone(), keys: vec![b1.clone()] }, now)?;
//! engine.handle(Input::Manual { owner: alice.clone(), authenticate: vec![a2.clone()], distrust: vec![] }, now)?;
//! // Authenticating Bob's key tells A2 about it, and Bob about A2.
//! let effects = engine.handle(Input::Manual { owner: bob.clone(), authenticate: vec![b1.clone()], distrust: vec![] }, now)?;
//! let sends: Vec<_> = effects.iter().filter_map(|e| match e { Effect::Send(s) => Some(s), _ => None }).collect();
//! assert_eq!(sends.len(), 1);
//! assert_eq!(sends[0].recipients, vec![KeyRef::new(alice.clone(), a2), KeyRef::new(bob.clone(), b1.clone())]);
//! assert_eq!(engine.level(&KeyRef::new(bob, b1))?, Some(TrustLevel::Authenticated));
//! # Ok(())
//! # }
//! ```

mod engine;
mod io;
mod level;
mod plan;
mod store;
mod times;

pub use engine::{
    Engine, MAX_CLOCK_SKEW, MAX_PENDING_PER_ACCOUNT, MAX_POSTPONED_PER_ACCOUNT,
    MAX_POSTPONED_PER_SENDER, MAX_POSTPONED_TOTAL,
};
pub use io::{Cause, Config, Effect, EngineError, IgnoreReason, Input, Limits, Outgoing, Received};
pub use level::{DecisionKind, KeyMode, Policy, Propagation, TrustLevel, UnknownLevel};
pub use store::{
    Changeset, Confirmation, Decision, Infallible, KeyRecord, KeyRef, MemoryStore, Pending,
    Postponed, Revocation, Statement, StatementIndex, TrustStore, Word,
};
pub use times::{DecisionTimes, DecisionTimesError, MAX_DECISION_TIMES, NS_DECISION_TIME};

/// Re-exported from `atm-tm` for convenience.
pub use atm_tm::{BareJid, Encryption, KeyId, TrustMessage};

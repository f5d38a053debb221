//! A deterministic in-process XMPP network for scenarios, the demo and the
//! simulator.
//!
//! * [`scenario`]: the scenario file format (`shared/design/scenario-format.md`),
//!   read strictly.
//! * [`network`]: endpoints running the real [`atm_engine::Engine`], a clock,
//!   queues and offline storage.
//! * [`runner`]: plays a scenario and reports it (JSON or text).
//! * [`simulate`]: many accounts and devices, random minimal initial
//!   authentications, for `atm simulate`; [`plot`] draws its picture.

pub mod crypto;
pub mod demo;
pub mod keys;
pub mod network;
pub mod plot;
pub mod runner;
pub mod scenario;
pub mod simulate;

pub use network::{Counts, Event, MemoryStores, Network, SentMessage, StoreFactory};
pub use runner::{run, run_with, Failure, Outcome};
pub use scenario::{Scenario, ScenarioError, Step};

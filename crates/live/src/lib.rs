//! `atm scenario run FILE --transport xmpp`: plays a scenario (the format of
//! `shared/design/scenario-format.md`, read by [`atm_sim::scenario`]) with one
//! live ATM endpoint per scenario endpoint — an [`atm_client::Endpoint`] in
//! its own state directory (one SQLite file) behind an [`atm_endpoint::Driver`]
//! — on a real XMPP server: a private Prosody or ejabberd started on
//! loopback ([`atm_xmpp_server`]) and stopped at the end, or a server at
//! `HOST:PORT` on which the accounts are created by in-band registration.
//!
//! Endpoints marked `"implementation": "qxmpp"` (mixed scenarios) are
//! QXmpp peer processes (`interop/qxmpp-peer`, [`LiveOptions::qxmpp_peer`])
//! on the same server.
//!
//! The output (JSON object and timeline), the counters and the failures are
//! those of the `sim` transport; `docs/live-scenarios.md` says what every
//! step becomes on the wire, what is refused and when the network counts
//! as settled.
//!
//! Drivers are not `Send`: [`run`] plays everything in one task (use a
//! current-thread runtime); several runs can share one server from
//! separate threads ([`ServerChoice::Remote`] gives each run its own account
//! names).

mod qxmpp;
mod runner;

pub use runner::{refusal, refusal_with, run, LiveError, LiveOptions, LiveOutcome, ServerChoice};

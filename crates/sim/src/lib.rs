//! A deterministic in-process XMPP network for scenarios, the demo and the
//! simulator.

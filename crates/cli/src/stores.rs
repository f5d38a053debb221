//! Where scenario endpoints keep their trust stores.
//!
//! Until the SQLite `TrustStore` lands, endpoints keep theirs in memory; a
//! restart rebuilds the engine from the store alone (the engine holds no other
//! state), which is what the scenario format asks of a restart.

use std::path::Path;

use atm_sim::network::MemoryStores;

/// The stores of one scenario run.
pub type ScenarioStores = MemoryStores;

/// Opening the stores.
pub trait Open: Sized {
    /// Opens the stores, in `dir` if given.
    fn new(dir: Option<&Path>) -> Result<Self, String>;
}

impl Open for MemoryStores {
    fn new(dir: Option<&Path>) -> Result<Self, String> {
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir).map_err(|e| format!("--store {}: {e}", dir.display()))?;
        }
        Ok(MemoryStores)
    }
}

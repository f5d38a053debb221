//! Where scenario endpoints keep their trust stores: one SQLite file per
//! endpoint, in a temporary folder or in `--store DIR`. A restart drops the
//! endpoint's connection and opens the file again.

use std::path::{Path, PathBuf};

use atm_sim::network::StoreFactory;
use atm_sim::scenario::EndpointSpec;
use atm_store::{Durability, SqliteTrustStore};

/// The stores of one scenario run.
pub struct ScenarioStores {
    dir: PathBuf,
    encryption: String,
    _temporary: Option<tempfile::TempDir>,
}

impl ScenarioStores {
    /// Stores in `dir` (which must hold no store of these endpoints yet), or
    /// in a temporary folder removed when the run ends.
    pub fn new(
        dir: Option<&Path>,
        encryption: &str,
        endpoints: &[EndpointSpec],
    ) -> Result<Self, String> {
        let (dir, temporary) = match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("--store {}: {e}", dir.display()))?;
                for e in endpoints {
                    let file = dir.join(file_name(e));
                    if file.exists() {
                        return Err(format!(
                            "--store {}: {} exists from an earlier run; use an empty folder",
                            dir.display(),
                            file.display()
                        ));
                    }
                }
                (dir.to_path_buf(), None)
            }
            None => {
                let temporary =
                    tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
                (temporary.path().to_path_buf(), Some(temporary))
            }
        };
        Ok(ScenarioStores {
            dir,
            encryption: encryption.to_owned(),
            _temporary: temporary,
        })
    }
}

/// `NAME.sqlite` for a plain name (letters, digits, `-`, `_`); any other name
/// (a `/`, a space, `..`, non-ASCII) is spelled in hex after a `~`, so that it
/// stays inside the folder and no two endpoints share a file.
fn file_name(endpoint: &EndpointSpec) -> String {
    let name = &endpoint.name;
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if plain {
        format!("{name}.sqlite")
    } else {
        let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
        format!("~{hex}.sqlite")
    }
}

impl StoreFactory for ScenarioStores {
    type Store = SqliteTrustStore;

    fn open(&mut self, endpoint: &EndpointSpec) -> Result<SqliteTrustStore, String> {
        let path = self.dir.join(file_name(endpoint));
        // A scenario does not need power-loss durability; a killed process
        // still loses nothing (WAL).
        SqliteTrustStore::open_with(&path, &endpoint.jid, &self.encryption, Durability::Normal)
            .map_err(|e| e.to_string())
    }

    fn reopen(
        &mut self,
        endpoint: &EndpointSpec,
        old: SqliteTrustStore,
    ) -> Result<SqliteTrustStore, String> {
        drop(old);
        self.open(endpoint)
    }
}

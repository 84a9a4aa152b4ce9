//! Access control: Mosquitto's `acl_file` ([`acl`]) and the table that
//! says which rules apply to the clients of each listener ([`AclTable`]).
//!
//! The control plane builds the table (reading each file once) at start
//! and on every reload; every shard holds a copy (the rules are shared,
//! immutable, behind `Arc`) and checks it without locks.

pub mod acl;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use acl::{Access, AclError, AclRules, Client};

use crate::config::Config;

/// The ACL rules of each listener, indexed like `Config::listeners`:
/// `None` for a listener without an `acl_file` (its clients may do
/// anything). Cheap to clone (one `Arc` per listener). Built by the
/// control plane; each shard owns a clone.
///
/// Invariant: empty when no listener has rules, so that the check of an
/// unrestricted broker is one bounds test.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclTable {
    per_listener: Vec<Option<Arc<AclRules>>>,
}

impl AclTable {
    /// Reads the `acl_file` of every listener (`per_listener_settings
    /// true`) or the broker's, each distinct file once.
    pub fn load(config: &Config) -> Result<AclTable, AclError> {
        let mut loaded: Vec<(PathBuf, Arc<AclRules>)> = Vec::new();
        let mut per_listener = Vec::with_capacity(config.listeners.len());
        for listener in &config.listeners {
            let path = match &listener.security {
                Some(own) => own.acl_file.as_deref(),
                None => config.acl_file.as_deref(),
            };
            per_listener.push(match path {
                Some(path) => Some(load_once(&mut loaded, path)?),
                None => None,
            });
        }
        if per_listener.iter().all(Option::is_none) {
            per_listener.clear();
        }
        Ok(AclTable { per_listener })
    }

    /// The rules for the clients of listener `i`; `None`: unrestricted.
    #[inline]
    pub fn rules(&self, i: u8) -> Option<&AclRules> {
        self.per_listener.get(usize::from(i))?.as_deref()
    }

    /// True if no listener has rules.
    pub fn is_empty(&self) -> bool {
        self.per_listener.is_empty()
    }
}

fn load_once(
    loaded: &mut Vec<(PathBuf, Arc<AclRules>)>,
    path: &Path,
) -> Result<Arc<AclRules>, AclError> {
    if let Some((_, rules)) = loaded.iter().find(|(p, _)| p == path) {
        return Ok(Arc::clone(rules));
    }
    let rules = Arc::new(AclRules::load(path)?);
    loaded.push((path.to_path_buf(), Arc::clone(&rules)));
    Ok(rules)
}

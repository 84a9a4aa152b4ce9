//! Mosquitto password files (`password_file`): loading, the hashes, and
//! the verifier threads that check them off the shards' loops.
//!
//! - this file: [`PasswordDb`] (one file, `user:hash` lines) and the
//!   per-listener set the control plane loads at start and on reload.
//! - `hash.rs`: the `$7$` (PBKDF2-SHA512) and `$6$` (SHA-512) hashes.
//! - `verifier.rs`: the bounded pool of verifier threads shared by the
//!   shards; answers come back over a channel that wakes the shard.
//!
//! A file is read once by the control plane (at start, on SIGHUP) and
//! shared read-only (`Arc`) by every shard and verifier thread; nothing
//! about a check is cached.

mod hash;
mod verifier;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ahash::RandomState;

use crate::config::Config;

pub use hash::{Hash, DEFAULT_ITERATIONS};
pub use verifier::{Busy, Job, Verdict, VerifierLine, Verifiers};

/// Mosquitto's limit on a user name in a password file (an MQTT string).
const MAX_USERNAME: usize = 65_535;

/// A password file that could not be loaded: `path: why` or
/// `path:line: why`, with the fix.
pub type PasswordError = crate::config::FileError;

/// One password file: user name to hash. Immutable once loaded; shared
/// (`Arc`) by the shards that read which file a listener uses and the
/// verifier threads that check against it; a reload replaces it whole.
pub struct PasswordDb {
    path: PathBuf,
    users: HashMap<String, Hash, RandomState>,
    /// What an unknown user is checked against (see [`Hash::decoy`]).
    decoy: Hash,
}

impl std::fmt::Debug for PasswordDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PasswordDb({}, {} users)",
            self.path.display(),
            self.len()
        )
    }
}

impl PasswordDb {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<PasswordDb, PasswordError> {
        let text = std::fs::read_to_string(path).map_err(|source| PasswordError::Io {
            key: "password_file",
            path: path.display().to_string(),
            source,
        })?;
        PasswordDb::parse(&text, path)
    }

    /// Parses password file text (`path` names it in errors and logs).
    ///
    /// Lines are `user:hash`, blanks around both trimmed; empty lines and
    /// lines starting with `#` are skipped. Unlike Mosquitto, which skips
    /// bad lines, any bad line refuses the whole file.
    pub fn parse(text: &str, path: &Path) -> Result<PasswordDb, PasswordError> {
        let mut users = HashMap::with_hasher(RandomState::new());
        let mut lines_of: HashMap<&str, usize, RandomState> = HashMap::default();
        let mut decoy = None;
        let invalid = |line: usize, reason: String| PasswordError::Invalid {
            path: path.display().to_string(),
            line,
            reason,
        };
        for (i, line) in text.lines().enumerate() {
            let number = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, field)) = line.split_once(':') else {
                let why = "expected user:hash (a line mosquitto_passwd writes)";
                return Err(invalid(number, why.to_string()));
            };
            let (user, field) = (user.trim(), field.trim());
            if user.is_empty() || user.len() > MAX_USERNAME {
                let why = format!(
                    "user name of {} bytes: expected 1..={MAX_USERNAME}",
                    user.len()
                );
                return Err(invalid(number, why));
            }
            let hash =
                Hash::parse(field).map_err(|why| invalid(number, format!("{user}: {why}")))?;
            if let Some(earlier) = lines_of.insert(user, number) {
                let why = format!("{user}: listed twice (also on line {earlier}); keep one line");
                return Err(invalid(number, why));
            }
            decoy.get_or_insert_with(|| hash.decoy());
            users.insert(user.to_string(), hash);
        }
        Ok(PasswordDb {
            path: path.to_path_buf(),
            users,
            decoy: decoy.unwrap_or_else(Hash::default_decoy),
        })
    }

    /// True if `username` is listed and `password` is given and matches.
    /// An unknown user or a missing password costs one hash check too,
    /// so that the time taken does not tell which part was wrong.
    pub fn verify(&self, username: &str, password: Option<&[u8]>) -> bool {
        let (hash, known) = match self.users.get(username) {
            Some(hash) => (hash, true),
            None => (&self.decoy, false),
        };
        let matches = hash.verify(password.unwrap_or_default());
        matches && known && password.is_some()
    }

    /// Users listed.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True if no user is listed (every user name is then refused).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Each listener's password file, indexed like [`Config::listeners`]
/// (one entry for a configuration without listeners); `None` where no
/// `password_file` applies. Built by the control plane, read by shards.
pub type ListenerPasswords = Vec<Option<Arc<PasswordDb>>>;

/// The `password_file` that applies to each listener (per listener with
/// `per_listener_settings true`, else the broker-wide one).
fn paths_of(config: &Config) -> Vec<Option<PathBuf>> {
    if config.listeners.is_empty() {
        return vec![config.password_file.clone()];
    }
    config
        .listeners
        .iter()
        .map(|l| config.security_of(l).password_file)
        .collect()
}

/// Loads every listener's password file (each distinct file once).
pub fn load_for(config: &Config) -> Result<ListenerPasswords, PasswordError> {
    let mut loaded: HashMap<PathBuf, Arc<PasswordDb>, RandomState> = HashMap::default();
    paths_of(config)
        .into_iter()
        .map(|path| {
            let Some(path) = path else { return Ok(None) };
            if let Some(db) = loaded.get(&path) {
                return Ok(Some(Arc::clone(db)));
            }
            let db = Arc::new(PasswordDb::load(&path)?);
            loaded.insert(path, Arc::clone(&db));
            Ok(Some(db))
        })
        .collect()
}

/// [`load_for`] on a reload: a file that cannot be loaded keeps the one
/// the listener had (`current`, indexed alike), or, where it had none,
/// an empty one that refuses every user name (never no file at all: that
/// would let any user name in where anonymous clients are). Each failure
/// is logged with its reason.
pub fn reload_for(config: &Config, current: &[Option<Arc<PasswordDb>>]) -> ListenerPasswords {
    let mut loaded: HashMap<PathBuf, Arc<PasswordDb>, RandomState> = HashMap::default();
    let mut failed: HashMap<PathBuf, (), RandomState> = HashMap::default();
    paths_of(config)
        .into_iter()
        .enumerate()
        .map(|(i, path)| {
            let path = path?;
            if let Some(db) = loaded.get(&path) {
                return Some(Arc::clone(db));
            }
            if !failed.contains_key(&path) {
                match PasswordDb::load(&path) {
                    Ok(db) => {
                        let db = Arc::new(db);
                        loaded.insert(path, Arc::clone(&db));
                        return Some(db);
                    }
                    Err(e) => {
                        log::error!("reload: {e}; keeping the password file loaded before");
                        failed.insert(path.clone(), ());
                    }
                }
            }
            let kept = current.get(i).cloned().flatten();
            Some(kept.unwrap_or_else(|| {
                Arc::new(PasswordDb {
                    path,
                    users: HashMap::default(),
                    decoy: Hash::default_decoy(),
                })
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "alice:$7$101$2rqEqMre0taMP63T$IK9TBjoiEn05LllqFwAgkPO3KXVdUMPCdTqoLD4x315ZFLK65wOGDcTJzOUhRMjKBbB2wzv7qqnnDNLGPhDYBQ==";

    fn parse(text: &str) -> Result<PasswordDb, String> {
        PasswordDb::parse(text, Path::new("pw")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_file_verifies_listed_users_only() {
        let db = parse(&format!("# users\n\n  {ALICE}  \r\n")).expect("parses");
        assert_eq!(db.len(), 1);
        assert!(db.verify("alice", Some(b"secret")));
        assert!(!db.verify("alice", Some(b"wrong")));
        assert!(!db.verify("alice", None));
        assert!(!db.verify("mallory", Some(b"secret")));
        let empty = parse("").expect("an empty file parses");
        assert!(empty.is_empty() && !empty.verify("alice", Some(b"secret")));
    }

    #[test]
    fn bad_lines_name_their_line_and_the_fix() {
        let bad = |text: &str| parse(text).unwrap_err();
        assert_eq!(
            bad("\nalice"),
            "pw:2: expected user:hash (a line mosquitto_passwd writes)"
        );
        assert!(bad("alice:secret").starts_with("pw:1: alice: not a hash"));
        assert!(bad(":$6$AAAA$AAAA").starts_with("pw:1: user name of 0 bytes"));
        let twice = format!("{ALICE}\n{ALICE}\n");
        assert_eq!(
            bad(&twice),
            "pw:2: alice: listed twice (also on line 1); keep one line"
        );
    }
}

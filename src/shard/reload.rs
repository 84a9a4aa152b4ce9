//! Live reload (SIGHUP): the settings a reloaded configuration changes on
//! a running broker without dropping clients, handed from the control
//! plane to every shard.
//!
//! The control plane builds one [`Reload`] from the new configuration
//! (reading the files it names once, not once per shard), posts it on the
//! [`ReloadBoard`] and wakes the shards. Each shard looks at the board's
//! generation once per tick and at wake-up (an atomic load, off the data
//! path), takes the new [`Reload`] when it changed, applies it between two
//! loop turns, and says so; [`ReloadBoard::post`] waits for every shard.
//! The only lock is the board's slot, taken once per reload per shard.

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::listener::{ListenerSettings, ListenerTlsConfigs};
use super::Shard;
use crate::config::Config;
use crate::password::ListenerPasswords;
use crate::security::AclTable;

/// What a reload changes on every shard, built once by the control plane.
/// Immutable and shared (`Send + Sync`); each shard derives its own
/// shard-local state from it.
pub struct Reload {
    /// The reloaded configuration. Only the settings [`Shard::apply_reload`]
    /// reads change on a running broker; the rest wait for the next start.
    pub config: Config,
    /// The ACL rules its `acl_file`s hold, read once; `None`: one could
    /// not be read or parsed, and every shard keeps the rules it has.
    pub acl: Option<AclTable>,
    /// Each listener's password file, loaded once by the control plane
    /// (indexed like `config.listeners`; see
    /// [`crate::password::reload_for`]).
    pub passwords: ListenerPasswords,
    /// Each listener's TLS configuration, indexed like `config.listeners`:
    /// read from the files once by the control plane. A listener whose new
    /// files failed keeps the configuration it had (the control plane
    /// logged why).
    pub tls: ListenerTlsConfigs,
}

/// Where the control plane posts a [`Reload`] for the shards. Shared by the
/// control plane and every shard.
pub struct ReloadBoard {
    /// Bumped by each post; 0 = nothing posted yet.
    generation: AtomicU64,
    /// The latest reload (taken by each shard once per generation).
    slot: Mutex<Option<Arc<Reload>>>,
    /// The generation each shard has applied.
    applied: Vec<AtomicU64>,
}

impl ReloadBoard {
    /// A board for `shards` shards, nothing posted.
    pub fn new(shards: usize) -> ReloadBoard {
        ReloadBoard {
            generation: AtomicU64::new(0),
            slot: Mutex::new(None),
            applied: (0..shards).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Posts `reload`; `wake` wakes every shard. Waits until every shard has
    /// applied it, at most `limit`. Returns the generation posted.
    pub fn post(&self, reload: Reload, wake: impl Fn(), limit: Duration) -> Result<u64, String> {
        let generation = {
            let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            *slot = Some(Arc::new(reload));
            self.generation.fetch_add(1, Ordering::AcqRel) + 1
        };
        wake();
        let deadline = Instant::now() + limit;
        loop {
            let behind = self
                .applied
                .iter()
                .filter(|a| a.load(Ordering::Acquire) < generation)
                .count();
            if behind == 0 {
                return Ok(generation);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{behind} shard(s) had not applied the reload after {limit:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The reload shard `shard` has yet to apply, if any, with its
    /// generation.
    fn pending(&self, shard: usize) -> Option<(u64, Arc<Reload>)> {
        let generation = self.generation.load(Ordering::Acquire);
        if self.applied[shard].load(Ordering::Acquire) >= generation {
            return None;
        }
        let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        // Read under the lock: the slot and the generation move together.
        let generation = self.generation.load(Ordering::Acquire);
        slot.clone().map(|r| (generation, r))
    }

    fn applied(&self, shard: usize, generation: u64) {
        self.applied[shard].store(generation, Ordering::Release);
    }
}

impl Shard {
    /// Applies a reload posted since the last look, if any (each tick and
    /// on wake-up).
    pub(super) fn check_reload(&self) {
        let Some((generation, reload)) = self.reload.pending(self.id) else {
            return;
        };
        self.apply_reload(&reload);
        self.reload.applied(self.id, generation);
    }

    /// What a reload changes here: `sys_interval` (shard 0's `$SYS` tree;
    /// `metrics_listener` is read at start only), every listener's settings (the
    /// `per_listener_settings` scope, `max_connections`, the WebSocket
    /// bounds, password files, TLS certificates) and the ACL rules. Connections already attached keep the
    /// listener settings (a TLS session keeps its certificate) they were admitted with; new ones get the new
    /// settings. A lower `max_connections` closes nobody: new connections
    /// wait until enough have left. A listener's `protocol` changes at the
    /// next start only (its open connections speak the old one). The ACL
    /// rules apply to everyone at once: the next PUBLISH, SUBSCRIBE and
    /// delivery are checked against them.
    fn apply_reload(&self, reload: &Reload) {
        if let Some(tree) = &self.sys {
            tree.borrow_mut()
                .set_interval(reload.config.sys_interval, Instant::now());
        }
        let mut settings = ListenerSettings::all(&reload.config, &reload.passwords, &reload.tls);
        let old = self.listener_settings.borrow().clone();
        if settings.len() != old.len() {
            log::warn!(
                "shard {}: reload: listeners differ; they change at the next start",
                self.id
            );
            return;
        }
        for (i, (new, old)) in settings.iter_mut().zip(&old).enumerate() {
            if new.websocket.is_some() != old.websocket.is_some() {
                if self.id == 0 {
                    log::warn!("reload: listener {i}: `protocol` changes at the next start only");
                }
                new.websocket = old.websocket;
            }
        }
        *self.listener_settings.borrow_mut() = settings.into_iter().map(Rc::new).collect();
        let mut acl = self.acl.borrow_mut();
        if let Some(table) = &reload.acl {
            acl.replace(table.clone());
        }
        acl.check_retain_source = reload.config.check_retain_source;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_waits_for_every_shard_and_each_takes_it_once() {
        let board = Arc::new(ReloadBoard::new(2));
        assert!(board.pending(0).is_none(), "nothing posted");
        let shards = Arc::clone(&board);
        let worker = std::thread::spawn(move || {
            // Shard 0 and 1 apply whatever is pending, once.
            let mut taken = 0;
            let deadline = Instant::now() + Duration::from_secs(5);
            while taken < 2 && Instant::now() < deadline {
                for shard in 0..2 {
                    if let Some((g, _)) = shards.pending(shard) {
                        shards.applied(shard, g);
                        taken += 1;
                    }
                }
            }
            taken
        });
        let reload = Reload {
            config: Config::default(),
            acl: None,
            passwords: Vec::new(),
            tls: Vec::new(),
        };
        let posted = board.post(reload, || {}, Duration::from_secs(5));
        assert_eq!(posted, Ok(1));
        assert_eq!(worker.join().expect("worker"), 2);
        assert!(board.pending(0).is_none() && board.pending(1).is_none());
    }

    #[test]
    fn a_post_nobody_applies_times_out() {
        let board = ReloadBoard::new(1);
        let reload = Reload {
            config: Config::default(),
            acl: None,
            passwords: Vec::new(),
            tls: Vec::new(),
        };
        let err = board
            .post(reload, || {}, Duration::from_millis(20))
            .unwrap_err();
        assert!(err.contains("1 shard(s)"), "{err}");
    }
}

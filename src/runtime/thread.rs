//! Starting shard threads: one named OS thread each, optionally pinned to a
//! core.

use std::io;
use std::thread::JoinHandle;

/// Starts a thread named `name` running `f`, pinned to `core` when given.
///
/// `f` builds (or receives) everything the thread owns, so `!Send` shard
/// state is created on the thread that uses it. A `core` this process may
/// not run on is an error before the thread starts; if pinning still fails
/// on the thread (the affinity mask changed meanwhile) the thread logs it
/// and runs unpinned.
pub fn spawn_pinned<T: Send + 'static>(
    name: String,
    core: Option<usize>,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    let core_id = match core {
        None => None,
        Some(id) => {
            let ids = core_affinity::get_core_ids().unwrap_or_default();
            match ids.into_iter().find(|c| c.id == id) {
                Some(c) => Some(c),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "starting thread {name}: core {id} is not one this process may run on \
                             (see available_cores())"
                        ),
                    ))
                }
            }
        }
    };
    let thread_name = name.clone();
    let err_name = name.clone();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            if let Some(c) = core_id {
                if !core_affinity::set_for_current(c) {
                    log::warn!(
                        "thread {thread_name}: pinning to core {} failed; running unpinned",
                        c.id
                    );
                }
            }
            f()
        })
        .map_err(|e| io::Error::new(e.kind(), format!("starting thread {err_name}: {e}")))
}

/// The cores this process may run on, in order (empty when the affinity
/// mask cannot be read).
pub fn available_cores() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_pinned_and_named() {
        let core = available_cores().first().copied();
        let handle = spawn_pinned("pinned-test".into(), core, || {
            std::thread::current().name().map(str::to_owned)
        })
        .expect("spawn");
        assert_eq!(handle.join().expect("join").as_deref(), Some("pinned-test"));
    }

    #[test]
    fn an_unavailable_core_is_an_error_naming_the_thread() {
        let err = spawn_pinned("nowhere".into(), Some(usize::MAX), || ()).expect_err("pinned");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("nowhere"), "{err}");
    }
}

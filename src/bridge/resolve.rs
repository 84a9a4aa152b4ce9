//! Host names resolved off the bridge thread's loop: a lookup can take
//! seconds, and the loop also answers the data shards' SUBSCRIBE barriers
//! and carries every other link. Each lookup runs on a short-lived thread
//! and posts its result back with a wake-up; a link has at most one lookup
//! running (a hung resolver holds one thread per link, never more).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::config::BridgeAddress;
use crate::runtime::Wake;

/// A finished lookup for the link with id `link`.
pub struct Resolved {
    pub link: u64,
    /// Every address of the host, in the resolver's order.
    pub result: io::Result<Vec<SocketAddr>>,
}

/// Runs lookups for the bridge thread. Owned by that thread; the channel
/// is unbounded but holds at most one result per link.
pub struct Resolver {
    tx: Sender<Resolved>,
    rx: Receiver<Resolved>,
    wake: Arc<Wake>,
}

impl Resolver {
    /// Results wake the loop through `wake`.
    pub fn new(wake: Arc<Wake>) -> Resolver {
        let (tx, rx) = unbounded();
        Resolver { tx, rx, wake }
    }

    /// Starts resolving `address` for link `link`.
    pub fn lookup(&self, link: u64, address: &BridgeAddress) -> io::Result<()> {
        let (host, port) = (address.host.clone(), address.port);
        let (tx, wake) = (self.tx.clone(), Arc::clone(&self.wake));
        std::thread::Builder::new()
            .name("bridge-dns".into())
            .spawn(move || {
                let result = lookup(&host, port);
                let _ = tx.send(Resolved { link, result });
                wake.force();
            })
            .map(|_| ())
    }

    /// The lookups finished since the last call.
    pub fn finished(&self) -> Vec<Resolved> {
        self.rx.try_iter().collect()
    }
}

/// The address itself when the host is an IP address (no lookup needed).
pub fn literal(address: &BridgeAddress) -> Option<SocketAddr> {
    let ip = address.host.parse().ok()?;
    Some(SocketAddr::new(ip, address.port))
}

/// The blocking lookup (getaddrinfo), on a resolver thread only.
fn lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| io::Error::new(e.kind(), format!("resolving {host}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("resolving {host}: no address"),
        ));
    }
    Ok(addrs)
}

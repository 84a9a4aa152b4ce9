//! The accept loop: one per listener per shard (SO_REUSEPORT spreads new
//! connections over the shards' sockets).

use std::rc::Rc;
use std::time::Duration;

use futures_lite::future;

use super::{connect, Shard, Stats};
use crate::limits::{ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN};
use crate::runtime::net::{self, TcpListener};

/// Accepts until the shard starts shutting down. Accept errors (EMFILE,
/// ENFILE, ENOBUFS...) back off exponentially instead of spinning.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    let mut backoff = Duration::ZERO;
    loop {
        let next = future::or(async { Some(net::accept(&listener).await) }, async {
            shard.closing.wait().await;
            None
        });
        match next.await {
            None => return,
            Some(Ok(stream)) => {
                backoff = Duration::ZERO;
                Stats::bump(&shard.stats.accepted);
                let Ok(peer) = stream.peer_addr() else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                crate::runtime::spawn(connect::serve_new(Rc::clone(&shard), stream, peer));
            }
            Some(Err(e)) => {
                backoff = (backoff * 2).clamp(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX);
                log::warn!(
                    "shard {}: accept failed: {e}; retrying in {backoff:?}",
                    shard.id
                );
                crate::runtime::time::sleep(backoff).await;
            }
        }
    }
}

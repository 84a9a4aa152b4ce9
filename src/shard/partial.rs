//! The bytes of a packet that has not fully arrived yet, kept by one
//! connection between reads.
//!
//! Reads land in the shard-wide buffer ([`crate::limits::READ_CHUNK`]); the
//! common case, whole packets, never copies. What is left at the end of a
//! read is copied out once into the connection's own buffer, and later reads
//! are appended to it (the buffer doubles as bytes arrive), so a large
//! packet costs time linear in its size, and memory at most twice what the
//! client has actually sent, whatever size it announced. An idle
//! connection keeps no view of the shared buffer.

use bytes::BytesMut;

use crate::limits::{PARTIAL_RESERVE_MAX, PENDING_KEEP};

/// What a connection keeps between reads: an owned partial packet, if any.
pub type Stored = Option<Box<BytesMut>>;

/// A connection's partial packet while its input is handled. Shard-local;
/// owned by its connection (kept as [`Stored`] between reads).
///
/// Invariant between reads: `buf` is empty with no allocation, or it owns
/// its allocation (`owned`), never a view of the shard-wide read buffer.
#[derive(Default)]
pub struct Partial {
    buf: BytesMut,
    /// `buf` is a private allocation rather than a view of a read chunk.
    owned: bool,
}

impl Partial {
    /// Takes up what a connection kept between reads (see [`Partial::store`]).
    pub fn resume(stored: Stored) -> Partial {
        match stored {
            Some(buf) => Partial {
                buf: *buf,
                owned: true,
            },
            None => Partial::default(),
        }
    }

    /// What the connection keeps until its next read: nothing when no
    /// packet is partly there (the common, idle case costs one pointer).
    /// Call after [`Partial::settle`].
    pub fn store(self) -> Stored {
        debug_assert!(self.buf.is_empty() || self.owned, "settle before store");
        (!self.buf.is_empty()).then(|| Box::new(self.buf))
    }

    /// A partial packet starting with `bytes` (a view of a read chunk, as
    /// left over after CONNECT).
    pub fn from_chunk(bytes: BytesMut) -> Partial {
        Partial {
            buf: bytes,
            owned: false,
        }
    }

    /// Appends a freshly read chunk; returns the bytes to decode from.
    pub fn push(&mut self, chunk: BytesMut) -> &mut BytesMut {
        if self.buf.is_empty() {
            self.buf = chunk;
            self.owned = false;
        } else {
            self.buf.extend_from_slice(&chunk);
        }
        &mut self.buf
    }

    /// The bytes to decode from (what is kept between reads).
    pub fn bytes(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// End of a read: keeps only an owned copy of what is left, with room for
    /// `needed` more bytes (what the decoder said the packet still lacks).
    pub fn settle(&mut self, needed: usize) {
        if self.buf.is_empty() {
            if self.buf.capacity() > PENDING_KEEP || !self.owned {
                // Even an empty view pins the whole read chunk.
                self.buf = BytesMut::new();
                self.owned = true;
            }
            return;
        }
        // Room for what the packet still lacks, but never more than what
        // has arrived: memory follows the bytes a client actually sent (the
        // buffer doubles as they come), not the size it announced.
        let room = needed.min(self.buf.len()).min(PARTIAL_RESERVE_MAX);
        if !self.owned {
            let mut own = BytesMut::with_capacity(self.buf.len() + room);
            own.extend_from_slice(&self.buf);
            self.buf = own;
            self.owned = true;
        } else {
            self.buf.reserve(room);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_follows_what_arrived_not_what_was_announced() {
        let mut shared = BytesMut::from(&[1u8; 64][..]);
        let mut p = Partial::default();
        p.push(shared.split_to(10));
        // The fixed header announced the largest packet MQTT allows.
        p.settle(268_435_455);
        assert!(
            p.owned && p.buf.capacity() <= 2 * 10 + 64,
            "{}",
            p.buf.capacity()
        );
    }

    #[test]
    fn appending_moves_the_buffer_a_logarithmic_number_of_times() {
        let mut p = Partial::default();
        let mut moves = 0;
        let mut at = std::ptr::null();
        for _ in 0..10_000 {
            p.push(BytesMut::from(&[0u8; 16][..]));
            p.settle(1 << 30);
            if p.buf.as_ptr() != at {
                moves += 1;
                at = p.buf.as_ptr();
            }
        }
        assert_eq!(p.buf.len(), 160_000);
        assert!(moves <= 24, "the partial packet moved {moves} times");
    }

    #[test]
    fn an_empty_view_is_released() {
        let mut shared = BytesMut::from(&[1u8; 64][..]);
        let mut p = Partial::default();
        let buf = p.push(shared.split_to(8));
        let _ = buf.split_to(8);
        p.settle(0);
        assert_eq!(p.buf.capacity(), 0);
    }
}

//! The bytes of a packet that has not fully arrived yet, kept by one
//! connection between reads.
//!
//! Reads land in the shard-wide buffer ([`crate::limits::READ_CHUNK`]); the
//! common case, whole packets, never copies. What is left at the end of a
//! read is copied out once into the connection's own buffer, sized for the
//! packet the fixed header announced (capped at [`PARTIAL_RESERVE_MAX`]), and
//! later reads are appended to it, so a large packet costs time linear in
//! its size. An idle connection keeps no view of the shared buffer.

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
        let room = needed.min(PARTIAL_RESERVE_MAX);
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
    fn a_view_is_copied_once_then_appended_to() {
        let mut shared = BytesMut::from(&[1u8; 64][..]);
        let chunk = shared.split_to(10);
        let mut p = Partial::default();
        p.push(chunk);
        p.settle(1000);
        assert!(p.buf.capacity() >= 1010);
        let before = p.buf.as_ptr();
        p.push(shared.split_to(20));
        p.settle(980);
        assert_eq!(p.buf.as_ptr(), before, "appended in place, not re-copied");
        assert_eq!(p.buf.len(), 30);
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

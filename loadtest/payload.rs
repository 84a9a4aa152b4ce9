//! The measurement header every PUBLISH payload starts with.
//!
//! Layout (little endian): intended send time (u64 ns since the clock
//! origin), publisher id (u32), sequence number (u64), then zero padding up
//! to the configured payload size.

/// Bytes taken by the header; the smallest payload the harness can send.
pub const HEADER_LEN: usize = 20;

/// What a subscriber learns from one payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// When the message was scheduled to be sent (open-loop schedule).
    pub intended_ns: u64,
    /// Index of the publisher in the plan.
    pub publisher: u32,
    /// Per-publisher sequence number, from 0.
    pub seq: u64,
}

impl Header {
    /// Writes the header into the front of `payload` (which must be at least
    /// [`HEADER_LEN`] long; the rest is left as it is).
    pub fn write(&self, payload: &mut [u8]) {
        payload[0..8].copy_from_slice(&self.intended_ns.to_le_bytes());
        payload[8..12].copy_from_slice(&self.publisher.to_le_bytes());
        payload[12..20].copy_from_slice(&self.seq.to_le_bytes());
    }

    /// Reads a header; `None` if the payload is too short to be ours.
    pub fn read(payload: &[u8]) -> Option<Header> {
        let intended_ns = u64::from_le_bytes(payload.get(0..8)?.try_into().ok()?);
        let publisher = u32::from_le_bytes(payload.get(8..12)?.try_into().ok()?);
        let seq = u64::from_le_bytes(payload.get(12..20)?.try_into().ok()?);
        Some(Header {
            intended_ns,
            publisher,
            seq,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = Header {
            intended_ns: 123_456_789_012,
            publisher: 7,
            seq: u64::MAX - 3,
        };
        let mut buf = vec![0u8; 64];
        h.write(&mut buf);
        assert_eq!(Header::read(&buf), Some(h));
        assert_eq!(Header::read(&buf[..HEADER_LEN - 1]), None);
    }
}

//! Wire primitives (spec 1.5): a bounds-checked cursor for reading a packet
//! body, and the matching writers for `BytesMut`.
//!
//! Every read goes through [`Reader`], which checks the length first and
//! returns `Malformed` instead of indexing past the end. Writers assume the
//! lengths were checked by the `*_len` helpers first (the encoder always
//! computes the length before writing).

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{EncodeError, Malformed};
use super::reason::ReasonCode;
use super::MAX_REMAINING_LENGTH;

/// Longest UTF-8 string or binary field (two-byte length prefix).
pub const MAX_FIELD_LEN: usize = u16::MAX as usize;

/// A `Malformed` with `MalformedPacket` as the reason.
pub(crate) const fn malformed(detail: &'static str) -> Malformed {
    Malformed::new(ReasonCode::MalformedPacket, detail)
}

/// A `Malformed` with `ProtocolError` as the reason.
pub(crate) const fn protocol_error(detail: &'static str) -> Malformed {
    Malformed::new(ReasonCode::ProtocolError, detail)
}

/// A cursor over `buf[pos..end]`. Slices it hands out share `buf`.
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf[start..]`; `start` is clamped to the length.
    pub(crate) fn new(buf: &'a Bytes, start: usize) -> Reader<'a> {
        let end = buf.len();
        Reader {
            buf,
            pos: start.min(end),
            end,
        }
    }

    /// Bytes left to read.
    pub(crate) fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// True when every byte was read.
    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.end
    }

    /// `Ok` when every byte was read, else `Malformed` with `detail`.
    pub(crate) fn finish(&self, detail: &'static str) -> Result<(), Malformed> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(malformed(detail))
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.remaining() {
            return Err(malformed("field runs past the end of the packet"));
        }
        let buf: &'a [u8] = self.buf;
        let s = &buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A variable byte integer (at most 4 bytes, minimal encoding).
    pub(crate) fn varint(&mut self) -> Result<u32, Malformed> {
        let rest = &self.buf[self.pos..self.end];
        match parse_varint(rest)? {
            Some((value, used)) => {
                self.pos += used;
                Ok(value)
            }
            None => Err(malformed("variable byte integer runs past the end")),
        }
    }

    /// The next `n` bytes as a zero-copy slice.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<Bytes, Malformed> {
        let start = self.pos;
        self.take(n)?;
        Ok(self.buf.slice(start..self.pos))
    }

    /// Everything left, as a zero-copy slice.
    pub(crate) fn rest(&mut self) -> Bytes {
        let s = self.buf.slice(self.pos..self.end);
        self.pos = self.end;
        s
    }

    /// A reader over the next `n` bytes; this one skips them.
    pub(crate) fn sub(&mut self, n: usize) -> Result<Reader<'a>, Malformed> {
        let start = self.pos;
        self.take(n)?;
        Ok(Reader {
            buf: self.buf,
            pos: start,
            end: self.pos,
        })
    }

    /// Binary data: two-byte length, then the bytes (zero-copy).
    pub(crate) fn binary(&mut self) -> Result<Bytes, Malformed> {
        let n = self.u16()?;
        self.bytes(usize::from(n))
    }

    /// A UTF-8 string as a zero-copy slice, validated (see [`check_utf8`]).
    pub(crate) fn utf8_bytes(&mut self) -> Result<Bytes, Malformed> {
        let b = self.binary()?;
        check_utf8(&b)?;
        Ok(b)
    }

    /// A UTF-8 string copied into a `String`, validated.
    pub(crate) fn string(&mut self) -> Result<String, Malformed> {
        let n = self.u16()?;
        let b = self.take(usize::from(n))?;
        Ok(check_utf8(b)?.to_owned())
    }

    /// A packet identifier: non-zero.
    pub(crate) fn packet_id(&mut self) -> Result<std::num::NonZeroU16, Malformed> {
        std::num::NonZeroU16::new(self.u16()?).ok_or(malformed("packet identifier is zero"))
    }
}

/// Validates an MQTT UTF-8 string: well-formed UTF-8 (so no surrogates) and
/// no U+0000. The other code points the spec discourages (controls,
/// non-characters) are "SHOULD NOT" and are accepted.
pub(crate) fn check_utf8(b: &[u8]) -> Result<&str, Malformed> {
    let s = std::str::from_utf8(b).map_err(|_| malformed("invalid UTF-8 string"))?;
    if b.contains(&0) {
        return Err(malformed("UTF-8 string contains U+0000"));
    }
    Ok(s)
}

/// Parses a variable byte integer from the front of `b`: `Ok(None)` when
/// `b` ends before the last byte; `Malformed` when it is longer than four
/// bytes or not minimally encoded.
pub(crate) fn parse_varint(b: &[u8]) -> Result<Option<(u32, usize)>, Malformed> {
    let mut value: u32 = 0;
    for i in 0..4 {
        let Some(&byte) = b.get(i) else {
            return Ok(None);
        };
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(malformed("variable byte integer not minimally encoded"));
            }
            return Ok(Some((value, i + 1)));
        }
    }
    Err(malformed("variable byte integer longer than 4 bytes"))
}

/// Bytes taken by `v` as a variable byte integer (1..=4).
pub const fn varint_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes `v` (at most [`MAX_REMAINING_LENGTH`]) as a variable byte integer
/// at the front of `out`; returns the bytes written.
pub(crate) fn write_varint(out: &mut [u8; 4], v: usize) -> usize {
    debug_assert!(v <= MAX_REMAINING_LENGTH);
    let mut v = v;
    for (i, slot) in out.iter_mut().enumerate() {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            *slot = byte;
            return i + 1;
        }
        *slot = byte | 0x80;
    }
    4
}

/// Appends `v` (at most [`MAX_REMAINING_LENGTH`]) as a variable byte integer.
pub(crate) fn put_varint(out: &mut BytesMut, v: usize) {
    let mut buf = [0; 4];
    let n = write_varint(&mut buf, v);
    out.put_slice(&buf[..n]);
}

/// Encoded size of a string or binary field (length prefix included).
pub(crate) fn field_len(b: &[u8]) -> Result<usize, EncodeError> {
    if b.len() > MAX_FIELD_LEN {
        return Err(EncodeError::TooLarge(
            "string or binary field over 65,535 bytes",
        ));
    }
    Ok(2 + b.len())
}

/// Writes a string or binary field; its length was checked by [`field_len`].
pub(crate) fn put_field(out: &mut BytesMut, b: &[u8]) {
    debug_assert!(b.len() <= MAX_FIELD_LEN);
    out.put_u16(b.len() as u16);
    out.put_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip_at_boundaries() {
        for v in [
            0,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            MAX_REMAINING_LENGTH,
        ] {
            let mut out = BytesMut::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            assert_eq!(parse_varint(&out), Ok(Some((v as u32, out.len()))));
        }
    }

    #[test]
    fn varint_rejects_five_bytes_and_non_minimal() {
        assert!(parse_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]).is_err());
        assert!(parse_varint(&[0x80, 0x00]).is_err());
        assert_eq!(parse_varint(&[0x80]), Ok(None));
    }

    #[test]
    fn reader_never_reads_past_end() {
        let b = Bytes::from_static(&[0x00, 0x05, b'a']);
        let mut r = Reader::new(&b, 0);
        assert!(r.string().is_err());
        let mut r = Reader::new(&b, 10);
        assert!(r.u8().is_err());
    }
}

//! The on-disk format of a shard's journal, version 1. Pure: bytes in,
//! records out, and back; no I/O.
//!
//! ```text
//! file   = header record*
//! header = "SHMQJRNL" (8 bytes) | version u16 | shard u16 | reserved u32   (16 bytes, big-endian)
//! record = len u32 | crc u32 | kind u8 | body (len - 1 bytes)
//! ```
//!
//! `len` counts `kind` and `body`; `crc` is CRC-32 (IEEE) of `kind` and
//! `body`. A record is valid only whole and with a matching checksum. The
//! reader stops at the first record that is not: a **torn tail** (the
//! file ends inside a record, as a crash mid-write leaves it) or a
//! **corrupt** record (bad checksum, or a length beyond [`MAX_RECORD`]).
//! Everything from there on is dropped and the file is truncated to the
//! last valid record: records are appended in order, so what follows a bad
//! one was written after it and cannot be trusted either.

use bytes::{Buf, BufMut, BytesMut};

/// The magic bytes that open every journal file.
pub const MAGIC: &[u8; 8] = b"SHMQJRNL";
/// The format version written by this build.
pub const VERSION: u16 = 1;
/// Bytes in the file header.
pub const HEADER_LEN: usize = 16;
/// Bytes before a record's kind: length and checksum.
pub const FRAME_LEN: usize = 8;
/// The largest `len` accepted: a PUBLISH at the protocol's maximum size
/// plus room for the record's own fields.
pub const MAX_RECORD: usize = 256 * 1024 * 1024 + 64 * 1024;

/// The file header of shard `shard`'s journal.
pub fn header(shard: u16) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..10].copy_from_slice(&VERSION.to_be_bytes());
    h[10..12].copy_from_slice(&shard.to_be_bytes());
    h
}

/// Why a journal file cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("not a shardmq journal (no SHMQJRNL header)")]
    NotAJournal,
    #[error("journal format version {0}, this build reads version {VERSION}")]
    Version(u16),
}

/// Reads a file header: the shard it belongs to.
pub fn read_header(bytes: &[u8]) -> Result<u16, HeaderError> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(HeaderError::NotAJournal);
    }
    let version = u16::from_be_bytes([bytes[8], bytes[9]]);
    if version != VERSION {
        return Err(HeaderError::Version(version));
    }
    Ok(u16::from_be_bytes([bytes[10], bytes[11]]))
}

/// Appends one record (`kind`, then the body `write_body` puts) to `out`.
/// The length and checksum are filled in once the body is written, so the
/// body is encoded straight into the batch, with no copy.
pub fn append(out: &mut BytesMut, kind: u8, write_body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_u32(0);
    out.put_u32(0);
    out.put_u8(kind);
    write_body(out);
    let len = out.len() - start - FRAME_LEN;
    debug_assert!(len <= MAX_RECORD, "record of {len} bytes");
    let crc = crc32fast::hash(&out[start + FRAME_LEN..]);
    out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// One valid record, borrowed from the bytes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: u8,
    pub body: &'a [u8],
}

/// Where reading the records stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// At the end of the bytes, after a whole record (or none).
    Clean,
    /// Inside a record: the bytes end before it does.
    Torn,
    /// At a record with a bad checksum or an impossible length.
    Corrupt,
}

/// What [`records`] found after the last valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    /// Bytes (from the start of the records) up to the end of the last
    /// valid record: the length to truncate them to.
    pub valid: usize,
    pub end: End,
}

/// Calls `f` for each valid record of `bytes` (the records after the
/// header), in order; returns where and how they ended.
pub fn records<'a>(bytes: &'a [u8], mut f: impl FnMut(Record<'a>)) -> Tail {
    let mut at = 0;
    loop {
        let rest = &bytes[at..];
        if rest.is_empty() {
            return Tail {
                valid: at,
                end: End::Clean,
            };
        }
        let Some(record) = parse(rest) else {
            return Tail {
                valid: at,
                end: classify(rest),
            };
        };
        at += FRAME_LEN + 1 + record.body.len();
        f(record);
    }
}

/// Why the bytes `rest`, which do not start with a valid record, do not.
fn classify(rest: &[u8]) -> End {
    let Some(len) = rest.get(..4) else {
        return End::Torn;
    };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len == 0 && rest.len() >= FRAME_LEN || len > MAX_RECORD {
        End::Corrupt
    } else if rest.len() < FRAME_LEN + len {
        End::Torn
    } else {
        End::Corrupt
    }
}

/// The record at the start of `rest`, if it is whole and valid.
fn parse(rest: &[u8]) -> Option<Record<'_>> {
    let mut frame = rest.get(..FRAME_LEN)?;
    let len = frame.get_u32() as usize;
    let crc = frame.get_u32();
    if len == 0 || len > MAX_RECORD {
        return None;
    }
    let content = rest.get(FRAME_LEN..FRAME_LEN + len)?;
    if crc32fast::hash(content) != crc {
        return None;
    }
    Some(Record {
        kind: content[0],
        body: &content[1..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(bodies: &[&[u8]]) -> BytesMut {
        let mut out = BytesMut::new();
        for (i, body) in bodies.iter().enumerate() {
            append(&mut out, i as u8 + 1, |b| b.put_slice(body));
        }
        out
    }

    fn read(bytes: &[u8]) -> (Vec<(u8, Vec<u8>)>, Tail) {
        let mut got = Vec::new();
        let tail = records(bytes, |r| got.push((r.kind, r.body.to_vec())));
        (got, tail)
    }

    #[test]
    fn records_round_trip_in_order() {
        let bytes = journal(&[b"one", b"", b"three"]);
        let (got, tail) = read(&bytes);
        assert_eq!(
            got,
            [
                (1, b"one".to_vec()),
                (2, Vec::new()),
                (3, b"three".to_vec())
            ]
        );
        assert_eq!(
            tail,
            Tail {
                valid: bytes.len(),
                end: End::Clean
            }
        );
    }

    #[test]
    fn a_torn_tail_keeps_every_whole_record_before_it() {
        let bytes = journal(&[b"kept", b"torn off"]);
        let first = FRAME_LEN + 1 + 4;
        for cut in first..bytes.len() {
            let (got, tail) = read(&bytes[..cut]);
            assert_eq!(got.len(), 1, "cut at {cut}");
            let end = if cut == first { End::Clean } else { End::Torn };
            assert_eq!(tail, Tail { valid: first, end }, "cut at {cut}");
        }
    }

    #[test]
    fn a_corrupt_record_ends_the_journal_there() {
        let mut bytes = journal(&[b"kept", b"flipped", b"after"]);
        let second = FRAME_LEN + 1 + 4;
        bytes[second + FRAME_LEN + 2] ^= 0x40;
        let (got, tail) = read(&bytes);
        assert_eq!(got, [(1, b"kept".to_vec())]);
        assert_eq!(
            tail,
            Tail {
                valid: second,
                end: End::Corrupt
            }
        );
        // An impossible length is corrupt, not torn, however short the rest.
        let mut bytes = journal(&[b"kept"]);
        bytes.put_u32(u32::MAX);
        bytes.put_u32(0);
        assert_eq!(read(&bytes).1.end, End::Corrupt);
    }

    #[test]
    fn headers_name_their_shard_and_version() {
        assert_eq!(read_header(&header(7)), Ok(7));
        let mut h = header(7);
        h[9] = 9;
        assert_eq!(read_header(&h), Err(HeaderError::Version(9)));
        assert_eq!(
            read_header(b"mosquitto.db...."),
            Err(HeaderError::NotAJournal)
        );
    }
}

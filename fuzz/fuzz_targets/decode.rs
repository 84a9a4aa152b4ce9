//! Feeds arbitrary bytes to the decoder for each protocol version.
//!
//! Run with `cargo +nightly fuzz run decode` from the repository root.
//! Checks the decoder's contract: no panic, `Incomplete` consumes nothing,
//! `Ok` consumes a non-empty prefix, and a decoded packet re-encodes to one
//! that decodes equal.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shardmq::protocol::{decode, DecodeError, ProtocolVersion};

const LIMIT: usize = 1 << 20;

fn drain(data: &[u8], v: ProtocolVersion) {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match decode(&mut buf, v, LIMIT) {
            Ok(p) => {
                assert!(buf.len() < before);
                let mut again = BytesMut::new();
                p.encode(v, &mut again)
                    .expect("a decoded packet re-encodes");
                assert_eq!(again.len(), p.encoded_len(v).expect("encodable"));
                assert_eq!(decode(&mut again, v, LIMIT).as_ref(), Ok(&p));
            }
            Err(DecodeError::Incomplete { .. }) => {
                assert_eq!(buf.len(), before);
                return;
            }
            Err(DecodeError::Malformed(_)) => return,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    for v in [
        ProtocolVersion::V31,
        ProtocolVersion::V311,
        ProtocolVersion::V5,
    ] {
        drain(data, v);
    }
});

//! MQTT over WebSockets, server side (RFC 6455; MQTT 5.0 section 6): the
//! state of one connection's WebSocket layer, [`WsCodec`], which a
//! [`Transport`](super::Transport) of the WebSocket kind drives over its
//! non-blocking socket.
//!
//! Nothing here blocks or owns a socket: every call takes the socket it
//! reads or writes, does what the socket allows now, and keeps the rest as
//! state (the HTTP request so far, the frame being read, bytes the socket
//! has not taken). tungstenite parses the upgrade request
//! ([`TryParse`]), builds and writes the `101` answer
//! ([`create_response`], [`write_response`]) and reads and writes frame
//! headers ([`FrameHeader`]); payloads are unmasked in place in the
//! caller's read buffer, so MQTT bytes are not copied once more.
//!
//! - Handshake: at most `websockets_headers_size` bytes of request
//!   (`431` beyond), a bad request gets `400`; the `mqtt` subprotocol is
//!   chosen when offered (else `mqttv3.1`, what old clients offer); a
//!   client that offers neither is answered without one.
//! - Frames: binary frames (and their continuations) carry MQTT bytes as a
//!   stream, so a packet may span frames and a frame may hold several
//!   packets. Text frames (MQTT-6.0.0-1), unmasked frames, reserved bits
//!   and opcodes, and frames above the `max_packet_size` close the
//!   connection, with a close frame saying why. A ping is answered with a
//!   pong; a close is echoed and reads as end of stream.
//! - Closing from the broker's side ([`WsCodec::close`]) sends a close
//!   frame; the transport then shuts its write half and the shard reads
//!   (and drops) until the client's close or end of stream, so the socket
//!   is not reset under a client still writing its own close.
//! - What the broker writes goes out as binary frames of at most
//!   [`WS_OUT_FRAME`] bytes.

use std::io::{self, Cursor, IoSlice, Read, Write};

use tungstenite::handshake::machine::TryParse;
use tungstenite::handshake::server::{create_response, write_response, Request};
use tungstenite::http::HeaderValue;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use super::transport::retry_eintr;
use crate::limits::{WS_CONTROL_MAX, WS_OUT_FRAME, WS_PENDING_MAX, WS_READS_PER_CALL};

/// The subprotocols a client may ask for, in the order they are preferred
/// (MQTT 5.0 6.0: `mqtt`; MQTT 3.1 clients offer `mqttv3.1`).
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Longest frame header (a 64-bit length and a mask).
const MAX_HEADER: usize = 14;

/// Close codes (RFC 6455 7.4.1).
const PROTOCOL_ERROR: u16 = 1002;
const UNSUPPORTED_DATA: u16 = 1003;
const TOO_BIG: u16 = 1009;

/// The bounds of one listener's WebSocket connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsLimits {
    /// Largest upgrade request, headers included (`websockets_headers_size`).
    pub headers: usize,
    /// Largest frame payload a client may send (the `max_packet_size`: an
    /// MQTT packet may span frames, so no frame need be larger).
    pub max_frame: u64,
}

/// Where the connection is.
#[derive(Debug)]
enum Phase {
    /// Reading the HTTP upgrade request (what arrived so far, at most
    /// [`WsLimits::headers`] bytes).
    Handshake(Vec<u8>),
    /// Upgraded: frames both ways.
    Open,
    /// The broker sent its close frame ([`WsCodec::close`]): what the
    /// client still sends is read and dropped until its close frame or the
    /// end of the stream; writes fail.
    Closing,
    /// A close frame was received (and echoed), or the upgrade was refused,
    /// or the client broke the protocol: reads are end of stream, writes
    /// fail.
    Closed,
}

/// The frame being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    /// Between frames: the next bytes are a header.
    Header,
    /// A binary frame or continuation: payload bytes are MQTT bytes.
    Data,
    /// A control frame: its payload is gathered (at most
    /// [`WS_CONTROL_MAX`] bytes) and acted on at its end.
    Control(Control),
}

/// One WebSocket connection's protocol state, server side.
///
/// Owned by the connection's [`Transport`](super::Transport) on one shard
/// thread. It holds no socket and no shard state, only bytes and counters
/// (all bounded: the request by `websockets_headers_size`, a frame header
/// by 14 bytes, a control payload by 125, replies and a partly sent frame
/// by [`WS_PENDING_MAX`]), so it is `Send` and travels with the socket's fd
/// when the connection is handed to its session's home shard: the frame a
/// client is in the middle of sending, and a pong not yet written, carry
/// on there exactly where they stopped.
#[derive(Debug)]
pub struct WsCodec {
    limits: WsLimits,
    phase: Phase,
    current: Current,
    /// Bytes of a header that has not fully arrived (`header_len` of them).
    header: [u8; MAX_HEADER],
    header_len: usize,
    /// Payload bytes of the current frame still to come.
    remaining: u64,
    /// The current frame's masking key, and where in it the next byte is.
    mask: [u8; 4],
    mask_at: usize,
    /// Inside a fragmented binary message (its last frame not seen yet).
    fragmented: bool,
    /// The current control frame's payload, unmasked.
    control: Vec<u8>,
    /// Bytes for the socket before any new frame: the `101` answer, pongs,
    /// the close, the rest of a frame the socket took part of.
    pending: Vec<u8>,
    /// The last `read` stopped while the socket may still hold bytes.
    more: bool,
}

impl WsCodec {
    /// A connection whose upgrade request has not arrived yet.
    pub fn new(limits: WsLimits) -> WsCodec {
        WsCodec {
            limits,
            phase: Phase::Handshake(Vec::new()),
            current: Current::Header,
            header: [0; MAX_HEADER],
            header_len: 0,
            remaining: 0,
            mask: [0; 4],
            mask_at: 0,
            fragmented: false,
            control: Vec::new(),
            pending: Vec::new(),
            more: false,
        }
    }

    /// Reads MQTT bytes into `buf` (the `Transport::read` contract: `Ok(0)`
    /// is the end of the stream, also after a close frame; `WouldBlock`
    /// when none are there now). Handshake and control frames are handled
    /// on the way; their answers go out at once if the socket takes them
    /// (else [`wants_write`](WsCodec::wants_write)). A protocol error is
    /// `InvalidData`, after the close frame or HTTP refusal was sent.
    pub fn read<S: Read + Write>(&mut self, sock: &mut S, buf: &mut [u8]) -> io::Result<usize> {
        self.more = false;
        if matches!(self.phase, Phase::Closed) {
            return Ok(0);
        }
        let mut out = 0;
        let mut eof = false;
        for _ in 0..WS_READS_PER_CALL {
            let room = buf.len() - out;
            if room == 0 {
                break;
            }
            let n = match retry_eintr(|| sock.read(&mut buf[out..])) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => n,
                Err(e) => {
                    // Drained (`WouldBlock`) or failed: nothing more to read.
                    self.more = false;
                    if out > 0 && e.kind() == io::ErrorKind::WouldBlock {
                        break;
                    }
                    let _ = self.flush(sock);
                    return Err(e);
                }
            };
            let end = out + n;
            match self.take(buf, out, end) {
                Ok(decoded) => out = decoded,
                Err(e) => {
                    let _ = self.flush(sock);
                    drain(sock, buf);
                    return Err(e);
                }
            }
            self.more = n == room;
            if !self.more || matches!(self.phase, Phase::Closed) {
                break;
            }
        }
        if self.pending.len() > WS_PENDING_MAX {
            self.phase = Phase::Closed;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "WebSocket: the client sends pings but does not read the pongs",
            ));
        }
        let _ = self.flush(sock);
        if out > 0 {
            return Ok(out);
        }
        if eof || matches!(self.phase, Phase::Closed) {
            self.more = false;
            return Ok(0);
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Sends `buf` as one binary frame of at most [`WS_OUT_FRAME`] bytes,
    /// returning how many bytes of `buf` it carries. `WouldBlock` while
    /// earlier bytes wait for the socket, or when the socket took nothing;
    /// a socket that takes part of the frame leaves the rest pending.
    pub fn write<S: Write>(&mut self, sock: &mut S, buf: &[u8]) -> io::Result<usize> {
        self.flush(sock)?;
        match self.phase {
            Phase::Open => {}
            Phase::Handshake(_) => return Err(io::ErrorKind::WouldBlock.into()),
            Phase::Closing | Phase::Closed => {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "WebSocket: the connection is closing",
                ))
            }
        }
        let n = buf.len().min(WS_OUT_FRAME);
        let mut head = [0u8; MAX_HEADER];
        let head_len = {
            let mut cursor = Cursor::new(&mut head[..]);
            frame_header(OpCode::Data(Data::Binary))
                .format(n as u64, &mut cursor)
                .map_err(io::Error::other)?;
            cursor.position() as usize
        };
        let parts = [IoSlice::new(&head[..head_len]), IoSlice::new(&buf[..n])];
        let written = retry_eintr(|| sock.write_vectored(&parts))?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        if written < head_len {
            self.pending.extend_from_slice(&head[written..head_len]);
            self.pending.extend_from_slice(&buf[..n]);
        } else if written < head_len + n {
            self.pending.extend_from_slice(&buf[written - head_len..n]);
        }
        Ok(n)
    }

    /// Writes the pending bytes; `WouldBlock` if some remain.
    pub fn flush<S: Write>(&mut self, sock: &mut S) -> io::Result<()> {
        while !self.pending.is_empty() {
            match retry_eintr(|| sock.write(&self.pending))? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => {
                    self.pending.drain(..n);
                }
            }
        }
        if self.pending.capacity() > WS_OUT_FRAME {
            self.pending = Vec::new();
        }
        Ok(())
    }

    /// Whether bytes wait for the socket.
    pub fn wants_write(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether the last read stopped with bytes possibly left in the
    /// socket: read again without waiting for readiness.
    pub fn read_pending(&self) -> bool {
        self.more
    }

    /// Whether the upgrade is done.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open)
    }

    /// The broker ends the connection: queues a close frame (1000, normal)
    /// if the connection is open; reads then drop what the client still
    /// sends until its close frame or end of stream.
    pub fn close(&mut self) {
        match self.phase {
            Phase::Open => {
                self.queue(OpCode::Control(Control::Close), &1000u16.to_be_bytes());
                self.phase = Phase::Closing;
            }
            Phase::Handshake(_) => self.phase = Phase::Closed,
            Phase::Closing | Phase::Closed => {}
        }
    }

    /// Takes the raw bytes `buf[out..end]`; leaves the MQTT bytes they
    /// carry at `buf[out..]` and returns where they end.
    fn take(&mut self, buf: &mut [u8], out: usize, end: usize) -> io::Result<usize> {
        match self.phase {
            Phase::Handshake(_) => match self.handshake(&buf[out..end])? {
                Some(used) => self.unframe(buf, out, out + used, end),
                None => Ok(out),
            },
            Phase::Open => self.unframe(buf, out, out, end),
            Phase::Closing => self.unframe(buf, out, out, end).map(|_| out),
            Phase::Closed => Ok(out),
        }
    }

    /// Adds `bytes` to the upgrade request; once it is complete, answers
    /// it and returns how many of `bytes` it used (the rest are frames).
    fn handshake(&mut self, bytes: &[u8]) -> io::Result<Option<usize>> {
        let Phase::Handshake(request) = &mut self.phase else {
            return Ok(None);
        };
        let before = request.len();
        let room = self.limits.headers.saturating_sub(before);
        request.extend_from_slice(&bytes[..bytes.len().min(room)]);
        let parsed = Request::try_parse(request);
        let full = request.len() >= self.limits.headers;
        match parsed {
            Ok(Some((size, request))) => {
                self.answer(&request)?;
                Ok(Some(size - before))
            }
            Ok(None) if full => Err(self.refuse(
                "431 Request Header Fields Too Large",
                &format!(
                    "upgrade request over websockets_headers_size ({} bytes)",
                    self.limits.headers
                ),
            )),
            Ok(None) => Ok(None),
            Err(e) => Err(self.refuse("400 Bad Request", &e.to_string())),
        }
    }

    /// Answers a complete upgrade request: `101` with the subprotocol, or
    /// `400` if it is not a valid WebSocket upgrade.
    fn answer(&mut self, request: &Request) -> io::Result<()> {
        let mut response = match create_response(request) {
            Ok(r) => r,
            Err(e) => return Err(self.refuse("400 Bad Request", &e.to_string())),
        };
        let offered: Vec<&str> = request
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        if let Some(chosen) = SUBPROTOCOLS.iter().find(|p| offered.contains(p)) {
            response
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(chosen));
        }
        let mut answer = Vec::with_capacity(256);
        write_response(&mut answer, &response).map_err(io::Error::other)?;
        self.pending.extend_from_slice(&answer);
        self.phase = Phase::Open;
        Ok(())
    }

    /// Refuses the upgrade with HTTP `status`; the error names `why`.
    fn refuse(&mut self, status: &str, why: &str) -> io::Error {
        self.pending.clear();
        self.pending.extend_from_slice(
            format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        );
        self.phase = Phase::Closed;
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("WebSocket upgrade refused ({status}): {why}"),
        )
    }

    /// Reads frames from `buf[at..end]`, moving their MQTT bytes (unmasked)
    /// to `buf[out..]`; returns where those end. `out <= at` throughout, so
    /// the move never overwrites bytes not read yet.
    fn unframe(
        &mut self,
        buf: &mut [u8],
        mut out: usize,
        mut at: usize,
        end: usize,
    ) -> io::Result<usize> {
        while at < end && matches!(self.phase, Phase::Open | Phase::Closing) {
            if self.current == Current::Header {
                at += self.read_header(&buf[at..end])?;
                continue;
            }
            let n = self.remaining.min((end - at) as u64) as usize;
            match self.current {
                Current::Data => {
                    buf.copy_within(at..at + n, out);
                    self.unmask(&mut buf[out..out + n]);
                    out += n;
                }
                Current::Control(_) => {
                    let start = self.control.len();
                    self.control.extend_from_slice(&buf[at..at + n]);
                    let mut payload = std::mem::take(&mut self.control);
                    self.unmask(&mut payload[start..]);
                    self.control = payload;
                }
                Current::Header => {}
            }
            at += n;
            self.remaining -= n as u64;
            if self.remaining == 0 {
                self.end_frame()?;
            }
        }
        Ok(out)
    }

    /// Takes header bytes from `bytes`; returns how many it used. Starts
    /// the frame once its header is complete.
    fn read_header(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let had = self.header_len;
        let take = (MAX_HEADER - had).min(bytes.len());
        self.header[had..had + take].copy_from_slice(&bytes[..take]);
        let mut cursor = Cursor::new(&self.header[..had + take]);
        match FrameHeader::parse(&mut cursor) {
            Ok(None) => {
                self.header_len = had + take;
                Ok(take)
            }
            Ok(Some((header, len))) => {
                let used = cursor.position() as usize - had;
                self.header_len = 0;
                self.start_frame(&header, len)?;
                Ok(used)
            }
            Err(e) => Err(self.fail(PROTOCOL_ERROR, &format!("bad frame header: {e}"))),
        }
    }

    /// Checks a frame header and makes it the current frame.
    fn start_frame(&mut self, header: &FrameHeader, len: u64) -> io::Result<()> {
        let Some(mask) = header.mask else {
            return Err(self.fail(PROTOCOL_ERROR, "client frames must be masked"));
        };
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(self.fail(PROTOCOL_ERROR, "reserved bits set (no extension)"));
        }
        self.current = match header.opcode {
            OpCode::Data(Data::Binary) if self.fragmented => {
                return Err(self.fail(PROTOCOL_ERROR, "new message inside a fragmented one"))
            }
            OpCode::Data(Data::Continue) if !self.fragmented => {
                return Err(self.fail(PROTOCOL_ERROR, "continuation without a message"))
            }
            OpCode::Data(Data::Binary | Data::Continue) => {
                if len > self.limits.max_frame {
                    return Err(self.fail(TOO_BIG, "frame above max_packet_size"));
                }
                self.fragmented = !header.is_final;
                Current::Data
            }
            OpCode::Data(Data::Text) => {
                return Err(self.fail(UNSUPPORTED_DATA, "MQTT is carried in binary frames"))
            }
            OpCode::Control(c @ (Control::Close | Control::Ping | Control::Pong)) => {
                if !header.is_final || len > WS_CONTROL_MAX as u64 {
                    return Err(self.fail(PROTOCOL_ERROR, "fragmented or long control frame"));
                }
                self.control.clear();
                Current::Control(c)
            }
            OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
                return Err(self.fail(PROTOCOL_ERROR, "reserved opcode"))
            }
        };
        self.mask = mask;
        self.mask_at = 0;
        self.remaining = len;
        if len == 0 {
            self.end_frame()?;
        }
        Ok(())
    }

    /// The current frame's payload has all arrived.
    fn end_frame(&mut self) -> io::Result<()> {
        let current = std::mem::replace(&mut self.current, Current::Header);
        match current {
            Current::Control(Control::Ping) => {
                let payload = std::mem::take(&mut self.control);
                self.queue(OpCode::Control(Control::Pong), &payload);
                self.control = payload;
            }
            Current::Control(Control::Close) => {
                // Echo the status code (RFC 6455 5.5.1), unless this is
                // the answer to ours, then end.
                let code_len = if self.control.len() >= 2 { 2 } else { 0 };
                let payload = std::mem::take(&mut self.control);
                self.queue(OpCode::Control(Control::Close), &payload[..code_len]);
                self.phase = Phase::Closed;
            }
            _ => {}
        }
        Ok(())
    }

    /// Closes with a close frame carrying `code`; the error names `why`.
    fn fail(&mut self, code: u16, why: &str) -> io::Error {
        let reason = &why.as_bytes()[..why.len().min(WS_CONTROL_MAX - 2)];
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason);
        self.queue(OpCode::Control(Control::Close), &payload);
        self.phase = Phase::Closed;
        io::Error::new(io::ErrorKind::InvalidData, format!("WebSocket: {why}"))
    }

    /// Queues a frame the server sends (unmasked) in `pending`; nothing
    /// once its own close frame went out.
    fn queue(&mut self, opcode: OpCode, payload: &[u8]) {
        if matches!(self.phase, Phase::Closing | Phase::Closed) {
            return;
        }
        // Writing into a Vec cannot fail.
        let _ = frame_header(opcode).format(payload.len() as u64, &mut self.pending);
        self.pending.extend_from_slice(payload);
    }

    /// Unmasks the next `bytes` of the current frame's payload.
    fn unmask(&mut self, bytes: &mut [u8]) {
        let len = bytes.len();
        // The key from where the last piece stopped, four bytes at a time.
        let mut mask = self.mask;
        mask.rotate_left(self.mask_at);
        let mut words = bytes.chunks_exact_mut(4);
        for word in &mut words {
            for (b, m) in word.iter_mut().zip(mask) {
                *b ^= m;
            }
        }
        for (b, m) in words.into_remainder().iter_mut().zip(mask) {
            *b ^= m;
        }
        self.mask_at = (self.mask_at + len) & 3;
    }
}

/// A final, unmasked frame header for `opcode` (what a server sends).
fn frame_header(opcode: OpCode) -> FrameHeader {
    FrameHeader {
        opcode,
        ..FrameHeader::default()
    }
}

/// Reads and drops what the client still sent (a few reads at most), so
/// that closing the socket sends FIN, not a reset that could discard the
/// refusal just written.
fn drain<S: Read>(sock: &mut S, buf: &mut [u8]) {
    for _ in 0..WS_READS_PER_CALL {
        match sock.read(buf) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory socket: reads from `input` (then `WouldBlock`), writes
    /// into `output`, taking at most `room` bytes per write.
    struct Pipe {
        input: Vec<u8>,
        output: Vec<u8>,
        room: usize,
    }

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.input.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.input.len());
            buf[..n].copy_from_slice(&self.input[..n]);
            self.input.drain(..n);
            Ok(n)
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.output.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    const LIMITS: WsLimits = WsLimits {
        headers: 1024,
        max_frame: 1 << 20,
    };

    const UPGRADE: &str =
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Protocol: mqttv3.1, mqtt\r\n\r\n";

    /// A masked client frame.
    fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut f = vec![opcode | if fin { 0x80 } else { 0 }];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        f
    }

    fn open(input: Vec<u8>) -> (WsCodec, Pipe) {
        let mut pipe = Pipe {
            input: UPGRADE.as_bytes().to_vec(),
            output: Vec::new(),
            room: usize::MAX,
        };
        pipe.input.extend(input);
        (WsCodec::new(LIMITS), pipe)
    }

    /// Reads everything the codec yields, a byte-sized buffer at a time
    /// when `step` is 1.
    fn read_all(codec: &mut WsCodec, pipe: &mut Pipe, step: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = vec![0; step];
        for _ in 0..10_000 {
            match codec.read(pipe, &mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !codec.read_pending() => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        got
    }

    #[test]
    fn the_upgrade_picks_mqtt_and_frames_become_a_byte_stream() {
        let mut input = frame(2, false, b"ab");
        input.extend(frame(9, true, b"hi"));
        input.extend(frame(0, true, b"cdef"));
        input.extend(frame(2, true, b"g"));
        for step in [1, 3, 4096] {
            let (mut codec, mut pipe) = open(input.clone());
            assert_eq!(
                read_all(&mut codec, &mut pipe, step),
                b"abcdefg",
                "step {step}"
            );
            let answer = String::from_utf8_lossy(&pipe.output).to_string();
            assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
            assert!(
                answer.contains("sec-websocket-protocol: mqtt\r\n"),
                "{answer}"
            );
            assert!(answer.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{answer}");
            // The pong follows the answer, unmasked, with the ping's payload.
            assert!(pipe.output.ends_with(&[0x8a, 2, b'h', b'i']), "step {step}");
        }
    }

    #[test]
    fn a_close_is_echoed_and_ends_the_stream() {
        let (mut codec, mut pipe) = open(frame(8, true, &1000u16.to_be_bytes()));
        assert_eq!(read_all(&mut codec, &mut pipe, 64), b"");
        assert!(pipe.output.ends_with(&[0x88, 2, 0x03, 0xe8]));
        assert_eq!(codec.read(&mut pipe, &mut [0; 8]).expect("eof"), 0);
    }

    #[test]
    fn a_close_from_the_broker_drops_input_until_the_answer() {
        let (mut codec, mut pipe) = open(Vec::new());
        read_all(&mut codec, &mut pipe, 64);
        pipe.output.clear();
        codec.close();
        codec.flush(&mut pipe).expect("flush");
        assert_eq!(pipe.output, [0x88, 2, 0x03, 0xe8]);
        assert!(codec.write(&mut pipe, b"late").is_err());
        // A packet still in flight is dropped; a ping gets no pong.
        pipe.input.extend(frame(2, true, b"dropped"));
        pipe.input.extend(frame(9, true, b""));
        let err = codec.read(&mut pipe, &mut [0; 64]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        pipe.input.extend(frame(8, true, &1000u16.to_be_bytes()));
        assert_eq!(codec.read(&mut pipe, &mut [0; 64]).expect("eof"), 0);
        assert_eq!(
            pipe.output,
            [0x88, 2, 0x03, 0xe8],
            "nothing after our close"
        );
    }

    #[test]
    fn protocol_errors_close_with_a_reason() {
        let unmasked = vec![0x82, 1, b'x'];
        for (input, code) in [
            (frame(1, true, b"text"), UNSUPPORTED_DATA),
            (unmasked, PROTOCOL_ERROR),
            (frame(0, true, b"x"), PROTOCOL_ERROR),
            (frame(9, false, b""), PROTOCOL_ERROR),
        ] {
            let (mut codec, mut pipe) = open(input);
            let err = codec.read(&mut pipe, &mut [0; 4096]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            let at = pipe.output.iter().rposition(|&b| b == 0x88).expect("close");
            assert_eq!(pipe.output[at + 2..at + 4], code.to_be_bytes(), "{err}");
        }
    }

    #[test]
    fn a_frame_above_the_limit_is_refused() {
        let mut codec = WsCodec::new(WsLimits {
            headers: 1024,
            max_frame: 100,
        });
        let mut pipe = Pipe {
            input: UPGRADE.as_bytes().to_vec(),
            output: Vec::new(),
            room: usize::MAX,
        };
        pipe.input.extend(frame(2, true, &[0; 200]));
        let err = codec.read(&mut pipe, &mut [0; 4096]).unwrap_err();
        assert!(err.to_string().contains("max_packet_size"), "{err}");
    }

    #[test]
    fn bad_and_oversized_requests_get_an_http_refusal() {
        for (request, status) in [
            ("POST / HTTP/1.1\r\nHost: x\r\n\r\n".to_string(), "400"),
            ("GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_string(), "400"),
            ("\x16\x03\x01 not http at all\r\n\r\n".to_string(), "400"),
            (
                format!("GET / HTTP/1.1\r\nCookie: {}\r\n\r\n", "c".repeat(2000)),
                "431",
            ),
        ] {
            let mut codec = WsCodec::new(LIMITS);
            let mut pipe = Pipe {
                input: request.into_bytes(),
                output: Vec::new(),
                room: usize::MAX,
            };
            let err = codec.read(&mut pipe, &mut [0; 4096]).unwrap_err();
            let answer = String::from_utf8_lossy(&pipe.output).to_string();
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status}")),
                "{answer} ({err})"
            );
            assert_eq!(codec.read(&mut pipe, &mut [0; 8]).expect("eof"), 0);
        }
    }

    #[test]
    fn a_partly_taken_frame_is_finished_before_the_next() {
        let (mut codec, mut pipe) = open(Vec::new());
        assert_eq!(read_all(&mut codec, &mut pipe, 64), b"");
        pipe.output.clear();
        pipe.room = 3;
        assert_eq!(codec.write(&mut pipe, b"hello").expect("write"), 5);
        assert!(codec.wants_write());
        let err = codec.write(&mut pipe, b"more").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        pipe.room = usize::MAX;
        codec.flush(&mut pipe).expect("flush");
        // A write of the header alone (`Write::write_vectored` may take
        // the first slice only) leaves the payload pending.
        assert_eq!(codec.write(&mut pipe, b"!").expect("write"), 1);
        codec.flush(&mut pipe).expect("flush");
        assert!(!codec.wants_write());
        assert_eq!(pipe.output, b"\x82\x05hello\x82\x01!");
    }

    #[test]
    fn large_writes_go_out_in_bounded_frames() {
        let (mut codec, mut pipe) = open(Vec::new());
        read_all(&mut codec, &mut pipe, 64);
        let data = vec![7u8; WS_OUT_FRAME * 2 + 1];
        let first = codec.write(&mut pipe, &data).expect("write");
        assert_eq!(first, WS_OUT_FRAME);
    }
}

//! MQTT over WebSockets listeners (`protocol websockets`): a real browser
//! style client (MQTT.js over `ws://`) talking to a plain TCP client across
//! shards; tungstenite's client writing raw MQTT bytes in frames of every
//! shape (a packet over two frames, two packets in one, a frame cut in two
//! around the hand-over to the home shard); pings, close frames, text
//! frames; malformed and oversized upgrade requests closed with an HTTP
//! refusal.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::mqttjs::NodeScript;
use common::*;
use shardmq::config::{Config, Listener, ListenerProtocol};
use shardmq::protocol::{decode, DecodeError, Packet, ProtocolVersion, QoS, ReasonCode};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::WebSocket;
use tungstenite::{Bytes, Message};

const SHARDS: usize = 2;

/// A broker with a plain listener (`b.addr`) and a WebSocket listener,
/// both on 127.0.0.1 port 0; returns the WebSocket listener's address.
fn start(f: impl FnOnce(&mut Config)) -> (TestBroker, SocketAddr) {
    let b = TestBroker::with(SHARDS, |c| {
        let mut ws = Listener::new("127.0.0.1:0".parse().expect("addr"));
        ws.protocol = ListenerProtocol::WebSockets;
        c.listeners.push(ws);
        f(c);
    });
    let ws = b.handle().local_addrs()[1];
    (b, ws)
}

#[test]
fn mqttjs_over_websockets_talks_to_a_tcp_client_across_shards() {
    let (b, ws) = start(|_| {});
    let js_id = b.id_on(1, "js");
    let (mut tcp, _) = RawClient::connect(b.addr, ProtocolVersion::V311, &b.id_on(0, "tcp"), true);
    tcp.subscribe("ws/in", QoS::AtLeastOnce);
    // The home shard of the MQTT.js client is shard 1: whichever shard
    // accepts it, the hand-over carries the WebSocket state when needed.
    let script = format!(
        "const c = mqtt.connect(url, {{ clientId: '{js_id}', protocolVersion: 5 }});
c.on('error', (e) => {{ console.log('error ' + e.message); process.exit(2); }});
c.on('connect', () => {{
  c.subscribe('ws/out', {{ qos: 1 }}, (err) => {{
    if (err) {{ console.log('suberr ' + err.message); process.exit(2); }}
    c.publish('ws/in', 'from-js', {{ qos: 1 }}, () => console.log('subscribed and published'));
  }});
}});
let n = 0;
c.on('message', (topic, payload) => {{
  console.log('got ' + topic + ' ' + payload.length + ' ' + payload.subarray(0, 8).toString());
  if (++n === 2) c.end(false, () => process.exit(0));
}});"
    );
    let mut js = NodeScript::spawn(&script, &format!("ws://{ws}/mqtt"));
    assert_eq!(js.next_line(), "subscribed and published");
    let p = tcp.expect_publish();
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("ws/in", &b"from-js"[..])
    );
    tcp.ack(&p);
    // A small message, then one of many WebSocket frames.
    tcp.publish("ws/out", b"from-tcp", QoS::AtLeastOnce, false, 1);
    assert_eq!(js.next_line(), "got ws/out 8 from-tcp");
    let big = vec![b'x'; 100_000];
    tcp.publish("ws/out", &big, QoS::AtLeastOnce, false, 2);
    assert_eq!(js.next_line(), "got ws/out 100000 xxxxxxxx");
    let status = js.wait();
    assert!(status.success(), "MQTT.js: {status}");
    assert_eq!(b.stats().iter().map(|s| s.refused).sum::<u64>(), 0);
}

/// A tungstenite client on `ws`, offering the `mqtt` subprotocol.
fn ws_client(ws: SocketAddr) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(ws).expect("tcp connect");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut request = format!("ws://{ws}/mqtt")
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().expect("header"));
    let (socket, response) = tungstenite::client::client(request, stream).expect("upgrade");
    assert_eq!(
        response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.as_bytes()),
        Some(&b"mqtt"[..])
    );
    socket
}

fn encoded(p: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    p.encode(version, &mut out).expect("encodes");
    out.to_vec()
}

/// Reads binary frames until one whole packet is buffered in `buf`.
fn next_packet(socket: &mut WebSocket<TcpStream>, buf: &mut BytesMut) -> Packet {
    let deadline = Instant::now() + WAIT;
    loop {
        match decode(buf, ProtocolVersion::V5, usize::MAX) {
            Ok(p) => return p,
            Err(DecodeError::Incomplete { .. }) => {}
            Err(e) => panic!("undecodable: {e:?}"),
        }
        assert!(Instant::now() < deadline, "no packet within {WAIT:?}");
        match socket.read().expect("read") {
            Message::Binary(b) => buf.extend_from_slice(&b),
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }
}

/// A client frame (FIN, masked) with `opcode` around `payload`.
fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0xa1, 0xb2, 0xc3, 0xd4];
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n => {
            f.push(0x80 | 126);
            f.extend_from_slice(&u16::try_from(n).expect("short").to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[test]
fn raw_mqtt_in_frames_of_any_shape_survives_the_hand_over() {
    let (b, ws) = start(|_| {});
    let v5 = ProtocolVersion::V5;
    for home in 0..SHARDS {
        let id = b.id_on(home, "tung");
        let topic = format!("raw/{home}");
        let mut socket = ws_client(ws);
        let connect = encoded(
            &Packet::Connect(Box::new(connect_packet(v5, &id, true, 30))),
            v5,
        );
        let subscribe = encoded(
            &Packet::Subscribe(shardmq::protocol::Subscribe {
                packet_id: pid(1),
                properties: Default::default(),
                filters: vec![(
                    shardmq::protocol::TopicFilter::from_str(&topic).expect("filter"),
                    shardmq::protocol::SubscriptionOptions::new(QoS::AtMostOnce),
                )],
            }),
            v5,
        );
        // CONNECT over two frames; the second also starts the SUBSCRIBE,
        // whose rest comes in a third frame, cut in two on the wire with a
        // pause: the connection moves to its home shard meanwhile.
        let (a, rest) = connect.split_at(5);
        socket
            .send(Message::Binary(Bytes::copy_from_slice(a)))
            .expect("send");
        let mut second = rest.to_vec();
        second.extend_from_slice(&subscribe[..3]);
        socket
            .send(Message::Binary(Bytes::from(second)))
            .expect("send");
        let third = masked_frame(2, &subscribe[3..]);
        let raw = socket.get_mut();
        raw.write_all(&third[..4]).expect("write");
        std::thread::sleep(Duration::from_millis(150));
        raw.write_all(&third[4..]).expect("write");

        let mut buf = BytesMut::new();
        match next_packet(&mut socket, &mut buf) {
            Packet::ConnAck(a) => assert_eq!(a.code, ReasonCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        assert!(matches!(
            next_packet(&mut socket, &mut buf),
            Packet::SubAck(_)
        ));

        // A ping frame is answered with its payload.
        socket
            .send(Message::Ping(Bytes::from_static(b"hb")))
            .expect("ping");
        // Two packets in one frame: PINGREQ twice.
        let pings = [encoded(&Packet::PingReq, v5), encoded(&Packet::PingReq, v5)].concat();
        socket
            .send(Message::Binary(Bytes::from(pings)))
            .expect("send");
        match socket.read().expect("read") {
            Message::Pong(p) => assert_eq!(&p[..], b"hb"),
            other => panic!("expected the pong, got {other:?}"),
        }
        assert_eq!(next_packet(&mut socket, &mut buf), Packet::PingResp);
        assert_eq!(next_packet(&mut socket, &mut buf), Packet::PingResp);

        // From a TCP client on the other listener to this one.
        let (mut tcp, _) =
            RawClient::connect(b.addr, ProtocolVersion::V311, &format!("{id}-pub"), true);
        tcp.publish(&topic, b"over tcp", QoS::AtMostOnce, false, 0);
        match next_packet(&mut socket, &mut buf) {
            Packet::Publish(p) => assert_eq!(&p.payload[..], b"over tcp"),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
        tcp.disconnect();

        // A close frame is echoed, then the broker closes.
        socket.close(None).expect("close");
        loop {
            match socket.read() {
                Ok(Message::Close(_)) | Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(e) => panic!("after close: {e}"),
            }
        }
    }
    wait_listener_empty(&b);
}

#[test]
fn a_text_frame_is_refused_with_a_close_frame() {
    let (b, ws) = start(|_| {});
    let mut socket = ws_client(ws);
    socket.send(Message::Text("not mqtt".into())).expect("send");
    match socket.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Unsupported),
        other => panic!("expected a close frame (1003), got {other:?}"),
    }
    wait_listener_empty(&b);
}

/// Sends `request` on a raw socket to `ws`; returns everything the broker
/// answered before it closed the connection.
fn raw_upgrade(ws: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(ws).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(request).expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return String::from_utf8_lossy(&answer).into_owned(),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                panic!("reset instead of a clean close after {answer:?}")
            }
            Err(e) => panic!("no close within {WAIT:?} ({e}); got {answer:?}"),
        }
    }
}

fn upgrade_with(extra: &str) -> String {
    format!(
        "GET /mqtt HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n{extra}\r\n"
    )
}

#[test]
fn malformed_and_oversized_upgrades_are_refused_and_closed() {
    let (b, ws) = start(|_| {});
    let cases: [(Vec<u8>, &str); 4] = [
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            "HTTP/1.1 400",
        ),
        (
            encoded(
                &Packet::Connect(Box::new(connect_packet(
                    ProtocolVersion::V311,
                    "plain",
                    true,
                    9,
                ))),
                ProtocolVersion::V311,
            ),
            "HTTP/1.1 400",
        ),
        (
            upgrade_with("Sec-WebSocket-Version: 8\r\n")
                .replace("Version: 13", "Version: 99")
                .into_bytes(),
            "HTTP/1.1 400",
        ),
        (
            upgrade_with(&format!("Cookie: {}\r\n", "c".repeat(2000))).into_bytes(),
            "HTTP/1.1 431",
        ),
    ];
    for (request, status) in cases {
        let answer = raw_upgrade(ws, &request);
        assert!(answer.starts_with(status), "{status}: got {answer:?}");
    }
    // The plain listener is not a WebSocket one.
    let (mut tcp, _) = RawClient::connect(b.addr, ProtocolVersion::V311, "plain-ok", true);
    tcp.send(&Packet::PingReq);
    assert_eq!(tcp.recv(), Some(Packet::PingResp));
    wait_listener_empty(&b);
}

#[test]
fn websockets_headers_size_admits_larger_requests() {
    let (_b, ws) = start(|c| c.websockets_headers_size = 4096);
    let mut s = TcpStream::connect(ws).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(upgrade_with(&format!("Cookie: {}\r\n", "c".repeat(2000))).as_bytes())
        .expect("write");
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).expect("answer");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
}

/// Waits until the WebSocket listener counts no connection: every close
/// path released its `max_connections` slot.
fn wait_listener_empty(b: &TestBroker) {
    let deadline = Instant::now() + WAIT;
    while b.handle().listener_connections()[1] != 0 {
        assert!(
            Instant::now() < deadline,
            "connections still counted: {:?}",
            b.handle().listener_connections()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

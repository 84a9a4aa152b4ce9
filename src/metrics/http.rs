//! The `metrics_listener` endpoint: one thread of its own (never a shard),
//! a blocking socket, one request at a time. `GET /metrics` answers the
//! Prometheus text format (0.0.4; OpenMetrics if the scraper asks for it
//! in `Accept`); any other path is 404, any other method 405. A request is
//! read up to [`METRICS_REQUEST_MAX`] bytes and [`METRICS_IO_TIMEOUT`];
//! every answer closes the connection.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use prometheus_client::registry::Registry;

use super::exposition::{render, Board};
use crate::limits::{METRICS_IO_TIMEOUT, METRICS_REQUEST_MAX};

/// The running endpoint. Owned by the broker's handle.
pub struct Endpoint {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// Binds `addr` (port 0: any free port); the endpoint serves once
/// [`Endpoint::start`] is called.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("metrics_listener {addr}: {e}")))
}

impl Endpoint {
    /// Serves `board` on `listener` from a thread named `metrics`.
    pub fn start(listener: TcpListener, board: Board) -> io::Result<Endpoint> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let registry = board.registry();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve(&listener, &registry, &flag))?;
        log::info!("metrics endpoint on http://{addr}/metrics");
        Ok(Endpoint { addr, stop, thread })
    }

    /// The bound address (port 0 resolved).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the thread: sets the flag and wakes the blocking accept with
    /// a connection of its own.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, METRICS_IO_TIMEOUT);
        if self.thread.join().is_err() {
            log::error!("the metrics thread panicked");
        }
    }
}

fn serve(listener: &TcpListener, registry: &Registry, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match stream {
            Ok(s) => {
                if let Err(e) = answer(s, registry) {
                    log::debug!("metrics: a scrape failed: {e}");
                }
            }
            Err(e) => log::warn!("metrics: accepting a scrape: {e}"),
        }
    }
}

/// Reads one request and answers it.
fn answer(mut s: TcpStream, registry: &Registry) -> io::Result<()> {
    s.set_read_timeout(Some(METRICS_IO_TIMEOUT))?;
    s.set_write_timeout(Some(METRICS_IO_TIMEOUT))?;
    let head = read_head(&mut s)?;
    let reply = respond(&head, registry);
    s.write_all(reply.as_bytes())?;
    s.flush()
}

/// The request's head (up to the blank line), at most
/// [`METRICS_REQUEST_MAX`] bytes.
fn read_head(s: &mut TcpStream) -> io::Result<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() >= METRICS_REQUEST_MAX {
            let why = format!("request head above {METRICS_REQUEST_MAX} bytes");
            return Err(io::Error::other(why));
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The whole HTTP answer to a request head.
fn respond(head: &str, registry: &Registry) -> String {
    let mut words = head.lines().next().unwrap_or("").split(' ');
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    if method != "GET" {
        return reply("405 Method Not Allowed", "text/plain", "only GET\n");
    }
    if path != "/metrics" {
        return reply("404 Not Found", "text/plain", "try /metrics\n");
    }
    let openmetrics = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("accept:") && l.contains("application/openmetrics-text")
    });
    let body = render(registry, openmetrics);
    let kind = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    reply("200 OK", kind, &body)
}

fn reply(status: &str, kind: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Board {
            stats: vec![Arc::default()],
            histograms: vec![Arc::default()],
        }
        .registry()
    }

    #[test]
    fn only_get_of_the_metrics_path_is_answered_with_metrics() {
        let r = registry();
        let ok = respond("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &r);
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("text/plain; version=0.0.4"));
        assert!(
            ok.contains("shardmq_loop_turns_total{shard=\"0\"} 0"),
            "{ok}"
        );
        let om = respond(
            "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n",
            &r,
        );
        assert!(om.contains("openmetrics-text") && om.ends_with("# EOF\n"));
        assert!(respond("GET / HTTP/1.1\r\n\r\n", &r).starts_with("HTTP/1.1 404"));
        assert!(respond("POST /metrics HTTP/1.1\r\n\r\n", &r).starts_with("HTTP/1.1 405"));
    }
}

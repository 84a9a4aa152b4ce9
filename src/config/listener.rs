//! `listener <port> [address]` and the legacy default listener (`port`,
//! `bind_address`).
//!
//! As in Mosquitto: without any `listener` line the broker listens on the
//! default listener (`0.0.0.0:1883`, changed by `port` / `bind_address`); with
//! `listener` lines the default listener is only added when `port` or
//! `bind_address` was given explicitly.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::lexer::Line;
use super::parser::{Parser, Section};
use super::value;
use super::Listener;

/// Mosquitto's default port.
const DEFAULT_PORT: u16 = 1883;

/// A listener address and where it was configured.
struct Placed {
    addr: SocketAddr,
    line: usize,
    key: &'static str,
}

/// Listener lines seen so far.
#[derive(Default)]
pub(super) struct Listeners {
    explicit: Vec<Placed>,
    default_ip: Option<IpAddr>,
    default_port: Option<u16>,
    /// Line of the last `port` / `bind_address`, if any.
    default_line: Option<(usize, &'static str)>,
}

/// `listener <port> [address]`: opens a listener section.
pub(super) fn listener(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let tokens = line.some_tokens(1, 2, "<port> [address]")?;
    let port = value::port_number(tokens[0], 0)?;
    let ip = match tokens.get(1) {
        Some(address) => value::ip_address(address)?,
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let addr = SocketAddr::new(ip, port);
    p.listeners.explicit.push(Placed {
        addr,
        line: line.number,
        key: "listener",
    });
    p.section = Section::Listener;
    Ok(())
}

/// `port <n>`: the default listener's port.
pub(super) fn port(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let port = value::port_number(line.single("0..65535")?, 0)?;
    p.listeners.default_port = Some(port);
    p.listeners.default_line = Some((line.number, "port"));
    Ok(())
}

/// `bind_address <addr>`: the default listener's address.
pub(super) fn bind_address(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let ip = value::ip_address(line.single("an IPv4 or IPv6 address or `localhost`")?)?;
    p.listeners.default_ip = Some(ip);
    p.listeners.default_line = Some((line.number, "bind_address"));
    Ok(())
}

impl Listeners {
    /// The final listener list, or `(line, key, reason)` for a duplicate.
    pub fn finish(self) -> Result<Vec<Listener>, (usize, &'static str, String)> {
        let default = Placed {
            addr: SocketAddr::new(
                self.default_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                self.default_port.unwrap_or(DEFAULT_PORT),
            ),
            line: self.default_line.map_or(0, |(line, _)| line),
            key: self.default_line.map_or("port", |(_, key)| key),
        };
        let mut all = Vec::with_capacity(self.explicit.len() + 1);
        if self.explicit.is_empty() || self.default_line.is_some() {
            all.push(default);
        }
        all.extend(self.explicit);
        for (index, placed) in all.iter().enumerate() {
            let earlier = all[..index]
                .iter()
                .find(|e| e.addr == placed.addr && e.addr.port() != 0);
            if let Some(earlier) = earlier {
                let reason = format!(
                    "duplicate listener {} (already configured on line {})",
                    placed.addr, earlier.line
                );
                return Err((placed.line, placed.key, reason));
            }
        }
        Ok(all
            .into_iter()
            .map(|placed| Listener { addr: placed.addr })
            .collect())
    }
}

//! `listener <port> [address]` and the legacy default listener (`port`,
//! `bind_address`), and the keys that shape a listener (`protocol`,
//! `max_qos`, `mount_point`).
//!
//! As in Mosquitto 2.0: without any `listener`, `port` or `bind_address`
//! line the broker is in local only mode, on `127.0.0.1:1883` (the binary
//! adds `[::1]:1883`); `port` / `bind_address` make the default listener
//! (all interfaces unless `bind_address` says otherwise); with `listener`
//! lines the default listener is only added when `port` or `bind_address`
//! was given explicitly.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::lexer::Line;
use super::parser::{Parser, Section};
use super::value;
use super::{Listener, ListenerProtocol};
use crate::limits::MAX_MOUNT_POINT;
use crate::protocol::{QoS, TopicName};

/// Mosquitto's default port.
const DEFAULT_PORT: u16 = 1883;

/// A listener and where it was configured.
struct Placed {
    listener: Listener,
    line: usize,
    key: &'static str,
}

/// Listener lines seen so far.
pub(super) struct Listeners {
    explicit: Vec<Placed>,
    /// The default listener's settings (its address is decided at the end).
    default: Listener,
    default_ip: Option<IpAddr>,
    default_port: Option<u16>,
    /// Line of the last `port` / `bind_address`, if any.
    default_line: Option<(usize, &'static str)>,
    /// The first per-listener key that set the default listener: `(line, key)`.
    default_set_by: Option<(usize, String)>,
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            explicit: Vec::new(),
            default: Listener::new(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), DEFAULT_PORT)),
            default_ip: None,
            default_port: None,
            default_line: None,
            default_set_by: None,
        }
    }
}

/// `listener <port> [address]`: opens a listener section.
pub(super) fn listener(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let tokens = line.some_tokens(1, 2, "<port> [address]")?;
    let addr = value::port_and_address(&tokens)?;
    p.listeners.explicit.push(Placed {
        listener: Listener::new(addr),
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

/// `max_qos 0|1|2`: the current listener's highest QoS.
pub(super) fn max_qos(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let qos = match value::integer(line.single("0..2")?, 0, 2, "")? {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };
    p.listeners.current(line.number, line.key).max_qos = qos;
    Ok(())
}

/// `mount_point <prefix>`: a topic prefix without wildcards, e.g. `site1/`.
pub(super) fn mount_point(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let prefix = line.single("a topic prefix, e.g. site1/")?;
    if prefix.len() > MAX_MOUNT_POINT {
        return Err(format!(
            "expected at most {MAX_MOUNT_POINT} bytes, got {}",
            prefix.len()
        ));
    }
    TopicName::from_str(prefix).map_err(|_| {
        format!("`{prefix}` is not a valid topic prefix (no `+`, `#` or NUL, e.g. site1/)")
    })?;
    p.listeners.current(line.number, line.key).mount_point = Some(prefix.to_string());
    Ok(())
}

/// `protocol mqtt|websockets`: what the current listener's clients speak.
pub(super) fn protocol(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let protocol = match line.single("mqtt or websockets")? {
        "mqtt" => ListenerProtocol::Mqtt,
        "websockets" => ListenerProtocol::WebSockets,
        other => return Err(format!("expected mqtt or websockets, got `{other}`")),
    };
    p.listeners.current(line.number, line.key).protocol = protocol;
    Ok(())
}

impl Listeners {
    /// The listener per-listener keys apply to: the last `listener` line's,
    /// or the default listener's before any (as in Mosquitto).
    pub fn current(&mut self, line: usize, key: &str) -> &mut Listener {
        match self.explicit.last_mut() {
            Some(placed) => &mut placed.listener,
            None => {
                self.default_set_by
                    .get_or_insert_with(|| (line, key.to_string()));
                &mut self.default
            }
        }
    }

    /// Whether per-listener keys apply to the default listener now.
    pub fn on_default(&self) -> bool {
        self.explicit.is_empty()
    }

    /// Local only mode: no `listener`, `port` or `bind_address` line.
    pub fn local_only(&self) -> bool {
        self.explicit.is_empty() && self.default_line.is_none()
    }

    /// Whether the default listener is started: without `listener` lines,
    /// or with `port` / `bind_address`.
    fn default_used(&self) -> bool {
        self.explicit.is_empty() || self.default_line.is_some()
    }

    /// A warning for per-listener keys given to a default listener that is
    /// not started: `(line, message)`.
    pub fn unused_default_settings(&self) -> Option<(usize, String)> {
        let (line, key) = self
            .default_set_by
            .as_ref()
            .filter(|_| !self.default_used())?;
        let message = format!(
            "{key} before the first `listener` line sets the default listener, which is not \
             started (no `port` or `bind_address`); move it into a `listener` section"
        );
        Some((*line, message))
    }

    /// The final listener list, or `(line, key, reason)` for a duplicate.
    pub fn finish(self) -> Result<Vec<Listener>, (usize, &'static str, String)> {
        let used = self.default_used();
        let any = if self.local_only() {
            Ipv4Addr::LOCALHOST
        } else {
            Ipv4Addr::UNSPECIFIED
        };
        let mut default = Placed {
            listener: self.default,
            line: self.default_line.map_or(0, |(line, _)| line),
            key: self.default_line.map_or("port", |(_, key)| key),
        };
        default.listener.addr = SocketAddr::new(
            self.default_ip.unwrap_or(IpAddr::V4(any)),
            self.default_port.unwrap_or(DEFAULT_PORT),
        );
        let mut all = Vec::with_capacity(self.explicit.len() + 1);
        if used {
            all.push(default);
        }
        all.extend(self.explicit);
        for (index, placed) in all.iter().enumerate() {
            if let Some(tls) = &placed.listener.tls {
                super::tls::check(tls)?;
                if placed.listener.protocol == ListenerProtocol::WebSockets {
                    let reason = "secure WebSockets (wss://) are not supported yet: use a \
                                  websockets listener without certfile/keyfile, or an MQTT \
                                  one over TLS"
                        .to_string();
                    return Err((placed.line, "protocol", reason));
                }
            }
            let addr = placed.listener.addr;
            let earlier = all[..index]
                .iter()
                .find(|e| e.listener.addr == addr && addr.port() != 0);
            if let Some(earlier) = earlier {
                let reason = format!(
                    "duplicate listener {addr} (already configured on line {})",
                    earlier.line
                );
                return Err((placed.line, placed.key, reason));
            }
        }
        Ok(all.into_iter().map(|placed| placed.listener).collect())
    }
}

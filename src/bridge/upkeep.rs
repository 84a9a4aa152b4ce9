//! A link's deadlines and what it does at them: the retry, the connect
//! and lookup timeouts, keepalive (PINGREQ, and giving up on a silent
//! remote), a lazy link's idle stop, and the probe of the primary address.

use std::time::{Duration, Instant};

use super::link::{Ctx, Link, State};
use crate::config::StartType;
use crate::limits::{BRIDGE_CONNECT_TIMEOUT, BRIDGE_PRIMARY_PROBE};
use crate::protocol::Packet;
use crate::runtime::{connect_from, Interest, Registrar, Token};

impl Link {
    /// Deadlines: retry, connect timeout, keepalive, lazy idle, primary
    /// probe.
    pub fn on_timer(&mut self, ctx: &mut Ctx) {
        let now = ctx.now;
        match self.state {
            State::Down { retry: Some(at) } if now >= at => self.connect(ctx),
            State::Connecting { deadline } if now >= deadline => {
                self.candidates.clear();
                self.fail(ctx, "no CONNACK in time")
            }
            State::Resolving { deadline } if now >= deadline => {
                self.fail(ctx, "the host name lookup took too long")
            }
            State::Up => self.up_timers(ctx),
            _ => {}
        }
    }

    fn up_timers(&mut self, ctx: &mut Ctx) {
        let now = ctx.now;
        let keepalive = Duration::from_secs(u64::from(self.remote.keepalive));
        self.cut_if_stalled(ctx);
        if self.state != State::Up {
            return;
        }
        // Not read while held back: its silence is ours.
        let held = self.held_back();
        if let Some(wire) = self.wire.as_mut() {
            if !keepalive.is_zero() {
                if !held && now.duration_since(wire.last_in) >= keepalive * 3 / 2 {
                    let why = format!(
                        "no answer for {} s (keepalive)",
                        keepalive.as_secs() * 3 / 2
                    );
                    return self.fail(ctx, &why);
                }
                if now.duration_since(wire.last_out) >= keepalive {
                    let _ = wire.queue(&Packet::PingReq);
                }
            }
        }
        if let StartType::Lazy { idle_timeout, .. } = self.config.start_type {
            if self.queue.is_empty() && now.duration_since(self.last_traffic) >= idle_timeout {
                log::info!(
                    "bridge {}: idle, stopping (start_type lazy)",
                    self.config.name
                );
                self.disconnect(ctx);
                self.state = State::Down { retry: None };
                return;
            }
        }
        let probe_late = self
            .probe
            .as_ref()
            .is_some_and(|(_, since)| now >= *since + BRIDGE_CONNECT_TIMEOUT);
        if probe_late {
            self.drop_probe(ctx.registrar);
        }
        if self.addresses.wants_primary() && self.probe.is_none() && now >= self.next_probe {
            self.start_probe(ctx);
        }
    }

    /// Ends an up link on purpose (lazy idle, back to the primary): the
    /// state goes "0" on both sides (the remote through the will).
    fn disconnect(&mut self, ctx: &mut Ctx) {
        let was_up = self.state == State::Up;
        self.close_with_will(ctx.registrar);
        if was_up {
            self.notify_local(ctx, false);
            self.went_offline(ctx);
        }
        self.drop_probe(ctx.registrar);
    }

    fn start_probe(&mut self, ctx: &mut Ctx) {
        self.next_probe = ctx.now + BRIDGE_PRIMARY_PROBE;
        let Some(addr) = self.primary else {
            return;
        };
        let Ok(mut t) = connect_from(self.config.bind_address, addr) else {
            return;
        };
        if ctx
            .registrar
            .register(&mut t, Token(self.key * 2 + 1), Interest::WRITABLE)
            .is_ok()
        {
            self.probe = Some((t, ctx.now));
        }
    }

    pub(super) fn on_probe(&mut self, ctx: &mut Ctx) {
        let answered = match &self.probe {
            Some((t, _)) => t.connect_result(),
            None => return,
        };
        match answered {
            Ok(false) => {}
            Ok(true) => {
                log::info!(
                    "bridge {}: the primary address {}:{} answers again; switching back",
                    self.config.name,
                    self.config.addresses[0].host,
                    self.config.addresses[0].port
                );
                self.disconnect(ctx);
                self.addresses.back_to_primary();
                self.state = State::Down {
                    retry: Some(ctx.now),
                };
            }
            Err(_) => self.drop_probe(ctx.registrar),
        }
    }

    pub(super) fn drop_probe(&mut self, registrar: &Registrar) {
        if let Some((mut t, _)) = self.probe.take() {
            let _ = registrar.deregister(&mut t);
        }
    }

    /// The nearest moment [`Link::on_timer`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Down { retry } => retry,
            State::Connecting { deadline } | State::Resolving { deadline } => Some(deadline),
            State::Up => self.up_deadline(),
        }
    }

    /// The nearest deadline of an up link: keepalive, lazy idle, primary
    /// probe. `None` when it has none (no keepalive, nothing to probe).
    fn up_deadline(&self) -> Option<Instant> {
        let wire = self.wire.as_ref()?;
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if self.addresses.wants_primary() {
            match &self.probe {
                None => at(self.next_probe),
                Some((_, since)) => at(*since + BRIDGE_CONNECT_TIMEOUT),
            }
        }
        if self.remote.keepalive > 0 {
            let k = Duration::from_secs(u64::from(self.remote.keepalive));
            at(wire.last_out + k);
            at(wire.last_in + k * 3 / 2);
        }
        if let StartType::Lazy { idle_timeout, .. } = self.config.start_type {
            at(self.last_traffic + idle_timeout);
        }
        if let Some(stall) = self.stall_deadline() {
            at(stall);
        }
        next
    }

    /// A lazy link with enough queued connects now.
    pub(super) fn check_threshold(&mut self, now: Instant) {
        if let (StartType::Lazy { threshold, .. }, State::Down { retry: None }) =
            (self.config.start_type, self.state)
        {
            if self.queue.len() >= threshold as usize {
                self.state = State::Down { retry: Some(now) };
            }
        }
    }
}

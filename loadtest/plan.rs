//! What a run does: the shared settings ([`RunSpec`]) and the list of
//! connections with their roles ([`Plan`]), built from a scenario's options.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use shardmq::protocol::{ProtocolVersion, QoS};
use shardmq::runtime::TlsClientConfig;

/// Settings every worker reads; immutable once the run starts.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The broker under test: every connection goes here, except the
    /// subscribers of a `bridge` run.
    pub broker: SocketAddr,
    /// `bridge`: the broker the one under test bridges to, where the
    /// subscribers connect. `None` in every other scenario.
    pub upstream: Option<SocketAddr>,
    pub version: ProtocolVersion,
    pub qos: QoS,
    /// Payload bytes per message (at least the header).
    pub payload: usize,
    /// Unacknowledged QoS 1/2 publishes per publisher.
    pub inflight: u16,
    /// CONNECT keepalive, seconds (0: no pings).
    pub keep_alive: u16,
    /// Per connection: TCP connect + CONNACK (+ SUBACK).
    pub connect_timeout: Duration,
    pub warmup: Duration,
    pub duration: Duration,
    /// Total messages/s (traffic scenarios) or connects/s (connect-storm).
    pub rate: f64,
    /// Publishers sharing `rate`, for staggering their schedules.
    pub publishers: usize,
    /// Test hook: skip every Nth sequence number.
    pub drop_every: Option<u64>,
    /// `--no-backlog`: nothing is issued after the measured window.
    pub no_backlog: bool,
    /// Source addresses, used round-robin by connection index.
    pub sources: Vec<IpAddr>,
    /// Most connection attempts in flight per worker (connect-storm).
    pub storm_concurrency: usize,
    /// Unique per run: keeps client ids and topics of runs apart.
    pub tag: String,
    /// Every connection keeps a persistent session (3.1.1 clean session
    /// 0; 5.0 Session Expiry one hour): what a broker journals.
    pub persistent: bool,
    /// TLS (`--cafile`): every connection is a TLS client with this
    /// configuration, checking the broker's certificate against its
    /// address; `None`: plain TCP.
    pub tls: Option<Arc<TlsClientConfig>>,
}

impl RunSpec {
    /// The source address for connection `index`.
    pub fn source(&self, index: usize) -> Option<IpAddr> {
        (!self.sources.is_empty()).then(|| self.sources[index % self.sources.len()])
    }

    /// Where a connection in this role connects: the upstream for a
    /// `bridge` subscriber, the broker under test otherwise.
    pub fn address(&self, subscriber: bool) -> SocketAddr {
        match self.upstream {
            Some(upstream) if subscriber => upstream,
            _ => self.broker,
        }
    }

    /// The measured window relative to the start time: warm-up excluded.
    pub fn window(&self, start_ns: u64) -> (u64, u64) {
        let from = start_ns + crate::clock::ns(self.warmup);
        (from, from + crate::clock::ns(self.duration))
    }
}

/// What one connection does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Publishes to `topic` on the open-loop schedule; `id` is its index.
    Publisher { id: u32, topic: String },
    /// Subscribes to `filter` and measures what arrives.
    Subscriber { id: u32, filter: String },
    /// Stays connected and pings.
    Idle { id: u32 },
    /// Not a connection: worker `index` of `of` opening connections at its
    /// share of the rate (connect-storm).
    Storm { index: u32, of: u32 },
}

/// Which subscribers expect which publishers' messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Every subscriber gets every publisher's messages.
    All,
    /// Subscriber `i` gets publisher `i`'s messages only.
    Pairwise,
    /// Each message reaches one subscriber of a shared group.
    Shared,
}

/// The connections of a run, in connection-index order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: &'static str,
    pub roles: Vec<Role>,
    pub publishers: usize,
    pub subscribers: usize,
    pub delivery: Delivery,
}

impl Plan {
    /// `fanout`: every publisher and subscriber on one topic.
    pub fn fanout(publishers: usize, subscribers: usize, tag: &str) -> Plan {
        let topic = format!("shardmq-load/{tag}/fanout");
        let subs = (0..subscribers).map(|i| Role::Subscriber {
            id: i as u32,
            filter: topic.clone(),
        });
        let pubs = (0..publishers).map(|i| Role::Publisher {
            id: i as u32,
            topic: topic.clone(),
        });
        Plan::new("fanout", subs.chain(pubs).collect(), Delivery::All)
    }

    /// `fanin`: publisher `i` on `.../fanin/i`, subscribers on `.../fanin/+`
    /// (through `$share/<group>/` when `shared` is given).
    pub fn fanin(publishers: usize, subscribers: usize, shared: Option<&str>, tag: &str) -> Plan {
        let base = format!("shardmq-load/{tag}/fanin");
        let (filter, delivery) = match shared {
            Some(group) => (format!("$share/{group}/{base}/+"), Delivery::Shared),
            None => (format!("{base}/+"), Delivery::All),
        };
        let roles = topic_per_publisher(&base, &filter, publishers, subscribers);
        Plan::new("fanin", roles, delivery)
    }

    /// `bridge`: publisher `i` on `<prefix>/<tag>/i` (at the edge broker),
    /// subscribers on `<prefix>/<tag>/+` (at the upstream), so every
    /// message crosses a bridge that forwards `<prefix>/#`.
    pub fn bridge(publishers: usize, subscribers: usize, prefix: &str, tag: &str) -> Plan {
        let base = format!("{prefix}/{tag}");
        let roles = topic_per_publisher(&base, &format!("{base}/+"), publishers, subscribers);
        Plan::new("bridge", roles, Delivery::All)
    }

    /// `pairs`: publisher `i` and subscriber `i` on `.../pair/i`.
    pub fn pairs(pairs: usize, tag: &str) -> Plan {
        let roles = (0..pairs)
            .flat_map(|i| {
                let topic = format!("shardmq-load/{tag}/pair/{i}");
                [
                    Role::Subscriber {
                        id: i as u32,
                        filter: topic.clone(),
                    },
                    Role::Publisher {
                        id: i as u32,
                        topic,
                    },
                ]
            })
            .collect();
        Plan::new("pairs", roles, Delivery::Pairwise)
    }

    /// `idle`: `n` connections that only ping.
    pub fn idle(n: usize) -> Plan {
        Plan::new(
            "idle",
            (0..n).map(|i| Role::Idle { id: i as u32 }).collect(),
            Delivery::All,
        )
    }

    /// `connect-storm`: one connection opener per worker.
    pub fn storm(workers: usize) -> Plan {
        let roles = (0..workers)
            .map(|i| Role::Storm {
                index: i as u32,
                of: workers as u32,
            })
            .collect();
        Plan::new("connect-storm", roles, Delivery::All)
    }

    fn new(scenario: &'static str, roles: Vec<Role>, delivery: Delivery) -> Plan {
        let count = |f: fn(&Role) -> bool| roles.iter().filter(|r| f(r)).count();
        let publishers = count(|r| matches!(r, Role::Publisher { .. }));
        let subscribers = count(|r| matches!(r, Role::Subscriber { .. }));
        Plan {
            scenario,
            roles,
            publishers,
            subscribers,
            delivery,
        }
    }

    /// The same plan without its subscribers.
    pub fn without_subscribers(&self) -> Plan {
        let roles = self
            .roles
            .iter()
            .filter(|r| !matches!(r, Role::Subscriber { .. }));
        Plan::new(self.scenario, roles.cloned().collect(), self.delivery)
    }

    /// Deliveries each published message should produce.
    pub fn deliveries_per_message(&self) -> u64 {
        match self.delivery {
            Delivery::All => self.subscribers as u64,
            Delivery::Pairwise | Delivery::Shared => 1,
        }
    }

    /// Connections per worker, dealt round-robin: `(connection index, role)`.
    pub fn deal(&self, workers: usize) -> Vec<Vec<(usize, Role)>> {
        let mut out = vec![Vec::new(); workers.max(1)];
        for (i, role) in self.roles.iter().enumerate() {
            out[i % workers.max(1)].push((i, role.clone()));
        }
        out
    }
}

/// Subscribers on `filter`, then publisher `i` on `<base>/i`.
fn topic_per_publisher(
    base: &str,
    filter: &str,
    publishers: usize,
    subscribers: usize,
) -> Vec<Role> {
    let subs = (0..subscribers).map(|i| Role::Subscriber {
        id: i as u32,
        filter: filter.to_string(),
    });
    let pubs = (0..publishers).map(|i| Role::Publisher {
        id: i as u32,
        topic: format!("{base}/{i}"),
    });
    subs.chain(pubs).collect()
}

/// Maps `--mqtt-version` to the codec's version.
pub fn protocol_version(v: u8) -> ProtocolVersion {
    if v == 5 {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V311
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_count_roles() {
        let p = Plan::fanout(2, 5, "t");
        assert_eq!(
            (p.publishers, p.subscribers, p.deliveries_per_message()),
            (2, 5, 5)
        );
        let p = Plan::fanin(4, 2, Some("g"), "t");
        assert_eq!(p.deliveries_per_message(), 1);
        assert!(
            matches!(&p.roles[0], Role::Subscriber { filter, .. } if filter == "$share/g/shardmq-load/t/fanin/+")
        );
        let p = Plan::bridge(2, 3, "bench", "t");
        assert_eq!(
            (p.publishers, p.subscribers, p.deliveries_per_message()),
            (2, 3, 3)
        );
        assert!(p.roles.contains(&Role::Subscriber {
            id: 0,
            filter: "bench/t/+".into()
        }));
        assert!(p.roles.contains(&Role::Publisher {
            id: 1,
            topic: "bench/t/1".into()
        }));
        let p = Plan::pairs(3, "t");
        assert_eq!((p.publishers, p.subscribers, p.roles.len()), (3, 3, 6));
    }

    #[test]
    fn deal_round_robin() {
        let dealt = Plan::idle(5).deal(2);
        assert_eq!(
            dealt[0].iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![0, 2, 4]
        );
        assert_eq!(dealt[1].len(), 2);
    }
}

//! `bridge`: messages published at an edge broker reach subscribers at an
//! upstream broker through the edge's bridge (`topic <prefix>/# out`).
//!
//! The run is a traffic run like `fanin`'s ([`Plan::bridge`]: publisher `i`
//! on `<prefix>/<tag>/i`, every subscriber on `<prefix>/<tag>/+`), except
//! that subscribers connect to the upstream ([`RunSpec::upstream`]); the
//! rate, `--saturate`, latency, loss and drain are the traffic run's. Before
//! it, the link is checked: a probe message published at the edge must
//! reach the upstream within `--link-timeout`, so that a bridge still
//! connecting (or not forwarding the prefix) is a clear error rather than
//! loss. With `--kill-upstream` the reconnect time is measured instead
//! ([`crate::outage`]).

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use shardmq::protocol::TopicName;

use crate::cli::BridgeArgs;
use crate::error::{LoadError, Result};
use crate::plan::{Plan, RunSpec};
use crate::probe::Probe;
use crate::scenario::{self, Outcome};

/// How often the link check publishes its probe message.
const LINK_PROBE_EVERY: Duration = Duration::from_millis(100);

/// Runs the `bridge` scenario, naming the edge broker `label`.
pub fn run(a: &BridgeArgs, label: &str, tag: String) -> Result<Outcome> {
    check_prefix(&a.prefix)?;
    let plan = Plan::bridge(a.publishers, a.subscribers, &a.prefix, &tag);
    let mut job = scenario::prepare(&plan, &a.run, label, tag)?;
    job.spec.upstream = Some(scenario::resolve(&a.upstream)?);
    check_link(&job.spec, a)?;
    match (a.outage.kill_upstream, &a.outage.restart_upstream) {
        (Some(pid), Some(restart)) => {
            crate::outage::measure(&job, &plan, &a.outage, pid, restart).map(Outcome::Outage)
        }
        _ => scenario::execute(&plan, &a.run.traffic, job),
    }
}

/// `--prefix` must be a topic name (levels, no wildcards) that topics can
/// be added to.
fn check_prefix(prefix: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(LoadError::Usage(format!(
            "--prefix {prefix:?} {why}: give the topic levels the bridge forwards, e.g. bench for `topic bench/# out`"
        )))
    };
    if prefix.is_empty() || prefix.ends_with('/') {
        return bad("must not be empty or end with '/'");
    }
    if prefix.contains(['+', '#']) {
        return bad("must not hold wildcards");
    }
    match TopicName::from_str(prefix) {
        Ok(_) => Ok(()),
        Err(e) => bad(&format!("is not a topic name ({e})")),
    }
}

/// Waits until a message published at the edge arrives at the upstream, by
/// `--link-timeout`; the error says what to check.
fn check_link(spec: &RunSpec, a: &BridgeArgs) -> Result<()> {
    let (edge, upstream) = (spec.broker, spec.address(true));
    let deadline = Instant::now() + a.link_timeout;
    let topic = format!("{}/{}/link/probe", a.prefix, spec.tag);
    let mut sub =
        Probe::connect(spec, upstream, "link-sub", deadline).map_err(at("upstream", upstream))?;
    sub.subscribe(&topic, deadline)
        .map_err(at("upstream", upstream))?;
    let mut publ = Probe::connect(spec, edge, "link-pub", deadline).map_err(at("edge", edge))?;
    let name = TopicName::from_str(&topic)
        .map_err(|e| LoadError::Usage(format!("probe topic {topic:?}: {e}")))?;
    while Instant::now() < deadline {
        publ.publish(&name, b"link").map_err(at("edge", edge))?;
        let next = (Instant::now() + LINK_PROBE_EVERY).min(deadline);
        if sub
            .next_publish(next)
            .map_err(at("upstream", upstream))?
            .is_some()
        {
            return Ok(());
        }
    }
    Err(LoadError::Run(format!(
        "the bridge did not deliver: nothing published at the edge {edge} on {topic} reached \
         the upstream {upstream} within {:?} (--link-timeout). Check that the edge has a bridge \
         to {upstream} that is connected and forwards `{}/#` out.",
        a.link_timeout, a.prefix
    )))
}

/// Wraps an error of the link check at `broker` (edge or upstream).
fn at(broker: &'static str, addr: SocketAddr) -> impl FnOnce(io::Error) -> LoadError {
    move |e| LoadError::Run(format!("link check at the {broker} ({addr}): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert!(check_prefix("bench").is_ok());
        assert!(check_prefix("site/a").is_ok());
        for bad in ["", "bench/", "bench/#", "a/+/b"] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }
}

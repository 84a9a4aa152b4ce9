//! A link's `topic` lines, prepared once: the filters each line makes on
//! either side, and the mapping of a topic across the link, without
//! building a filter per message.

use crate::config::{remap, BridgeConfig, BridgeTopic};
use crate::protocol::QoS;

/// One `topic` line with its joined filters. Owned by its link.
#[derive(Debug, Clone)]
struct Route {
    line: BridgeTopic,
    /// `local-prefix + pattern`.
    local: String,
    /// `remote-prefix + pattern`.
    remote: String,
}

/// Every `topic` line of one link, in file order (the first match decides,
/// as in Mosquitto).
#[derive(Debug, Clone)]
pub struct Routes(Vec<Route>);

impl Routes {
    pub fn new(config: &BridgeConfig) -> Routes {
        Routes(
            config
                .topics
                .iter()
                .map(|t| Route {
                    line: t.clone(),
                    local: t.local_filter(),
                    remote: t.remote_filter(),
                })
                .collect(),
        )
    }

    /// Local filters of `out`/`both` lines: what the bridge takes from the
    /// local broker.
    pub fn local_filters(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(|r| r.line.direction.is_out())
            .map(|r| r.local.as_str())
    }

    /// Remote filters and QoS of `in`/`both` lines: the link's remote
    /// subscriptions.
    pub fn remote_subscriptions(&self) -> impl Iterator<Item = (&str, QoS)> {
        self.0
            .iter()
            .filter(|r| r.line.direction.is_in())
            .map(|r| (r.remote.as_str(), r.line.qos))
    }

    /// Remote filters of lines that are `out` only (what
    /// `bridge_attempt_unsubscribe` unsubscribes from).
    pub fn out_only_remote_filters(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(|r| !r.line.direction.is_in())
            .map(|r| r.remote.as_str())
    }

    /// The remote topic and QoS of a local message, if a line sends it.
    pub fn map_out(&self, local_topic: &str) -> Option<(String, QoS)> {
        self.0.iter().find_map(|r| {
            if !r.line.direction.is_out() {
                return None;
            }
            remap(
                local_topic,
                &r.local,
                &r.line.local_prefix,
                &r.line.remote_prefix,
            )
            .map(|t| (t, r.line.qos))
        })
    }

    /// The local topic of a message from the remote, if a line brings it in.
    pub fn map_in(&self, remote_topic: &str) -> Option<String> {
        self.0.iter().find_map(|r| {
            if !r.line.direction.is_in() {
                return None;
            }
            remap(
                remote_topic,
                &r.remote,
                &r.line.remote_prefix,
                &r.line.local_prefix,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn routes(topics: &str) -> Routes {
        let text = format!("connection b\naddress 127.0.0.1:1\n{topics}");
        let (config, _) = Config::parse(&text, "t.conf").unwrap();
        Routes::new(&config.bridges[0])
    }

    #[test]
    fn maps_like_the_config_does() {
        let text =
            "connection b\naddress 127.0.0.1:1\ntopic # both 1 local/ remote/\ntopic x/# out 0\n";
        let (config, _) = Config::parse(text, "t.conf").unwrap();
        let r = Routes::new(&config.bridges[0]);
        for topic in ["local/a", "local/a/b", "x/1", "y", "local"] {
            assert_eq!(
                r.map_out(topic),
                config.bridges[0].map_out(topic),
                "{topic}"
            );
        }
        for topic in ["remote/a", "x/1", "remote"] {
            assert_eq!(
                r.map_in(topic),
                config.bridges[0].map_in(topic).map(|m| m.0)
            );
        }
    }

    #[test]
    fn lists_filters_by_direction() {
        let r = routes("topic sensor/# out 1\ntopic control/# in 2\ntopic both/# both 0 l/ r/\n");
        assert_eq!(
            r.local_filters().collect::<Vec<_>>(),
            ["sensor/#", "l/both/#"]
        );
        assert_eq!(
            r.remote_subscriptions().collect::<Vec<_>>(),
            [
                ("control/#", QoS::ExactlyOnce),
                ("r/both/#", QoS::AtMostOnce)
            ]
        );
        assert_eq!(
            r.out_only_remote_filters().collect::<Vec<_>>(),
            ["sensor/#"]
        );
    }
}

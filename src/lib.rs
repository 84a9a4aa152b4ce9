//! shardmq: a thread-per-core sharded MQTT broker.
pub mod config;
pub mod logging;
pub mod protocol;

//! shardmq: a thread-per-core sharded MQTT broker.
pub mod config;
pub mod protocol;
pub mod runtime;

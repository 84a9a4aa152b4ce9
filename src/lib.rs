//! shardmq: a thread-per-core sharded MQTT broker.
pub mod config;
pub mod index;
pub mod limits;
pub mod mesh;
pub mod protocol;
pub mod runtime;
pub mod shard;

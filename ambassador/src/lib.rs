//! `tessera-ambassador`: a twemproxy-compatible shard-routing proxy for
//! Redis (RESP2) and memcached.
#![forbid(unsafe_code)]

pub mod admin;
pub mod client;
pub mod config;
pub mod count;
pub mod discovery;
pub mod error;
pub mod memcache;
pub mod merge;
pub mod metrics;
pub mod plan;
pub mod pool;
pub mod redis;
pub mod reload;
pub mod ring;
pub mod server;
pub mod upstream;
pub mod workers;

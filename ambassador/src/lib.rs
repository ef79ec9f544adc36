//! `tessera-ambassador`: a twemproxy-compatible shard-routing proxy for
//! Redis (RESP2) and memcached.
#![forbid(unsafe_code)]

pub mod config;
pub mod ring;

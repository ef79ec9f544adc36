//! `tessera-adapter`: one uniform Prometheus interface (`tessera_*`) for
//! Redis, memcached, ZooKeeper, etcd and Kafka. See docs/metrics.md.
#![forbid(unsafe_code)]

pub mod cli;
pub mod engines;
pub mod error;
pub mod http;
pub mod schema;

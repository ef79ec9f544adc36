//! Test support: launchers for real engines on 127.0.0.1, fault helpers and
//! fixture builders for test objects.
//!
//! Launchers are synchronous (std only) so that they work from plain
//! `#[test]`s and from inside any async runtime. Each engine runs on free
//! ports with a temporary data directory and is killed when its handle is
//! dropped, including while a failing test unwinds. An engine that cannot
//! start is an error carrying the tail of its log: tests `expect()` it and
//! fail, they never skip.
#![forbid(unsafe_code)]

mod engines;
mod process;
mod prometheus;
mod wire;

pub use engines::etcd::Etcd;
pub use engines::kafka::{KafkaBroker, KafkaCluster};
pub use engines::memcached::Memcached;
pub use engines::redis::RedisServer;
pub use engines::zookeeper::{ZooKeeper, ZooKeeperEnsemble, ZooKeeperOptions};
pub use process::{LaunchError, Process, free_ports};
pub use prometheus::{Prometheus, dashboard_queries, url_encode};
pub use wire::{exchange, http_get};

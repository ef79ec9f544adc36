//! One module per engine: a `Collector` that asks the engine (through the
//! shared `tessera-clients`) and a pure `map` from the native reply to the
//! uniform schema, unit-tested on captured replies.

pub mod etcd;
pub mod kafka;
pub mod memcached;
pub mod redis;
pub mod zookeeper;

use crate::cli::{Args, Engine};
use crate::error::ScrapeError;
use crate::schema::Scrape;

pub enum Collector {
    Redis(redis::Collector),
    Memcached(memcached::Collector),
    Zookeeper(zookeeper::Collector),
    Etcd(etcd::Collector),
    Kafka(kafka::Collector),
}

impl Collector {
    /// Builds the collector without connecting: the adapter must start (and
    /// report `tessera_up 0`) while the engine is still down.
    pub fn new(args: &Args) -> anyhow::Result<Collector> {
        // Slightly under the scrape deadline, so a slow engine usually ends
        // in the client's own clean timeout rather than a cancelled call.
        let t = args.scrape_timeout.mul_f64(0.9);
        Ok(match args.engine {
            Engine::Redis => Collector::Redis(redis::Collector::new(
                &args.target,
                tessera_clients::redis::Options {
                    timeout: t,
                    password: args.redis_password()?,
                    username: args.redis_username.clone(),
                    ..Default::default()
                },
            )),
            Engine::Memcached => Collector::Memcached(memcached::Collector::new(&args.target, t)),
            Engine::Zookeeper => Collector::Zookeeper(zookeeper::Collector::new(&args.target, t)),
            Engine::Etcd => {
                let tls = args.etcd_url().starts_with("https://").then(|| {
                    tessera_clients::etcd::TlsOptions {
                        ca_file: args.etcd_ca_file.clone(),
                        cert_file: args.etcd_cert_file.clone(),
                        key_file: args.etcd_key_file.clone(),
                        server_name: None,
                    }
                });
                Collector::Etcd(etcd::Collector::new(&args.etcd_url(), t, tls)?)
            }
            Engine::Kafka => {
                Collector::Kafka(kafka::Collector::new(&args.target, t, args.kafka_node_id))
            }
        })
    }

    /// Asks the engine once and maps the reply into `out`.
    pub async fn collect(&mut self, out: &mut Scrape) -> Result<(), ScrapeError> {
        match self {
            Collector::Redis(c) => c.collect(out).await,
            Collector::Memcached(c) => c.collect(out).await,
            Collector::Zookeeper(c) => c.collect(out).await,
            Collector::Etcd(c) => c.collect(out).await,
            Collector::Kafka(c) => c.collect(out).await,
        }
    }
}

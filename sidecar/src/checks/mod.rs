//! One readiness/liveness check per engine, behind one enum.

use tessera_clients::Error as ClientError;

use crate::cli::{Args, Engine};
use crate::error::Error;

mod etcd;
mod kafka;
mod memcached;
mod redis;
mod zookeeper;

/// Which question is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Readiness,
    Liveness,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Readiness => "readiness",
            Kind::Liveness => "liveness",
        }
    }
}

/// The answer to one check, with a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    pub reason: String,
    /// For failures: a low-cardinality cause for metrics (`not_ready`,
    /// `timeout`, `protocol`, ...).
    pub cause: &'static str,
}

impl Verdict {
    pub fn pass(reason: impl Into<String>) -> Verdict {
        Verdict {
            ok: true,
            reason: reason.into(),
            cause: "",
        }
    }

    /// The engine answered, and the answer means "no".
    pub fn fail(reason: impl Into<String>) -> Verdict {
        Verdict {
            ok: false,
            reason: reason.into(),
            cause: "not_ready",
        }
    }

    /// The engine did not answer sensibly.
    pub fn error(what: &str, e: &ClientError) -> Verdict {
        Verdict {
            ok: false,
            reason: one_line(&format!("{what}: {e}")),
            cause: e.label(),
        }
    }
}

/// Reasons go into a one-line HTTP body and a log field.
pub fn one_line(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    s.chars().take(300).collect()
}

/// The engine-specific checker.
pub enum Checker {
    Redis(redis::Redis),
    Memcached(memcached::Memcached),
    ZooKeeper(zookeeper::ZooKeeper),
    Etcd(etcd::Etcd),
    Kafka(kafka::Kafka),
}

impl Checker {
    /// Builds the checker, refusing unusable flags.
    pub fn new(args: &Args) -> Result<Checker, Error> {
        Ok(match args.engine {
            Engine::Redis => Checker::Redis(redis::Redis::new(args)?),
            Engine::Memcached => Checker::Memcached(memcached::Memcached::new(args)?),
            Engine::Zookeeper => Checker::ZooKeeper(zookeeper::ZooKeeper::new(args)?),
            Engine::Etcd => Checker::Etcd(etcd::Etcd::new(args)?),
            Engine::Kafka => Checker::Kafka(kafka::Kafka::new(args)?),
        })
    }

    pub async fn check(&self, kind: Kind) -> Verdict {
        match (self, kind) {
            (Checker::Redis(c), Kind::Readiness) => c.ready().await,
            (Checker::Redis(c), Kind::Liveness) => c.live().await,
            (Checker::Memcached(c), Kind::Readiness) => c.ready().await,
            (Checker::Memcached(c), Kind::Liveness) => c.live().await,
            (Checker::ZooKeeper(c), Kind::Readiness) => c.ready().await,
            (Checker::ZooKeeper(c), Kind::Liveness) => c.live().await,
            (Checker::Etcd(c), Kind::Readiness) => c.ready().await,
            (Checker::Etcd(c), Kind::Liveness) => c.live().await,
            (Checker::Kafka(c), Kind::Readiness) => c.ready().await,
            (Checker::Kafka(c), Kind::Liveness) => c.live().await,
        }
    }

    /// Kafka partitions led by this broker with a shrunken ISR, as last seen.
    pub fn under_replicated(&self) -> Option<i64> {
        match self {
            Checker::Kafka(k) => k.under_replicated(),
            _ => None,
        }
    }
}

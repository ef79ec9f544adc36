//! Kubernetes discovery: `--store <namespace>/<name>` routes to the shard
//! primaries that a `ShardedStore` publishes in its status.
//!
//! The object is read as the typed [`tessera_api::ShardedStore`] through an
//! `Api<ShardedStore>` watcher scoped to that one object with the field
//! selector `metadata.name=<name>`, so `get`, `list` and `watch` on that one
//! object (a Role with `resourceNames: [<name>]`) are all it needs.
//!
//! Routing: every `status.shards[]` entry becomes a server named by its
//! stable `name` (the ring identity, so keys stay put when pods move) at its
//! `address`. A status that cannot be routed by (no shards yet, a shard
//! without an address, a bad address, two shards with one index or one name)
//! is logged with the reason and the last good shard list stays in use;
//! before the first good status the ambassador does not listen.

#[cfg(test)]
mod tests;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tessera_api::sharded_store::{self as api, HashFunction};
use tessera_api::{ShardedStore, StoreEngine};

use crate::config::{
    Config, DEFAULT_MAX_REPLY_BYTES, DEFAULT_MAX_REQUEST_BYTES, PoolConfig, ServerConfig,
    split_host_port,
};
use crate::metrics::METRICS;
use crate::ring::{Distribution, HashFn};
use crate::server::Server;

/// `namespace/name` of a ShardedStore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRef {
    pub namespace: String,
    pub name: String,
}

impl FromStr for StoreRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(StoreRef {
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Err(format!("--store expects <namespace>/<name>, got {s:?}")),
        }
    }
}

/// Settings that the ShardedStore does not carry.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen; by default 127.0.0.1:6379 for Redis, :11211 for memcached.
    pub listen: Option<String>,
    pub timeout: Option<Duration>,
    pub redis_auth: Option<String>,
}

fn hash_fn(f: HashFunction) -> HashFn {
    match f {
        HashFunction::OneAtATime => HashFn::OneAtATime,
        HashFunction::Md5 => HashFn::Md5,
        HashFunction::Crc16 => HashFn::Crc16,
        HashFunction::Crc32 => HashFn::Crc32,
        HashFunction::Crc32a => HashFn::Crc32a,
        HashFunction::Fnv1_64 => HashFn::Fnv1_64,
        HashFunction::Fnv1a64 => HashFn::Fnv1a64,
        HashFunction::Fnv1_32 => HashFn::Fnv1_32,
        HashFunction::Fnv1a32 => HashFn::Fnv1a32,
        HashFunction::Hsieh => HashFn::Hsieh,
        HashFunction::Murmur => HashFn::Murmur,
        HashFunction::Jenkins => HashFn::Jenkins,
    }
}

fn distribution(d: api::Distribution) -> Distribution {
    match d {
        api::Distribution::Ketama => Distribution::Ketama,
        api::Distribution::Modula => Distribution::Modula,
        api::Distribution::Random => Distribution::Random,
    }
}

/// Builds the pool for a ShardedStore. Uses `spec.engine`,
/// `spec.hashing.{function,distribution,hashTag}` and
/// `status.shards[].{index,name,address}`; servers are named by the shard's
/// stable name so the ring does not depend on pod addresses. An error says
/// why this status cannot be routed by.
pub fn pool_from_store(
    store: &StoreRef,
    obj: &ShardedStore,
    opts: &Options,
) -> Result<PoolConfig, String> {
    let redis = match obj.spec.engine {
        StoreEngine::Redis => true,
        StoreEngine::Memcached => false,
    };
    let hashing = &obj.spec.hashing;
    let hash_tag = match hashing.hash_tag.as_deref() {
        Some(t) if t.len() == 2 => Some([t.as_bytes()[0], t.as_bytes()[1]]),
        Some(t) => return Err(format!("hashTag {t:?} is not 2 bytes")),
        None => None,
    };
    let shards = obj
        .status
        .as_ref()
        .map(|s| s.shards.as_slice())
        .filter(|s| !s.is_empty())
        .ok_or("status.shards is empty: the operator has not published the shards yet")?;
    let mut indexed = Vec::with_capacity(shards.len());
    for shard in shards {
        let index = shard.index;
        if shard.name.is_empty() {
            return Err(format!("shard {index} has no name"));
        }
        let address = shard
            .address
            .as_deref()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| format!("shard {index} ({}) has no address yet", shard.name))?;
        let (host, port) = split_host_port(address)
            .ok_or_else(|| format!("shard {index}: address {address:?} is not host:port"))?;
        indexed.push((
            index,
            ServerConfig {
                host,
                port,
                weight: 1,
                name: Some(shard.name.clone()),
            },
        ));
    }
    indexed.sort_by_key(|(i, _)| *i);
    if indexed.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err("two shards share an index".into());
    }
    let mut names: Vec<_> = indexed.iter().map(|(_, s)| s.name.as_deref()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err("two shards share a name".into());
    }
    let default_port = if redis { 6379 } else { 11211 };
    Ok(PoolConfig {
        name: format!("{}/{}", store.namespace, store.name),
        listen: opts
            .listen
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{default_port}")),
        hash: hash_fn(hashing.function),
        hash_tag,
        distribution: distribution(hashing.distribution),
        timeout: opts.timeout,
        backlog: 512,
        redis,
        redis_auth: opts.redis_auth.clone().filter(|_| redis),
        redis_db: 0,
        preconnect: false,
        // A cache ejects a failing shard for server_retry_timeout: its keys
        // go to the other shards as misses instead of errors. A Redis shard
        // is never ejected: its keys would be written where they are not
        // read back once it returns (the operator fails it over instead).
        auto_eject_hosts: !redis,
        server_connections: 1,
        server_retry_timeout: Duration::from_secs(30),
        server_failure_limit: 2,
        servers: indexed.into_iter().map(|(_, s)| s).collect(),
        max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
    })
}

/// Watches the store and serves its shards until the process exits. The
/// listener starts with the first usable status; later changes are applied
/// like a reload, and unusable ones keep the running routing.
pub async fn run(store: StoreRef, opts: Options) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let api: Api<ShardedStore> = Api::namespaced(client, &store.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", store.name));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut server: Option<Arc<Server>> = None;
    tracing::info!(store = %format!("{}/{}", store.namespace, store.name), "watching ShardedStore");
    while let Some(event) = events.next().await {
        let obj = match event {
            Ok(Event::Apply(obj) | Event::InitApply(obj)) => obj,
            Ok(Event::Delete(_)) => {
                tracing::warn!("the ShardedStore was deleted; keeping the last known shards");
                continue;
            }
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "watching the ShardedStore failed; retrying");
                continue;
            }
        };
        let pool = match pool_from_store(&store, &obj, &opts) {
            Ok(p) => p,
            Err(why) => {
                tracing::warn!(error = %why, "cannot route by this ShardedStore status; keeping the current shards");
                if server.is_some() {
                    METRICS.reloads.with_label_values(&["error"]).inc();
                }
                continue;
            }
        };
        let config = Config { pools: vec![pool] };
        match &server {
            None => server = Some(Arc::new(Server::start(config).await?)),
            Some(s) => match s.reload(config).await {
                Ok(()) => {
                    METRICS.reloads.with_label_values(&["ok"]).inc();
                    tracing::info!("shards updated from the ShardedStore");
                }
                Err(why) => {
                    METRICS.reloads.with_label_values(&["error"]).inc();
                    tracing::error!(error = %why, "shard update refused; keeping the current shards");
                }
            },
        }
    }
    Ok(())
}

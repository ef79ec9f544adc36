//! Kubernetes discovery: `--store <namespace>/<name>` routes to the shard
//! primaries that a `ShardedStore` publishes in its status.
//!
//! Only `get`, `list` and `watch` on that one object are needed: the
//! watch is scoped with a `metadata.name` field selector. The object is read
//! as untyped JSON so the ambassador does not depend on the CRD crate's
//! release cycle; the fields used are listed in [`pool_from_store`].

#[cfg(test)]
mod tests;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::Value;

use crate::config::{Config, DEFAULT_MAX_REQUEST_BYTES, PoolConfig, ServerConfig, split_host_port};
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

fn str_at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// Builds the pool for a ShardedStore object. Reads `spec.engine`
/// (`redis`/`memcached`), `spec.hashing.{function,distribution,hashTag}` and
/// `status.shards[].{index,name,address}`; servers are named by shard name
/// (else `shard-<index>`) so the ring does not depend on pod addresses.
pub fn pool_from_store(
    store: &StoreRef,
    obj: &Value,
    opts: &Options,
) -> Result<PoolConfig, String> {
    let redis = match str_at(obj, &["spec", "engine"]) {
        Some("redis") | None => true,
        Some("memcached") => false,
        Some(other) => return Err(format!("unsupported engine {other:?}")),
    };
    let hash = match str_at(obj, &["spec", "hashing", "function"]) {
        Some(f) => f.parse::<HashFn>().map_err(|e| e.to_string())?,
        None => HashFn::default(),
    };
    let distribution = match str_at(obj, &["spec", "hashing", "distribution"]) {
        Some(d) => d.parse::<Distribution>().map_err(|e| e.to_string())?,
        None => Distribution::default(),
    };
    let hash_tag = match str_at(obj, &["spec", "hashing", "hashTag"]) {
        Some(t) if t.len() == 2 => Some([t.as_bytes()[0], t.as_bytes()[1]]),
        Some(t) => return Err(format!("hashTag {t:?} is not 2 characters")),
        None => None,
    };
    let shards = obj
        .get("status")
        .and_then(|s| s.get("shards"))
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty())
        .ok_or("status.shards is empty: the operator has not published the shards yet")?;
    let mut indexed = Vec::with_capacity(shards.len());
    for shard in shards {
        let index = shard
            .get("index")
            .and_then(Value::as_u64)
            .ok_or("a shard has no index")?;
        let address = shard
            .get("address")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| format!("shard {index} has no address yet"))?;
        let (host, port) = split_host_port(address)
            .ok_or_else(|| format!("shard {index}: address {address:?} is not host:port"))?;
        let name = shard
            .get("name")
            .and_then(Value::as_str)
            .map_or_else(|| format!("shard-{index}"), str::to_owned);
        indexed.push((
            index,
            ServerConfig {
                host,
                port,
                weight: 1,
                name: Some(name),
            },
        ));
    }
    indexed.sort_by_key(|(i, _)| *i);
    if indexed.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err("two shards share an index".into());
    }
    let default_port = if redis { 6379 } else { 11211 };
    Ok(PoolConfig {
        name: format!("{}/{}", store.namespace, store.name),
        listen: opts
            .listen
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{default_port}")),
        hash,
        hash_tag,
        distribution,
        timeout: opts.timeout,
        backlog: 512,
        redis,
        redis_auth: opts.redis_auth.clone().filter(|_| redis),
        redis_db: 0,
        preconnect: false,
        auto_eject_hosts: false,
        server_connections: 1,
        server_retry_timeout: Duration::from_secs(30),
        server_failure_limit: 2,
        servers: indexed.into_iter().map(|(_, s)| s).collect(),
        max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
    })
}

fn resource() -> ApiResource {
    ApiResource {
        group: "tessera.dev".into(),
        version: "v1alpha1".into(),
        api_version: "tessera.dev/v1alpha1".into(),
        kind: "ShardedStore".into(),
        plural: "shardedstores".into(),
    }
}

/// Watches the store and serves its shards until the process exits. The
/// listener starts with the first usable status; later changes are applied
/// like a reload, and unusable ones keep the running routing.
pub async fn run(store: StoreRef, opts: Options) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let api: Api<DynamicObject> = Api::namespaced_with(client, &store.namespace, &resource());
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
        let value = serde_json::to_value(&obj)?;
        let pool = match pool_from_store(&store, &value, &opts) {
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

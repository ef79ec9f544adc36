//! Listeners, one per pool, and the reload entry point.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use tessera_telemetry::http::AcceptBackoff;
use tokio::net::{TcpListener, TcpStream};

use crate::config::Config;
use crate::metrics::METRICS;
use crate::pool::Pool;

/// The running pools, by name.
pub struct Server {
    pools: HashMap<String, Arc<Pool>>,
}

impl Server {
    /// Binds every pool's listener and starts accepting.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        let mut pools = HashMap::new();
        for pc in config.pools {
            let listener = TcpListener::bind(&pc.listen)
                .await
                .with_context(|| format!("pool {:?}: cannot listen on {}", pc.name, pc.listen))?;
            let redis = pc.redis;
            let name = pc.name.clone();
            let names = if redis {
                crate::redis::command_names()
            } else {
                crate::memcache::command_names()
            };
            tracing::info!(pool = %name, listen = %pc.listen, servers = pc.servers.len(), redis, "pool ready");
            let pool = Pool::start(pc, names);
            tokio::spawn(accept(listener, pool.clone(), redis));
            pools.insert(name, pool);
        }
        Ok(Server { pools })
    }

    /// Applies a new configuration to the running pools. Everything that
    /// needs a restart is checked first, so a rejected file changes nothing.
    pub async fn reload(&self, config: Config) -> Result<(), String> {
        let mut names: Vec<&str> = config.pools.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        let mut current: Vec<&str> = self.pools.keys().map(String::as_str).collect();
        current.sort_unstable();
        if names != current {
            return Err(format!(
                "adding or removing pools needs a restart (running {current:?}, file has {names:?})"
            ));
        }
        for pc in &config.pools {
            let pool = &self.pools[&pc.name];
            let running = pool.routing.load();
            if running.config.redis != pc.redis {
                return Err(format!(
                    "pool {:?}: changing redis: needs a restart",
                    pc.name
                ));
            }
            if running.config.listen != pc.listen {
                return Err(format!(
                    "pool {:?}: changing listen from {} to {} needs a restart",
                    pc.name, running.config.listen, pc.listen
                ));
            }
        }
        for pc in config.pools {
            let pool = &self.pools[&pc.name];
            pool.reload(pc).await?;
        }
        Ok(())
    }

    pub fn pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.pools.values()
    }
}

async fn accept(listener: TcpListener, pool: Arc<Pool>, redis: bool) {
    let connections = METRICS.connections.with_label_values(&[&*pool.name]);
    let mut next = 0;
    // Out of file descriptors, accept fails at once and the listener stays
    // readable: the shared backoff keeps that from spinning a core.
    let mut backoff = AcceptBackoff::new();
    loop {
        let (stream, _) = backoff.accept(&listener).await;
        connections.inc();
        let pool = pool.clone();
        let workers = crate::workers::handles();
        if workers.is_empty() {
            tokio::spawn(serve(stream, pool, redis));
            continue;
        }
        // Hand the connection to the next worker; it registers the socket
        // with its own reactor.
        next = (next + 1) % workers.len();
        match stream.into_std() {
            Ok(std) => {
                workers[next].spawn(async move {
                    match TcpStream::from_std(std) {
                        Ok(stream) => serve(stream, pool, redis).await,
                        Err(e) => tracing::warn!(error = %e, "cannot adopt a client connection"),
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot hand over a client connection"),
        }
    }
}

async fn serve(stream: TcpStream, pool: Arc<Pool>, redis: bool) {
    if redis {
        crate::redis::serve(stream, pool).await;
    } else {
        crate::memcache::serve(stream, pool).await;
    }
}

//! A pool's live state: its shards, the ring over the live ones, ejection
//! and return, and reloads that keep connections to unchanged shards.
//!
//! Readers take the current [`Routing`] with one atomic load; every change
//! builds a new one, so requests already routed finish on the old shards.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{PoolConfig, ServerConfig};
use crate::metrics::{METRICS, ShardCounters};
use crate::ring::{Member, Ring};
use crate::upstream::{Health, Settings, Upstream};

/// One shard as the data path sees it.
pub struct Shard {
    pub id: u64,
    pub label: Arc<str>,
    pub server: ServerConfig,
    pub upstream: Upstream,
    pub health: Arc<Health>,
    pub counters: Arc<ShardCounters>,
}

/// What a request needs to be routed: immutable, swapped as a whole.
pub struct Routing {
    pub ring: Ring,
    pub shards: Vec<Arc<Shard>>,
    pub config: Arc<PoolConfig>,
}

/// Command names for the per-shard counters of this pool's protocol.
pub type CommandNames = &'static [&'static str];

pub struct Pool {
    pub name: Arc<str>,
    pub routing: ArcSwap<Routing>,
    control: mpsc::UnboundedSender<Control>,
}

enum Control {
    Reload(
        Box<PoolConfig>,
        tokio::sync::oneshot::Sender<Result<(), String>>,
    ),
}

static NEXT_SHARD_ID: AtomicU64 = AtomicU64::new(1);

/// A shard and, while it is ejected, when it may return.
struct Slot {
    shard: Arc<Shard>,
    ejected_until: Option<Instant>,
}

struct Manager {
    pool: Arc<Pool>,
    config: Arc<PoolConfig>,
    members: Vec<Slot>,
    names: CommandNames,
    eject_tx: mpsc::UnboundedSender<u64>,
}

/// The settings that, when they change, need new connections.
fn same_upstream(a: &PoolConfig, b: &PoolConfig) -> bool {
    a.timeout == b.timeout
        && a.server_connections == b.server_connections
        && a.redis_auth == b.redis_auth
        && a.redis_db == b.redis_db
        && a.auto_eject_hosts == b.auto_eject_hosts
        && a.server_failure_limit == b.server_failure_limit
        && a.redis == b.redis
        && a.max_reply_bytes == b.max_reply_bytes
}

impl Manager {
    fn new_shard(&self, config: &PoolConfig, server: &ServerConfig) -> Arc<Shard> {
        let id = NEXT_SHARD_ID.fetch_add(1, Ordering::Relaxed);
        let label: Arc<str> = server.label().into();
        let health = Arc::new(Health::new(
            id,
            config.server_failure_limit,
            config.auto_eject_hosts.then(|| self.eject_tx.clone()),
        ));
        let upstream = Upstream::spawn(Settings {
            shard: label.clone(),
            addr: server.addr(),
            timeout: config.timeout,
            connections: config.server_connections,
            auth: config.redis_auth.clone().filter(|_| config.redis),
            db: if config.redis { config.redis_db } else { 0 },
            max_reply_bytes: config.max_reply_bytes,
            latency: METRICS
                .latency
                .with_label_values(&[&*self.pool.name, &*label]),
            health: health.clone(),
        });
        Arc::new(Shard {
            id,
            label: label.clone(),
            server: server.clone(),
            upstream,
            health,
            counters: Arc::new(ShardCounters::new(
                self.pool.name.clone(),
                label,
                self.names,
            )),
        })
    }

    fn publish(&self) {
        let now = Instant::now();
        let members: Vec<Member> = self
            .members
            .iter()
            .map(|m| Member {
                identity: m.shard.server.identity(),
                weight: m.shard.server.weight,
                live: m.ejected_until.is_none_or(|t| t <= now),
            })
            .collect();
        for (m, rm) in self.members.iter().zip(&members) {
            METRICS
                .ejected
                .with_label_values(&[&*self.pool.name, &*m.shard.label])
                .set(i64::from(!rm.live));
        }
        let ring = Ring::new(
            self.config.hash,
            self.config.distribution,
            self.config.hash_tag,
            &members,
        );
        self.pool.routing.store(Arc::new(Routing {
            ring,
            shards: self.members.iter().map(|m| m.shard.clone()).collect(),
            config: self.config.clone(),
        }));
    }

    fn reload(&mut self, config: PoolConfig) -> Result<(), String> {
        if config.listen != self.config.listen {
            return Err(format!(
                "pool {:?}: changing listen from {} to {} needs a restart",
                config.name, self.config.listen, config.listen
            ));
        }
        let reuse = same_upstream(&config, &self.config);
        let mut old: HashMap<(String, String), Slot> = self
            .members
            .drain(..)
            .map(|m| ((m.shard.server.addr(), m.shard.label.to_string()), m))
            .collect();
        let mut members = Vec::new();
        for server in &config.servers {
            let key = (server.addr(), server.label());
            match old.remove(&key) {
                Some(mut m) if reuse => {
                    if m.shard.server.weight != server.weight || m.shard.server.name != server.name
                    {
                        m = Slot {
                            shard: self.new_shard(&config, server),
                            ejected_until: None,
                        };
                    }
                    members.push(m);
                }
                _ => members.push(Slot {
                    shard: self.new_shard(&config, server),
                    ejected_until: None,
                }),
            }
        }
        for gone in old.values() {
            let _ = METRICS
                .ejected
                .remove_label_values(&[&*self.pool.name, &*gone.shard.label]);
        }
        self.members = members;
        self.config = Arc::new(config);
        self.publish();
        Ok(())
    }

    async fn run(
        mut self,
        mut control: mpsc::UnboundedReceiver<Control>,
        mut ejections: mpsc::UnboundedReceiver<u64>,
    ) {
        let far = Duration::from_secs(86400 * 365);
        loop {
            let now = Instant::now();
            let next_return = self
                .members
                .iter()
                .filter_map(|m| m.ejected_until)
                .filter(|&t| t > now)
                .min();
            tokio::select! {
                c = control.recv() => match c {
                    Some(Control::Reload(config, done)) => {
                        let _ = done.send(self.reload(*config));
                    }
                    None => return,
                },
                Some(id) = ejections.recv() => {
                    let retry = self.config.server_retry_timeout;
                    if let Some(m) = self.members.iter_mut().find(|m| m.shard.id == id) {
                        tracing::warn!(pool = %self.pool.name, shard = %m.shard.label, retry_ms = retry.as_millis() as u64, "ejecting shard");
                        m.ejected_until = Some(Instant::now() + retry);
                        self.publish();
                    }
                }
                () = tokio::time::sleep(next_return.map_or(far, |t| t - now)), if next_return.is_some() => {
                    let now = Instant::now();
                    for m in &mut self.members {
                        if m.ejected_until.is_some_and(|t| t <= now) {
                            tracing::info!(pool = %self.pool.name, shard = %m.shard.label, "shard returns to the ring");
                            m.ejected_until = None;
                        }
                    }
                    self.publish();
                }
            }
        }
    }
}

impl Pool {
    /// Creates the pool and starts its manager task.
    pub fn start(config: PoolConfig, names: CommandNames) -> Arc<Pool> {
        let (control, control_rx) = mpsc::unbounded_channel();
        let (eject_tx, eject_rx) = mpsc::unbounded_channel();
        let config = Arc::new(config);
        let pool = Arc::new(Pool {
            name: config.name.as_str().into(),
            routing: ArcSwap::from_pointee(Routing {
                ring: Ring::new(config.hash, config.distribution, config.hash_tag, &[]),
                shards: Vec::new(),
                config: config.clone(),
            }),
            control,
        });
        let mut manager = Manager {
            pool: pool.clone(),
            config: config.clone(),
            members: Vec::new(),
            names,
            eject_tx,
        };
        manager.members = config
            .servers
            .iter()
            .map(|s| Slot {
                shard: manager.new_shard(&config, s),
                ejected_until: None,
            })
            .collect();
        manager.publish();
        tokio::spawn(manager.run(control_rx, eject_rx));
        pool
    }

    /// Applies a new configuration; on error the old one stays.
    pub async fn reload(&self, config: PoolConfig) -> Result<(), String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.control
            .send(Control::Reload(Box::new(config), tx))
            .map_err(|_| "pool manager stopped".to_owned())?;
        rx.await.map_err(|_| "pool manager stopped".to_owned())?
    }
}

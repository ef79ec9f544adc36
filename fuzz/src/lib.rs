//! What the ambassador's planning targets share: one three-shard pool.

use std::sync::LazyLock;

use tessera_ambassador::config::{Config, PoolConfig};
use tessera_ambassador::ring::{Member, Ring};

/// A pool like the benchmark's: fnv1a_64, ketama, three named servers.
pub static POOL: LazyLock<PoolConfig> = LazyLock::new(|| {
    let yaml = "fuzz:\n  listen: 127.0.0.1:6379\n  hash: fnv1a_64\n  distribution: ketama\n  redis: true\n  hash_tag: \"{}\"\n  servers:\n   - 127.0.0.1:7001:1 shard-0\n   - 127.0.0.1:7002:1 shard-1\n   - 127.0.0.1:7003:1 shard-2\n";
    Config::parse(yaml).expect("a valid pool").pools.remove(0)
});

/// The ring over [`POOL`]'s servers, all live.
pub static RING: LazyLock<Ring> = LazyLock::new(|| {
    let members: Vec<Member> = POOL
        .servers
        .iter()
        .map(|s| Member {
            identity: s.identity(),
            weight: s.weight,
            live: true,
        })
        .collect();
    Ring::new(POOL.hash, POOL.distribution, POOL.hash_tag, &members)
});

//! `ShardedStore`: Redis (Valkey-compatible) or memcached, split into shards.

// Every `printcolumn(...)` repeats `type_`, which clippy takes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{CommonSpec, CommonStatus, SecretKeyRef};

/// A key-value store split into shards, each shard a primary with optional
/// replicas. Applications reach it through tessera-ambassador, which places
/// keys on shards the way twemproxy does.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tessera.dev",
    version = "v1alpha1",
    kind = "ShardedStore",
    namespaced,
    derive = "PartialEq",
    shortname = "sst",
    category = "tessera",
    status = "ShardedStoreStatus",
    doc = "A Redis (Valkey-compatible) or memcached store split into shards, each a primary with optional replicas.",
    printcolumn(name = "Engine", type_ = "string", json_path = ".spec.engine"),
    printcolumn(name = "Shards", type_ = "integer", json_path = ".spec.shards"),
    printcolumn(
        name = "Replicas/Shard",
        type_ = "integer",
        json_path = ".spec.replicasPerShard"
    ),
    printcolumn(
        name = "Ready Shards",
        type_ = "integer",
        json_path = ".status.readyShards"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.engine != 'memcached' || !has(self.replicasPerShard) || self.replicasPerShard == 0",
        "message": "replicasPerShard must be 0 for memcached: memcached does not replicate"
    },
    {
        "rule": "self.engine == 'redis' || !has(self.auth)",
        "message": "auth is only supported for the redis engine"
    }
]))]
pub struct ShardedStoreSpec {
    /// The store engine: "redis" (Valkey-compatible) or "memcached". It
    /// cannot be changed after creation.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "engine is immutable"}]))]
    pub engine: StoreEngine,

    /// Number of shards, from 1 to 1024. Changing it moves keys between
    /// shards (with ketama distribution about 1/N of the keys) and the
    /// operator does not migrate them: for a Redis store a changed count is
    /// refused (Degraded=True, reason RuleViolation) unless
    /// `acknowledgeKeyRemapping` holds the new count. memcached stores
    /// change freely: a remapped key is a cache miss.
    #[schemars(range(min = 1, max = 1024))]
    pub shards: i32,

    /// Set it to the new `shards` value to accept that changing the number
    /// of shards of a Redis store sends about 1/N of the keys to another
    /// shard, where they are not found: the keys on their old shard are not
    /// moved or deleted. It must equal `shards`, so that an old
    /// acknowledgement does not let a later change through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub acknowledge_key_remapping: Option<i32>,

    /// Replicas of each shard's primary, from 0 to 5. Must be 0 for memcached.
    #[serde(default)]
    #[schemars(range(min = 0, max = 5))]
    pub replicas_per_shard: i32,

    /// How keys are placed on shards. The names and the placement are
    /// twemproxy's, so a pool moved from twemproxy keeps its keys in place.
    #[serde(default)]
    pub hashing: Hashing,

    /// Password protection of Redis. Only for the redis engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<StoreAuth>,

    /// Settings shared by every Tessera resource.
    #[serde(flatten)]
    pub common: CommonSpec,
}

/// A sharded store engine.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StoreEngine {
    /// Redis, or a Valkey-compatible server.
    Redis,
    /// memcached.
    Memcached,
}

impl StoreEngine {
    /// The name used in labels, metrics and the CLI flags of our binaries.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreEngine::Redis => "redis",
            StoreEngine::Memcached => "memcached",
        }
    }

    /// The version the operator runs when `version` is unset.
    pub fn default_version(self) -> &'static str {
        match self {
            StoreEngine::Redis => "7.4",
            StoreEngine::Memcached => "1.6.32",
        }
    }

    /// The official image for a version.
    pub fn image(self, version: &str) -> String {
        self.contract().image(version)
    }

    /// What pod specs rely on in the engine's image.
    pub fn contract(self) -> &'static crate::images::ImageContract {
        match self {
            StoreEngine::Redis => &crate::images::REDIS,
            StoreEngine::Memcached => &crate::images::MEMCACHED,
        }
    }

    /// Configuration keys the operator generates itself.
    pub fn owned_config_keys(self) -> &'static [&'static str] {
        match self {
            StoreEngine::Redis => &[
                "port",
                "bind",
                "dir",
                "daemonize",
                "replicaof",
                "slaveof",
                "requirepass",
                "masterauth",
                "cluster-enabled",
                "unixsocket",
            ],
            StoreEngine::Memcached => &["port", "listen", "user", "daemonize", "udp-port"],
        }
    }
}

/// How keys are placed on shards.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hashing {
    /// The hash function applied to keys, by its twemproxy name.
    #[serde(default)]
    pub function: HashFunction,

    /// How hashes map to shards: "ketama" (consistent hashing, the default),
    /// "modula" (hash modulo the number of shards) or "random".
    #[serde(default)]
    pub distribution: Distribution,

    /// Two characters, for example "{}". When set, only the part of the key
    /// between them is hashed, so that related keys land on the same shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 2))]
    pub hash_tag: Option<String>,
}

/// A twemproxy hash function.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HashFunction {
    /// Bob Jenkins' one-at-a-time hash.
    OneAtATime,
    /// The first four bytes of MD5.
    Md5,
    /// CRC16.
    Crc16,
    /// libmemcached's 15-bit CRC32.
    Crc32,
    /// The full 32-bit CRC32.
    Crc32a,
    /// FNV-1, 64-bit variant as twemproxy computes it.
    #[serde(rename = "fnv1_64")]
    Fnv1_64,
    /// FNV-1a as twemproxy computes it (32-bit arithmetic); twemproxy's default.
    #[default]
    #[serde(rename = "fnv1a_64")]
    Fnv1a64,
    /// FNV-1, 32-bit.
    #[serde(rename = "fnv1_32")]
    Fnv1_32,
    /// FNV-1a, 32-bit.
    #[serde(rename = "fnv1a_32")]
    Fnv1a32,
    /// Paul Hsieh's hash.
    Hsieh,
    /// MurmurHash.
    Murmur,
    /// Bob Jenkins' lookup hash.
    Jenkins,
}

/// How hashes map to shards.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Consistent hashing on a continuum of 160 points per shard.
    #[default]
    Ketama,
    /// Hash modulo the number of shards.
    Modula,
    /// A random shard for every request; only useful for caches.
    Random,
}

/// Password protection of Redis.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreAuth {
    /// The Secret key holding the password that clients and replicas must
    /// present. The password never appears in status, events or logs.
    pub secret_ref: SecretKeyRef,
}

/// The observed state of a ShardedStore.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardedStoreStatus {
    /// Generation, conditions, replica counts and selector.
    #[serde(flatten)]
    pub common: CommonStatus,

    /// The shards in index order, with the address of each shard's current
    /// primary. tessera-ambassador routes by this list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardStatus>,

    /// Number of shards whose primary is ready.
    #[serde(default)]
    pub ready_shards: i32,
}

/// One shard of a ShardedStore.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    /// Index of the shard, from 0.
    pub index: i32,
    /// Stable name of the shard on the hash ring, for example "shard-0".
    /// Keys are placed by this name, not by address, so they stay in place
    /// when pods move.
    pub name: String,
    /// Pod name of the shard's current primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// "host:port" of the shard's current primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Number of the shard's replicas that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// The shard's other pods, as the operator last saw them: Redis
    /// replicas following the primary, or pods not placed yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ShardReplica>,
}

/// A pod of a shard that is not its primary.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardReplica {
    /// Pod name.
    pub name: String,
    /// True when its replication link to the shard's primary is up.
    #[serde(default)]
    pub linked: bool,
    /// How far it is behind the primary's replication stream, in KiB
    /// (rounded down, so that an idle or in-sync shard reports 0 and status
    /// is not rewritten for every write); absent when it is not linked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "lagKiB")]
    pub lag_kib: Option<i64>,
}

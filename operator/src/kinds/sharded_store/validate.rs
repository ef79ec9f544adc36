//! `validate`: a ShardedStore as `build` and `orchestrate` need it, with
//! every default resolved. The spec is destructured without `..`, so that a
//! field added to the API is a compile error here until it is used or
//! refused.

use std::collections::BTreeMap;

use kube::ResourceExt;
use tessera_api::common::SecretKeyRef;
use tessera_api::sharded_store::{Hashing, StoreAuth};
use tessera_api::validate::SpecCheck;
use tessera_api::{Invalid, ShardedStore, ShardedStoreSpec, StoreEngine};

use crate::kinds::shared::{CommonSettings, PodSettings};
use crate::reconcile::child::BuildContext;
use crate::reconcile::{Observed, RefKind, Reference};

/// A validated ShardedStore: what `build` reads, and nothing else.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidStore {
    pub name: String,
    pub namespace: String,
    pub engine: StoreEngine,
    pub shards: i32,
    /// Pods per shard: the primary and its replicas (1 for memcached).
    pub members: i32,
    pub image: String,
    /// `spec.config`, already checked for keys the operator owns.
    pub config: BTreeMap<String, String>,
    pub auth: Option<Auth>,
    /// Read by the ambassador from the resource itself; kept here so that a
    /// hashing change is validated like the rest of the spec.
    pub hashing: Hashing,
    pub pod: PodSettings,
}

/// The Redis password's Secret. Only its name, key and resourceVersion:
/// the operator reads the value when it talks to Redis, never in `build`.
#[derive(Clone, Debug, PartialEq)]
pub struct Auth {
    pub secret: String,
    pub key: String,
    /// The Secret's resourceVersion: part of the pods' checksum, so that a
    /// new password rolls them.
    pub version: String,
}

/// The auth Secret a spec names, for `Managed::references`.
pub fn auth_reference(spec: &ShardedStoreSpec) -> Option<Reference> {
    spec.auth.as_ref().map(|a| Reference {
        kind: RefKind::Secret,
        name: a.secret_ref.name.clone(),
    })
}

pub fn validate(
    store: &ShardedStore,
    ctx: &BuildContext,
    observed: &Observed,
) -> Result<ValidStore, Invalid> {
    store.spec.check()?;
    let ShardedStoreSpec {
        engine,
        shards,
        acknowledge_key_remapping,
        replicas_per_shard,
        hashing,
        auth,
        common,
    } = &store.spec;
    let CommonSettings {
        version: _,
        image,
        config,
        pod,
    } = CommonSettings::resolve(common, engine.contract(), engine.default_version(), ctx)?;
    // The CRD's rules refuse both; an object stored before those rules (or
    // sent past them) must not get half-built children.
    if *engine == StoreEngine::Memcached && *replicas_per_shard != 0 {
        return Err(Invalid::Rule {
            path: "spec.replicasPerShard".into(),
            message: "replicasPerShard must be 0 for memcached: memcached does not replicate"
                .into(),
        });
    }
    if *engine == StoreEngine::Memcached && auth.is_some() {
        return Err(Invalid::Rule {
            path: "spec.auth".into(),
            message: "auth is only supported for the redis engine".into(),
        });
    }
    check_shard_count(store, *shards, *acknowledge_key_remapping)?;
    let auth = auth
        .as_ref()
        .map(|a| resolve_auth(a, observed))
        .transpose()?;
    Ok(ValidStore {
        name: store.name_any(),
        namespace: store.namespace().unwrap_or_default(),
        engine: *engine,
        shards: *shards,
        members: 1 + *replicas_per_shard,
        image,
        config,
        auth,
        hashing: hashing.clone(),
        pod,
    })
}

/// A Redis store's shard count changes only when acknowledged: the
/// operator does not migrate keys, so a silent change would make about 1/N
/// of them unreachable. The count in service is the one in status.
fn check_shard_count(
    store: &ShardedStore,
    shards: i32,
    acknowledged: Option<i32>,
) -> Result<(), Invalid> {
    let published = store.status.as_ref().map_or(0, |s| s.shards.len());
    if store.spec.engine != StoreEngine::Redis
        || published == 0
        || published == shards as usize
        || acknowledged == Some(shards)
    {
        return Ok(());
    }
    Err(Invalid::Rule {
        path: "spec.shards".into(),
        message: format!(
            "changing a Redis store from {published} to {shards} shards sends about 1/N of the \
             keys to another shard, where they are not found; set \
             spec.acknowledgeKeyRemapping: {shards} to accept it, or set shards back to {published}"
        ),
    })
}

/// The Secret must exist: pods would otherwise never start, and the
/// operator could not authenticate to place primaries.
fn resolve_auth(auth: &StoreAuth, observed: &Observed) -> Result<Auth, Invalid> {
    let StoreAuth {
        secret_ref: SecretKeyRef { name, key },
    } = auth;
    let meta = observed
        .references
        .iter()
        .find(|(r, _)| r.kind == RefKind::Secret && &r.name == name)
        .and_then(|(_, m)| m.as_ref());
    match meta {
        Some(m) => Ok(Auth {
            secret: name.clone(),
            key: key.clone(),
            version: m.resource_version.clone().unwrap_or_default(),
        }),
        None => Err(Invalid::Rule {
            path: "spec.auth.secretRef.name".into(),
            message: format!("Secret {name:?} does not exist in the store's namespace"),
        }),
    }
}

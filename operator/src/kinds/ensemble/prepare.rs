//! `prepare` for Ensembles: the objects the pods need that `build` must
//! not rebuild on every pass.
//!
//! - The membership ConfigMap ([`super::membership`]): created with the
//!   members the StatefulSet runs, then changed only by the scale steps.
//! - ZooKeeper's admin Secret: a random password for the super user, the
//!   only user ZooKeeper lets reconfigure an ensemble. Generated once; the
//!   servers get its digest, the operator reads the password when it adds
//!   or removes a member.
//!
//! Both are owned by the Ensemble (so deleted with it) but not as its
//! controller: `apply` deletes the controlled children it did not build.
//! Each is created only when the caches do not show it; a stale cache
//! costs one refused create, never an overwrite.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::reflector::ObjectRef;
use tessera_api::{Ensemble, EnsembleEngine};

use super::build::{Members, identity};
use super::membership::{self, ClusterState};
use super::validate::{ValidEnsemble, statefulset_replicas};
use super::zookeeper;
use crate::reconcile::Observed;
use crate::runtime::context::Context;
use crate::runtime::error::{Error, Result};

pub async fn prepare(
    ens: &Ensemble,
    valid: &ValidEnsemble,
    observed: &Observed,
    ctx: &Context,
) -> Result<()> {
    let owner = owner(ens)?;
    let ns = valid.namespace.as_str();
    let cm_name = membership::configmap_name(&valid.name);
    let cached = ctx
        .stores
        .configmaps
        .get(&ObjectRef::new(&cm_name).within(ns))
        .is_some();
    if !cached {
        // A StatefulSet already there (an Ensemble made by an operator
        // without this ConfigMap) runs: whoever starts now joins it.
        let state = match statefulset_replicas(observed) {
            Some(_) => ClusterState::Existing,
            None => ClusterState::New,
        };
        let members = Members {
            name: &valid.name,
            namespace: ns,
            replicas: valid.statefulset_replicas,
        };
        let cm = ConfigMap {
            metadata: meta(valid, &cm_name, &owner),
            data: Some(membership::data(valid.engine, &members, state)),
            ..ConfigMap::default()
        };
        create(&Api::namespaced(ctx.client.clone(), ns), &cm, ctx).await?;
    }
    if valid.engine == EnsembleEngine::Zookeeper {
        let secret_name = zookeeper::admin_secret_name(&valid.name);
        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
        let exists = match &ctx.stores.secrets {
            Some(s) => s.get(&ObjectRef::new(&secret_name).within(ns)).is_some(),
            // No Secret cache (no kind references Secrets): ask.
            None => api.get_metadata_opt(&secret_name).await?.is_some(),
        };
        if !exists {
            let password = random_password()?;
            let digest =
                tessera_clients::zookeeper::session::super_digest(zookeeper::SUPER_USER, &password);
            let secret = Secret {
                metadata: meta(valid, &secret_name, &owner),
                data: Some(
                    [
                        (zookeeper::ADMIN_PASSWORD_KEY, password),
                        (zookeeper::ADMIN_DIGEST_KEY, digest),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
                    .collect(),
                ),
                ..Secret::default()
            };
            create(&api, &secret, ctx).await?;
        }
    }
    Ok(())
}

/// The Ensemble as owner, not controller (see the module's comment).
fn owner(ens: &Ensemble) -> Result<OwnerReference> {
    let mut owner = ens
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    owner.controller = None;
    owner.block_owner_deletion = None;
    Ok(owner)
}

fn meta(valid: &ValidEnsemble, name: &str, owner: &OwnerReference) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(valid.namespace.clone()),
        // Our labels: the ConfigMap cache (and `kubectl get -l`) sees them.
        labels: Some(identity(valid.engine, &valid.name).labels()),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// Creates `obj`; one that exists already (the cache was behind) is left
/// as it is.
async fn create<K>(api: &Api<K>, obj: &K, ctx: &Context) -> Result<()>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => {
            ctx.metrics.write("ensemble", "create", &K::plural(&()));
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// 32 random bytes as 64 hex digits, from the operating system's CSPRNG.
fn random_password() -> Result<String> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_and_differ() {
        let a = random_password().unwrap();
        let b = random_password().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}

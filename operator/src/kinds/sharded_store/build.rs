//! `build`: a validated ShardedStore and the operator's context in, every
//! desired child out. Pure: no API calls, no clock, no randomness.
//!
//! One StatefulSet and one PodDisruptionBudget per shard (each shard is a
//! component with its own selector), one headless Service over every shard
//! so that each pod has a stable DNS name before it is ready, and for Redis
//! one ConfigMap with `redis.conf`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, EnvVar, KeyToPath, SecretVolumeSource, Service, ServicePort, ServiceSpec, Volume,
    VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use tessera_api::StoreEngine;

use super::validate::ValidStore;
use super::{memcached, redis};
use crate::kinds::shared::{self, Identity, LABEL_INSTANCE, LABEL_NAME, StatefulSetParts};
use crate::reconcile::child::{BuildContext, Child, Desired, fnv1a};

pub const CONFIG_MOUNT: &str = "/etc/tessera";
/// Where the Redis password Secret is mounted, in every container that
/// talks to Redis; the file is `password` whatever the Secret's key.
pub const SECRET_MOUNT: &str = "/var/run/secrets/tessera/redis";
const SECRET_VOLUME: &str = "redis-auth";

/// The stable name of shard `index` on the hash ring. It does not depend on
/// the resource's name or on pods, so keys never move when a primary does.
pub fn ring_name(index: i32) -> String {
    format!("shard-{index}")
}

/// The component (and `app.kubernetes.io/component` label) of shard `index`.
pub fn identity(engine: StoreEngine, name: &str, index: i32) -> Identity {
    Identity::new(engine.as_str(), name, &ring_name(index))
}

pub fn statefulset_name(name: &str, index: i32) -> String {
    format!("{name}-{index}")
}

pub fn headless_name(name: &str) -> String {
    format!("{name}-headless")
}

pub fn configmap_name(name: &str) -> String {
    format!("{name}-config")
}

/// Pod `ordinal` of shard `index`.
pub fn pod_name(name: &str, index: i32, ordinal: i32) -> String {
    format!("{}-{ordinal}", statefulset_name(name, index))
}

/// The stable DNS name of a pod through the headless Service; it resolves
/// before the pod is ready (`publishNotReadyAddresses`), and Redis resolves
/// it again on every reconnect, so replicas follow a primary that moved.
pub fn pod_host(name: &str, namespace: &str, pod: &str) -> String {
    format!("{pod}.{}.{namespace}.svc", headless_name(name))
}

/// What the pods of one shard need to know.
pub struct Shard {
    pub auth: bool,
}

impl Shard {
    /// The Secret's mount, for every container that talks to Redis.
    pub fn secret_mount(&self) -> Option<VolumeMount> {
        self.auth.then(|| VolumeMount {
            name: SECRET_VOLUME.into(),
            mount_path: SECRET_MOUNT.into(),
            read_only: Some(true),
            ..Default::default()
        })
    }
}

pub fn build(store: &ValidStore, ctx: &BuildContext) -> Desired {
    let name = &store.name;
    let namespace = &store.namespace;
    let meta = |child_name: String, labels: BTreeMap<String, String>| ObjectMeta {
        name: Some(child_name),
        namespace: Some(namespace.clone()),
        labels: Some(labels),
        ..Default::default()
    };
    // The store-wide children carry shard 0's labels minus the component.
    let mut store_labels = identity(store.engine, name, 0).labels();
    store_labels.remove(shared::LABEL_COMPONENT);
    let store_selector = BTreeMap::from([
        (LABEL_NAME.to_string(), store.engine.as_str().to_string()),
        (LABEL_INSTANCE.to_string(), name.clone()),
    ]);

    let mut children = Vec::new();
    let config_data = match store.engine {
        StoreEngine::Redis => BTreeMap::from([(
            "redis.conf".to_string(),
            redis::redis_conf(namespace, name, &store.config),
        )]),
        StoreEngine::Memcached => BTreeMap::new(),
    };
    // The pods roll when the configuration, the memcached options or the
    // password (its Secret's resourceVersion) change.
    let checksum = fnv1a(
        serde_json::to_string(&(
            &config_data,
            &store.config,
            store.auth.as_ref().map(|a| &a.version),
        ))
        .unwrap_or_default()
        .as_bytes(),
    );
    if store.engine == StoreEngine::Redis {
        children.push(Child::ConfigMap(ConfigMap {
            metadata: meta(configmap_name(name), store_labels.clone()),
            data: Some(config_data),
            ..Default::default()
        }));
    }

    let (port_name, port) = client_port(store.engine);
    children.push(Child::Service(Service {
        metadata: meta(headless_name(name), store_labels.clone()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            // Replicas must resolve their primary, and the operator place
            // pods, before any of them is ready: pods are unready until
            // placed.
            publish_not_ready_addresses: Some(true),
            selector: Some(store_selector),
            ports: Some(vec![ServicePort {
                name: Some(port_name.into()),
                port,
                target_port: Some(IntOrString::String(port_name.into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }));

    for index in 0..store.shards {
        let id = identity(store.engine, name, index);
        let sts_name = statefulset_name(name, index);
        children.push(Child::PodDisruptionBudget(PodDisruptionBudget {
            metadata: meta(sts_name.clone(), id.labels()),
            spec: Some(PodDisruptionBudgetSpec {
                // One pod of a shard at a time: with replicas, the operator
                // fails over to another; without, the shard is briefly down
                // rather than blocking node drains forever.
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(id.label_selector()),
                ..Default::default()
            }),
            ..Default::default()
        }));
        children.push(Child::StatefulSet(statefulset(
            store,
            ctx,
            &id,
            &checksum,
            meta(sts_name, id.labels()),
        )));
    }
    Desired { children }
}

fn client_port(engine: StoreEngine) -> (&'static str, i32) {
    match engine {
        StoreEngine::Redis => ("redis", redis::PORT),
        StoreEngine::Memcached => ("memcached", memcached::PORT),
    }
}

fn statefulset(
    store: &ValidStore,
    ctx: &BuildContext,
    id: &Identity,
    checksum: &str,
    metadata: ObjectMeta,
) -> StatefulSet {
    let shard = Shard {
        auth: store.auth.is_some(),
    };
    let (engine_container, mut volumes, uid) = match store.engine {
        StoreEngine::Redis => {
            let (c, v) = redis::container(&store.image, &shard);
            (c, v, redis::UID)
        }
        StoreEngine::Memcached => (
            memcached::container(&store.image, &store.config),
            vec![],
            memcached::UID,
        ),
    };
    let mut engine_container = engine_container;
    engine_container.resources = store.pod.resources.clone();
    let (_, port) = client_port(store.engine);
    let mut helpers = shared::helpers(
        &ctx.tessera_image,
        store.engine.as_str(),
        port,
        &[],
        store.pod.adapter,
    );
    if let Some(auth) = &store.auth {
        // One variable read by the sidecar and the adapter alike.
        for h in &mut helpers {
            h.env.get_or_insert_with(Vec::new).push(EnvVar {
                name: "TESSERA_REDIS_PASSWORD_FILE".into(),
                value: Some(format!("{SECRET_MOUNT}/password")),
                ..Default::default()
            });
            h.volume_mounts
                .get_or_insert_with(Vec::new)
                .extend(shard.secret_mount());
        }
        volumes.push(Volume {
            name: SECRET_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(auth.secret.clone()),
                items: Some(vec![KeyToPath {
                    key: auth.key.clone(),
                    path: "password".into(),
                    ..Default::default()
                }]),
                // Group-readable: every container runs as the pod's user, with
                // `fsGroup` owning the file.
                default_mode: Some(0o440),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    if store.engine == StoreEngine::Redis {
        volumes.push(shared::config_volume(&configmap_name(&store.name)));
    }
    let mut containers = vec![engine_container];
    containers.extend(helpers);

    let mut sts = shared::statefulset(StatefulSetParts {
        metadata,
        id,
        replicas: store.members,
        service_name: headless_name(&store.name),
        containers,
        volumes,
        uid,
        checksum,
        pod: &store.pod,
    });
    if store.engine == StoreEngine::Memcached {
        // A cache keeps nothing on disk: no claim, so no volume to bind or
        // to leave behind.
        if let Some(spec) = sts.spec.as_mut() {
            spec.volume_claim_templates = None;
        }
    }
    sts
}

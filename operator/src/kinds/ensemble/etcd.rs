//! etcd: the cluster flags and the engine container.
//!
//! Flags shared by every member live in the ConfigMap as `ETCD_*`
//! environment variables (etcd reads every flag from its variable), so that
//! the ConfigMap is the whole configuration. The three per-member flags need
//! the pod's name and are container arguments, which Kubernetes expands.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, Container, EnvFromSource, EnvVar, EnvVarSource, ObjectFieldSelector,
    Volume, VolumeMount,
};

use super::build::{DATA_VOLUME, Members};
use super::membership;

const DATA_MOUNT: &str = "/var/lib/etcd";
use crate::kinds::shared::{container_security, engine_liveness, engine_readiness, port};

pub const CLIENT_PORT: i32 = 2379;
pub const PEER_PORT: i32 = 2380;
/// The `nonroot` user of distroless images such as etcd's.
pub const UID: i64 = tessera_api::images::ETCD.uid;
const DATA_DIR: &str = "/var/lib/etcd/data";

/// Settings the operator picks but a user may override through `config`.
fn defaults() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("auto-compaction-mode", "periodic"),
        ("auto-compaction-retention", "1h"),
        ("snapshot-count", "10000"),
    ])
}

/// The shared flags, by flag name without the leading `--`.
pub fn flags(members: &Members, user: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut flags: BTreeMap<String, String> = defaults()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    flags.extend(user.iter().map(|(k, v)| (k.clone(), v.clone())));
    // `initial-cluster` and `initial-cluster-state` are the membership
    // ConfigMap's (see [`super::membership`]): they change with each member
    // added, and must not restart the others.
    flags.extend([
        ("data-dir".to_string(), DATA_DIR.to_string()),
        (
            "initial-cluster-token".into(),
            format!("{}-{}", members.namespace, members.name),
        ),
        (
            "listen-peer-urls".into(),
            format!("http://0.0.0.0:{PEER_PORT}"),
        ),
        (
            "listen-client-urls".into(),
            format!("http://0.0.0.0:{CLIENT_PORT}"),
        ),
    ]);
    flags
}

/// The flags as the environment variables etcd reads them from:
/// `initial-cluster` becomes `ETCD_INITIAL_CLUSTER`.
pub fn env_vars(flags: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    flags
        .iter()
        .map(|(k, v)| {
            let name = format!("ETCD_{}", k.to_ascii_uppercase().replace(['-', '.'], "_"));
            (name, v.clone())
        })
        .collect()
}

/// The per-member flags, with `$(POD_NAME)` expanded by the kubelet.
pub fn member_args(members: &Members) -> Vec<String> {
    let host = format!(
        "$(POD_NAME).{}-headless.{}.svc",
        members.name, members.namespace
    );
    vec![
        "--name=$(POD_NAME)".into(),
        format!("--initial-advertise-peer-urls=http://{host}:{PEER_PORT}"),
        format!("--advertise-client-urls=http://{host}:{CLIENT_PORT}"),
    ]
}

/// The engine container. etcd writes only its data dir, so the root
/// filesystem is read-only without scratch volumes.
pub fn container(image: &str, members: &Members, configmap: &str) -> (Container, Vec<Volume>) {
    let container = Container {
        name: "etcd".into(),
        image: Some(image.into()),
        command: Some(vec!["/usr/local/bin/etcd".into()]),
        args: Some(member_args(members)),
        env: Some(vec![EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        env_from: Some(
            [
                configmap.to_string(),
                membership::configmap_name(members.name),
            ]
            .into_iter()
            .map(|name| EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name,
                    optional: Some(false),
                }),
                ..Default::default()
            })
            .collect(),
        ),
        ports: Some(vec![port("client", CLIENT_PORT), port("peer", PEER_PORT)]),
        readiness_probe: Some(engine_readiness()),
        liveness_probe: Some(engine_liveness()),
        security_context: Some(container_security(true)),
        volume_mounts: Some(vec![VolumeMount {
            name: DATA_VOLUME.into(),
            mount_path: DATA_MOUNT.into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    (container, vec![])
}

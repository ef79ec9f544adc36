//! `build`: a validated Ensemble and the operator's context in, every
//! desired child out. Pure: no API calls, no clock, no randomness.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec,
    PodTemplateSpec, Service, ServicePort, ServiceSpec, Volume, VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::ObjectMeta;
use tessera_api::{Ensemble, EnsembleEngine};

use super::{etcd, zookeeper};
use crate::kinds::shared::{self, CONFIG_CHECKSUM, Identity};
use crate::reconcile::child::{BuildContext, Child, Desired, fnv1a};

pub const DATA_VOLUME: &str = "data";
pub const CONFIG_MOUNT: &str = "/etc/tessera";
pub const COMPONENT: &str = "server";

/// The members of an ensemble, for the generated configuration.
#[derive(Clone, Debug)]
pub struct Members<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub replicas: i32,
}

impl Members<'_> {
    /// The stable DNS name of member `ordinal`, through the headless Service.
    pub fn host(&self, ordinal: i32) -> String {
        format!(
            "{}-{ordinal}.{}-headless.{}.svc",
            self.name, self.name, self.namespace
        )
    }
}

pub fn headless_name(name: &str) -> String {
    format!("{name}-headless")
}

pub fn configmap_name(name: &str) -> String {
    format!("{name}-config")
}

pub fn identity(ens: &Ensemble) -> Identity<'_> {
    Identity {
        engine: ens.spec.engine.as_str(),
        instance: ens.metadata.name.as_deref().unwrap_or_default(),
        component: COMPONENT,
    }
}

/// The children of an Ensemble: ConfigMap, headless and client Services,
/// PodDisruptionBudget and StatefulSet, all named after it.
pub fn build(ens: &Ensemble, ctx: &BuildContext) -> Desired {
    let name = ens.name_any();
    let namespace = ens.namespace().unwrap_or_default();
    let spec = &ens.spec;
    let engine = spec.engine;
    let id = identity(ens);
    let members = Members {
        name: &name,
        namespace: &namespace,
        replicas: spec.replicas,
    };
    let meta = |child_name: String| ObjectMeta {
        name: Some(child_name),
        namespace: Some(namespace.clone()),
        labels: Some(id.labels()),
        ..Default::default()
    };

    let (config_data, client_port, peer_ports) = match engine {
        EnsembleEngine::Zookeeper => (
            BTreeMap::from([(
                "zoo.cfg".to_string(),
                zookeeper::zoo_cfg(&members, &spec.common.config),
            )]),
            zookeeper::CLIENT_PORT,
            vec![
                ("peer", zookeeper::PEER_PORT),
                ("election", zookeeper::ELECTION_PORT),
            ],
        ),
        EnsembleEngine::Etcd => (
            etcd::env_vars(&etcd::flags(&members, &spec.common.config)),
            etcd::CLIENT_PORT,
            vec![("peer", etcd::PEER_PORT)],
        ),
    };
    let checksum = fnv1a(
        serde_json::to_string(&config_data)
            .unwrap_or_default()
            .as_bytes(),
    );

    let configmap = ConfigMap {
        metadata: meta(configmap_name(&name)),
        data: Some(config_data),
        ..Default::default()
    };

    let service_port = |port_name: &str, port: i32| ServicePort {
        name: Some(port_name.into()),
        port,
        target_port: Some(IntOrString::String(port_name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let mut headless_ports = vec![service_port("client", client_port)];
    headless_ports.extend(peer_ports.iter().map(|(n, p)| service_port(n, *p)));
    let headless = Service {
        metadata: meta(headless_name(&name)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            // Members must resolve each other before they are ready: the
            // quorum forms only once they talk.
            publish_not_ready_addresses: Some(true),
            selector: Some(id.selector()),
            ports: Some(headless_ports),
            ..Default::default()
        }),
        ..Default::default()
    };
    let client = Service {
        metadata: meta(name.clone()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(id.selector()),
            ports: Some(vec![service_port("client", client_port)]),
            ..Default::default()
        }),
        ..Default::default()
    };

    let pdb = PodDisruptionBudget {
        metadata: meta(name.clone()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(id.label_selector()),
            ..Default::default()
        }),
        ..Default::default()
    };

    let statefulset = statefulset(ens, ctx, &members, &id, &checksum, meta(name.clone()));

    Desired {
        children: vec![
            Child::ConfigMap(configmap),
            Child::Service(headless),
            Child::Service(client),
            Child::PodDisruptionBudget(pdb),
            Child::StatefulSet(statefulset),
        ],
    }
}

/// The sidecar's engine-specific flags: a ZooKeeper member of a larger
/// ensemble that reports `standalone` has lost its peers' configuration and
/// must not count as ready.
fn sidecar_args(engine: EnsembleEngine, members: &Members) -> Vec<String> {
    match engine {
        EnsembleEngine::Zookeeper => {
            vec!["--zookeeper-members".into(), members.replicas.to_string()]
        }
        EnsembleEngine::Etcd => vec![],
    }
}

fn statefulset(
    ens: &Ensemble,
    ctx: &BuildContext,
    members: &Members,
    id: &Identity,
    checksum: &str,
    metadata: ObjectMeta,
) -> StatefulSet {
    let spec = &ens.spec;
    let common = &spec.common;
    let engine = spec.engine;
    let version = common
        .version
        .clone()
        .unwrap_or_else(|| engine.default_version().to_string());
    let image = common
        .image
        .clone()
        .unwrap_or_else(|| ctx.engine_images.resolve(engine.contract(), &version));
    let cm = configmap_name(members.name);

    let (mut engine_container, scratch_volumes, uid, client_port) = match engine {
        EnsembleEngine::Zookeeper => {
            let (c, v) = zookeeper::container(&image);
            (c, v, zookeeper::UID, zookeeper::CLIENT_PORT)
        }
        EnsembleEngine::Etcd => {
            let (c, v) = etcd::container(&image, members, &cm);
            (c, v, etcd::UID, etcd::CLIENT_PORT)
        }
    };
    engine_container.resources = common.resources.clone();

    let mut containers = vec![
        engine_container,
        shared::sidecar(
            &ctx.tessera_image,
            engine.as_str(),
            client_port,
            &sidecar_args(engine, members),
        ),
    ];
    if common.monitoring.enabled {
        containers.push(shared::adapter(
            &ctx.tessera_image,
            engine.as_str(),
            client_port,
        ));
    }

    let mut volumes = vec![Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: cm,
            ..Default::default()
        }),
        ..Default::default()
    }];
    volumes.extend(scratch_volumes);

    let tpl = &common.pod_template;
    let mut pod_labels = tpl.labels.clone();
    // Ours last: validation refuses app.kubernetes.io/ user labels, and the
    // selector must match whatever the user adds.
    pod_labels.extend(id.labels());
    let mut pod_annotations = tpl.annotations.clone();
    pod_annotations.insert(CONFIG_CHECKSUM.into(), checksum.into());

    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.into()),
            labels: Some(id.labels()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: common.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    common.storage.size.clone(),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };

    StatefulSet {
        metadata,
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.replicas),
            service_name: Some(headless_name(members.name)),
            selector: id.label_selector(),
            // Members start together: a quorum needs a majority up at once.
            pod_management_policy: Some("Parallel".into()),
            // Pods are replaced by the operator in a quorum-safe order, never
            // by the StatefulSet controller.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..Default::default()
            }),
            volume_claim_templates: Some(vec![claim]),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers,
                    volumes: Some(volumes),
                    security_context: Some(shared::pod_security(uid)),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(30),
                    node_selector: (!tpl.node_selector.is_empty())
                        .then(|| tpl.node_selector.clone()),
                    tolerations: (!tpl.tolerations.is_empty()).then(|| tpl.tolerations.clone()),
                    affinity: Some(
                        tpl.affinity
                            .clone()
                            .unwrap_or_else(|| id.default_affinity()),
                    ),
                    topology_spread_constraints: (!tpl.topology_spread_constraints.is_empty())
                        .then(|| tpl.topology_spread_constraints.clone()),
                    priority_class_name: tpl.priority_class_name.clone(),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

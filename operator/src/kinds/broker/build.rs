//! `build`: a validated Broker and the operator's context in, every desired
//! child out. Pure: no API calls, no clock, no randomness.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, EnvVarSource, ObjectFieldSelector, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;

use super::kafka::{
    self, CONFIG_MOUNT, CONTROLLER_PORT, DATA_MOUNT, Names, REPLICATION_PORT, RUN_DIR, Role,
};
use super::validate::{Quorum, ValidBroker};
use crate::kinds::shared::{
    self, Identity, LABEL_INSTANCE, LABEL_NAME, StatefulSetParts, container_security,
    engine_liveness, engine_mounts, engine_readiness, engine_startup, port, scratch,
};
use crate::reconcile::child::{BuildContext, Child, Desired, fnv1a};

pub const ENGINE: &str = "kafka";
pub const BROKER_COMPONENT: &str = "broker";
pub const CONTROLLER_COMPONENT: &str = "controller";
/// The `appuser` of the official image.
pub const UID: i64 = tessera_api::images::KAFKA.uid;
/// The label the StatefulSet controller puts on each pod: its ordinal,
/// which is a broker's node id.
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

pub fn identity(name: &str, component: &str) -> Identity {
    Identity::new(ENGINE, name, component)
}

pub fn configmap_name(name: &str) -> String {
    format!("{name}-config")
}

/// The components of a Broker, brokers first (the `scale` subresource's).
pub fn components(b: &ValidBroker) -> Vec<&'static str> {
    match b.quorum {
        Quorum::Dedicated { .. } => vec![BROKER_COMPONENT, CONTROLLER_COMPONENT],
        Quorum::Combined { .. } => vec![BROKER_COMPONENT],
    }
}

/// The children of a Broker: one ConfigMap with every role's file, one
/// headless Service for the DNS names of all pods, the bootstrap Service
/// for clients (brokers only), and per component a PodDisruptionBudget and
/// a StatefulSet.
pub fn build(b: &ValidBroker, ctx: &BuildContext) -> Desired {
    let names = Names {
        name: &b.name,
        namespace: &b.namespace,
    };
    let broker_id = identity(&b.name, BROKER_COMPONENT);
    let meta = |child_name: String, id: &Identity| ObjectMeta {
        name: Some(child_name),
        namespace: Some(b.namespace.clone()),
        labels: Some(id.labels()),
        ..Default::default()
    };

    let roles: Vec<Role> = match b.quorum {
        Quorum::Dedicated { .. } => vec![Role::Controller, Role::Broker],
        Quorum::Combined { .. } => vec![Role::Broker, Role::Combined],
    };
    let mut data: BTreeMap<String, String> = roles
        .iter()
        .map(|r| (r.file().to_string(), kafka::properties(b, *r)))
        .collect();
    data.insert("log4j.properties".into(), kafka::log4j());

    let mut children = vec![Child::ConfigMap(ConfigMap {
        metadata: meta(configmap_name(&b.name), &broker_id),
        data: Some(data.clone()),
        ..Default::default()
    })];

    let mut client_ports: Vec<ServicePort> = b
        .listeners
        .iter()
        .map(|l| service_port(&l.name.to_lowercase(), l.port))
        .collect();
    let mut headless_ports = vec![
        service_port("replication", REPLICATION_PORT),
        service_port("controller", CONTROLLER_PORT),
    ];
    headless_ports.append(&mut client_ports.clone());
    // Every pod of the instance, controllers included: the voters and the
    // advertised listeners are names under this one Service.
    let instance_selector = BTreeMap::from([
        (LABEL_NAME.to_string(), ENGINE.to_string()),
        (LABEL_INSTANCE.to_string(), b.name.clone()),
    ]);
    children.push(Child::Service(Service {
        metadata: meta(names.headless(), &broker_id),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            // Controllers must resolve each other before they are ready:
            // the quorum forms only once they talk.
            publish_not_ready_addresses: Some(true),
            selector: Some(instance_selector),
            ports: Some(headless_ports),
            ..Default::default()
        }),
        ..Default::default()
    }));
    children.push(Child::Service(Service {
        metadata: meta(b.name.clone(), &broker_id),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(broker_id.selector()),
            ports: Some(std::mem::take(&mut client_ports)),
            ..Default::default()
        }),
        ..Default::default()
    }));

    for component in components(b) {
        let id = identity(&b.name, component);
        children.push(Child::PodDisruptionBudget(PodDisruptionBudget {
            metadata: meta(names.statefulset(component), &id),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(id.label_selector()),
                ..Default::default()
            }),
            ..Default::default()
        }));
        // A component rolls only when a file it reads changes.
        let files: BTreeMap<&String, &String> = data
            .iter()
            .filter(|(k, _)| reads(b.quorum, component, k))
            .collect();
        let checksum = fnv1a(serde_json::to_string(&files).unwrap_or_default().as_bytes());
        let sts = statefulset(
            b,
            ctx,
            &id,
            component,
            &checksum,
            meta(names.statefulset(component), &id),
        );
        children.push(Child::StatefulSet(sts));
    }
    Desired { children }
}

/// Whether the pods of `component` read the ConfigMap key `file`.
fn reads(quorum: Quorum, component: &str, file: &str) -> bool {
    let role_files: &[Role] = match (quorum, component) {
        (_, CONTROLLER_COMPONENT) => &[Role::Controller],
        (Quorum::Dedicated { .. }, _) => &[Role::Broker],
        (Quorum::Combined { .. }, _) => &[Role::Broker, Role::Combined],
    };
    file == "log4j.properties" || role_files.iter().any(|r| r.file() == file)
}

fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

/// The heap: half the memory limit when there is one, else a fixed 512 MiB
/// (the JVM would otherwise size it from the node's memory).
fn heap_opts(b: &ValidBroker) -> &'static str {
    if b.memory_limit {
        "-XX:MaxRAMPercentage=50.0"
    } else {
        "-Xmx512m"
    }
}

fn statefulset(
    b: &ValidBroker,
    ctx: &BuildContext,
    id: &Identity,
    component: &str,
    checksum: &str,
    metadata: ObjectMeta,
) -> StatefulSet {
    let names = Names {
        name: &b.name,
        namespace: &b.namespace,
    };
    let controller = component == CONTROLLER_COMPONENT;
    let (replicas, probe_port) = if controller {
        (b.quorum.controllers(), CONTROLLER_PORT)
    } else {
        (b.broker_statefulset_replicas, REPLICATION_PORT)
    };
    let (run_vol, run_mount) = scratch("kafka-run", RUN_DIR);
    let (tmp_vol, tmp_mount) = scratch("tmp", "/tmp");
    let mut ports = vec![port("controller", CONTROLLER_PORT)];
    if !controller {
        ports = vec![port("replication", REPLICATION_PORT)];
        if matches!(b.quorum, Quorum::Combined { .. }) {
            ports.push(port("controller", CONTROLLER_PORT));
        }
        ports.extend(
            b.listeners
                .iter()
                .map(|l| port(&l.name.to_lowercase(), l.port)),
        );
    }
    let engine = Container {
        name: ENGINE.into(),
        image: Some(b.image.clone()),
        command: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            kafka::start_script(b, component),
        ]),
        env: Some(vec![
            env("TESSERA_KAFKA_CLUSTER_ID", b.cluster_id.as_str()),
            env("KAFKA_HEAP_OPTS", heap_opts(b)),
        ]),
        ports: Some(ports),
        resources: b.pod.resources.clone(),
        startup_probe: Some(engine_startup()),
        readiness_probe: Some(engine_readiness()),
        liveness_probe: Some(engine_liveness()),
        // Kafka writes only to its volume, the run directory and /tmp
        // (native libraries of the compression codecs).
        security_context: Some(container_security(true)),
        volume_mounts: Some(
            [
                engine_mounts(DATA_MOUNT, CONFIG_MOUNT),
                vec![run_mount, tmp_mount],
            ]
            .concat(),
        ),
        ..Default::default()
    };
    let sidecar_args: Vec<String> = if controller {
        vec!["--kafka-role".into(), "controller".into()]
    } else {
        Vec::new()
    };
    let mut helpers = shared::helpers(
        &ctx.tessera_image,
        ENGINE,
        probe_port,
        &sidecar_args,
        b.pod.adapter,
    );
    if !controller {
        // A broker's node id is its ordinal: the sidecar is ready only when
        // the cluster lists this very broker, not any broker on the port.
        helpers[0].env = Some(vec![EnvVar {
            name: "TESSERA_SIDECAR_KAFKA_NODE_ID".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: format!("metadata.labels['{POD_INDEX_LABEL}']"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
    }
    let mut containers = vec![engine];
    containers.extend(helpers);
    let volumes = vec![
        shared::config_volume(&configmap_name(&b.name)),
        run_vol,
        tmp_vol,
    ];
    shared::statefulset(StatefulSetParts {
        metadata,
        id,
        replicas,
        service_name: names.headless(),
        containers,
        volumes,
        uid: UID,
        checksum,
        pod: &b.pod,
    })
}

//! `build`: a validated Ensemble and the operator's context in, every
//! desired child out. Pure: no API calls, no clock, no randomness.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use tessera_api::EnsembleEngine;

use super::validate::ValidEnsemble;
use super::{etcd, zookeeper};
use crate::kinds::shared::{self, Identity, StatefulSetParts};
use crate::reconcile::child::{BuildContext, Child, Desired, fnv1a};

pub use crate::kinds::shared::DATA_VOLUME;
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

/// The one component of an Ensemble: every member is a "server".
pub fn identity(engine: EnsembleEngine, name: &str) -> Identity {
    Identity::new(engine.as_str(), name, COMPONENT)
}

/// The children of an Ensemble: ConfigMap, headless and client Services,
/// PodDisruptionBudget and StatefulSet, all named after it.
pub fn build(ens: &ValidEnsemble, ctx: &BuildContext) -> Desired {
    let name = ens.name.clone();
    let namespace = ens.namespace.clone();
    let engine = ens.engine;
    let id = identity(engine, &name);
    let members = Members {
        name: &name,
        namespace: &namespace,
        replicas: ens.statefulset_replicas,
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
                zookeeper::zoo_cfg(&members, &ens.config),
            )]),
            zookeeper::CLIENT_PORT,
            vec![
                ("peer", zookeeper::PEER_PORT),
                ("election", zookeeper::ELECTION_PORT),
            ],
        ),
        EnsembleEngine::Etcd => (
            etcd::env_vars(&etcd::flags(&members, &ens.config)),
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

fn statefulset(
    ens: &ValidEnsemble,
    ctx: &BuildContext,
    members: &Members,
    id: &Identity,
    checksum: &str,
    metadata: ObjectMeta,
) -> k8s_openapi::api::apps::v1::StatefulSet {
    let engine = ens.engine;
    let cm = configmap_name(members.name);
    let (mut engine_container, scratch_volumes, uid, client_port) = match engine {
        EnsembleEngine::Zookeeper => {
            let (c, v) = zookeeper::container(&ens.image, members.name);
            (c, v, zookeeper::UID, zookeeper::CLIENT_PORT)
        }
        EnsembleEngine::Etcd => {
            let (c, v) = etcd::container(&ens.image, members, &cm);
            (c, v, etcd::UID, etcd::CLIENT_PORT)
        }
    };
    engine_container.resources = ens.pod.resources.clone();
    let mut containers = vec![engine_container];
    containers.extend(shared::helpers(
        &ctx.tessera_image,
        engine.as_str(),
        client_port,
        // Nothing engine-specific: ZooKeeper never runs standalone here
        // (standaloneEnabled=false), and a flag that counted members would
        // put the ensemble's size in the pod template, so that a scale
        // would restart every member.
        &[],
        ens.pod.adapter,
    ));

    let mut volumes = vec![shared::config_volume(&cm)];
    volumes.extend(scratch_volumes);

    shared::statefulset(StatefulSetParts {
        metadata,
        id,
        replicas: members.replicas,
        service_name: headless_name(members.name),
        containers,
        volumes,
        uid,
        checksum,
        pod: &ens.pod,
    })
}

//! Pieces of the children shared by every kind: labels, the StatefulSet
//! with its pod template and claim, security contexts, and the sidecar and
//! adapter containers. A kind adds only its engine container and
//! configuration.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecurityContext, Volume, VolumeMount, VolumeResourceRequirements,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use tessera_api::common::{Monitoring, PodMonitor, PodTemplate, Storage};
use tessera_api::images::ImageContract;
use tessera_api::{CommonSpec, Invalid};

use crate::reconcile::child::BuildContext;

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "tessera-operator";

/// Pod template annotation holding a checksum of the generated configuration,
/// so that a configuration change is a template change.
pub const CONFIG_CHECKSUM: &str = "tessera.dev/config-checksum";

/// The volume (and claim template) holding each member's data.
pub const DATA_VOLUME: &str = "data";

/// Port of the sidecar's `/readyz` and `/livez`.
pub const SIDECAR_PORT: i32 = 8095;
/// Port of the adapter's `/metrics`.
pub const ADAPTER_PORT: i32 = 9121;

/// Who a child belongs to, for its labels. A kind has one identity per
/// component (Ensemble: "server"; Broker: "controller" and "broker"), and
/// each component's pods, claims and StatefulSet are found by its selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The engine, e.g. "zookeeper": `app.kubernetes.io/name`.
    pub engine: String,
    /// The resource's name: `app.kubernetes.io/instance`.
    pub instance: String,
    /// The role of the pods, e.g. "server": `app.kubernetes.io/component`.
    pub component: String,
}

impl Identity {
    pub fn new(engine: &str, instance: &str, component: &str) -> Identity {
        Identity {
            engine: engine.into(),
            instance: instance.into(),
            component: component.into(),
        }
    }

    /// The recommended labels, on every child.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut l = self.selector();
        l.insert(LABEL_PART_OF.into(), "tessera".into());
        l.insert(LABEL_MANAGED_BY.into(), MANAGER.into());
        l
    }

    /// The stable subset used in selectors: selectors of StatefulSets are
    /// immutable, so they must never include anything that may change.
    pub fn selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_string(), self.engine.clone()),
            (LABEL_INSTANCE.to_string(), self.instance.clone()),
            (LABEL_COMPONENT.to_string(), self.component.clone()),
        ])
    }

    pub fn label_selector(&self) -> LabelSelector {
        LabelSelector {
            match_labels: Some(self.selector()),
            ..Default::default()
        }
    }

    /// The selector in string form, for `status.selector` and `kubectl -l`.
    pub fn selector_string(&self) -> String {
        self.selector()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Prefer spreading the members over nodes; a hard rule would leave
    /// members Pending on small clusters.
    pub fn default_affinity(&self) -> Affinity {
        Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        weight: 100,
                        pod_affinity_term: PodAffinityTerm {
                            label_selector: Some(self.label_selector()),
                            topology_key: "kubernetes.io/hostname".into(),
                            ..Default::default()
                        },
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// The pod settings of a validated spec, shared by every component of a
/// resource: destructured from `CommonSpec` by each kind's `validate`.
#[derive(Clone, Debug, PartialEq)]
pub struct PodSettings {
    /// Requests and limits of the engine container.
    pub resources: Option<ResourceRequirements>,
    pub storage: ClaimSettings,
    pub template: PodTemplate,
    /// Whether the adapter container runs next to the engine.
    pub adapter: bool,
}

/// What every kind takes from `CommonSpec`, defaults resolved: destructured
/// here once, without `..`, so that a field added to it is a compile error
/// until it is used or refused.
#[derive(Clone, Debug, PartialEq)]
pub struct CommonSettings {
    /// `spec.version`, or the engine's default.
    pub version: String,
    /// `spec.image`, or the engine's image for `spec.version` (or the
    /// engine's default version) through the operator's image mapping.
    pub image: String,
    /// `spec.config`; each kind checks it for keys it owns (`SpecCheck`).
    pub config: BTreeMap<String, String>,
    pub pod: PodSettings,
}

impl CommonSettings {
    pub fn resolve(
        common: &CommonSpec,
        contract: &ImageContract,
        default_version: &str,
        ctx: &BuildContext,
    ) -> Result<CommonSettings, Invalid> {
        let CommonSpec {
            version,
            image,
            resources,
            storage,
            config,
            pod_template,
            monitoring,
            // The runtime reads these: it skips `apply` while paused, and
            // the finalizer follows `storage.deleteClaimsOnDelete`.
            paused: _,
        } = common;
        let Monitoring {
            enabled: adapter,
            pod_monitor,
        } = monitoring;
        refuse_pod_monitor(pod_monitor.as_ref())?;
        let version = version.as_deref().unwrap_or(default_version).to_string();
        let image = image
            .clone()
            .unwrap_or_else(|| ctx.engine_images.resolve(contract, &version));
        Ok(CommonSettings {
            version,
            image,
            config: config.clone(),
            pod: PodSettings {
                resources: resources.clone(),
                storage: ClaimSettings::from_spec(storage),
                template: pod_template.clone(),
                adapter: *adapter,
            },
        })
    }
}

/// The data claim of each member.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimSettings {
    pub size: Quantity,
    pub storage_class_name: Option<String>,
}

impl ClaimSettings {
    /// `deleteClaimsOnDelete` is not a claim setting: the finalizer reads it.
    pub fn from_spec(storage: &Storage) -> ClaimSettings {
        let Storage {
            size,
            storage_class_name,
            delete_claims_on_delete: _,
        } = storage;
        ClaimSettings {
            size: size.clone(),
            storage_class_name: storage_class_name.clone(),
        }
    }
}

/// What differs between the StatefulSets of kinds and components; the rest
/// (claim, security, scheduling, update strategy) is the same for all.
pub struct StatefulSetParts<'a> {
    pub metadata: ObjectMeta,
    pub id: &'a Identity,
    pub replicas: i32,
    /// The headless Service that gives members their DNS names.
    pub service_name: String,
    /// The engine container first, then the sidecar and adapter.
    pub containers: Vec<Container>,
    pub volumes: Vec<Volume>,
    /// The engine image's user.
    pub uid: i64,
    /// Checksum of the generated configuration: a change rolls the pods.
    pub checksum: &'a str,
    pub pod: &'a PodSettings,
}

/// A component's StatefulSet with one data claim per member.
pub fn statefulset(parts: StatefulSetParts) -> StatefulSet {
    let StatefulSetParts {
        metadata,
        id,
        replicas,
        service_name,
        containers,
        volumes,
        uid,
        checksum,
        pod,
    } = parts;
    let tpl = &pod.template;
    let mut pod_labels = tpl.labels.clone();
    // Ours last: validation refuses app.kubernetes.io/ user labels, and the
    // selector must match whatever the user adds.
    pod_labels.extend(id.labels());
    let mut pod_annotations = tpl.annotations.clone();
    pod_annotations.insert(CONFIG_CHECKSUM.into(), checksum.into());

    StatefulSet {
        metadata,
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(service_name),
            selector: id.label_selector(),
            // Members start together: a quorum needs a majority up at once.
            pod_management_policy: Some("Parallel".into()),
            // Pods are replaced by the operator in a quorum-safe order, never
            // by the StatefulSet controller.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..Default::default()
            }),
            volume_claim_templates: Some(vec![claim(id, &pod.storage)]),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers,
                    volumes: Some(volumes),
                    security_context: Some(pod_security(uid)),
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

/// The claim template of a member's data. Its labels are the component's,
/// so that the finalizer finds the claims by the component's selector.
fn claim(id: &Identity, storage: &ClaimSettings) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.into()),
            labels: Some(id.labels()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    storage.size.clone(),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The sidecar, and the adapter when monitoring is on: the helpers every
/// engine container gets.
pub fn helpers(
    image: &str,
    engine: &str,
    target_port: i32,
    sidecar_args: &[String],
    adapter_on: bool,
) -> Vec<Container> {
    let mut out = vec![sidecar(image, engine, target_port, sidecar_args)];
    if adapter_on {
        out.push(adapter(image, engine, target_port));
    }
    out
}

/// `podMonitor` is in the API but the operator creates no PodMonitor yet:
/// asking for one is refused rather than silently ignored.
pub fn refuse_pod_monitor(pod_monitor: Option<&PodMonitor>) -> Result<(), Invalid> {
    match pod_monitor {
        Some(PodMonitor {
            enabled: true,
            interval: _,
            labels: _,
        }) => Err(Invalid::Rule {
            path: "spec.monitoring.podMonitor.enabled".into(),
            message: "PodMonitors are not created by this operator version; \
                      select the pods' `metrics` port with your own PodMonitor"
                .into(),
        }),
        _ => Ok(()),
    }
}

/// Non-root with a fixed uid, and `fsGroup` so that the volume is writable.
pub fn pod_security(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        fs_group_change_policy: Some("OnRootMismatch".into()),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

/// No privilege escalation, every capability dropped, RuntimeDefault seccomp.
pub fn container_security(read_only_root: bool) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        privileged: Some(false),
        read_only_root_filesystem: Some(read_only_root),
        run_as_non_root: Some(true),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..Default::default()
    }
}

/// The mount of the member's data claim.
pub fn data_mount(path: &str) -> VolumeMount {
    VolumeMount {
        name: DATA_VOLUME.into(),
        mount_path: path.into(),
        ..Default::default()
    }
}

/// The generated configuration (the `config` volume), read-only.
pub fn config_mount(path: &str) -> VolumeMount {
    VolumeMount {
        name: "config".into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    }
}

/// The `config` volume: the kind's generated ConfigMap.
pub fn config_volume(configmap: &str) -> Volume {
    Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: configmap.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An emptyDir volume and its mount, for the writable paths of a container
/// whose root filesystem is read-only.
pub fn scratch(name: &str, path: &str) -> (Volume, VolumeMount) {
    (
        Volume {
            name: name.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
        VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            ..Default::default()
        },
    )
}

fn small_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("10m".into())),
            ("memory".to_string(), Quantity("16Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("64Mi".into()),
        )])),
        ..Default::default()
    }
}

pub fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: number,
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// The `tessera-sidecar`: answers the engine container's probes after
/// checking the engine over its own protocol. `extra_args` are the engine's
/// own sidecar flags (e.g. `--zookeeper-members`).
pub fn sidecar(image: &str, engine: &str, target_port: i32, extra_args: &[String]) -> Container {
    let mut c = helper(
        "sidecar",
        image,
        engine,
        target_port,
        ("probe", SIDECAR_PORT),
    );
    c.args
        .get_or_insert_with(Vec::new)
        .extend_from_slice(extra_args);
    c.readiness_probe = Some(http_probe("/livez", SIDECAR_PORT, 3));
    c
}

/// The `tessera-adapter`: the engine's metrics in Prometheus form.
pub fn adapter(image: &str, engine: &str, target_port: i32) -> Container {
    helper(
        "adapter",
        image,
        engine,
        target_port,
        ("metrics", ADAPTER_PORT),
    )
}

/// Our helper binaries share one CLI: `--engine`, `--target`, `--listen`.
/// They run from Tessera's image, whose entrypoint is the operator: the
/// command names the binary.
fn helper(
    name: &str,
    image: &str,
    engine: &str,
    target_port: i32,
    listen: (&str, i32),
) -> Container {
    Container {
        name: name.into(),
        image: Some(image.into()),
        command: Some(vec![format!(
            "{}/tessera-{name}",
            tessera_api::images::TESSERA_BIN_DIR
        )]),
        args: Some(vec![
            "--engine".into(),
            engine.into(),
            "--target".into(),
            format!("127.0.0.1:{target_port}"),
            "--listen".into(),
            format!("0.0.0.0:{}", listen.1),
        ]),
        ports: Some(vec![port(listen.0, listen.1)]),
        resources: Some(small_resources()),
        security_context: Some(container_security(true)),
        ..Default::default()
    }
}

/// The engine container's readiness: the sidecar's protocol check. One
/// failed check is enough to take the member out of its Services (the
/// sidecar already allows for a slow answer with its own timeout), so an
/// engine that stops answering is NotReady within one probe period.
pub fn engine_readiness() -> Probe {
    http_probe("/readyz", SIDECAR_PORT, 1)
}

/// The engine container's liveness: three failed checks in a row restart it.
pub fn engine_liveness() -> Probe {
    http_probe("/livez", SIDECAR_PORT, 3)
}

/// An HTTP probe of the sidecar. The port is a number: a named port in a
/// probe only resolves against the probed container's own ports.
fn http_probe(path: &str, port: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(port),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        period_seconds: Some(10),
        timeout_seconds: Some(2),
        failure_threshold: Some(failure_threshold),
        ..Default::default()
    }
}

/// The engine container's startup probe: the sidecar's liveness check, with
/// five minutes to pass once. Until it does, liveness is not checked, so a
/// JVM that takes long to start (Kafka formatting its storage, replaying
/// its log) is not restarted for it.
pub fn engine_startup() -> Probe {
    let mut p = http_probe("/livez", SIDECAR_PORT, 30);
    p.period_seconds = Some(10);
    p
}

/// The engine container's mounts of the member's data and of the
/// configuration (read-only).
pub fn engine_mounts(data: &str, config: &str) -> Vec<VolumeMount> {
    vec![data_mount(data), config_mount(config)]
}

//! Pieces of pod specs shared by every kind: labels, security contexts and
//! the sidecar and adapter containers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EmptyDirVolumeSource, HTTPGetAction,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, Probe, ResourceRequirements,
    SeccompProfile, SecurityContext, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "tessera-operator";

/// Pod template annotation holding a checksum of the generated configuration,
/// so that a configuration change is a template change.
pub const CONFIG_CHECKSUM: &str = "tessera.dev/config-checksum";

/// Port of the sidecar's `/readyz` and `/livez`.
pub const SIDECAR_PORT: i32 = 8095;
/// Port of the adapter's `/metrics`.
pub const ADAPTER_PORT: i32 = 9121;

/// Who a child belongs to, for its labels.
#[derive(Clone, Debug)]
pub struct Identity<'a> {
    /// The engine, e.g. "zookeeper": `app.kubernetes.io/name`.
    pub engine: &'a str,
    /// The resource's name: `app.kubernetes.io/instance`.
    pub instance: &'a str,
    /// The role of the pods, e.g. "server": `app.kubernetes.io/component`.
    pub component: &'a str,
}

impl Identity<'_> {
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
            (LABEL_NAME.to_string(), self.engine.to_string()),
            (LABEL_INSTANCE.to_string(), self.instance.to_string()),
            (LABEL_COMPONENT.to_string(), self.component.to_string()),
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

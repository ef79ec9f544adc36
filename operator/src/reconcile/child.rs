//! The desired children of a resource, as `build` returns them.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::ObjectMeta;
use serde::Serialize;

use crate::images::EngineImages;

/// Inputs to `build` that come from the operator, not from the resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildContext {
    /// Tessera's image, which the sidecar and adapter containers run.
    pub tessera_image: String,
    /// Replacements for the engines' official images.
    pub engine_images: EngineImages,
}

impl BuildContext {
    /// Fixed images, for unit tests and examples.
    pub fn for_tests() -> BuildContext {
        BuildContext {
            tessera_image: "tessera:test".into(),
            engine_images: EngineImages::default(),
        }
    }
}

/// One child object the operator owns. Every kind uses the same four child
/// types, so `apply` handles them with one store and one API each.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
// A handful of children per reconcile, built once: their size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Child {
    StatefulSet(StatefulSet),
    Service(Service),
    ConfigMap(ConfigMap),
    PodDisruptionBudget(PodDisruptionBudget),
}

/// The kinds of child, in the order they are applied: configuration first,
/// so that pods never start without it; the StatefulSet last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChildKind {
    ConfigMap,
    Service,
    PodDisruptionBudget,
    StatefulSet,
}

impl ChildKind {
    pub const ALL: [ChildKind; 4] = [
        ChildKind::ConfigMap,
        ChildKind::Service,
        ChildKind::PodDisruptionBudget,
        ChildKind::StatefulSet,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChildKind::ConfigMap => "ConfigMap",
            ChildKind::Service => "Service",
            ChildKind::PodDisruptionBudget => "PodDisruptionBudget",
            ChildKind::StatefulSet => "StatefulSet",
        }
    }
}

impl Child {
    pub fn kind(&self) -> ChildKind {
        match self {
            Child::StatefulSet(_) => ChildKind::StatefulSet,
            Child::Service(_) => ChildKind::Service,
            Child::ConfigMap(_) => ChildKind::ConfigMap,
            Child::PodDisruptionBudget(_) => ChildKind::PodDisruptionBudget,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Child::StatefulSet(o) => &o.metadata,
            Child::Service(o) => &o.metadata,
            Child::ConfigMap(o) => &o.metadata,
            Child::PodDisruptionBudget(o) => &o.metadata,
        }
    }

    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Child::StatefulSet(o) => &mut o.metadata,
            Child::Service(o) => &mut o.metadata,
            Child::ConfigMap(o) => &mut o.metadata,
            Child::PodDisruptionBudget(o) => &mut o.metadata,
        }
    }

    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }
}

/// Everything `build` wants to exist for one resource.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    pub children: Vec<Child>,
}

impl Desired {
    pub fn find(&self, kind: ChildKind, name: &str) -> Option<&Child> {
        self.children
            .iter()
            .find(|c| c.kind() == kind && c.name() == name)
    }

    pub fn statefulset(&self, name: &str) -> Option<&StatefulSet> {
        match self.find(ChildKind::StatefulSet, name) {
            Some(Child::StatefulSet(s)) => Some(s),
            _ => None,
        }
    }

    /// The config checksum on the pod template of StatefulSet `name`: what
    /// rolls its pods when their configuration changes.
    #[cfg(test)]
    pub fn config_checksum(&self, name: &str) -> String {
        let sts = self.statefulset(name).unwrap().spec.clone().unwrap();
        sts.template.metadata.unwrap().annotations.unwrap()[crate::kinds::shared::CONFIG_CHECKSUM]
            .clone()
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        match self.find(ChildKind::Service, name) {
            Some(Child::Service(s)) => Some(s),
            _ => None,
        }
    }

    pub fn configmap(&self, name: &str) -> Option<&ConfigMap> {
        match self.find(ChildKind::ConfigMap, name) {
            Some(Child::ConfigMap(s)) => Some(s),
            _ => None,
        }
    }

    pub fn pdb(&self, name: &str) -> Option<&PodDisruptionBudget> {
        match self.find(ChildKind::PodDisruptionBudget, name) {
            Some(Child::PodDisruptionBudget(s)) => Some(s),
            _ => None,
        }
    }
}

/// FNV-1a, 64 bit: a stable hash for checksums and applied-spec hashes.
/// `std`'s hasher may change between Rust releases, which would make every
/// child look changed after an operator upgrade.
pub fn fnv1a(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

//! `dereference`: what the caches hold about one resource, grouped by the
//! components its spec asks for, and the objects it references.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::Managed;
use crate::kinds::shared::Identity;
use crate::runtime::context::Stores;

/// One group of pods of a resource: one StatefulSet, its pods and claims,
/// found by the component's own selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    pub identity: Identity,
    /// The members the spec asks for.
    pub desired: i32,
    /// What the members are called in status messages: "members",
    /// "brokers", "controllers".
    pub noun: &'static str,
}

/// A kind of object a resource may reference by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefKind {
    Secret,
    ConfigMap,
}

/// An object in the resource's namespace that it reads.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    pub kind: RefKind,
    pub name: String,
}

/// A component and what the caches hold for it.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedComponent {
    pub component: Component,
    pub statefulsets: Vec<Arc<StatefulSet>>,
    /// The component's pods, sorted by name.
    pub pods: Vec<Arc<Pod>>,
}

/// The children and references of one resource as the caches see them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub components: Vec<ObservedComponent>,
    /// Each referenced object's metadata (its resourceVersion changes with
    /// its content), or None when it does not exist.
    pub references: BTreeMap<Reference, Option<ObjectMeta>>,
}

impl Observed {
    /// Every pod of every component, sorted by name.
    pub fn pods(&self) -> Vec<&Arc<Pod>> {
        let mut pods: Vec<&Arc<Pod>> = self.components.iter().flat_map(|c| &c.pods).collect();
        pods.sort_by_key(|p| p.name_any());
        pods
    }
}

fn matches(selector: &BTreeMap<String, String>, labels: Option<&BTreeMap<String, String>>) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// This resource's StatefulSets (by controller reference and the
/// component's selector), pods (by selector) and references, from the
/// caches: never from the API.
pub fn dereference<K: Managed>(obj: &K, stores: &Stores) -> Observed {
    let ns = obj.namespace();
    let uid = obj.uid();
    let owned = |s: &StatefulSet| {
        s.owner_references()
            .iter()
            .any(|r| Some(&r.uid) == uid.as_ref())
    };
    let statefulsets: Vec<Arc<StatefulSet>> = stores
        .statefulsets
        .state()
        .into_iter()
        .filter(|s| s.namespace() == ns && owned(s))
        .collect();
    let pods: Vec<Arc<Pod>> = stores
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace() == ns)
        .collect();
    let components = obj
        .components()
        .into_iter()
        .map(|component| {
            let selector = component.identity.selector();
            let statefulsets = statefulsets
                .iter()
                .filter(|s| {
                    let sel = s
                        .spec
                        .as_ref()
                        .and_then(|s| s.selector.match_labels.as_ref());
                    matches(&selector, sel)
                })
                .cloned()
                .collect();
            let mut pods: Vec<Arc<Pod>> = pods
                .iter()
                .filter(|p| matches(&selector, p.metadata.labels.as_ref()))
                .cloned()
                .collect();
            pods.sort_by_key(|p| p.name_any());
            ObservedComponent {
                component,
                statefulsets,
                pods,
            }
        })
        .collect();
    let references = obj
        .references()
        .into_iter()
        .map(|r| {
            let ns = ns.clone().unwrap_or_default();
            let meta = match r.kind {
                RefKind::Secret => stores.secrets.as_ref().and_then(|s| {
                    s.get(&ObjectRef::new(&r.name).within(&ns))
                        .map(|o| o.meta().clone())
                }),
                RefKind::ConfigMap => stores.configmap_refs.as_ref().and_then(|s| {
                    s.get(&ObjectRef::new(&r.name).within(&ns))
                        .map(|o| o.meta().clone())
                }),
            };
            (r, meta)
        })
        .collect();
    Observed {
        components,
        references,
    }
}

//! The kubelet versions of the nodes, from a watch: native sidecars need
//! every node's kubelet at 1.29 or newer, whatever the API server's version
//! (a pod may land on any node, and an older kubelet runs an init container
//! with `restartPolicy: Always` to completion, blocking the pod).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, ResourceExt};

/// The first minor version where `SidecarContainers` is on by default.
pub const NATIVE_SIDECARS_SINCE: (u32, u32) = (1, 29);

/// (major, minor) of a kubelet.
pub type Version = (u32, u32);

/// Node name → kubelet version (`None`: not parseable, e.g. kwok's "fake").
#[derive(Clone, Default)]
pub struct NodeVersions(Arc<RwLock<BTreeMap<String, Option<Version>>>>);

/// `v1.34.4`, `1.29.0-eks-1`, `v1.30.2+k3s1` → (major, minor).
pub fn parse_version(v: &str) -> Option<(u32, u32)> {
    let v = v.trim().strip_prefix('v').unwrap_or(v.trim());
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some((major, minor.parse().ok()?))
}

impl NodeVersions {
    pub fn set(&self, node: &str, version: Option<&str>) {
        let mut m = self.0.write().unwrap_or_else(|p| p.into_inner());
        m.insert(node.to_string(), version.and_then(parse_version));
    }

    pub fn remove(&self, node: &str) {
        let mut m = self.0.write().unwrap_or_else(|p| p.into_inner());
        m.remove(node);
    }

    fn replace(&self, all: BTreeMap<String, Option<Version>>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = all;
    }

    /// True when at least one node reports a kubelet version and every one
    /// that does is 1.29 or newer. Nodes whose version does not parse (fake
    /// nodes) are left out; no node known at all means no.
    pub fn all_support_native_sidecars(&self) -> bool {
        let m = self.0.read().unwrap_or_else(|p| p.into_inner());
        let known: Vec<(u32, u32)> = m.values().flatten().copied().collect();
        !known.is_empty() && known.iter().all(|v| *v >= NATIVE_SIDECARS_SINCE)
    }

    /// Keeps the map current until the task is dropped.
    pub async fn watch(self, client: Client) {
        let api: Api<Node> = Api::all(client);
        let mut pending = BTreeMap::new();
        let stream = watcher(api, watcher::Config::default().any_semantic()).default_backoff();
        futures::pin_mut!(stream);
        let version = |n: &Node| {
            n.status
                .as_ref()
                .and_then(|s| s.node_info.as_ref())
                .map(|i| i.kubelet_version.clone())
        };
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(Event::Apply(n)) => self.set(&n.name_any(), version(&n).as_deref()),
                Ok(Event::Delete(n)) => self.remove(&n.name_any()),
                Ok(Event::Init) => pending.clear(),
                Ok(Event::InitApply(n)) => {
                    pending.insert(n.name_any(), version(&n).as_deref().and_then(parse_version));
                }
                Ok(Event::InitDone) => self.replace(std::mem::take(&mut pending)),
                Err(e) => tracing::warn!(error = %e, "watching nodes"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_with_vendor_suffixes() {
        assert_eq!(parse_version("v1.34.4"), Some((1, 34)));
        assert_eq!(parse_version("1.29.0-eks-1"), Some((1, 29)));
        assert_eq!(parse_version("v1.30+k3s1"), Some((1, 30)));
        assert_eq!(parse_version("fake"), None);
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_version("v1"), None);
    }

    #[test]
    fn every_real_node_must_be_new_enough() {
        let n = NodeVersions::default();
        assert!(!n.all_support_native_sidecars(), "no nodes: no");
        n.set("kwok-0", Some("fake"));
        assert!(!n.all_support_native_sidecars(), "only fake nodes: no");
        n.set("a", Some("v1.34.4"));
        assert!(n.all_support_native_sidecars());
        n.set("old", Some("v1.28.9"));
        assert!(!n.all_support_native_sidecars(), "one 1.28 kubelet: no");
        n.remove("old");
        assert!(n.all_support_native_sidecars());
        n.set("b", Some("v1.29.0"));
        assert!(n.all_support_native_sidecars());
        n.set("c", Some("v2.0.0"));
        assert!(n.all_support_native_sidecars());
    }
}

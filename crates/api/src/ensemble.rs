//! `Ensemble`: a coordination ensemble of Apache ZooKeeper or etcd.

// Every `printcolumn(...)` repeats `type_`, which clippy takes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{CommonSpec, CommonStatus};

/// A coordination ensemble: Apache ZooKeeper or etcd, with an odd number of
/// members so that a majority survives the loss of a minority.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tessera.dev",
    version = "v1alpha1",
    kind = "Ensemble",
    namespaced,
    derive = "PartialEq",
    shortname = "ens",
    category = "tessera",
    status = "EnsembleStatus",
    doc = "A coordination ensemble of Apache ZooKeeper or etcd members, run as a StatefulSet.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Engine", type_ = "string", json_path = ".spec.engine"),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Leader", type_ = "string", json_path = ".status.leader"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EnsembleSpec {
    /// The coordination engine: "zookeeper" or "etcd". It cannot be changed
    /// after creation.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "engine is immutable"}]))]
    pub engine: EnsembleEngine,

    /// Number of members: 1, 3, 5, 7 or 9. An odd number, so that a majority
    /// (a quorum) survives the loss of the others. `kubectl scale` changes it:
    /// the operator then adds or removes one member at a time through the
    /// engine's own membership (ZooKeeper reconfig; etcd learners, promoted
    /// once caught up), without restarting the others, and only while the
    /// ensemble keeps its quorum. `Progressing` (reason `Scaling`) says what
    /// it waits for.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 9), extend("x-kubernetes-validations" = [{
        "rule": "self % 2 == 1",
        "message": "replicas must be odd (1, 3, 5, 7 or 9) so that a majority of members survives a failure"
    }]))]
    pub replicas: i32,

    /// Settings shared by every Tessera resource.
    #[serde(flatten)]
    pub common: CommonSpec,
}

fn default_replicas() -> i32 {
    3
}

/// A coordination engine.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EnsembleEngine {
    /// Apache ZooKeeper.
    Zookeeper,
    /// etcd.
    Etcd,
}

impl EnsembleEngine {
    /// The name used in labels, metrics and the CLI flags of our binaries.
    pub fn as_str(self) -> &'static str {
        match self {
            EnsembleEngine::Zookeeper => "zookeeper",
            EnsembleEngine::Etcd => "etcd",
        }
    }

    /// The version the operator runs when `version` is unset.
    pub fn default_version(self) -> &'static str {
        match self {
            EnsembleEngine::Zookeeper => "3.9.3",
            EnsembleEngine::Etcd => "3.5.17",
        }
    }

    /// The official image for a version.
    pub fn image(self, version: &str) -> String {
        self.contract().image(version)
    }

    /// What pod specs rely on in the engine's image.
    pub fn contract(self) -> &'static crate::images::ImageContract {
        match self {
            EnsembleEngine::Zookeeper => &crate::images::ZOOKEEPER,
            EnsembleEngine::Etcd => &crate::images::ETCD,
        }
    }

    /// Configuration keys the operator generates itself. `server.` is a
    /// prefix: every `server.N` line belongs to the operator.
    pub fn owned_config_keys(self) -> &'static [&'static str] {
        match self {
            EnsembleEngine::Zookeeper => &[
                "dataDir",
                "dataLogDir",
                "clientPort",
                "secureClientPort",
                "server.",
                "dynamicConfigFile",
                "reconfigEnabled",
                "standaloneEnabled",
                "4lw.commands.whitelist",
                "admin.serverPort",
            ],
            EnsembleEngine::Etcd => &[
                "name",
                "data-dir",
                "wal-dir",
                "initial-cluster",
                "initial-cluster-state",
                "initial-cluster-token",
                "initial-advertise-peer-urls",
                "advertise-client-urls",
                "listen-peer-urls",
                "listen-client-urls",
                "listen-metrics-urls",
            ],
        }
    }
}

/// The observed state of an Ensemble.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnsembleStatus {
    /// Generation, conditions, replica counts and selector.
    #[serde(flatten)]
    pub common: CommonStatus,

    /// The members, one per pod, in ordinal order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<EnsembleMember>,

    /// Name of the member that currently leads the ensemble, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

/// One member of an Ensemble.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnsembleMember {
    /// Pod name of the member.
    pub name: String,
    /// Role in the ensemble: "leader", "follower", "observer", "learner" or
    /// "standalone", when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Whether the member passes its readiness probe.
    #[serde(default)]
    pub ready: bool,
}

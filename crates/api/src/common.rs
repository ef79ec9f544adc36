//! Fields shared by every Tessera resource.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Settings common to ShardedStore, Broker and Ensemble.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonSpec {
    /// Version of the engine to run, for example "3.9.3" for ZooKeeper or
    /// "7.4" for Redis. It selects the default container image. When unset, the
    /// operator picks the version it was tested with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[0-9A-Za-z][0-9A-Za-z._-]*$")
    )]
    pub version: Option<String>,

    /// Container image for the engine, for example
    /// "registry.example.com/zookeeper:3.9.3". Overrides the image chosen by
    /// `version`. The image must provide the engine at the version given in
    /// `version`, because the generated configuration depends on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// CPU and memory requests and limits for the engine container of each
    /// pod. The sidecar and adapter containers have small fixed requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Persistent storage for each member's data.
    #[serde(default)]
    pub storage: Storage,

    /// Engine settings merged into the generated configuration file, as
    /// key/value strings (for example `maxClientCnxns: "100"` for ZooKeeper or
    /// `log.retention.hours: "72"` for Kafka). Keys that the operator manages
    /// itself, such as ZooKeeper's `dataDir` or Kafka's `node.id`, are refused:
    /// the resource then reports `Degraded=True` with a message naming the key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 256))]
    pub config: BTreeMap<String, String>,

    /// Scheduling and metadata for the pods the operator creates.
    #[serde(default)]
    pub pod_template: PodTemplate,

    /// Prometheus monitoring of the engine through the tessera-adapter
    /// container.
    #[serde(default)]
    pub monitoring: Monitoring,

    /// When true, the operator stops changing the StatefulSets, Services,
    /// ConfigMaps and PodDisruptionBudgets of this resource, for example during
    /// manual maintenance. Status keeps being reported.
    #[serde(default)]
    pub paused: bool,
}

/// Persistent storage for each member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(oldSelf.storageClassName) == has(self.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)",
    "message": "storage.storageClassName is immutable: existing PersistentVolumeClaims cannot change class"
}]))]
pub struct Storage {
    /// Size of the PersistentVolumeClaim of each member, for example "10Gi".
    #[serde(default = "default_storage_size")]
    pub size: Quantity,

    /// StorageClass of the PersistentVolumeClaims. When unset, the cluster's
    /// default StorageClass is used. It cannot be changed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,

    /// When true, the PersistentVolumeClaims are deleted with the resource, and
    /// the data with them. When false (the default), they are kept so that
    /// re-creating the resource under the same name finds its data again.
    /// For an Ensemble it also covers members removed by a scale-down: true
    /// deletes each removed member's claim once it is no member any more;
    /// false keeps it (an etcd member's claim is deleted anyway when a
    /// later scale-up adds that ordinal again, because etcd refuses to start
    /// on the data of a removed member).
    #[serde(default)]
    pub delete_claims_on_delete: bool,
}

fn default_storage_size() -> Quantity {
    Quantity("1Gi".into())
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            size: default_storage_size(),
            storage_class_name: None,
            delete_claims_on_delete: false,
        }
    }
}

/// Scheduling and metadata for the pods the operator creates.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplate {
    /// Extra labels for the pods. Labels under `app.kubernetes.io/` are
    /// reserved for the operator's selectors and are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 64,
        "x-kubernetes-validations" = [{
            "rule": "self.all(k, !k.startsWith('app.kubernetes.io/'))",
            "message": "podTemplate.labels must not set app.kubernetes.io/ labels: the operator owns them"
        }]
    ))]
    pub labels: BTreeMap<String, String>,

    /// Extra annotations for the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// Node labels a node must have to run these pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations of the pods, to run them on tainted nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Affinity and anti-affinity rules of the pods. When unset, the operator
    /// prefers to spread members over nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// How the pods spread over topology domains such as zones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,

    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// Prometheus monitoring through the tessera-adapter container.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Monitoring {
    /// Run the tessera-adapter container next to the engine, exposing the
    /// uniform `tessera_*` metrics on the pod's `metrics` port (9121).
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Create a Prometheus Operator PodMonitor for the pods. Needs the
    /// PodMonitor CRD in the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_monitor: Option<PodMonitor>,
}

impl Default for Monitoring {
    fn default() -> Self {
        Monitoring {
            enabled: true,
            pod_monitor: None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// A Prometheus Operator PodMonitor for the resource's pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodMonitor {
    /// Create the PodMonitor.
    #[serde(default)]
    pub enabled: bool,

    /// Scrape interval, for example "30s". Prometheus's default applies when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub interval: Option<String>,

    /// Labels of the PodMonitor, so that a Prometheus selects it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A reference to one key of a Secret in the resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Key within the Secret. Defaults to "password".
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_password_key() -> String {
    "password".into()
}

/// Status fields shared by every Tessera resource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonStatus {
    /// The `metadata.generation` that this status describes. When it is lower
    /// than `metadata.generation`, the operator has not yet processed the
    /// latest change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The latest observations of the resource's state. `Ready` is True when
    /// every member serves; `Progressing` is True while a change rolls out;
    /// `Degraded` is True when the spec cannot be applied or members fail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// Number of pods that exist.
    #[serde(default)]
    pub replicas: i32,

    /// Number of pods that pass their readiness probe.
    #[serde(default)]
    pub ready_replicas: i32,

    /// Label selector of the pods, in string form, for the scale subresource
    /// and `kubectl get pods -l`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

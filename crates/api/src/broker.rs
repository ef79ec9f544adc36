//! `Broker`: Apache Kafka in KRaft mode.

// Every `printcolumn(...)` repeats `type_`, which clippy takes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{CommonSpec, CommonStatus};

/// An Apache Kafka cluster in KRaft mode (no ZooKeeper).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tessera.dev",
    version = "v1alpha1",
    kind = "Broker",
    namespaced,
    derive = "PartialEq",
    shortname = "brk",
    category = "tessera",
    status = "BrokerStatus",
    doc = "An Apache Kafka cluster in KRaft mode, with combined or dedicated controllers.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Engine", type_ = "string", json_path = ".spec.engine"),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyBrokers"),
    printcolumn(
        name = "Controllers",
        type_ = "integer",
        json_path = ".spec.controllers.replicas"
    ),
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
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.controllers) || self.controllers.dedicated || self.controllers.replicas <= self.replicas",
    "message": "controllers.replicas must not exceed replicas when controllers are combined with brokers (controllers.dedicated: false)"
}]))]
pub struct BrokerSpec {
    /// The engine: "kafka". It cannot be changed after creation.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "engine is immutable"}]))]
    pub engine: BrokerEngine,

    /// Number of brokers, at least 1. `kubectl scale` changes it. New
    /// brokers register themselves; lowering it removes the highest
    /// brokers one at a time, each only once it holds no partition replica
    /// (until then `Degraded=True` with reason `ScaleDownBlocked` names what
    /// it still holds: move it with kafka-reassign-partitions), and then
    /// unregisters it.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub replicas: i32,

    /// The KRaft controller quorum. It cannot be changed after creation:
    /// the operator writes a static voter list (`controller.quorum.voters`),
    /// and Kafka 3.9 cannot change a static quorum's voters online.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "controllers is immutable: Kafka 3.9 cannot change the voters of a static controller quorum"
    }]))]
    pub controllers: Controllers,

    /// Listeners for clients. The operator adds its own REPLICATION and
    /// CONTROLLER listeners on ports 9091 and 9093; those names and ports are
    /// reserved. Defaults to one plaintext listener, CLIENT on port 9092.
    #[serde(default = "default_listeners")]
    #[schemars(length(min = 1, max = 8), extend(
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["name"],
        "x-kubernetes-validations" = [
            {
                "rule": "self.all(l, l.name != 'CONTROLLER' && l.name != 'REPLICATION')",
                "message": "listener names CONTROLLER and REPLICATION are reserved by the operator"
            },
            {
                "rule": "self.all(l, l.port != 9091 && l.port != 9093)",
                "message": "listener ports 9091 and 9093 are reserved by the operator"
            },
            {
                "rule": "self.all(a, self.exists_one(b, b.port == a.port))",
                "message": "listener ports must be unique"
            }
        ]
    ))]
    pub listeners: Vec<Listener>,

    /// Settings shared by every Tessera resource.
    #[serde(flatten)]
    pub common: CommonSpec,
}

fn default_replicas() -> i32 {
    3
}

fn default_listeners() -> Vec<Listener> {
    vec![Listener {
        name: "CLIENT".into(),
        port: 9092,
        tls: false,
    }]
}

/// A broker engine.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BrokerEngine {
    /// Apache Kafka in KRaft mode.
    #[default]
    Kafka,
}

impl BrokerEngine {
    /// The name used in labels, metrics and the CLI flags of our binaries.
    pub fn as_str(self) -> &'static str {
        "kafka"
    }

    /// The version the operator runs when `version` is unset.
    pub fn default_version(self) -> &'static str {
        "3.9.1"
    }

    /// The official image for a version.
    pub fn image(self, version: &str) -> String {
        self.contract().image(version)
    }

    /// What pod specs rely on in the engine's image.
    pub fn contract(self) -> &'static crate::images::ImageContract {
        &crate::images::KAFKA
    }

    /// Configuration keys the operator generates itself.
    pub fn owned_config_keys(self) -> &'static [&'static str] {
        &[
            "node.id",
            "broker.id",
            "process.roles",
            "listeners",
            "advertised.listeners",
            "listener.security.protocol.map",
            "inter.broker.listener.name",
            "controller.listener.names",
            "controller.quorum.voters",
            "controller.quorum.bootstrap.servers",
            "log.dirs",
            "log.dir",
            "metadata.log.dir",
        ]
    }
}

/// The KRaft controller quorum.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Controllers {
    /// Number of controllers: 1, 3, 5, 7 or 9, so that a majority survives
    /// failures.
    #[serde(default = "default_controllers")]
    #[schemars(range(min = 1, max = 9), extend("x-kubernetes-validations" = [{
        "rule": "self % 2 == 1",
        "message": "controllers.replicas must be odd (1, 3, 5, 7 or 9) so that a majority of controllers survives a failure"
    }]))]
    pub replicas: i32,

    /// When true, controllers run in their own pods. When false (the default),
    /// the first `controllers.replicas` brokers also act as controllers.
    #[serde(default)]
    pub dedicated: bool,
}

fn default_controllers() -> i32 {
    3
}

impl Default for Controllers {
    fn default() -> Self {
        Controllers {
            replicas: default_controllers(),
            dedicated: false,
        }
    }
}

/// A Kafka listener for clients.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Name of the listener, in upper case, for example "CLIENT".
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[A-Z][A-Z0-9_]*$"))]
    pub name: String,

    /// Container port of the listener, from 1024 to 65535.
    #[schemars(range(min = 1024, max = 65535))]
    pub port: i32,

    /// Serve TLS on this listener.
    #[serde(default)]
    pub tls: bool,
}

/// The observed state of a Broker.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    /// Generation, conditions, replica counts and selector.
    #[serde(flatten)]
    pub common: CommonStatus,

    /// The KRaft cluster id, generated once when the cluster is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,

    /// Number of brokers registered and ready.
    #[serde(default)]
    pub ready_brokers: i32,

    /// The KRaft controller quorum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_quorum: Option<ControllerQuorum>,

    /// Node ids of the brokers registered with the controllers, as the
    /// operator has seen them. Kafka 3.9 lists only running (unfenced)
    /// brokers, so a broker removed by a scale-down is remembered here until
    /// the operator has unregistered it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registered_broker_ids: Vec<i32>,
}

/// The observed KRaft controller quorum.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControllerQuorum {
    /// The voters, as "id@host:port".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voters: Vec<String>,
    /// Node id of the active controller, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_id: Option<i32>,
    /// Number of controllers that are ready.
    #[serde(default)]
    pub ready_controllers: i32,
}

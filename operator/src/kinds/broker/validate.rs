//! `validate`: a Broker as `build` needs it, with every default resolved
//! and the cluster id decided. The spec is destructured without `..`, so
//! that a field added to the API is a compile error here until it is used
//! or refused.

use std::collections::BTreeMap;

use kube::ResourceExt;
use tessera_api::broker::{Controllers, Listener};
use tessera_api::validate::SpecCheck;
use tessera_api::{Broker, BrokerSpec, Invalid};

use super::identity::{self, ClusterId};
use crate::kinds::shared::{ADAPTER_PORT, CommonSettings, PodSettings, SIDECAR_PORT};
use crate::reconcile::Observed;
use crate::reconcile::child::BuildContext;

/// A client listener, once checked: plaintext, on a free port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidListener {
    pub name: String,
    pub port: i32,
}

/// Where the controllers run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quorum {
    /// Pods of their own, in a StatefulSet of their own.
    Dedicated { controllers: i32 },
    /// The first `controllers` brokers are also controllers.
    Combined { controllers: i32 },
}

impl Quorum {
    pub fn controllers(self) -> i32 {
        match self {
            Quorum::Dedicated { controllers } | Quorum::Combined { controllers } => controllers,
        }
    }
}

/// A validated Broker: what `build` reads, and nothing else.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidBroker {
    pub name: String,
    pub namespace: String,
    /// Number of brokers (pods with the broker role).
    pub replicas: i32,
    /// How many brokers the StatefulSet runs: `replicas`, or more while a
    /// scale-down waits for the brokers to remove to hold no replica (see
    /// [`super::scale`]); only `orchestrate` shrinks it.
    pub broker_statefulset_replicas: i32,
    pub quorum: Quorum,
    pub listeners: Vec<ValidListener>,
    /// `spec.image`, or the official image of the version.
    pub image: String,
    pub cluster_id: ClusterId,
    /// `spec.config`, already checked for keys the operator owns.
    pub config: BTreeMap<String, String>,
    /// Whether `resources.limits.memory` is set: the heap then follows it.
    pub memory_limit: bool,
    pub pod: PodSettings,
}

/// The Kafka releases the generated configuration and commands are written
/// for: the official `apache/kafka` image exists from 3.7, and 4.0 drops
/// log4j 1 configuration files.
const SUPPORTED: (u32, std::ops::RangeInclusive<u32>) = (3, 7..=9);

pub fn validate(
    broker: &Broker,
    ctx: &BuildContext,
    observed: &Observed,
) -> Result<ValidBroker, Invalid> {
    broker.spec.check()?;
    let BrokerSpec {
        engine,
        replicas,
        controllers,
        listeners,
        common,
    } = &broker.spec;
    let Controllers {
        replicas: controllers,
        dedicated,
    } = controllers;
    let CommonSettings {
        version,
        image,
        config,
        pod,
    } = CommonSettings::resolve(common, engine.contract(), engine.default_version(), ctx)?;
    let listeners = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| valid_listener(i, l))
        .collect::<Result<Vec<_>, _>>()?;
    check_version(&version)?;
    let quorum = if *dedicated {
        Quorum::Dedicated {
            controllers: *controllers,
        }
    } else {
        Quorum::Combined {
            controllers: *controllers,
        }
    };
    let memory_limit = pod
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .is_some_and(|l| l.contains_key("memory"));
    Ok(ValidBroker {
        name: broker.name_any(),
        namespace: broker.namespace().unwrap_or_default(),
        replicas: *replicas,
        broker_statefulset_replicas: broker_statefulset_replicas(observed)
            .map_or(*replicas, |running| running.max(*replicas)),
        quorum,
        listeners,
        image,
        cluster_id: identity::cluster_id(broker)?,
        config,
        memory_limit,
        pod,
    })
}

/// `spec.replicas` of the brokers' StatefulSet in the caches, if it exists.
pub fn broker_statefulset_replicas(observed: &Observed) -> Option<i32> {
    observed
        .components
        .iter()
        .filter(|c| c.component.identity.component == super::build::BROKER_COMPONENT)
        .flat_map(|c| &c.statefulsets)
        .find_map(|s| s.spec.as_ref()?.replicas)
}

/// TLS needs certificates the operator does not manage yet: refused rather
/// than served as plaintext under a name that promises TLS. The helpers'
/// ports are taken in every pod.
fn valid_listener(i: usize, l: &Listener) -> Result<ValidListener, Invalid> {
    let Listener { name, port, tls } = l;
    if *tls {
        return Err(Invalid::Rule {
            path: format!("spec.listeners[{i}].tls"),
            message: format!(
                "listener {name}: TLS listeners are not supported by this operator version \
                 (it manages no certificates yet); use tls: false"
            ),
        });
    }
    if *port == SIDECAR_PORT || *port == ADAPTER_PORT {
        return Err(Invalid::Rule {
            path: format!("spec.listeners[{i}].port"),
            message: format!(
                "listener {name}: port {port} is used by the tessera sidecar ({SIDECAR_PORT}) \
                 or adapter ({ADAPTER_PORT}) in every pod"
            ),
        });
    }
    Ok(ValidListener {
        name: name.clone(),
        port: *port,
    })
}

fn check_version(version: &str) -> Result<(), Invalid> {
    let mut parts = version.split('.').map(str::parse::<u32>);
    let (major, minor) = (parts.next(), parts.next());
    let (want_major, minors) = SUPPORTED;
    match (major, minor) {
        (Some(Ok(ma)), Some(Ok(mi))) if ma == want_major && minors.contains(&mi) => Ok(()),
        _ => Err(Invalid::Rule {
            path: "spec.version".into(),
            message: format!(
                "Kafka {version:?} is not supported: this operator runs Kafka {want_major}.{}-{want_major}.{} in KRaft mode",
                minors.start(),
                minors.end()
            ),
        }),
    }
}

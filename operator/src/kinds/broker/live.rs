//! What the Kafka cluster itself says, asked through one ready broker: the
//! active controller, the registered brokers and every partition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use tessera_clients::kafka::{Client, Partition};
use tracing::debug;

use super::build::BROKER_COMPONENT;
use super::kafka::REPLICATION_PORT;
use crate::reconcile::Observed;
use crate::reconcile::status::serving;

const MIN_INSYNC: &str = "min.insync.replicas";

/// A bounded wait: a reconcile must not hang on one slow broker.
const TIMEOUT: Duration = Duration::from_secs(3);

/// The cluster's view, empty when no broker answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Live {
    /// Node id of the active controller (DescribeQuorum's leader).
    pub leader_id: Option<i32>,
    /// Node ids of the brokers the cluster lists (registered and unfenced).
    pub brokers: Vec<i32>,
    /// Every partition, by topic; None when no broker answered.
    pub partitions: Option<Vec<(String, Partition)>>,
    /// Each topic's effective `min.insync.replicas` (DescribeConfigs).
    pub min_insync: BTreeMap<String, usize>,
    /// Broker ids the operator unregistered in this pass.
    pub unregistered: Vec<i32>,
}

/// The addresses of the ready brokers' replication listeners, by pod IP:
/// the operator may not resolve the cluster's DNS names.
pub fn ready_brokers(observed: &Observed) -> Vec<String> {
    ready_pods(observed, BROKER_COMPONENT)
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .map(|ip| format!("{ip}:{REPLICATION_PORT}"))
        .collect()
}

/// The Ready pods of `component` that are not being deleted.
pub fn ready_pods<'a>(
    observed: &'a Observed,
    component: &'a str,
) -> impl Iterator<Item = &'a Arc<Pod>> + 'a {
    observed
        .components
        .iter()
        .filter(move |c| c.component.identity.component == component)
        .flat_map(|c| &c.pods)
        .filter(|p| serving(p))
}

/// Asks the first ready broker that answers.
pub async fn observe(observed: &Observed) -> Live {
    for addr in ready_brokers(observed) {
        match ask(&addr).await {
            Ok(live) => return live,
            Err(e) => debug!(broker = %addr, error = %e, "broker did not answer"),
        }
    }
    Live::default()
}

async fn ask(addr: &str) -> tessera_clients::Result<Live> {
    let mut c = Client::connect(addr, TIMEOUT).await?;
    let md = c.metadata(None).await?;
    let quorum = c.describe_quorum().await?;
    // A topic may ask for more copies in sync than the cluster: without
    // its setting the roll could take it below, so no answer is no answer.
    let topics: Vec<String> = md.topics.iter().map(|t| t.name.clone()).collect();
    let min_insync = if topics.is_empty() {
        BTreeMap::new()
    } else {
        c.topic_configs(&topics, &[MIN_INSYNC])
            .await?
            .into_iter()
            .filter_map(|(t, v)| Some((t, v.get(MIN_INSYNC)?.parse().ok()?)))
            .collect()
    };
    let mut brokers: Vec<i32> = md.brokers.iter().map(|b| b.node_id).collect();
    brokers.sort_unstable();
    let partitions = md
        .topics
        .into_iter()
        .flat_map(|t| {
            let name = t.name;
            t.partitions.into_iter().map(move |p| (name.clone(), p))
        })
        .collect();
    Ok(Live {
        leader_id: (quorum.leader_id >= 0).then_some(quorum.leader_id),
        brokers,
        partitions: Some(partitions),
        min_insync,
        unregistered: Vec::new(),
    })
}

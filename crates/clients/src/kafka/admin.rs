//! Cluster administration the operator needs: moving partition replicas
//! (AlterPartitionReassignments, KIP-455) and unregistering a removed broker
//! (UnregisterBroker, KIP-631), which any broker forwards to the active
//! controller, and topics' effective settings (DescribeConfigs), which the
//! broker answers itself.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, DescribeConfigsRequest, TopicName,
    UnregisterBrokerRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};

use super::{Client, server, timeout_ms};
use crate::Result;

const REASSIGN: (i16, i16, i16) = (AlterPartitionReassignmentsRequest::KEY, 0, 0);
const UNREGISTER: (i16, i16, i16) = (UnregisterBrokerRequest::KEY, 0, 0);
const DESCRIBE_CONFIGS: (i16, i16, i16) = (DescribeConfigsRequest::KEY, 1, 4);
/// DescribeConfigs' resource type of a topic.
const TOPIC: i8 = 2;
/// `BROKER_ID_NOT_REGISTERED`: the broker is unknown to the controller.
const NOT_REGISTERED: i16 = 102;

/// What an UnregisterBroker did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unregistered {
    /// The controller removed the broker's registration.
    Removed,
    /// The controller did not know the broker (already unregistered).
    NotRegistered,
}

impl Client {
    /// Removes broker `id`'s registration from the cluster metadata. Send
    /// it once the broker has stopped: a running broker registers again.
    pub async fn unregister_broker(&mut self, id: i32) -> Result<Unregistered> {
        let version = self.pick(UNREGISTER).await?;
        let req = UnregisterBrokerRequest::default().with_broker_id(BrokerId(id));
        let resp = self.send(req, version).await?;
        match resp.error_code {
            0 => Ok(Unregistered::Removed),
            NOT_REGISTERED => Ok(Unregistered::NotRegistered),
            code => Err(server(
                "UnregisterBroker",
                code,
                resp.error_message.as_ref(),
            )),
        }
    }

    /// The effective value of each of `keys` for each of `topics` (its own
    /// setting, else the broker's, else Kafka's default), by topic and key.
    /// A topic that does not exist is an error naming it.
    pub async fn topic_configs(
        &mut self,
        topics: &[String],
        keys: &[&str],
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        let version = self.pick(DESCRIBE_CONFIGS).await?;
        let keys: Vec<StrBytes> = keys
            .iter()
            .map(|k| StrBytes::from_string((*k).to_string()))
            .collect();
        let req = DescribeConfigsRequest::default().with_resources(
            topics
                .iter()
                .map(|t| {
                    DescribeConfigsResource::default()
                        .with_resource_type(TOPIC)
                        .with_resource_name(StrBytes::from_string(t.clone()))
                        .with_configuration_keys(Some(keys.clone()))
                })
                .collect(),
        );
        let resp = self.send(req, version).await?;
        let mut out = BTreeMap::new();
        for r in resp.results {
            if r.error_code != 0 {
                return Err(server(
                    &format!("DescribeConfigs of topic {}", r.resource_name),
                    r.error_code,
                    r.error_message.as_ref(),
                ));
            }
            let values = r
                .configs
                .into_iter()
                .filter_map(|c| Some((c.name.to_string(), c.value?.to_string())))
                .collect();
            out.insert(r.resource_name.to_string(), values);
        }
        Ok(out)
    }

    /// Starts moving each `(partition, replicas)` of `topic` to those
    /// brokers (the first is the preferred leader). Returns once the
    /// controller accepted the reassignment; the data moves afterwards,
    /// and Metadata shows the new replicas when it is done.
    pub async fn reassign_partitions(
        &mut self,
        topic: &str,
        assignments: &[(i32, Vec<i32>)],
    ) -> Result<()> {
        let version = self.pick(REASSIGN).await?;
        let partitions = assignments
            .iter()
            .map(|(p, replicas)| {
                ReassignablePartition::default()
                    .with_partition_index(*p)
                    .with_replicas(Some(replicas.iter().copied().map(BrokerId).collect()))
            })
            .collect();
        let req = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(timeout_ms(self))
            .with_topics(vec![
                ReassignableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.into())))
                    .with_partitions(partitions),
            ]);
        let resp = self.send(req, version).await?;
        if resp.error_code != 0 {
            return Err(server(
                "AlterPartitionReassignments",
                resp.error_code,
                resp.error_message.as_ref(),
            ));
        }
        for t in &resp.responses {
            for p in &t.partitions {
                if p.error_code != 0 {
                    return Err(server(
                        &format!(
                            "AlterPartitionReassignments of {topic}-{}",
                            p.partition_index
                        ),
                        p.error_code,
                        p.error_message.as_ref(),
                    ));
                }
            }
        }
        Ok(())
    }
}

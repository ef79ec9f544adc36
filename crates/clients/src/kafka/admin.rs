//! Cluster administration a broker scale-down needs: moving partition
//! replicas (AlterPartitionReassignments, KIP-455) and unregistering a
//! removed broker (UnregisterBroker, KIP-631). Both go to any broker, which
//! forwards them to the active controller.

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, TopicName, UnregisterBrokerRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};

use super::{Client, server, timeout_ms};
use crate::Result;

const REASSIGN: (i16, i16, i16) = (AlterPartitionReassignmentsRequest::KEY, 0, 0);
const UNREGISTER: (i16, i16, i16) = (UnregisterBrokerRequest::KEY, 0, 0);
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

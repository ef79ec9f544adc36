//! DescribeQuorum: who leads the KRaft metadata quorum (the active
//! controller). Brokers forward the request to the controllers, so it works
//! against any broker listener. Added for the adapter's `tessera_is_leader`.
//!
//! DescribeCluster on a controller listener: the active controller as that
//! controller sees it. Only the active controller answers DescribeQuorum
//! (the others say NOT_LEADER_OR_FOLLOWER), so this is how a follower
//! shows that it takes part in the quorum.

use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{DescribeClusterRequest, DescribeQuorumRequest};
use kafka_protocol::protocol::{Request, StrBytes};

use super::Client;
use crate::{Error, Result};

const DESCRIBE_QUORUM: (i16, i16, i16) = (DescribeQuorumRequest::KEY, 0, 2);
const METADATA_TOPIC: &str = "__cluster_metadata";
/// v1 added the endpoint type (KIP-919); controllers refuse v0.
const DESCRIBE_CLUSTER: (i16, i16, i16) = (DescribeClusterRequest::KEY, 1, 1);
/// DescribeCluster's endpoint type for controllers.
const CONTROLLER_ENDPOINTS: i8 = 2;

/// DescribeCluster as a KRaft controller answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerView {
    /// The active controller as this controller knows it (-1: unknown).
    pub leader_id: i32,
    /// The controllers registered with the active controller.
    pub controllers: Vec<i32>,
}

/// The state of the `__cluster_metadata` partition's Raft quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataQuorum {
    /// Node id of the active controller (-1 while electing).
    pub leader_id: i32,
    /// Rises by one with every controller election.
    pub leader_epoch: i32,
    /// Controller node ids that vote.
    pub voters: Vec<i32>,
    /// Node ids that replicate the metadata log without voting (brokers).
    pub observers: Vec<i32>,
}

impl Client {
    /// DescribeQuorum for the metadata log. ZooKeeper-mode clusters do not
    /// support it and give [`Error::Server`].
    pub async fn describe_quorum(&mut self) -> Result<MetadataQuorum> {
        let version = self.pick(DESCRIBE_QUORUM).await?;
        let req = DescribeQuorumRequest::default().with_topics(vec![
            TopicData::default()
                .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
                .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
        ]);
        let resp = self.send(req, version).await?;
        if resp.error_code != 0 {
            return Err(Error::Server(format!(
                "DescribeQuorum error code {}",
                resp.error_code
            )));
        }
        let p = resp
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .next()
            .ok_or_else(|| Error::UnexpectedReply("DescribeQuorum without a partition".into()))?;
        if p.error_code != 0 {
            return Err(Error::Server(format!(
                "DescribeQuorum partition error code {}",
                p.error_code
            )));
        }
        Ok(MetadataQuorum {
            leader_id: p.leader_id.0,
            leader_epoch: p.leader_epoch,
            voters: p.current_voters.iter().map(|r| r.replica_id.0).collect(),
            observers: p.observers.iter().map(|r| r.replica_id.0).collect(),
        })
    }

    /// DescribeCluster for controller endpoints, sent to a controller
    /// listener (3.7 and later).
    pub async fn describe_controllers(&mut self) -> Result<ControllerView> {
        let version = self.pick(DESCRIBE_CLUSTER).await?;
        let req = DescribeClusterRequest::default().with_endpoint_type(CONTROLLER_ENDPOINTS);
        let resp = self.send(req, version).await?;
        if resp.error_code != 0 {
            return Err(Error::Server(format!(
                "DescribeCluster error code {}",
                resp.error_code
            )));
        }
        Ok(ControllerView {
            leader_id: resp.controller_id.0,
            controllers: resp.brokers.iter().map(|b| b.broker_id.0).collect(),
        })
    }
}

//! CreateTopics, Produce and Fetch: enough to create a topic, write records
//! with `acks=all` and read them back, for checks that data survives
//! operations (rolls, scale-downs). No batching, compression or consumer
//! groups: the tests and tools that use it send little.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, FetchRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::records::{
    Compression, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, Record,
    RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::{Client, proto, server, timeout_ms};
use crate::{Error, Result};

/// Versions this client encodes: topic names (not ids) throughout.
const CREATE_TOPICS: (i16, i16, i16) = (CreateTopicsRequest::KEY, 2, 7);
const PRODUCE: (i16, i16, i16) = (ProduceRequest::KEY, 3, 11);
const FETCH: (i16, i16, i16) = (FetchRequest::KEY, 4, 12);

/// TOPIC_ALREADY_EXISTS.
const TOPIC_EXISTS: i16 = 36;

impl Client {
    /// Creates a topic; an existing one is not an error. Must be sent to a
    /// broker (brokers forward it to the active controller).
    pub async fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        let version = self.pick(CREATE_TOPICS).await?;
        let topic = CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.into())))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string((*k).into()))
                            .with_value(Some(StrBytes::from_string((*v).into())))
                    })
                    .collect(),
            );
        let req = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(timeout_ms(self));
        let resp = self.send(req, version).await?;
        match resp.topics.first() {
            Some(t) if t.error_code == 0 || t.error_code == TOPIC_EXISTS => Ok(()),
            Some(t) => Err(server(
                "CreateTopics",
                t.error_code,
                t.error_message.as_ref(),
            )),
            None => Err(Error::UnexpectedReply(
                "CreateTopics without a topic".into(),
            )),
        }
    }

    /// Appends `values` to one partition as one batch and returns the
    /// offset of the first. `acks` is -1 (all in-sync replicas), 1 or 0.
    /// Must be sent to the partition's leader.
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        values: &[Bytes],
        acks: i16,
    ) -> Result<i64> {
        let version = self.pick(PRODUCE).await?;
        let timestamp = now_ms();
        let records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
                producer_id: NO_PRODUCER_ID,
                producer_epoch: NO_PRODUCER_EPOCH,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder splits batches where `offset - sequence`
                // changes; keeping it constant makes one batch (Kafka
                // refuses a client's batch whose base offset is not 0),
                // whose base sequence is still NO_SEQUENCE.
                sequence: NO_SEQUENCE.wrapping_add(i as i32),
                // The creation time, as Kafka's own producers send: brokers
                // roll segments and apply time-based retention by it, and a
                // record stamped 1970 is older than any `retention.ms`.
                timestamp,
                key: None,
                value: Some(v.clone()),
                headers: IndexMap::new(),
            })
            .collect();
        let mut batch = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut batch,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .map_err(proto)?;
        let req = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(timeout_ms(self))
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(topic.into())))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(batch.freeze())),
                    ]),
            ]);
        let resp = self.send(req, version).await?;
        let p = resp
            .responses
            .into_iter()
            .flat_map(|t| t.partition_responses)
            .next()
            .ok_or_else(|| Error::UnexpectedReply("Produce without a partition".into()))?;
        if p.error_code != 0 {
            // The first rejected record's reason, when the broker gives one.
            let why = p
                .record_errors
                .iter()
                .find_map(|r| r.batch_index_error_message.clone())
                .or(p.error_message);
            return Err(server("Produce", p.error_code, why.as_ref()));
        }
        Ok(p.base_offset)
    }

    /// Reads committed records of one partition from `offset`: (offset,
    /// value) pairs, possibly none. Must be sent to the partition's leader.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<Vec<(i64, Bytes)>> {
        let version = self.pick(FETCH).await?;
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(100)
            .with_min_bytes(1)
            .with_max_bytes(4 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.into())))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]);
        let resp = self.send(req, version).await?;
        if resp.error_code != 0 {
            return Err(server("Fetch", resp.error_code, None));
        }
        let p = resp
            .responses
            .into_iter()
            .flat_map(|t| t.partitions)
            .next()
            .ok_or_else(|| Error::UnexpectedReply("Fetch without a partition".into()))?;
        if p.error_code != 0 {
            return Err(server("Fetch", p.error_code, None));
        }
        let Some(mut bytes) = p.records else {
            return Ok(Vec::new());
        };
        let sets = RecordBatchDecoder::decode_all(&mut bytes).map_err(proto)?;
        Ok(sets
            .into_iter()
            .flat_map(|s| s.records)
            .filter(|r| !r.control && r.offset >= offset)
            .map(|r| (r.offset, r.value.unwrap_or_default()))
            .collect())
    }
}

/// Milliseconds since the Unix epoch (a clock before 1970 reads 0).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

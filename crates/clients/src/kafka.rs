//! A minimal Kafka admin client: ApiVersions, Metadata, DescribeLogDirs,
//! DescribeQuorum, and CreateTopics, Produce and Fetch for data checks,
//! with the wire format from the `kafka-protocol` crate and our own bounded
//! size-prefixed framing.
//!
//! Known limit: `kafka-protocol` pre-allocates arrays from the counts it
//! decodes. The frame itself is bounded by [`Client::with_max_frame`], but a
//! malicious peer that sends a small frame announcing billions of elements
//! can still make decoding reserve a large (untouched) allocation. The
//! clients only talk to the configured broker, so this is accepted for now.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, BrokerId, DescribeLogDirsRequest, MetadataRequest, RequestHeader,
    ResponseHeader, TopicName, metadata_request::MetadataRequestTopic,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::conn::{self, deadline};
use crate::{Error, Result};

mod admin;
mod quorum;
mod records;
pub use admin::Unregistered;
pub use quorum::{ControllerView, MetadataQuorum};

/// Default largest response frame; metadata of big clusters runs to MiBs.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024 * 1024;

/// Versions this client encodes, as (api key, lowest, highest).
const METADATA: (i16, i16, i16) = (MetadataRequest::KEY, 1, 12);
const LOG_DIRS: (i16, i16, i16) = (DescribeLogDirsRequest::KEY, 1, 4);
const API_VERSIONS_VERSION: i16 = 3;

/// One API the broker supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiVersion {
    pub api_key: i16,
    pub min_version: i16,
    pub max_version: i16,
}

/// A broker as listed in Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub index: i32,
    pub error_code: i16,
    /// -1 when there is no leader.
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline_replicas: Vec<i32>,
}

impl Partition {
    /// True when some replica is not in sync.
    pub fn under_replicated(&self) -> bool {
        self.isr.len() < self.replicas.len()
    }
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    pub error_code: i16,
    pub is_internal: bool,
    pub partitions: Vec<Partition>,
}

/// The Metadata answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMetadata {
    pub cluster_id: Option<String>,
    /// -1 when unknown.
    pub controller_id: i32,
    pub brokers: Vec<Broker>,
    pub topics: Vec<Topic>,
}

impl ClusterMetadata {
    /// Partitions with fewer in-sync replicas than replicas, optionally only
    /// those led by `leader`.
    pub fn under_replicated(&self, leader: Option<i32>) -> usize {
        self.topics
            .iter()
            .flat_map(|t| &t.partitions)
            .filter(|p| p.under_replicated() && leader.is_none_or(|l| p.leader == l))
            .count()
    }
}

/// One log directory of the broker we are connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDir {
    pub path: String,
    pub error_code: i16,
    /// Total and usable bytes of the volume (-1 before Kafka 3.3).
    pub total_bytes: i64,
    pub usable_bytes: i64,
    pub topics: Vec<LogDirTopic>,
}

impl LogDir {
    /// Sum of the partition sizes in this directory.
    pub fn size_bytes(&self) -> i64 {
        self.topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| p.1)
            .sum()
    }
}

/// Partition sizes of one topic in a log directory: (partition, bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDirTopic {
    pub name: String,
    pub partitions: Vec<(i32, i64)>,
}

/// One connection to one broker; reconnects on the next call after an error.
#[derive(Debug)]
pub struct Client {
    addr: String,
    timeout: Duration,
    max_frame: usize,
    stream: Option<TcpStream>,
    correlation_id: i32,
    versions: BTreeMap<i16, (i16, i16)>,
}

impl Client {
    /// Connects and negotiates API versions.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Client> {
        let mut c = Client::lazy(addr, timeout);
        c.api_versions().await?;
        Ok(c)
    }

    /// A client that connects on its first call.
    pub fn lazy(addr: &str, timeout: Duration) -> Client {
        Client {
            addr: addr.to_string(),
            timeout,
            max_frame: DEFAULT_MAX_FRAME,
            stream: None,
            correlation_id: 0,
            versions: BTreeMap::new(),
        }
    }

    /// Changes the largest response frame accepted.
    pub fn with_max_frame(mut self, bytes: usize) -> Client {
        self.max_frame = bytes;
        self
    }

    /// ApiVersions: what the broker supports (also remembered to pick
    /// request versions).
    pub async fn api_versions(&mut self) -> Result<Vec<ApiVersion>> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("tessera"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let resp = self.send(req, API_VERSIONS_VERSION).await?;
        if resp.error_code != 0 {
            return Err(Error::Server(format!(
                "ApiVersions error code {}",
                resp.error_code
            )));
        }
        let list: Vec<ApiVersion> = resp
            .api_keys
            .iter()
            .map(|k| ApiVersion {
                api_key: k.api_key,
                min_version: k.min_version,
                max_version: k.max_version,
            })
            .collect();
        self.versions = list
            .iter()
            .map(|v| (v.api_key, (v.min_version, v.max_version)))
            .collect();
        Ok(list)
    }

    /// Metadata for `topics`, or all topics when `None`. `Some(vec![])`
    /// asks for brokers and controller only (cheap, for readiness).
    pub async fn metadata(&mut self, topics: Option<Vec<String>>) -> Result<ClusterMetadata> {
        let version = self.pick(METADATA).await?;
        let topics = topics.map(|ts| {
            ts.into_iter()
                .map(|t| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(t))))
                })
                .collect()
        });
        let req = MetadataRequest::default()
            .with_topics(topics)
            .with_allow_auto_topic_creation(false);
        let resp = self.send(req, version).await?;
        Ok(ClusterMetadata {
            cluster_id: resp.cluster_id.map(|s| s.to_string()),
            controller_id: resp.controller_id.0,
            brokers: resp
                .brokers
                .into_iter()
                .map(|b| Broker {
                    node_id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.map(|r| r.to_string()),
                })
                .collect(),
            topics: resp
                .topics
                .into_iter()
                .map(|t| Topic {
                    name: t.name.map(|n| n.0.to_string()).unwrap_or_default(),
                    error_code: t.error_code,
                    is_internal: t.is_internal,
                    partitions: t
                        .partitions
                        .into_iter()
                        .map(|p| Partition {
                            index: p.partition_index,
                            error_code: p.error_code,
                            leader: p.leader_id.0,
                            replicas: ids(p.replica_nodes),
                            isr: ids(p.isr_nodes),
                            offline_replicas: ids(p.offline_replicas),
                        })
                        .collect(),
                })
                .collect(),
        })
    }

    /// DescribeLogDirs for every topic, answered by the connected broker
    /// about its own directories.
    pub async fn describe_log_dirs(&mut self) -> Result<Vec<LogDir>> {
        let version = self.pick(LOG_DIRS).await?;
        let resp = self
            .send(DescribeLogDirsRequest::default().with_topics(None), version)
            .await?;
        if resp.error_code != 0 {
            return Err(Error::Server(format!(
                "DescribeLogDirs error code {}",
                resp.error_code
            )));
        }
        Ok(resp
            .results
            .into_iter()
            .map(|d| LogDir {
                path: d.log_dir.to_string(),
                error_code: d.error_code,
                total_bytes: d.total_bytes,
                usable_bytes: d.usable_bytes,
                topics: d
                    .topics
                    .into_iter()
                    .map(|t| LogDirTopic {
                        name: t.name.0.to_string(),
                        partitions: t
                            .partitions
                            .into_iter()
                            .map(|p| (p.partition_index, p.partition_size))
                            .collect(),
                    })
                    .collect(),
            })
            .collect())
    }

    /// Highest version both sides support for `api`.
    async fn pick(&mut self, (key, ours_min, ours_max): (i16, i16, i16)) -> Result<i16> {
        if self.versions.is_empty() || self.stream.is_none() {
            self.api_versions().await?;
        }
        let &(min, max) = self
            .versions
            .get(&key)
            .ok_or_else(|| Error::Server(format!("broker does not support API key {key}")))?;
        let v = max.min(ours_max);
        if v < min.max(ours_min) {
            return Err(Error::Server(format!(
                "no common version for API key {key}: broker {min}..{max}, client {ours_min}..{ours_max}"
            )));
        }
        Ok(v)
    }

    async fn send<R: Request>(&mut self, req: R, version: i16) -> Result<R::Response> {
        if self.stream.is_none() {
            self.stream = Some(conn::connect(&self.addr, self.timeout).await?);
        }
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let id = self.correlation_id;
        let max = self.max_frame;
        // Taken out while in use: a cancelled call must not leave a
        // half-read frame on a connection that is used again.
        let mut taken = self.stream.take().ok_or(Error::Closed)?;
        let stream = &mut taken;
        let r = deadline("kafka request", self.timeout, async {
            let frame = encode_request(&req, version, id)?;
            stream.write_all(&frame).await?;
            let body = read_frame(stream, max).await?;
            decode_response::<R>(body, version, id)
        })
        .await;
        if r.is_ok() {
            self.stream = Some(taken);
        }
        r
    }
}

fn ids(v: Vec<BrokerId>) -> Vec<i32> {
    v.into_iter().map(|b| b.0).collect()
}

fn proto(e: impl std::fmt::Display) -> Error {
    Error::Protocol(e.to_string())
}

fn encode_request<R: Request>(req: &R, version: i16, id: i32) -> Result<BytesMut> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(id)
        .with_client_id(Some(StrBytes::from_static_str("tessera")));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, R::header_version(version))
        .map_err(proto)?;
    req.encode(&mut buf, version).map_err(proto)?;
    let len = i32::try_from(buf.len() - 4).map_err(proto)?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

async fn read_frame(stream: &mut TcpStream, max: usize) -> Result<Bytes> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.map_err(eof_is_closed)?;
    let len = i32::from_be_bytes(len);
    let len =
        usize::try_from(len).map_err(|_| Error::Protocol(format!("negative frame size {len}")))?;
    if len > max {
        return Err(Error::TooLarge { limit: max });
    }
    let mut body = BytesMut::zeroed(len);
    stream.read_exact(&mut body).await.map_err(eof_is_closed)?;
    Ok(body.freeze())
}

fn eof_is_closed(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        Error::Closed
    } else {
        Error::Io(e)
    }
}

fn decode_response<R: Request>(mut body: Bytes, version: i16, id: i32) -> Result<R::Response> {
    let header =
        ResponseHeader::decode(&mut body, R::Response::header_version(version)).map_err(proto)?;
    if header.correlation_id != id {
        return Err(Error::Protocol(format!(
            "correlation id {} does not match request {id}",
            header.correlation_id
        )));
    }
    let resp = R::Response::decode(&mut body, version).map_err(proto)?;
    if body.has_remaining() {
        return Err(Error::Protocol(format!(
            "{} trailing bytes after the response",
            body.remaining()
        )));
    }
    Ok(resp)
}

/// A Kafka error code with the operation it answered.
fn server(what: &str, code: i16, message: Option<&StrBytes>) -> Error {
    Error::Server(format!(
        "{what} error code {code}{}",
        message.map(|m| format!(": {m}")).unwrap_or_default()
    ))
}

/// The broker-side timeout of a request: below the client's own, so that
/// the broker's answer (an error code) arrives before the client gives up.
fn timeout_ms(c: &Client) -> i32 {
    i32::try_from(c.timeout.as_millis() * 3 / 4).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::fake::{Behaviour, serve};
    use kafka_protocol::messages::ApiVersionsResponse;
    use kafka_protocol::messages::api_versions_response::ApiVersion as Av;

    const T: Duration = Duration::from_millis(400);

    fn api_versions_frame(id: i32) -> Vec<u8> {
        let resp = ApiVersionsResponse::default().with_api_keys(vec![
            Av::default()
                .with_api_key(3)
                .with_min_version(0)
                .with_max_version(12),
        ]);
        let mut b = BytesMut::new();
        b.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(id)
            .encode(&mut b, 0)
            .unwrap();
        resp.encode(&mut b, API_VERSIONS_VERSION).unwrap();
        let n = (b.len() - 4) as i32;
        b[..4].copy_from_slice(&n.to_be_bytes());
        b.to_vec()
    }

    #[tokio::test]
    async fn decodes_a_well_formed_reply() {
        let a = serve(Behaviour::Reply(api_versions_frame(1))).await;
        let mut c = Client::lazy(&a.to_string(), T);
        let v = c.api_versions().await.unwrap();
        assert_eq!(
            v,
            vec![ApiVersion {
                api_key: 3,
                min_version: 0,
                max_version: 12
            }]
        );
        // Wrong correlation id is a protocol error, not a mix-up.
        let a = serve(Behaviour::Reply(api_versions_frame(7))).await;
        let e = Client::lazy(&a.to_string(), T)
            .api_versions()
            .await
            .unwrap_err();
        assert_eq!(e.label(), "protocol", "{e}");
    }

    #[tokio::test]
    async fn misbehaving_brokers_give_typed_errors() {
        let mut truncated = api_versions_frame(1);
        truncated.truncate(truncated.len() - 3);
        let mut short_body = 6i32.to_be_bytes().to_vec();
        short_body.extend([0, 0, 0, 1, 0xff, 0xff]);
        let cases = [
            // "HTTP" read as a size prefix is ~1.2 GB.
            (
                Behaviour::Reply(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()),
                "too_large",
            ),
            (Behaviour::Reply((-5i32).to_be_bytes().to_vec()), "protocol"),
            (Behaviour::Reply(short_body), "protocol"),
            (Behaviour::Reply(truncated), "closed"),
            (Behaviour::Reply(Vec::new()), "closed"),
            (Behaviour::Flood(1 << 30), "too_large"),
            (Behaviour::Silent, "timeout"),
        ];
        for (b, want) in cases {
            let a = serve(b).await;
            let e = Client::lazy(&a.to_string(), T)
                .api_versions()
                .await
                .unwrap_err();
            assert_eq!(e.label(), want, "{e}");
        }
    }
}

//! Kafka: the admin protocol only (Metadata, DescribeLogDirs,
//! DescribeQuorum), no JMX agent. Values that only JMX has (connections,
//! request and byte rates) are absent.

use std::time::Duration;

use tessera_clients::kafka::{Client, ClusterMetadata, LogDir, MetadataQuorum};

use crate::error::ScrapeError;
use crate::schema::{Desc, Role, Scrape, core};

pub const PARTITIONS_LED: Desc = Desc::gauge(
    "tessera_kafka_partitions_led",
    "Partitions whose leader is this broker.",
);
pub const UNDER_REPLICATED: Desc = Desc::gauge(
    "tessera_kafka_under_replicated_partitions",
    "Partitions led by this broker whose ISR is smaller than their replica set.",
);
pub const OFFLINE: Desc = Desc::gauge(
    "tessera_kafka_offline_partitions",
    "Partitions without a leader, cluster-wide, as this broker's metadata shows.",
);
pub const BROKERS: Desc = Desc::gauge(
    "tessera_kafka_brokers",
    "Brokers registered in the cluster metadata.",
);
pub const LOG_DIR_TOTAL: Desc = Desc::gauge(
    "tessera_kafka_log_dir_total_bytes",
    "Size of the volume holding each log directory (DescribeLogDirs v4+).",
);
pub const LOG_DIR_USABLE: Desc = Desc::gauge(
    "tessera_kafka_log_dir_usable_bytes",
    "Free space on the volume holding each log directory (DescribeLogDirs v4+).",
);

pub struct Collector {
    client: Client,
    target: String,
    node_id: Option<i32>,
}

impl Collector {
    pub fn new(target: &str, timeout: Duration, node_id: Option<i32>) -> Collector {
        Collector {
            client: Client::lazy(target, timeout),
            target: target.to_string(),
            node_id,
        }
    }

    pub async fn collect(&mut self, out: &mut Scrape) -> Result<(), ScrapeError> {
        let metadata = self.client.metadata(None).await?;
        // The log dirs and the quorum are extras: the broker answered, so a
        // failure here is counted but does not turn the scrape into "down".
        let log_dirs = match self.client.describe_log_dirs().await {
            Ok(d) => Some(d),
            Err(e) => {
                out.error(&e.into());
                None
            }
        };
        let quorum = match self.client.describe_quorum().await {
            Ok(q) => Some(q),
            Err(e) => {
                // ZooKeeper-mode brokers have no metadata quorum.
                tracing::debug!(error = %e, "DescribeQuorum failed");
                None
            }
        };
        let node_id = self
            .node_id
            .or_else(|| find_node_id(&metadata, &self.target));
        map(
            &View {
                metadata: &metadata,
                node_id,
                log_dirs: log_dirs.as_deref(),
                quorum: quorum.as_ref(),
            },
            out,
        );
        Ok(())
    }
}

/// Which broker is `target`: the one advertising the same host:port, else
/// the only one on that port, else the only broker.
pub fn find_node_id(md: &ClusterMetadata, target: &str) -> Option<i32> {
    let (host, port) = target.rsplit_once(':')?;
    let port: i32 = port.parse().ok()?;
    if let Some(b) = md.brokers.iter().find(|b| b.host == host && b.port == port) {
        return Some(b.node_id);
    }
    let on_port: Vec<_> = md.brokers.iter().filter(|b| b.port == port).collect();
    match (on_port.as_slice(), md.brokers.as_slice()) {
        ([b], _) => Some(b.node_id),
        (_, [b]) => Some(b.node_id),
        _ => None,
    }
}

/// Everything one scrape learned from the broker.
pub struct View<'a> {
    pub metadata: &'a ClusterMetadata,
    pub node_id: Option<i32>,
    pub log_dirs: Option<&'a [LogDir]>,
    pub quorum: Option<&'a MetadataQuorum>,
}

pub fn map(v: &View<'_>, out: &mut Scrape) {
    let md = v.metadata;
    // The admin protocol does not carry the broker's software version.
    out.push(&core::BUILD_INFO, vec![("version", "unknown".into())], 1.0);
    out.set(&BROKERS, md.brokers.len() as f64);
    let offline = md
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.leader < 0)
        .count();
    out.set(&OFFLINE, offline as f64);
    if let Some(q) = v.quorum {
        // The metadata quorum's epoch rises by one per controller election.
        out.set(&core::LEADER_CHANGES, q.leader_epoch as f64);
    }

    let Some(me) = v.node_id else {
        out.error(&ScrapeError::Unexpected {
            what: "kafka broker",
            detail: "target not found in metadata; set --kafka-node-id".into(),
        });
        return;
    };
    out.push(
        &core::ROLE,
        vec![("role", Role::Broker.as_str().into())],
        1.0,
    );
    let is_active_controller = match v.quorum {
        Some(q) => {
            if q.voters.contains(&me) {
                out.push(
                    &core::ROLE,
                    vec![("role", Role::Controller.as_str().into())],
                    1.0,
                );
            }
            q.leader_id == me
        }
        // Without KRaft the Metadata controller id is the real controller.
        None => md.controller_id == me,
    };
    out.flag(&core::IS_LEADER, is_active_controller);

    let (mut hosted, mut led, mut urp, mut lagging, mut all_in_isr) = (0, 0, 0, 0, true);
    for p in md.topics.iter().flat_map(|t| &t.partitions) {
        if p.replicas.contains(&me) {
            hosted += 1;
            all_in_isr &= p.isr.contains(&me);
        }
        if p.leader == me {
            led += 1;
            let missing = p.replicas.iter().filter(|r| !p.isr.contains(r)).count();
            if missing > 0 {
                urp += 1;
                lagging += missing;
            }
        }
    }
    out.set(&core::ITEMS, hosted as f64);
    out.flag(&core::IN_SYNC, all_in_isr);
    out.set(&core::OUT_OF_SYNC, lagging as f64);
    out.set(&PARTITIONS_LED, led as f64);
    out.set(&UNDER_REPLICATED, urp as f64);

    if let Some(dirs) = v.log_dirs {
        let mut bytes = 0i64;
        for d in dirs.iter().filter(|d| d.error_code == 0) {
            bytes = bytes.saturating_add(d.size_bytes());
            // -1 means the broker is older than DescribeLogDirs v4.
            if d.total_bytes >= 0 {
                out.push(
                    &LOG_DIR_TOTAL,
                    vec![("dir", d.path.clone())],
                    d.total_bytes as f64,
                );
            }
            if d.usable_bytes >= 0 {
                out.push(
                    &LOG_DIR_USABLE,
                    vec![("dir", d.path.clone())],
                    d.usable_bytes as f64,
                );
            }
        }
        out.set(&core::DATA_BYTES, bytes as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Engine;
    use tessera_clients::kafka::{Broker, LogDirTopic, Partition, Topic};

    fn broker(id: i32, port: i32) -> Broker {
        Broker {
            node_id: id,
            host: "10.0.0.1".into(),
            port,
            rack: None,
        }
    }

    fn part(index: i32, leader: i32, replicas: &[i32], isr: &[i32]) -> Partition {
        Partition {
            index,
            error_code: 0,
            leader,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            offline_replicas: vec![],
        }
    }

    fn cluster() -> ClusterMetadata {
        ClusterMetadata {
            cluster_id: Some("c".into()),
            controller_id: 3,
            brokers: vec![broker(1, 9092), broker(2, 9093), broker(3, 9094)],
            topics: vec![Topic {
                name: "orders".into(),
                error_code: 0,
                is_internal: false,
                partitions: vec![
                    part(0, 1, &[1, 2, 3], &[1, 2, 3]),
                    part(1, 1, &[1, 2, 3], &[1]),
                    part(2, 2, &[2, 1, 3], &[2, 3]),
                    part(3, -1, &[3], &[]),
                ],
            }],
        }
    }

    #[test]
    fn broker_view_of_a_three_node_cluster() {
        let md = cluster();
        let dirs = vec![LogDir {
            path: "/data".into(),
            error_code: 0,
            total_bytes: 1000,
            usable_bytes: 400,
            topics: vec![LogDirTopic {
                name: "orders".into(),
                partitions: vec![(0, 100), (1, 50), (2, 7)],
            }],
        }];
        let q = MetadataQuorum {
            leader_id: 1,
            leader_epoch: 4,
            voters: vec![1, 2, 3],
            observers: vec![],
        };
        let mut s = Scrape::new(Engine::Kafka);
        map(
            &View {
                metadata: &md,
                node_id: find_node_id(&md, "10.0.0.1:9092"),
                log_dirs: Some(&dirs),
                quorum: Some(&q),
            },
            &mut s,
        );
        assert_eq!(s.get("tessera_role", &[("role", "broker")]), Some(1.0));
        assert_eq!(s.get("tessera_role", &[("role", "controller")]), Some(1.0));
        assert_eq!(s.get("tessera_is_leader", &[]), Some(1.0));
        assert_eq!(s.get("tessera_items", &[]), Some(3.0));
        assert_eq!(s.get("tessera_kafka_partitions_led", &[]), Some(2.0));
        assert_eq!(
            s.get("tessera_kafka_under_replicated_partitions", &[]),
            Some(1.0)
        );
        assert_eq!(s.get("tessera_replicas_out_of_sync", &[]), Some(2.0));
        // Broker 1 is not in the ISR of partition 2.
        assert_eq!(s.get("tessera_replication_in_sync", &[]), Some(0.0));
        assert_eq!(s.get("tessera_kafka_offline_partitions", &[]), Some(1.0));
        assert_eq!(s.get("tessera_data_bytes", &[]), Some(157.0));
        assert_eq!(
            s.get("tessera_kafka_log_dir_usable_bytes", &[("dir", "/data")]),
            Some(400.0)
        );
        assert_eq!(s.get("tessera_leader_changes_total", &[]), Some(4.0));
        for gap in [
            "tessera_connections",
            "tessera_operations_total",
            "tessera_network_receive_bytes_total",
            "tessera_data_limit_bytes",
        ] {
            assert!(!s.has(gap), "{gap} must be absent for kafka");
        }
    }

    #[test]
    fn follower_broker_and_unknown_target() {
        let md = cluster();
        let mut s = Scrape::new(Engine::Kafka);
        map(
            &View {
                metadata: &md,
                node_id: Some(2),
                log_dirs: None,
                quorum: None,
            },
            &mut s,
        );
        // No quorum (ZooKeeper mode): Metadata's controller id decides.
        assert_eq!(s.get("tessera_is_leader", &[]), Some(0.0));
        assert!(!s.has("tessera_data_bytes"));
        assert_eq!(find_node_id(&md, "elsewhere:1"), None);
        let mut s = Scrape::new(Engine::Kafka);
        map(
            &View {
                metadata: &md,
                node_id: None,
                log_dirs: None,
                quorum: None,
            },
            &mut s,
        );
        assert!(!s.has("tessera_role"));
        assert_eq!(s.errors(), &["unexpected"]);
    }
}

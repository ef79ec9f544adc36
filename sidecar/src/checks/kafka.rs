//! Kafka: a broker is ready when it answers ApiVersions and Metadata lists
//! it among the registered brokers; a controller (which answers no
//! Metadata) when it answers DescribeCluster with a known active controller. Under-replicated partitions are reported
//! as a metric, never as unreadiness (that would fail every broker at once).

use std::sync::atomic::{AtomicI64, Ordering};

use tessera_clients::kafka::Client;
use tessera_clients::target::validate_host_port;
use tokio::sync::Mutex;

use super::Verdict;
use crate::cli::{Args, KafkaRole};
use crate::error::Error;

pub struct Kafka {
    client: Mutex<Client>,
    node_id: Option<i32>,
    role: KafkaRole,
    port: i32,
    /// -1 until a Metadata answer was seen.
    under_replicated: AtomicI64,
}

impl Kafka {
    pub fn new(args: &Args) -> Result<Kafka, Error> {
        validate_host_port(&args.target)?;
        let port = args
            .target
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_default();
        Ok(Kafka {
            // Readiness needs brokers and a topic list; 16 MiB is plenty.
            client: Mutex::new(
                Client::lazy(&args.target, args.probe_timeout).with_max_frame(16 << 20),
            ),
            node_id: args.kafka_node_id,
            role: args.kafka_role,
            port,
            under_replicated: AtomicI64::new(-1),
        })
    }

    pub async fn live(&self) -> Verdict {
        match self.client.lock().await.api_versions().await {
            Ok(v) => Verdict::pass(format!("ApiVersions: {} APIs", v.len())),
            Err(e) => Verdict::error("ApiVersions", &e),
        }
    }

    pub async fn ready(&self) -> Verdict {
        let mut c = self.client.lock().await;
        if let Err(e) = c.api_versions().await {
            return Verdict::error("ApiVersions", &e);
        }
        if self.role == KafkaRole::Controller {
            // Only the active controller answers DescribeQuorum; a follower
            // that names the leader in DescribeCluster has heard from it
            // within the election timeout: it takes part in the quorum.
            return match c.describe_controllers().await {
                Ok(v) if v.leader_id >= 0 => Verdict::pass(format!(
                    "controller quorum led by {} ({} controllers registered)",
                    v.leader_id,
                    v.controllers.len()
                )),
                Ok(_) => Verdict::fail("no active controller known"),
                Err(e) => Verdict::error("DescribeCluster", &e),
            };
        }
        let md = match c.metadata(None).await {
            Ok(md) => md,
            Err(e) => return Verdict::error("Metadata", &e),
        };
        let me = md.brokers.iter().find(|b| match self.node_id {
            Some(id) => b.node_id == id,
            None => b.port == self.port,
        });
        let Some(me) = me else {
            let who = match self.node_id {
                Some(id) => format!("node {id}"),
                None => format!("a broker on port {}", self.port),
            };
            return Verdict::fail(format!(
                "{who} is not among the {} registered brokers",
                md.brokers.len()
            ));
        };
        let urp = md.under_replicated(Some(me.node_id));
        self.under_replicated.store(urp as i64, Ordering::Relaxed);
        Verdict::pass(format!(
            "broker {} registered ({} brokers)",
            me.node_id,
            md.brokers.len()
        ))
    }

    pub fn under_replicated(&self) -> Option<i64> {
        Some(self.under_replicated.load(Ordering::Relaxed)).filter(|v| *v >= 0)
    }
}

//! etcd: its own `/metrics`, translated; one GET per scrape.

use std::time::Duration;

use tessera_clients::etcd::{Client, TlsOptions};
use tessera_clients::promtext::{self, Sample};

use crate::error::ScrapeError;
use crate::schema::{Desc, Role, Scrape, core};

pub const HAS_LEADER: Desc = Desc::gauge(
    "tessera_etcd_has_leader",
    "1 when this member knows a leader (etcd_server_has_leader).",
);
pub const PROPOSALS_PENDING: Desc = Desc::gauge(
    "tessera_etcd_proposals_pending",
    "Raft proposals waiting to commit (etcd_server_proposals_pending).",
);
pub const PROPOSALS_FAILED: Desc = Desc::counter(
    "tessera_etcd_proposals_failed_total",
    "Failed raft proposals (etcd_server_proposals_failed_total).",
);
pub const DB_IN_USE: Desc = Desc::gauge(
    "tessera_etcd_db_in_use_bytes",
    "Backend bytes in use; the rest of tessera_data_bytes is reclaimable by defragmentation.",
);

pub struct Collector {
    client: Client,
}

impl Collector {
    pub fn new(url: &str, timeout: Duration, tls: Option<TlsOptions>) -> anyhow::Result<Collector> {
        Ok(Collector {
            client: Client::new(url, timeout, tls)?,
        })
    }

    pub async fn collect(&mut self, out: &mut Scrape) -> Result<(), ScrapeError> {
        let text = self.client.metrics().await?;
        let parsed = promtext::parse_counted(&text);
        for _ in 0..parsed.skipped {
            out.error(&ScrapeError::Malformed {
                field: "etcd /metrics line".into(),
                value: String::new(),
            });
        }
        // Any HTTP server can answer /metrics; only etcd's counts as up.
        if !parsed
            .samples
            .iter()
            .any(|s| s.name.starts_with("etcd_server_"))
        {
            return Err(ScrapeError::Unexpected {
                what: "etcd /metrics",
                detail: "no etcd_server_* samples".into(),
            });
        }
        map(&parsed.samples, out);
        Ok(())
    }
}

/// Maps etcd's own samples onto the uniform schema.
pub fn map(samples: &[Sample], out: &mut Scrape) {
    // The first sample of a family, or the sum over its label sets.
    let first = |name: &str| samples.iter().find(|s| s.name == name);
    let sum = |name: &str| {
        samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .reduce(|a, b| a + b)
    };
    let set = |out: &mut Scrape, d: &'static Desc, v: Option<f64>| {
        if let Some(v) = v {
            out.set(d, v);
        }
    };

    if let Some(v) = first("etcd_server_version").and_then(|s| s.label("server_version")) {
        out.push(&core::BUILD_INFO, vec![("version", v.to_string())], 1.0);
    }
    let is_leader = first("etcd_server_is_leader").map(|s| s.value == 1.0);
    let is_learner = first("etcd_server_is_learner").map(|s| s.value == 1.0);
    let role = match (is_leader, is_learner) {
        (Some(true), _) => Some(Role::Leader),
        (_, Some(true)) => Some(Role::Learner),
        (Some(false), _) => Some(Role::Follower),
        (None, _) => None,
    };
    if let Some(role) = role {
        out.push(&core::ROLE, vec![("role", role.as_str().into())], 1.0);
    }
    if let Some(l) = is_leader {
        out.flag(&core::IS_LEADER, l);
    }
    // Every gRPC call the server completed (the JSON gateway goes through
    // gRPC too). Unlike etcd_server_client_requests_total, this family is
    // pre-initialised at 0, so the counter exists from the first scrape.
    set(out, &core::OPERATIONS, sum("grpc_server_handled_total"));
    set(
        out,
        &core::RX_BYTES,
        sum("etcd_network_client_grpc_received_bytes_total"),
    );
    set(
        out,
        &core::TX_BYTES,
        sum("etcd_network_client_grpc_sent_bytes_total"),
    );
    // Renamed out of the debugging namespace in 3.4; older servers only
    // have the debugging name.
    set(
        out,
        &core::DATA_BYTES,
        first("etcd_mvcc_db_total_size_in_bytes")
            .or_else(|| first("etcd_debugging_mvcc_db_total_size_in_bytes"))
            .map(|s| s.value),
    );
    set(
        out,
        &core::DATA_LIMIT_BYTES,
        first("etcd_server_quota_backend_bytes").map(|s| s.value),
    );
    // Despite its name this is a gauge: keys currently held.
    set(
        out,
        &core::ITEMS,
        first("etcd_debugging_mvcc_keys_total").map(|s| s.value),
    );
    let has_leader = first("etcd_server_has_leader").map(|s| s.value == 1.0);
    // A member that knows a leader applies the leader's log; a learner is
    // catching up by definition until promoted.
    if let Some(h) = has_leader {
        out.flag(&core::IN_SYNC, h && is_learner != Some(true));
        out.flag(&HAS_LEADER, h);
    }
    set(
        out,
        &core::LEADER_CHANGES,
        sum("etcd_server_leader_changes_seen_total"),
    );
    set(
        out,
        &PROPOSALS_PENDING,
        first("etcd_server_proposals_pending").map(|s| s.value),
    );
    set(
        out,
        &PROPOSALS_FAILED,
        sum("etcd_server_proposals_failed_total"),
    );
    set(
        out,
        &DB_IN_USE,
        first("etcd_mvcc_db_total_size_in_use_in_bytes").map(|s| s.value),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Engine;

    #[test]
    fn single_member_leader() {
        let mut s = Scrape::new(Engine::Etcd);
        map(
            &promtext::parse(include_str!("../../testdata/etcd_metrics.txt")),
            &mut s,
        );
        assert_eq!(
            s.get("tessera_build_info", &[("version", "3.4.23")]),
            Some(1.0)
        );
        assert_eq!(s.get("tessera_role", &[("role", "leader")]), Some(1.0));
        assert_eq!(s.get("tessera_is_leader", &[]), Some(1.0));
        assert_eq!(s.get("tessera_operations_total", &[]), Some(11.0));
        assert_eq!(
            s.get("tessera_network_receive_bytes_total", &[]),
            Some(97.0)
        );
        assert_eq!(
            s.get("tessera_network_transmit_bytes_total", &[]),
            Some(327.0)
        );
        assert_eq!(s.get("tessera_data_bytes", &[]), Some(20480.0));
        assert_eq!(s.get("tessera_data_limit_bytes", &[]), Some(2147483648.0));
        assert_eq!(s.get("tessera_items", &[]), Some(10.0));
        assert_eq!(s.get("tessera_replication_in_sync", &[]), Some(1.0));
        assert_eq!(s.get("tessera_leader_changes_total", &[]), Some(1.0));
        // etcd exposes neither client connections nor follower lag.
        assert!(!s.has("tessera_connections"));
        assert!(!s.has("tessera_replicas_out_of_sync"));
    }

    #[test]
    fn learner_without_leader() {
        let mut s = Scrape::new(Engine::Etcd);
        map(
            &promtext::parse(
                "etcd_server_is_leader 0\netcd_server_is_learner 1\netcd_server_has_leader 0\n",
            ),
            &mut s,
        );
        assert_eq!(s.get("tessera_role", &[("role", "learner")]), Some(1.0));
        assert_eq!(s.get("tessera_is_leader", &[]), Some(0.0));
        assert_eq!(s.get("tessera_replication_in_sync", &[]), Some(0.0));
    }
}

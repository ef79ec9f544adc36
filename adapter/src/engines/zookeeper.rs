//! ZooKeeper: `mntr` per scrape (`srvr` when `mntr` is not whitelisted).
//! Four-letter words close the connection after each reply, so there is no
//! connection to keep alive.

use std::collections::HashMap;
use std::time::Duration;

use tessera_clients::zookeeper::{self, MntrLine, Mode, Srvr};

use crate::error::ScrapeError;
use crate::schema::{Desc, Role, Scrape, core};

pub const OUTSTANDING: Desc = Desc::gauge(
    "tessera_zookeeper_outstanding_requests",
    "Requests queued and not yet processed (mntr zk_outstanding_requests).",
);
pub const AVG_LATENCY: Desc = Desc::gauge(
    "tessera_zookeeper_average_latency_seconds",
    "Average request latency since the last reset (mntr zk_avg_latency, converted from ms).",
);
pub const EPHEMERALS: Desc = Desc::gauge(
    "tessera_zookeeper_ephemerals",
    "Ephemeral znodes (mntr zk_ephemerals_count).",
);
pub const WATCHES: Desc = Desc::gauge(
    "tessera_zookeeper_watches",
    "Watches set by clients (mntr zk_watch_count).",
);
pub const PENDING_SYNCS: Desc = Desc::gauge(
    "tessera_zookeeper_pending_syncs",
    "On the leader: learners still syncing (mntr zk_pending_syncs).",
);
pub const OPEN_FDS: Desc = Desc::gauge(
    "tessera_zookeeper_open_file_descriptors",
    "Open file descriptors (mntr zk_open_file_descriptor_count).",
);
pub const SERVING: Desc = Desc::gauge(
    "tessera_zookeeper_serving",
    "1 when the server is in quorum and serving requests.",
);

const NOT_SERVING: &str = "not currently serving requests";
const NOT_WHITELISTED: &str = "not in the whitelist";

pub struct Collector {
    target: String,
    timeout: Duration,
}

impl Collector {
    pub fn new(target: &str, timeout: Duration) -> Collector {
        Collector {
            target: target.to_string(),
            timeout,
        }
    }

    pub async fn collect(&mut self, out: &mut Scrape) -> Result<(), ScrapeError> {
        let text = zookeeper::four_letter(&self.target, "mntr", self.timeout).await?;
        if text.contains(NOT_WHITELISTED) {
            out.error(&ScrapeError::Unexpected {
                what: "zookeeper reply",
                detail: "mntr is not whitelisted; falling back to srvr".into(),
            });
            let text = zookeeper::four_letter(&self.target, "srvr", self.timeout).await?;
            map_srvr(&Srvr::parse(&text)?, out);
        } else if text.contains(NOT_SERVING) || text.contains("zk_server_state") {
            map_mntr(&text, out);
        } else {
            // Something answered, but not a ZooKeeper: that is not "up".
            return Err(ScrapeError::Unexpected {
                what: "zookeeper reply",
                detail: "no zk_server_state in the mntr reply".into(),
            });
        }
        Ok(())
    }
}

/// Maps `mntr` text onto the uniform schema.
pub fn map_mntr(text: &str, out: &mut Scrape) {
    if text.contains(NOT_SERVING) {
        not_serving(out);
        return;
    }
    let lines = zookeeper::parse_mntr(text);
    let non_empty = text.lines().filter(|l| !l.trim().is_empty()).count();
    for _ in lines.len()..non_empty {
        out.error(&ScrapeError::Malformed {
            field: "mntr line".into(),
            value: String::new(),
        });
    }
    // Labelled keys (3.6+) are per-namespace or per-learner series; none of
    // the values the schema uses is labelled, so they are left out here.
    let m: HashMap<&str, &str> = lines
        .iter()
        .filter(|l: &&MntrLine| l.labels.is_empty())
        .map(|l| (l.key.as_str(), l.value.as_str()))
        .collect();
    let get = |k: &str| m.get(k).copied();

    if let Some(v) = get("zk_version") {
        out.push(&core::BUILD_INFO, vec![("version", short_version(v))], 1.0);
    }
    let mode = match get("zk_server_state") {
        Some("leader") => Some(Mode::Leader),
        Some("follower") => Some(Mode::Follower),
        Some("observer") => Some(Mode::Observer),
        Some("standalone") => Some(Mode::Standalone),
        Some(other) => {
            out.error(&ScrapeError::Unexpected {
                what: "zookeeper server state",
                detail: other.chars().take(32).collect(),
            });
            None
        }
        None => None,
    };
    if let Some(mode) = mode {
        map_mode(mode, out);
    }
    out.field(
        &core::CONNECTIONS,
        "zk_num_alive_connections",
        get("zk_num_alive_connections"),
        1.0,
    );
    out.field(
        &core::OPERATIONS,
        "zk_packets_received",
        get("zk_packets_received"),
        1.0,
    );
    out.field(
        &core::RX_BYTES,
        "zk_bytes_received_count",
        get("zk_bytes_received_count"),
        1.0,
    );
    out.field(
        &core::TX_BYTES,
        "zk_response_bytes",
        get("zk_response_bytes"),
        1.0,
    );
    out.field(
        &core::DATA_BYTES,
        "zk_approximate_data_size",
        get("zk_approximate_data_size"),
        1.0,
    );
    out.field(&core::ITEMS, "zk_znode_count", get("zk_znode_count"), 1.0);
    out.field(
        &core::LEADER_CHANGES,
        "zk_cnt_election_time",
        get("zk_cnt_election_time"),
        1.0,
    );
    if mode == Some(Mode::Leader) {
        let learners = out.parse("zk_learners", get("zk_learners").or(get("zk_followers")));
        let mut synced = None;
        for f in [
            "zk_synced_followers",
            "zk_synced_non_voting_followers",
            "zk_synced_observers",
        ] {
            if let Some(n) = out.parse(f, get(f)) {
                *synced.get_or_insert(0.0) += n;
            }
        }
        if let (Some(l), Some(s)) = (learners, synced) {
            out.set(&core::OUT_OF_SYNC, (l - s).max(0.0));
        }
        out.field(
            &PENDING_SYNCS,
            "zk_pending_syncs",
            get("zk_pending_syncs"),
            1.0,
        );
    }
    out.field(
        &OUTSTANDING,
        "zk_outstanding_requests",
        get("zk_outstanding_requests"),
        1.0,
    );
    out.field(&AVG_LATENCY, "zk_avg_latency", get("zk_avg_latency"), 1e-3);
    out.field(
        &EPHEMERALS,
        "zk_ephemerals_count",
        get("zk_ephemerals_count"),
        1.0,
    );
    out.field(&WATCHES, "zk_watch_count", get("zk_watch_count"), 1.0);
    out.field(
        &OPEN_FDS,
        "zk_open_file_descriptor_count",
        get("zk_open_file_descriptor_count"),
        1.0,
    );
}

/// The reduced mapping from `srvr`, for servers that only whitelist it.
pub fn map_srvr(srvr: &Srvr, out: &mut Scrape) {
    if srvr.mode == Mode::NotServing {
        not_serving(out);
        return;
    }
    if let Some(v) = &srvr.version {
        out.push(&core::BUILD_INFO, vec![("version", short_version(v))], 1.0);
    }
    map_mode(srvr.mode, out);
    let opt = |out: &mut Scrape, d: &'static Desc, v: Option<u64>| {
        if let Some(v) = v {
            out.set(d, v as f64);
        }
    };
    opt(out, &core::CONNECTIONS, srvr.connections);
    opt(out, &core::OPERATIONS, srvr.received);
    opt(out, &core::ITEMS, srvr.node_count);
    opt(out, &OUTSTANDING, srvr.outstanding);
    if let Some(ms) = srvr.latency_avg_ms {
        out.set(&AVG_LATENCY, ms / 1000.0);
    }
}

fn map_mode(mode: Mode, out: &mut Scrape) {
    let role = match mode {
        Mode::Leader => Role::Leader,
        Mode::Follower => Role::Follower,
        Mode::Observer => Role::Observer,
        Mode::Standalone => Role::Standalone,
        Mode::NotServing | Mode::Other => {
            out.error(&ScrapeError::Unexpected {
                what: "zookeeper mode",
                detail: mode.as_str().into(),
            });
            return;
        }
    };
    out.push(&core::ROLE, vec![("role", role.as_str().into())], 1.0);
    // A standalone server is its own leader: it accepts writes.
    out.flag(
        &core::IS_LEADER,
        matches!(role, Role::Leader | Role::Standalone),
    );
    // Serving as follower or observer means synced with the leader.
    out.flag(&core::IN_SYNC, true);
    out.flag(&SERVING, true);
}

/// Out of quorum: the process answers but serves nothing. No role is
/// published; leader and sync are explicitly 0 so ensemble alerts fire.
fn not_serving(out: &mut Scrape) {
    out.flag(&core::IS_LEADER, false);
    out.flag(&core::IN_SYNC, false);
    out.flag(&SERVING, false);
}

/// `3.8.0-debian, built on ...` → `3.8.0-debian`; build noise such as an
/// unexpanded `-${mvngit.commit.id}` is dropped.
fn short_version(v: &str) -> String {
    let v = v.split(',').next().unwrap_or(v).trim();
    match v.find("-$") {
        Some(i) => v[..i].to_string(),
        None => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Engine;

    fn mntr(text: &str) -> Scrape {
        let mut s = Scrape::new(Engine::Zookeeper);
        map_mntr(text, &mut s);
        s
    }

    #[test]
    fn leader_of_an_ensemble() {
        let s = mntr(include_str!("../../testdata/zk_leader_mntr.txt"));
        assert_eq!(
            s.get("tessera_build_info", &[("version", "3.8.0")]),
            Some(1.0)
        );
        assert_eq!(s.get("tessera_role", &[("role", "leader")]), Some(1.0));
        assert_eq!(s.get("tessera_is_leader", &[]), Some(1.0));
        assert_eq!(s.get("tessera_replication_in_sync", &[]), Some(1.0));
        assert_eq!(s.get("tessera_replicas_out_of_sync", &[]), Some(0.0));
        assert_eq!(s.get("tessera_items", &[]), Some(10.0));
        assert_eq!(s.get("tessera_operations_total", &[]), Some(9.0));
        assert_eq!(
            s.get("tessera_network_receive_bytes_total", &[]),
            Some(372.0)
        );
        assert_eq!(
            s.get("tessera_network_transmit_bytes_total", &[]),
            Some(208.0)
        );
        assert_eq!(s.get("tessera_leader_changes_total", &[]), Some(1.0));
        assert!(s.has("tessera_connections"));
        assert!(s.has("tessera_data_bytes"));
        // ZooKeeper has no data cap.
        assert!(!s.has("tessera_data_limit_bytes"));
        assert!(s.errors().is_empty(), "{:?}", s.errors());
    }

    #[test]
    fn follower_and_standalone() {
        let s = mntr(include_str!("../../testdata/zk_follower_mntr.txt"));
        assert_eq!(s.get("tessera_role", &[("role", "follower")]), Some(1.0));
        assert_eq!(s.get("tessera_is_leader", &[]), Some(0.0));
        assert!(!s.has("tessera_replicas_out_of_sync"));
        let s = mntr(include_str!("../../testdata/zk_standalone_mntr.txt"));
        assert_eq!(s.get("tessera_role", &[("role", "standalone")]), Some(1.0));
        assert_eq!(s.get("tessera_is_leader", &[]), Some(1.0));
        assert_eq!(
            s.get("tessera_zookeeper_average_latency_seconds", &[]),
            Some(0.0)
        );
    }

    #[test]
    fn out_of_quorum_has_no_role_and_no_leader() {
        let s = mntr(include_str!("../../testdata/zk_noquorum_mntr.txt"));
        assert!(!s.has("tessera_role"));
        assert_eq!(s.get("tessera_is_leader", &[]), Some(0.0));
        assert_eq!(s.get("tessera_replication_in_sync", &[]), Some(0.0));
    }

    #[test]
    fn labelled_keys_and_garbage_do_not_break_the_rest() {
        let s = mntr(
            "zk_version\t3.9.1-1, built on x\n\
             zk_server_state\tleader\n\
             zk_learners\t2\n\
             zk_synced_followers\t1\n\
             zk_avg_latency\t2.5\n\
             zk_cnt_learner_handler_qp_size{key=\"2\"}\t60\n\
             zk_znode_count{key=\"bogus\"}\t999\n\
             zk_znode_count\t17\n\
             zk_num_alive_connections\tmany\n\
             garbage-without-a-value\n",
        );
        assert_eq!(s.get("tessera_items", &[]), Some(17.0));
        assert_eq!(s.get("tessera_replicas_out_of_sync", &[]), Some(1.0));
        assert_eq!(
            s.get("tessera_zookeeper_average_latency_seconds", &[]),
            Some(0.0025)
        );
        assert!(!s.has("tessera_connections"));
        assert_eq!(s.errors(), &["malformed_field", "malformed_field"]);
    }

    #[test]
    fn srvr_fallback() {
        let mut s = Scrape::new(Engine::Zookeeper);
        let srvr = Srvr::parse(
            "Zookeeper version: 3.8.0-debian, built on 2022\nLatency min/avg/max: 0/1.5/9\nReceived: 10\nSent: 9\nConnections: 2\nOutstanding: 0\nZxid: 0x1\nMode: follower\nNode count: 5\n",
        )
        .unwrap();
        map_srvr(&srvr, &mut s);
        assert_eq!(s.get("tessera_role", &[("role", "follower")]), Some(1.0));
        assert_eq!(
            s.get("tessera_build_info", &[("version", "3.8.0-debian")]),
            Some(1.0)
        );
        assert_eq!(s.get("tessera_connections", &[]), Some(2.0));
        assert_eq!(s.get("tessera_items", &[]), Some(5.0));
    }
}

//! memcached: one `stats` per scrape over a kept-alive connection.

use std::collections::BTreeMap;
use std::time::Duration;

use tessera_clients::memcached::client::Client;

use crate::error::ScrapeError;
use crate::schema::{Desc, Role, Scrape, core};

pub const GET_HITS: Desc = Desc::counter(
    "tessera_memcached_get_hits_total",
    "Keys requested and found (stats get_hits).",
);
pub const GET_MISSES: Desc = Desc::counter(
    "tessera_memcached_get_misses_total",
    "Keys requested and not found (stats get_misses).",
);
pub const EVICTIONS: Desc = Desc::counter(
    "tessera_memcached_evictions_total",
    "Valid items evicted to free memory (stats evictions).",
);
pub const ACCEPTING: Desc = Desc::gauge(
    "tessera_memcached_accepting_connections",
    "1 while the server accepts new connections (stats accepting_conns).",
);
pub const REJECTED_CONNECTIONS: Desc = Desc::counter(
    "tessera_memcached_rejected_connections_total",
    "Connections refused because of max_connections (stats rejected_connections).",
);
pub const UPTIME: Desc = Desc::gauge(
    "tessera_memcached_uptime_seconds",
    "Seconds since the server started (stats uptime).",
);

/// Every request kind memcached counts; their sum is `tessera_operations_total`.
/// Deletes, incr and decr have no `cmd_` counter, only hits and misses.
const OPERATION_FIELDS: &[&str] = &[
    "cmd_get",
    "cmd_set",
    "cmd_flush",
    "cmd_touch",
    "cmd_meta",
    "delete_hits",
    "delete_misses",
    "incr_hits",
    "incr_misses",
    "decr_hits",
    "decr_misses",
];

pub struct Collector {
    client: Client,
}

impl Collector {
    pub fn new(target: &str, timeout: Duration) -> Collector {
        Collector {
            client: Client::lazy(target, timeout),
        }
    }

    pub async fn collect(&mut self, out: &mut Scrape) -> Result<(), ScrapeError> {
        let stats = self.client.stats().await?;
        map(&stats, out);
        Ok(())
    }
}

/// Maps a `stats` reply onto the uniform schema.
pub fn map(stats: &BTreeMap<String, String>, out: &mut Scrape) {
    let get = |k: &str| stats.get(k).map(String::as_str);
    if let Some(v) = get("version") {
        out.push(&core::BUILD_INFO, vec![("version", v.to_string())], 1.0);
    }
    // memcached has no replication: every server stands alone, and no
    // leader gauge is published (absent, not zero).
    out.push(
        &core::ROLE,
        vec![("role", Role::Standalone.as_str().into())],
        1.0,
    );
    out.field(
        &core::CONNECTIONS,
        "curr_connections",
        get("curr_connections"),
        1.0,
    );
    let mut ops = None;
    for f in OPERATION_FIELDS {
        if let Some(n) = out.parse(f, get(f)) {
            *ops.get_or_insert(0.0) += n;
        }
    }
    if let Some(ops) = ops {
        out.set(&core::OPERATIONS, ops);
    }
    out.field(&core::RX_BYTES, "bytes_read", get("bytes_read"), 1.0);
    out.field(&core::TX_BYTES, "bytes_written", get("bytes_written"), 1.0);
    out.field(&core::DATA_BYTES, "bytes", get("bytes"), 1.0);
    out.field(
        &core::DATA_LIMIT_BYTES,
        "limit_maxbytes",
        get("limit_maxbytes"),
        1.0,
    );
    out.field(&core::ITEMS, "curr_items", get("curr_items"), 1.0);
    out.field(&GET_HITS, "get_hits", get("get_hits"), 1.0);
    out.field(&GET_MISSES, "get_misses", get("get_misses"), 1.0);
    out.field(&EVICTIONS, "evictions", get("evictions"), 1.0);
    out.field(&ACCEPTING, "accepting_conns", get("accepting_conns"), 1.0);
    out.field(
        &REJECTED_CONNECTIONS,
        "rejected_connections",
        get("rejected_connections"),
        1.0,
    );
    out.field(&UPTIME, "uptime", get("uptime"), 1.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Engine;

    /// The `STAT key value` lines of a captured reply.
    fn stats(text: &str) -> BTreeMap<String, String> {
        text.lines()
            .filter_map(|l| l.trim_end().strip_prefix("STAT "))
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn captured_stats_map_every_core_metric_it_has() {
        let mut s = Scrape::new(Engine::Memcached);
        map(&stats(include_str!("../../testdata/mc_stats.txt")), &mut s);
        assert_eq!(
            s.get("tessera_build_info", &[("version", "1.6.18")]),
            Some(1.0)
        );
        assert_eq!(s.get("tessera_role", &[("role", "standalone")]), Some(1.0));
        assert_eq!(s.get("tessera_connections", &[]), Some(1.0));
        assert_eq!(s.get("tessera_operations_total", &[]), Some(31.0));
        assert_eq!(
            s.get("tessera_network_receive_bytes_total", &[]),
            Some(672.0)
        );
        assert_eq!(
            s.get("tessera_network_transmit_bytes_total", &[]),
            Some(2471.0)
        );
        assert_eq!(s.get("tessera_data_bytes", &[]), Some(2000.0));
        assert_eq!(s.get("tessera_data_limit_bytes", &[]), Some(67108864.0));
        assert_eq!(s.get("tessera_items", &[]), Some(30.0));
        assert_eq!(
            s.get("tessera_memcached_accepting_connections", &[]),
            Some(1.0)
        );
        for gap in [
            "tessera_is_leader",
            "tessera_replication_in_sync",
            "tessera_replicas_out_of_sync",
            "tessera_leader_changes_total",
        ] {
            assert!(!s.has(gap), "{gap} must be absent for memcached");
        }
        assert!(s.errors().is_empty());
    }

    #[test]
    fn malformed_counter_is_skipped_and_counted() {
        let mut m = BTreeMap::new();
        m.insert("cmd_get".to_string(), "7".to_string());
        m.insert("cmd_set".to_string(), "-".to_string());
        m.insert("bytes".to_string(), "1e400".to_string());
        let mut s = Scrape::new(Engine::Memcached);
        map(&m, &mut s);
        assert_eq!(s.get("tessera_operations_total", &[]), Some(7.0));
        assert!(!s.has("tessera_data_bytes"));
        assert_eq!(s.errors().len(), 2);
    }
}

//! Redis (and Valkey): one `INFO` per scrape over a kept-alive connection.

use tessera_clients::redis::{Client, Info, Options};

use crate::error::ScrapeError;
use crate::schema::{Desc, Role, Scrape, core};

pub const KEYSPACE_HITS: Desc = Desc::counter(
    "tessera_redis_keyspace_hits_total",
    "Successful key lookups (INFO keyspace_hits).",
);
pub const KEYSPACE_MISSES: Desc = Desc::counter(
    "tessera_redis_keyspace_misses_total",
    "Failed key lookups (INFO keyspace_misses).",
);
pub const EVICTED_KEYS: Desc = Desc::counter(
    "tessera_redis_evicted_keys_total",
    "Keys evicted because of maxmemory (INFO evicted_keys).",
);
pub const EXPIRED_KEYS: Desc = Desc::counter(
    "tessera_redis_expired_keys_total",
    "Keys removed on expiry (INFO expired_keys).",
);
pub const REJECTED_CONNECTIONS: Desc = Desc::counter(
    "tessera_redis_rejected_connections_total",
    "Connections refused because of maxclients (INFO rejected_connections).",
);
pub const CONNECTED_REPLICAS: Desc = Desc::gauge(
    "tessera_redis_connected_replicas",
    "Replicas attached to this primary (INFO connected_slaves).",
);
pub const REPLICA_LAG_BYTES: Desc = Desc::gauge(
    "tessera_redis_replica_lag_bytes",
    "On a primary: master_repl_offset minus each replica's acknowledged offset.",
);
pub const MASTER_LINK_UP: Desc = Desc::gauge(
    "tessera_redis_master_link_up",
    "On a replica: 1 when master_link_status is up.",
);
pub const MASTER_LAST_IO: Desc = Desc::gauge(
    "tessera_redis_master_last_io_seconds",
    "On a replica: seconds since the last interaction with the primary.",
);
pub const UPTIME: Desc = Desc::gauge(
    "tessera_redis_uptime_seconds",
    "Seconds since the server started (INFO uptime_in_seconds).",
);

/// A replica whose primary has not acknowledged it for this long counts as
/// lagging; it is Redis's own default for `min-replicas-max-lag`.
const MAX_REPLICA_ACK_LAG_SECONDS: f64 = 10.0;

pub struct Collector {
    client: Client,
}

impl Collector {
    pub fn new(target: &str, opts: Options) -> Collector {
        Collector {
            client: Client::lazy(target, opts),
        }
    }

    pub async fn collect(&mut self, out: &mut Scrape) -> Result<(), ScrapeError> {
        let info = self.client.info(None).await?;
        map(&info, out);
        Ok(())
    }
}

/// Maps an `INFO` reply onto the uniform schema.
pub fn map(info: &Info, out: &mut Scrape) {
    if let Some(v) = info
        .get("redis_version")
        .or_else(|| info.get("valkey_version"))
    {
        out.push(&core::BUILD_INFO, vec![("version", v.to_string())], 1.0);
    }
    let role = match info.get("role") {
        Some("master") => Some(Role::Primary),
        Some("slave") => Some(Role::Replica),
        Some(other) => {
            out.error(&ScrapeError::Unexpected {
                what: "redis role",
                detail: other.chars().take(32).collect(),
            });
            None
        }
        None => None,
    };
    if let Some(role) = role {
        out.push(&core::ROLE, vec![("role", role.as_str().into())], 1.0);
        out.flag(&core::IS_LEADER, role == Role::Primary);
    }
    out.field(
        &core::CONNECTIONS,
        "connected_clients",
        info.get("connected_clients"),
        1.0,
    );
    out.field(
        &core::OPERATIONS,
        "total_commands_processed",
        info.get("total_commands_processed"),
        1.0,
    );
    out.field(
        &core::RX_BYTES,
        "total_net_input_bytes",
        info.get("total_net_input_bytes"),
        1.0,
    );
    out.field(
        &core::TX_BYTES,
        "total_net_output_bytes",
        info.get("total_net_output_bytes"),
        1.0,
    );
    out.field(
        &core::DATA_BYTES,
        "used_memory",
        info.get("used_memory"),
        1.0,
    );
    // maxmemory 0 means "no limit": the limit is absent, not zero.
    if let Some(limit) = out.parse("maxmemory", info.get("maxmemory"))
        && limit > 0.0
    {
        out.set(&core::DATA_LIMIT_BYTES, limit);
    }
    map_keyspace(info, out);
    match role {
        Some(Role::Primary) => map_primary(info, out),
        Some(Role::Replica) => map_replica(info, out),
        _ => {}
    }
    out.field(
        &KEYSPACE_HITS,
        "keyspace_hits",
        info.get("keyspace_hits"),
        1.0,
    );
    out.field(
        &KEYSPACE_MISSES,
        "keyspace_misses",
        info.get("keyspace_misses"),
        1.0,
    );
    out.field(&EVICTED_KEYS, "evicted_keys", info.get("evicted_keys"), 1.0);
    out.field(&EXPIRED_KEYS, "expired_keys", info.get("expired_keys"), 1.0);
    out.field(
        &REJECTED_CONNECTIONS,
        "rejected_connections",
        info.get("rejected_connections"),
        1.0,
    );
    out.field(
        &UPTIME,
        "uptime_in_seconds",
        info.get("uptime_in_seconds"),
        1.0,
    );
}

/// `dbN:keys=1,expires=0,avg_ttl=0` lines, summed over databases.
fn map_keyspace(info: &Info, out: &mut Scrape) {
    // An empty server prints an empty `# Keyspace` section: zero keys.
    let mut total = 0.0;
    for (db, line) in info.section("keyspace").into_iter().flatten() {
        let keys = sub_field(line, "keys");
        if let Some(n) = out.parse(db, Some(keys.unwrap_or(line))) {
            total += n;
        }
    }
    out.set(&core::ITEMS, total);
}

fn map_primary(info: &Info, out: &mut Scrape) {
    // A primary holds the authoritative copy.
    out.flag(&core::IN_SYNC, true);
    out.field(
        &CONNECTED_REPLICAS,
        "connected_slaves",
        info.get("connected_slaves"),
        1.0,
    );
    let master_offset = out.parse("master_repl_offset", info.get("master_repl_offset"));
    let Some(repl) = info.section("replication") else {
        return;
    };
    let mut lagging = 0.0;
    for (key, line) in repl {
        let Some(idx) = key.strip_prefix("slave") else {
            continue;
        };
        if idx.parse::<u32>().is_err() {
            continue; // slave_read_only and friends
        }
        let name = match (sub_field(line, "ip"), sub_field(line, "port")) {
            (Some(ip), Some(port)) => format!("{ip}:{port}"),
            _ => key.clone(),
        };
        let online = sub_field(line, "state") == Some("online");
        let ack_lag = out.parse(key, sub_field(line, "lag"));
        if !online || ack_lag.is_some_and(|l| l > MAX_REPLICA_ACK_LAG_SECONDS) {
            lagging += 1.0;
        }
        if let (Some(m), Some(o)) = (master_offset, out.parse(key, sub_field(line, "offset"))) {
            out.push(
                &REPLICA_LAG_BYTES,
                vec![("replica", name)],
                (m - o).max(0.0),
            );
        }
    }
    out.set(&core::OUT_OF_SYNC, lagging);
}

fn map_replica(info: &Info, out: &mut Scrape) {
    let link_up = info.get("master_link_status") == Some("up");
    let syncing = info
        .get("master_sync_in_progress")
        .is_some_and(|v| v != "0");
    let loading = info.get("loading").is_some_and(|v| v != "0");
    out.flag(&MASTER_LINK_UP, link_up);
    out.flag(&core::IN_SYNC, link_up && !syncing && !loading);
    // -1 means "never"; that is already covered by master_link_up 0.
    if let Some(s) = out.parse(
        "master_last_io_seconds_ago",
        info.get("master_last_io_seconds_ago"),
    ) && s >= 0.0
    {
        out.set(&MASTER_LAST_IO, s);
    }
}

/// `a=1,b=2` → value of `name`.
fn sub_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Engine;

    fn scrape(text: &str) -> Scrape {
        let mut s = Scrape::new(Engine::Redis);
        map(&Info::parse(text), &mut s);
        s
    }

    #[test]
    fn primary_info_maps_every_core_metric() {
        let s = scrape(include_str!("../../testdata/redis_primary_info.txt"));
        assert_eq!(
            s.get("tessera_build_info", &[("version", "7.0.15")]),
            Some(1.0)
        );
        assert_eq!(s.get("tessera_role", &[("role", "primary")]), Some(1.0));
        assert_eq!(s.get("tessera_is_leader", &[]), Some(1.0));
        assert_eq!(s.get("tessera_connections", &[]), Some(1.0));
        assert_eq!(s.get("tessera_operations_total", &[]), Some(85.0));
        assert_eq!(
            s.get("tessera_network_receive_bytes_total", &[]),
            Some(2583.0)
        );
        assert_eq!(s.get("tessera_data_limit_bytes", &[]), Some(104857600.0));
        assert_eq!(s.get("tessera_items", &[]), Some(70.0));
        assert_eq!(s.get("tessera_replication_in_sync", &[]), Some(1.0));
        assert_eq!(s.get("tessera_replicas_out_of_sync", &[]), Some(0.0));
        assert_eq!(
            s.get(
                "tessera_redis_replica_lag_bytes",
                &[("replica", "127.0.0.1:16380")]
            ),
            Some(0.0)
        );
        assert_eq!(s.get("tessera_redis_keyspace_hits_total", &[]), Some(1.0));
        assert!(s.has("tessera_data_bytes"));
        // Redis does not count leader changes: absent, not zero.
        assert!(!s.has("tessera_leader_changes_total"));
        assert!(s.errors().is_empty(), "{:?}", s.errors());
    }

    #[test]
    fn replica_info_reports_link_and_no_limit() {
        let s = scrape(include_str!("../../testdata/redis_replica_info.txt"));
        assert_eq!(s.get("tessera_role", &[("role", "replica")]), Some(1.0));
        assert_eq!(s.get("tessera_is_leader", &[]), Some(0.0));
        assert_eq!(s.get("tessera_replication_in_sync", &[]), Some(1.0));
        assert_eq!(s.get("tessera_redis_master_link_up", &[]), Some(1.0));
        assert_eq!(
            s.get("tessera_redis_master_last_io_seconds", &[]),
            Some(1.0)
        );
        // maxmemory:0 is "unlimited".
        assert!(!s.has("tessera_data_limit_bytes"));
        // A replica sees no replicas of its own.
        assert!(!s.has("tessera_replicas_out_of_sync"));
    }

    #[test]
    fn lagging_replica_and_broken_link() {
        let s = scrape(
            "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
             slave0:ip=10.0.0.2,port=6379,state=online,offset=100,lag=0\r\n\
             slave1:ip=10.0.0.3,port=6379,state=wait_bgsave,offset=0,lag=0\r\n\
             master_repl_offset:150\r\n",
        );
        assert_eq!(s.get("tessera_replicas_out_of_sync", &[]), Some(1.0));
        assert_eq!(
            s.get(
                "tessera_redis_replica_lag_bytes",
                &[("replica", "10.0.0.2:6379")]
            ),
            Some(50.0)
        );
        let s = scrape("role:slave\nmaster_link_status:down\nmaster_last_io_seconds_ago:-1\n");
        assert_eq!(s.get("tessera_replication_in_sync", &[]), Some(0.0));
        assert!(!s.has("tessera_redis_master_last_io_seconds"));
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let s = scrape(
            "role:sentinel\nconnected_clients:lots\nused_memory:12\n# Keyspace\ndb0:keys=x,expires=0\n\x00\x01",
        );
        assert!(!s.has("tessera_role"));
        assert!(!s.has("tessera_connections"));
        assert_eq!(s.get("tessera_data_bytes", &[]), Some(12.0));
        assert_eq!(
            s.errors(),
            &["unexpected", "malformed_field", "malformed_field"]
        );
    }
}

//! The adapter against each real engine: every core metric the table in
//! docs/metrics.md promises is present and plausible, every gap is absent,
//! the output passes `promtool check metrics`, and a dead engine gives
//! `tessera_up 0` with HTTP 200 on the very next scrape.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{Adapter, Metrics, assert_down_within_one_scrape, eventually};
use tessera_testing::{Etcd, KafkaBroker, Memcached, RedisServer, ZooKeeperEnsemble, exchange};

const UP: &str = "tessera_up";
const BUILD: &str = "tessera_build_info";
const ROLE: &str = "tessera_role";
const LEADER: &str = "tessera_is_leader";
const CONNS: &str = "tessera_connections";
const OPS: &str = "tessera_operations_total";
const RX: &str = "tessera_network_receive_bytes_total";
const TX: &str = "tessera_network_transmit_bytes_total";
const DATA: &str = "tessera_data_bytes";
const LIMIT: &str = "tessera_data_limit_bytes";
const ITEMS: &str = "tessera_items";
const IN_SYNC: &str = "tessera_replication_in_sync";
const OUT_OF_SYNC: &str = "tessera_replicas_out_of_sync";
const LEADER_CHANGES: &str = "tessera_leader_changes_total";
const OWN: [&str; 2] = [
    "tessera_scrape_duration_seconds",
    "tessera_scrape_errors_total",
];

fn with_own<'a>(core: &[&'a str]) -> Vec<&'a str> {
    core.iter().copied().chain(OWN).collect()
}

#[test]
fn redis_primary_and_replica() {
    let mut primary = RedisServer::start().expect("redis primary");
    let replica = RedisServer::replica_of(&primary).expect("redis replica");
    primary
        .command("CONFIG SET maxmemory 67108864")
        .expect("set maxmemory");
    let a = Adapter::start("redis", &primary.addr(), &[]);
    let r = Adapter::start("redis", &replica.addr(), &[]);

    let before = a.scrape();
    before.assert_engine_label("redis");
    before.assert_core(
        &with_own(&[
            UP,
            BUILD,
            ROLE,
            LEADER,
            CONNS,
            OPS,
            RX,
            TX,
            DATA,
            LIMIT,
            ITEMS,
            IN_SYNC,
            OUT_OF_SYNC,
        ]),
        &[LEADER_CHANGES],
    );
    assert_eq!(before.must(UP, &[]), 1.0);
    assert_eq!(before.must(ROLE, &[("role", "primary")]), 1.0);
    assert_eq!(before.must(LEADER, &[]), 1.0);
    assert_eq!(before.must(LIMIT, &[]), 67108864.0);
    assert_eq!(before.must(IN_SYNC, &[]), 1.0);
    assert_eq!(before.must(OUT_OF_SYNC, &[]), 0.0);
    assert!(
        before.must(CONNS, &[]) >= 1.0,
        "the adapter itself is a client"
    );
    assert!(before.must(DATA, &[]) > 0.0);
    assert_eq!(before.must("tessera_redis_connected_replicas", &[]), 1.0);

    // Scrapes reuse one connection: five scrapes open no new ones (only
    // this test's second INFO does).
    let accepted = |p: &RedisServer| {
        let info = exchange(p.port, b"INFO stats\r\n", Duration::from_secs(2), |t| {
            t.contains("total_connections_received:") && t.ends_with("\r\n")
        })
        .expect("INFO");
        let line = info
            .lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"));
        line.expect("total_connections_received")
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let conns_before = accepted(&primary);
    for _ in 0..5 {
        a.scrape();
    }
    assert_eq!(
        accepted(&primary) - conns_before,
        1,
        "the adapter reconnected"
    );

    for i in 0..100 {
        let reply = primary
            .command(&format!("SET key{i} value{i}"))
            .expect("SET");
        assert!(reply.starts_with("+OK"), "{reply}");
    }
    let after = a.scrape();
    let ops = after.must(OPS, &[]) - before.must(OPS, &[]);
    assert!(ops >= 100.0, "operations rose by {ops} after 100 SETs");
    assert!(after.must(ITEMS, &[]) >= 100.0);
    assert!(after.must(RX, &[]) - before.must(RX, &[]) >= 100.0 * 15.0);
    assert!(after.must(TX, &[]) > before.must(TX, &[]));

    let rm = eventually(Duration::from_secs(10), || {
        let m = r.scrape();
        match m.get(ITEMS, &[]) {
            Some(n) if n >= 100.0 => Ok(m),
            other => Err(format!("replica items {other:?}")),
        }
    });
    rm.assert_core(
        &with_own(&[
            UP, BUILD, ROLE, LEADER, CONNS, OPS, RX, TX, DATA, ITEMS, IN_SYNC,
        ]),
        &[LEADER_CHANGES, OUT_OF_SYNC, LIMIT],
    );
    assert_eq!(rm.must(ROLE, &[("role", "replica")]), 1.0);
    assert_eq!(rm.must(LEADER, &[]), 0.0);
    assert_eq!(rm.must(IN_SYNC, &[]), 1.0);

    primary.kill();
    assert_down_within_one_scrape(&a);
    // The replica still answers, but its copy is no longer in sync.
    eventually(Duration::from_secs(15), || {
        let m = r.scrape();
        match (m.get(UP, &[]), m.get(IN_SYNC, &[])) {
            (Some(1.0), Some(0.0)) => Ok(()),
            other => Err(format!("replica up/in_sync {other:?}")),
        }
    });
}

#[test]
fn redis_password_from_a_file() {
    let server = RedisServer::start_with_password("s3cret").expect("redis with auth");
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    let a = Adapter::start(
        "redis",
        &server.addr(),
        &["--redis-password-file", pw.to_str().unwrap()],
    );
    assert_eq!(a.scrape().must(UP, &[]), 1.0);
    assert!(!a.log().contains("s3cret"), "password leaked into the log");
    // A wrong password is "down", counted under the auth reason.
    let bad = Adapter::start("redis", &server.addr(), &["--redis-password", "nope"]);
    let m = bad.scrape();
    assert_eq!(m.must(UP, &[]), 0.0);
    assert_eq!(
        m.must("tessera_scrape_errors_total", &[("reason", "auth")]),
        1.0
    );
}

#[test]
fn memcached() {
    let mut mc = Memcached::start().expect("memcached");
    let a = Adapter::start("memcached", &mc.addr(), &[]);
    let before = a.scrape();
    before.assert_engine_label("memcached");
    before.assert_core(
        &with_own(&[UP, BUILD, ROLE, CONNS, OPS, RX, TX, DATA, LIMIT, ITEMS]),
        &[LEADER, IN_SYNC, OUT_OF_SYNC, LEADER_CHANGES],
    );
    assert_eq!(before.must(ROLE, &[("role", "standalone")]), 1.0);
    assert!(before.must(LIMIT, &[]) > 0.0);

    let mut req = String::new();
    for i in 0..100 {
        req.push_str(&format!("set key{i} 0 0 5\r\nhello\r\n"));
    }
    exchange(mc.port, req.as_bytes(), Duration::from_secs(5), |t| {
        t.matches("STORED\r\n").count() == 100
    })
    .expect("100 sets");
    let after = a.scrape();
    assert!(after.must(OPS, &[]) - before.must(OPS, &[]) >= 100.0);
    assert_eq!(after.must(ITEMS, &[]), 100.0);
    assert!(after.must(DATA, &[]) > before.must(DATA, &[]));
    assert!(after.must(RX, &[]) - before.must(RX, &[]) >= req.len() as f64);

    mc.process.kill();
    assert_down_within_one_scrape(&a);
}

#[test]
fn zookeeper_ensemble_has_one_leader() {
    let mut ens = ZooKeeperEnsemble::start(3).expect("zookeeper ensemble");
    let adapters: Vec<Adapter> = ens
        .members
        .iter()
        .map(|m| Adapter::start("zookeeper", &m.addr(), &[]))
        .collect();
    // Leadership may still settle right after start; wait for one leader.
    let scrapes: Vec<Metrics> = eventually(Duration::from_secs(30), || {
        let s: Vec<Metrics> = adapters.iter().map(Adapter::scrape).collect();
        let leaders = s.iter().filter(|m| m.get(LEADER, &[]) == Some(1.0)).count();
        if leaders == 1 {
            Ok(s)
        } else {
            Err(format!("{leaders} leaders"))
        }
    });
    let leader = scrapes
        .iter()
        .position(|m| m.get(LEADER, &[]) == Some(1.0))
        .expect("one leader");
    for (i, m) in scrapes.iter().enumerate() {
        m.assert_engine_label("zookeeper");
        assert_eq!(m.must(UP, &[]), 1.0);
        assert_eq!(m.must(IN_SYNC, &[]), 1.0);
        assert!(
            m.must(ITEMS, &[]) >= 4.0,
            "root, /zookeeper and its children"
        );
        assert!(
            m.must(LEADER_CHANGES, &[]) >= 1.0,
            "each member saw an election"
        );
        // Every member has these; only the leader knows its followers' sync.
        let mut core = with_own(&[
            UP,
            BUILD,
            ROLE,
            LEADER,
            CONNS,
            OPS,
            RX,
            TX,
            DATA,
            ITEMS,
            IN_SYNC,
            LEADER_CHANGES,
        ]);
        if i == leader {
            core.push(OUT_OF_SYNC);
            m.assert_core(&core, &[LIMIT]);
            assert_eq!(m.must(ROLE, &[("role", "leader")]), 1.0);
            assert_eq!(m.must(OUT_OF_SYNC, &[]), 0.0);
        } else {
            m.assert_core(&core, &[LIMIT, OUT_OF_SYNC]);
            assert_eq!(m.must(ROLE, &[("role", "follower")]), 1.0);
            assert_eq!(m.must(LEADER, &[]), 0.0);
        }
    }
    // Each scrape is itself a request the server counted.
    let again = adapters[leader].scrape();
    assert!(again.must(OPS, &[]) > scrapes[leader].must(OPS, &[]));

    // Quorum lost: the survivor answers (up 1) but leads nothing and is
    // out of sync; the stopped members' adapters say up 0 at once.
    let survivor = (leader + 1) % 3;
    let stopped = ens.stop_majority(survivor);
    for &i in &stopped {
        assert_down_within_one_scrape(&adapters[i]);
    }
    eventually(Duration::from_secs(20), || {
        let m = adapters[survivor].scrape();
        match (
            m.get(UP, &[]),
            m.get(LEADER, &[]),
            m.get(IN_SYNC, &[]),
            m.has(ROLE),
        ) {
            (Some(1.0), Some(0.0), Some(0.0), false) => Ok(()),
            other => Err(format!("survivor up/leader/in_sync/role {other:?}")),
        }
    });
}

/// One v3 gateway `put`; etcd's JSON API takes base64 keys and values.
fn etcd_put(port: u16, key: &str) {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let body = format!(r#"{{"key":"{}","value":"{}"}}"#, b64(key), b64("v"));
    let req = format!(
        "POST /v3/kv/put HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let reply = exchange(port, req.as_bytes(), Duration::from_secs(5), |_| false).expect("put");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[test]
fn etcd() {
    let mut etcd = Etcd::start().expect("etcd");
    let a = Adapter::start("etcd", &etcd.url(), &[]);
    let before = a.scrape();
    before.assert_engine_label("etcd");
    before.assert_core(
        &with_own(&[
            UP,
            BUILD,
            ROLE,
            LEADER,
            OPS,
            RX,
            TX,
            DATA,
            LIMIT,
            ITEMS,
            IN_SYNC,
            LEADER_CHANGES,
        ]),
        &[CONNS, OUT_OF_SYNC],
    );
    assert_eq!(before.must(ROLE, &[("role", "leader")]), 1.0);
    assert_eq!(before.must(LEADER, &[]), 1.0);
    assert_eq!(before.must(IN_SYNC, &[]), 1.0);
    assert!(before.must(LEADER_CHANGES, &[]) >= 1.0);
    assert!(before.must(LIMIT, &[]) > before.must(DATA, &[]));

    for i in 0..20 {
        etcd_put(etcd.port, &format!("key{i}"));
    }
    let after = a.scrape();
    assert!(after.must(OPS, &[]) - before.must(OPS, &[]) >= 20.0);
    assert!(after.must(ITEMS, &[]) - before.must(ITEMS, &[]) >= 20.0);
    assert!(after.must(RX, &[]) > before.must(RX, &[]));

    etcd.process.kill();
    assert_down_within_one_scrape(&a);
}

/// The jars hack/install-test-deps.sh cached for the launcher.
fn kafka_libs() -> PathBuf {
    let cache = std::env::var_os("TESSERA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/tessera"));
    std::fs::read_dir(cache.join("kafka"))
        .expect("kafka jars cache (run hack/install-test-deps.sh)")
        .filter_map(|e| Some(e.ok()?.path().join("libs")))
        .find(|libs| libs.join(".complete").exists())
        .expect("a complete kafka libs directory")
}

#[test]
fn kafka_single_node() {
    let mut broker = KafkaBroker::start().expect("kafka");
    // A topic with data, made by the real Java client (no CLI jar needed).
    let seed = Command::new("java")
        .arg("-cp")
        .arg(format!("{}/*", kafka_libs().display()))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/KafkaSeed.java"
        ))
        .args([&broker.addr(), "orders", "3", "200"])
        .output()
        .expect("java");
    assert!(
        seed.status.success(),
        "seeding kafka failed:\n{}",
        String::from_utf8_lossy(&seed.stderr)
    );

    let a = Adapter::start("kafka", &broker.addr(), &[]);
    let m = a.scrape();
    m.assert_engine_label("kafka");
    m.assert_core(
        &with_own(&[
            UP,
            BUILD,
            ROLE,
            LEADER,
            DATA,
            ITEMS,
            IN_SYNC,
            OUT_OF_SYNC,
            LEADER_CHANGES,
        ]),
        // Only JMX has these; the adapter needs no JMX agent.
        &[CONNS, OPS, RX, TX, LIMIT],
    );
    assert_eq!(m.must(ROLE, &[("role", "broker")]), 1.0);
    assert_eq!(m.must(ROLE, &[("role", "controller")]), 1.0);
    assert_eq!(
        m.must(LEADER, &[]),
        1.0,
        "the only node is the active controller"
    );
    assert_eq!(m.must(ITEMS, &[]), 3.0);
    assert_eq!(m.must("tessera_kafka_partitions_led", &[]), 3.0);
    assert_eq!(
        m.must("tessera_kafka_under_replicated_partitions", &[]),
        0.0
    );
    assert_eq!(m.must(IN_SYNC, &[]), 1.0);
    assert_eq!(m.must(OUT_OF_SYNC, &[]), 0.0);
    assert!(m.must(DATA, &[]) > 200.0 * 2.0, "200 records on disk");
    assert!(m.must(LEADER_CHANGES, &[]) >= 1.0);

    broker.process.kill();
    assert_down_within_one_scrape(&a);
}

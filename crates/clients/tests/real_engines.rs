//! The clients against the real engines (the launchers from tessera-testing).

use std::time::Duration;

use tessera_clients::{etcd, kafka, memcached, promtext, redis, zookeeper};
use tessera_testing::{Etcd, KafkaBroker, Memcached, RedisServer, ZooKeeperEnsemble};

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn redis_info_role_and_auth() {
    let primary = RedisServer::start_with_password("pw").expect("redis");
    let replica = RedisServer::replica_of(&primary).expect("replica");
    let opts = redis::Options {
        timeout: T,
        password: Some("pw".into()),
        ..redis::Options::default()
    };
    let mut c = redis::Client::connect(&replica.addr(), opts.clone())
        .await
        .unwrap();
    c.ping().await.unwrap();
    let info = c.info(Some("replication")).await.unwrap();
    assert_eq!(info.get("role"), Some("slave"));
    assert_eq!(info.get("master_link_status"), Some("up"));
    let role = c.role().await.unwrap();
    assert!(format!("{role:?}").contains("slave"), "{role:?}");
    let mut p = redis::Client::connect(&primary.addr(), opts).await.unwrap();
    p.command(&["SET", "k", "v"]).await.unwrap();
    let bad = redis::Options {
        timeout: T,
        password: Some("wrong".into()),
        ..redis::Options::default()
    };
    let e = redis::Client::connect(&primary.addr(), bad)
        .await
        .unwrap_err();
    assert_eq!(e.label(), "auth", "{e}");
}

#[tokio::test]
async fn memcached_stats_and_version() {
    let m = Memcached::start().expect("memcached");
    let mut c = memcached::Client::connect(&m.addr(), T).await.unwrap();
    assert!(c.version().await.unwrap().starts_with('1'));
    let stats = c.stats().await.unwrap();
    assert_eq!(stats.get("accepting_conns").map(String::as_str), Some("1"));
    assert!(stats.contains_key("curr_connections"));
}

#[tokio::test]
async fn zookeeper_srvr_and_mntr_on_an_ensemble() {
    let ens = ZooKeeperEnsemble::start(3).expect("ensemble");
    let mut leaders = 0;
    for m in &ens.members {
        let s =
            zookeeper::Srvr::parse(&zookeeper::four_letter(&m.addr(), "srvr", T).await.unwrap())
                .unwrap();
        assert!(s.node_count.is_some_and(|n| n > 0));
        if s.mode == zookeeper::Mode::Leader {
            leaders += 1;
        }
        let mntr =
            zookeeper::parse_mntr(&zookeeper::four_letter(&m.addr(), "mntr", T).await.unwrap());
        assert!(mntr.iter().any(|l| l.key == "zk_server_state"), "{mntr:?}");
        assert_eq!(
            zookeeper::four_letter(&m.addr(), "ruok", T).await.unwrap(),
            "imok"
        );
    }
    assert_eq!(leaders, 1);
}

#[tokio::test]
async fn etcd_health_and_metrics() {
    let e = Etcd::start().expect("etcd");
    let c = etcd::Client::new(&e.url(), T, None).unwrap();
    let h = c.health().await.unwrap();
    assert!(h.is_ok() && h.body.contains("true"), "{h:?}");
    let parsed = promtext::parse_counted(&c.metrics().await.unwrap());
    assert_eq!(parsed.skipped, 0);
    let leader = parsed
        .samples
        .iter()
        .find(|s| s.name == "etcd_server_has_leader")
        .expect("has_leader");
    assert_eq!(leader.value, 1.0);
    // The same connection is reused for the next request.
    assert!(c.health().await.unwrap().is_ok());
}

#[tokio::test]
async fn kafka_metadata_and_log_dirs() {
    let b = KafkaBroker::start().expect("kafka");
    let mut c = kafka::Client::connect(&b.addr(), T).await.unwrap();
    let apis = c.api_versions().await.unwrap();
    assert!(apis.iter().any(|a| a.api_key == 3));
    let md = c.metadata(None).await.unwrap();
    assert_eq!(md.brokers.len(), 1);
    assert_eq!(md.brokers[0].node_id, 1);
    assert_eq!(md.brokers[0].port, i32::from(b.port));
    assert!(md.cluster_id.is_some());
    assert_eq!(md.under_replicated(None), 0);
    let dirs = c.describe_log_dirs().await.unwrap();
    assert_eq!(dirs.len(), 1);
    assert_eq!(dirs[0].error_code, 0);
    assert!(dirs[0].total_bytes > 0);
}

#[tokio::test]
async fn kafka_topic_produce_and_fetch() {
    let b = KafkaBroker::start().expect("kafka");
    let mut c = kafka::Client::connect(&b.addr(), Duration::from_secs(10))
        .await
        .unwrap();
    c.create_topic("t", 1, 1, &[("min.insync.replicas", "1")])
        .await
        .unwrap();
    // Creating it again is not an error.
    c.create_topic("t", 1, 1, &[]).await.unwrap();
    let values: Vec<bytes::Bytes> = [&b"a"[..], b"b", b"c"]
        .map(bytes::Bytes::from_static)
        .to_vec();
    // The leader may take a moment to be elected after creation.
    let mut base = Err(tessera_clients::Error::Closed);
    for _ in 0..50 {
        base = c.produce("t", 0, &values, -1).await;
        if base.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(base.unwrap(), 0);
    assert_eq!(c.produce("t", 0, &values[..1], -1).await.unwrap(), 3);
    let got = c.fetch("t", 0, 1).await.unwrap();
    assert_eq!(
        got,
        vec![
            (1, bytes::Bytes::from_static(b"b")),
            (2, bytes::Bytes::from_static(b"c")),
            (3, bytes::Bytes::from_static(b"a")),
        ]
    );
    // A partition that does not exist is an error naming the operation.
    let e = c.produce("t", 7, &values, -1).await.unwrap_err();
    assert!(e.to_string().contains("Produce error code"), "{e}");
}

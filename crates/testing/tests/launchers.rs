//! The launchers start real engines and the fault helpers do what they say.

use std::time::Duration;

use tessera_testing::*;

const T: Duration = Duration::from_secs(2);

#[test]
fn redis_replica_follows_and_loses_its_primary() {
    let mut primary = RedisServer::start().expect("primary");
    let replica = RedisServer::replica_of(&primary).expect("replica");
    assert!(
        replica
            .command("INFO replication")
            .unwrap()
            .contains("master_link_status:up")
    );
    primary.kill();
    let mut down = false;
    for _ in 0..100 {
        if replica
            .command("INFO replication")
            .unwrap()
            .contains("master_link_status:down")
        {
            down = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(down, "replica never noticed its primary died");
    primary.restart().expect("primary back");
    replica.cut_link().unwrap();
    assert!(replica.command("PING").unwrap().contains("PONG"));
}

#[test]
fn redis_with_password_and_pause() {
    let r = RedisServer::start_with_password("s3cret").expect("redis");
    assert!(r.command("PING").unwrap().contains("PONG"));
    r.process.pause();
    assert!(
        exchange(r.port, b"PING\r\n", Duration::from_millis(300), |t| !t
            .is_empty())
        .is_err()
    );
    r.process.resume();
    assert!(r.command("PING").unwrap().contains("PONG"));
}

#[test]
fn memcached_starts_and_restarts() {
    let mut m = Memcached::start().expect("memcached");
    m.process.kill();
    assert!(exchange(m.port, b"version\r\n", T, |t| !t.is_empty()).is_err());
    m.restart().expect("restart");
}

#[test]
fn etcd_starts() {
    let e = Etcd::start().expect("etcd");
    let (status, body) = http_get(e.port, "/health", &[], T).unwrap();
    assert_eq!(status, 200, "{body}");
}

#[test]
fn zookeeper_standalone_and_ensemble_quorum() {
    let zk = ZooKeeper::start().expect("standalone");
    assert!(zk.srvr().unwrap().contains("Mode: standalone"));
    drop(zk);
    let mut ens = ZooKeeperEnsemble::start(3).expect("ensemble");
    let modes: Vec<String> = ens.members.iter().map(|m| m.srvr().unwrap()).collect();
    assert_eq!(
        modes.iter().filter(|m| m.contains("Mode: leader")).count(),
        1,
        "{modes:?}"
    );
    let stopped = ens.stop_majority(0);
    assert_eq!(stopped.len(), 2);
    let mut lost = false;
    for _ in 0..100 {
        if ens.members[0]
            .srvr()
            .is_ok_and(|s| s.contains("not currently serving"))
        {
            lost = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(lost, "the survivor still serves without quorum");
    ens.start_members(&stopped).unwrap();
    ens.wait_serving().expect("quorum back");
}

#[test]
fn kafka_single_node_starts() {
    let b = KafkaBroker::start().expect("kafka");
    assert!(b.process.log_tail(400).contains("Kafka Server started"));
}

#[test]
fn a_missing_binary_fails_with_a_clear_error() {
    let e = Process::spawn(
        "nope",
        "/nonexistent/engine",
        vec![],
        vec![],
        std::env::temp_dir().join("nope.log"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("make engines"), "{e}");
}

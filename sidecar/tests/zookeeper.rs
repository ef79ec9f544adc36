mod common;

use std::time::Duration;

use common::{Sidecar, assert_paused_engine_gives_503_quickly};
use tessera_testing::{ZooKeeper, ZooKeeperEnsemble};

#[test]
fn member_turns_unready_without_quorum_and_ready_when_it_returns() {
    let mut ens = ZooKeeperEnsemble::start(3).expect("ensemble");
    let s = Sidecar::start(
        "zookeeper",
        &ens.members[0].addr(),
        &["--zookeeper-members", "3"],
    );
    let body = s.wait_status("/readyz", 200, Duration::from_secs(10));
    assert!(
        body.contains("leader") || body.contains("follower"),
        "{body}"
    );

    let stopped = ens.stop_majority(0);
    // Every answer from here is 503; the reason settles on "not serving" once
    // the peer has finished dropping out of the quorum.
    s.wait_answer(
        "/readyz",
        503,
        |body| body.contains("not currently serving"),
        Duration::from_secs(20),
    );
    // ruok still answers imok: alive, just not ready.
    assert_eq!(s.get("/livez").0, 200);

    ens.start_members(&stopped).expect("members restart");
    s.wait_status("/readyz", 200, Duration::from_secs(90));
}

#[test]
fn standalone_is_ready_only_for_a_one_member_ensemble() {
    let zk = ZooKeeper::start().expect("zookeeper");
    let one = Sidecar::start("zookeeper", &zk.addr(), &[]);
    assert!(
        one.wait_status("/readyz", 200, Duration::from_secs(5))
            .contains("standalone")
    );
    let three = Sidecar::start("zookeeper", &zk.addr(), &["--zookeeper-members", "3"]);
    three.wait_status("/readyz", 503, Duration::from_secs(5));
    zk.process.pause();
    assert_paused_engine_gives_503_quickly(&one);
    zk.process.resume();
}

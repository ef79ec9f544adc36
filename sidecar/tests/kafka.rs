mod common;

use std::time::Duration;

use common::Sidecar;
use tessera_testing::{KafkaBroker, KafkaCluster};

#[test]
fn single_broker_is_ready_once_registered() {
    let mut b = KafkaBroker::start().expect("kafka");
    let s = Sidecar::start("kafka", &b.addr(), &[]);
    let body = s.wait_status("/readyz", 200, Duration::from_secs(30));
    assert!(body.contains("broker 1 registered"), "{body}");
    // A node id that is not registered is not ready.
    let other = Sidecar::start("kafka", &b.addr(), &["--kafka-node-id", "7"]);
    let body = other.wait_status("/readyz", 503, Duration::from_secs(5));
    assert!(body.contains("not among"), "{body}");
    b.process.kill();
    s.wait_status("/readyz", 503, Duration::from_secs(5));
    b.restart().expect("restart");
    s.wait_status("/readyz", 200, Duration::from_secs(60));
}

#[test]
fn every_broker_of_three_is_ready_and_reports_under_replication() {
    let c = KafkaCluster::start(3).expect("kafka cluster");
    let sidecars: Vec<Sidecar> = c
        .brokers
        .iter()
        .map(|b| {
            Sidecar::start(
                "kafka",
                &b.addr(),
                &["--kafka-node-id", &b.node_id.to_string()],
            )
        })
        .collect();
    for s in &sidecars {
        s.wait_status("/readyz", 200, Duration::from_secs(60));
        let (_, m) = s.get("/metrics");
        assert!(
            m.contains("tessera_sidecar_kafka_under_replicated_partitions 0"),
            "{m}"
        );
    }
}

#[test]
fn a_controller_is_ready_when_it_knows_the_active_controller() {
    let b = KafkaBroker::start().expect("kafka");
    let controller = format!("127.0.0.1:{}", b.controller_port);
    let s = Sidecar::start("kafka", &controller, &["--kafka-role", "controller"]);
    let body = s.wait_status("/readyz", 200, Duration::from_secs(30));
    assert!(
        body.contains("controller quorum led by 1 (1 controllers registered)"),
        "{body}"
    );
    // The broker check cannot pass on a controller listener: controllers
    // answer no Metadata.
    let as_broker = Sidecar::start("kafka", &controller, &[]);
    let body = as_broker.wait_status("/readyz", 503, Duration::from_secs(10));
    assert!(body.contains("Metadata"), "{body}");
}

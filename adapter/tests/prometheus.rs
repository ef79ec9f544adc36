//! The adapter as Prometheus sees it: Debian's real `prometheus` scrapes
//! adapters for Redis and ZooKeeper; `promtool` checks and unit-tests the
//! alert rules; the dashboard uses the uniform schema only.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Adapter, eventually};
use tessera_adapter::schema::core;
use tessera_testing::{Prometheus, RedisServer, ZooKeeper, dashboard_queries};

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

const RULES: &str = "charts/tessera/rules/tessera-alerts.yaml";
const RULES_TEST: &str = "charts/tessera/rules/tessera-alerts.test.yaml";
const DASHBOARD: &str = "charts/tessera/dashboards/tessera-overview.json";

#[test]
fn real_prometheus_scrapes_redis_and_zookeeper_adapters() {
    let redis = RedisServer::start().expect("redis");
    let mut zk = ZooKeeper::start().expect("zookeeper");
    zk.wait_serving().expect("zookeeper serving");
    let ra = Adapter::start("redis", &redis.addr(), &[]);
    let za = Adapter::start("zookeeper", &zk.addr(), &[]);

    let scrape = format!(
        "  - job_name: tessera-adapter\n    static_configs:\n      \
         - targets: ['127.0.0.1:{r}', '127.0.0.1:{z}']\n",
        r = ra.port,
        z = za.port,
    );
    let prom = Prometheus::start(&scrape, Some(&repo_file(RULES)))
        .expect("prometheus (Debian package prometheus)");

    let up_engines = eventually(Duration::from_secs(60), || {
        let result = prom.query("tessera_up == 1")?;
        let mut engines: Vec<String> = result
            .iter()
            .filter(|r| r["value"][1] == "1")
            .filter_map(|r| r["metric"]["engine"].as_str().map(String::from))
            .collect();
        engines.sort();
        if engines == ["redis", "zookeeper"] {
            Ok(engines)
        } else {
            Err(format!("tessera_up == 1 for {engines:?}: {result:?}"))
        }
    });
    assert_eq!(up_engines, ["redis", "zookeeper"]);

    // Prometheus loaded the rules file and evaluates the alerts.
    let body = prom.api("/api/v1/rules").unwrap().to_string();
    for alert in [
        "TesseraInstanceDown",
        "TesseraNoLeader",
        "TesseraReplicasOutOfSync",
        "TesseraDataNearLimit",
    ] {
        assert!(body.contains(alert), "{alert} not loaded: {body}");
    }
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool (Debian package prometheus)");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_checks_and_unit_tests_the_alert_rules() {
    promtool(&["check", "rules", repo_file(RULES).to_str().unwrap()]);
    promtool(&["test", "rules", repo_file(RULES_TEST).to_str().unwrap()]);
}

#[test]
fn dashboard_uses_only_the_uniform_schema() {
    let text = std::fs::read_to_string(repo_file(DASHBOARD)).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let allowed: Vec<&str> = [
        core::UP,
        core::ROLE,
        core::IS_LEADER,
        core::CONNECTIONS,
        core::OPERATIONS,
        core::RX_BYTES,
        core::TX_BYTES,
        core::DATA_BYTES,
        core::DATA_LIMIT_BYTES,
        core::ITEMS,
        core::IN_SYNC,
        core::OUT_OF_SYNC,
        core::LEADER_CHANGES,
        core::SCRAPE_DURATION,
        core::SCRAPE_ERRORS,
    ]
    .iter()
    .map(|d| d.name)
    .collect();
    let exprs = dashboard_queries(&dash);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut used = std::collections::BTreeSet::new();
    for e in &exprs {
        // Every metric name in a query is a core tessera_ family.
        for word in e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("tessera_") {
                assert!(
                    allowed.contains(&word),
                    "{word} in {e:?} is not a core metric"
                );
                used.insert(word);
            }
        }
        assert!(e.contains("tessera_"), "query without the schema: {e}");
    }
    // Up, role or leader, connections, ops, bytes, data vs limit, replication.
    for must in [
        "tessera_up",
        "tessera_role",
        "tessera_is_leader",
        "tessera_connections",
        "tessera_operations_total",
        "tessera_network_receive_bytes_total",
        "tessera_network_transmit_bytes_total",
        "tessera_data_bytes",
        "tessera_data_limit_bytes",
        "tessera_replication_in_sync",
        "tessera_replicas_out_of_sync",
    ] {
        assert!(used.contains(must), "dashboard does not show {must}");
    }
}
